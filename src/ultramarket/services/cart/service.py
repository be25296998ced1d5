"""Cart and coupon use cases.

A cart belongs to a user (one open cart each, a unique constraint) or to a guest who
holds its token. Lines are stored with the price seen when added; every read re-prices
them from the product service and reads stock from the inventory service, so the cart
always shows current prices and warns about changes and short stock.

Coupon uses change only by one conditional UPDATE (``uses < max_uses``) taken first in
the redemption's transaction; the per-user limit is a unique (coupon, user, slot) row
written after it, so neither limit can be overrun by concurrent checkouts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Select, cast, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.cache import KeyedCache, Slot
from ultramarket.core.db import release_connection, utcnow
from ultramarket.core.errors import DomainError
from ultramarket.core.events import EventPublisher
from ultramarket.core.money import Money
from ultramarket.services.cart import errors, events
from ultramarket.services.cart import schemas as s
from ultramarket.services.cart.config import CartSettings
from ultramarket.services.cart.models import Cart, CartItem, Coupon, CouponRedemption
from ultramarket.services.cart.pricing import CouponTerms, compute_totals, discount_for
from ultramarket.services.inventory.client import InventoryClient
from ultramarket.services.product.client import ProductClient
from ultramarket.services.product.schemas import VariantInfo
from ultramarket.services.user.client import UserClient

log = logging.getLogger("ultramarket.cart")

CART = Cart.__table__
ITEM = CartItem.__table__
COUPON = Coupon.__table__
REDEMPTION = CouponRedemption.__table__
CACHE_PREFIX = "cart"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def money(amount: int, currency: str) -> str:
    return str(Money(amount, currency))


@dataclass(frozen=True)
class Owner:
    """Whose cart: a user, or a guest holding ``token`` (both: merge the guest cart in)."""

    user_id: uuid.UUID | None = None
    token: str | None = None


# -- coupons: the rules ------------------------------------------------------------------------


def coupon_terms(coupon: Coupon) -> CouponTerms:
    return CouponTerms(coupon.code, coupon.type, coupon.value, coupon.currency)


def check_coupon(coupon: Coupon, *, subtotal: int, currency: str, now: datetime) -> None:
    """The rules that do not depend on use counts; raises the first that fails."""
    if not coupon.active or coupon.deleted_at is not None:
        raise errors.CouponInactive()
    if coupon.starts_at is not None and now < coupon.starts_at:
        raise errors.CouponNotStarted()
    if coupon.ends_at is not None and now >= coupon.ends_at:
        raise errors.CouponExpired()
    if coupon.currency is not None and coupon.currency != currency:
        raise errors.CouponCurrencyMismatch()
    if coupon.min_subtotal_amount is not None and subtotal < coupon.min_subtotal_amount:
        minimum = money(coupon.min_subtotal_amount, coupon.currency or currency)
        raise errors.CouponMinSubtotal(
            f"The subtotal must be at least {minimum} for this coupon",
            details=[{"min_subtotal": minimum, "currency": coupon.currency or currency}],
        )


def coupon_read(coupon: Coupon) -> s.CouponRead:
    value: str | None
    if coupon.type == "percentage":
        value = str((Decimal(coupon.value) / 100).quantize(Decimal("0.01")))
    elif coupon.type == "fixed":
        value = money(coupon.value, coupon.currency or "USD")
    else:
        value = None
    minimum = (
        money(coupon.min_subtotal_amount, coupon.currency or "USD")
        if coupon.min_subtotal_amount is not None
        else None
    )
    return s.CouponRead(
        id=coupon.id,
        code=coupon.code,
        type=coupon.type,
        value=value,
        min_subtotal=minimum,
        starts_at=coupon.starts_at,
        ends_at=coupon.ends_at,
        max_uses=coupon.max_uses,
        max_uses_per_user=coupon.max_uses_per_user,
        currency=coupon.currency,
        uses=coupon.uses,
        active=coupon.active,
        created_at=coupon.created_at,
        updated_at=coupon.updated_at,
    )


def _minor(value: Decimal, currency: str, field: str) -> int:
    try:
        return Money.of(value, currency).amount
    except ValueError as exc:
        raise errors.InvalidCoupon(details=[{"field": field, "message": str(exc)}]) from None


def _percent_bp(value: Decimal) -> int:
    bp = value * 100
    if bp != bp.to_integral_value() or not 0 < bp <= 10_000:
        raise errors.InvalidCoupon(
            "A percentage is over 0 and at most 100, with up to 2 decimals",
            details=[{"field": "value", "message": "must be in (0, 100] with <= 2 decimals"}],
        )
    return int(bp)


def coupon_columns(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate a full set of coupon fields; return the column values."""
    kind = fields["type"]
    currency = fields.get("currency")
    value = fields.get("value")
    columns: dict[str, Any] = {
        "type": kind,
        "currency": currency,
        "starts_at": fields.get("starts_at"),
        "ends_at": fields.get("ends_at"),
        "max_uses": fields.get("max_uses"),
        "max_uses_per_user": fields.get("max_uses_per_user"),
        "active": fields.get("active", True),
    }
    if kind == "percentage":
        if value is None:
            raise errors.InvalidCoupon(details=[{"field": "value", "message": "required"}])
        columns["value"] = _percent_bp(value)
    elif kind == "fixed":
        if value is None or currency is None:
            raise errors.InvalidCoupon(
                "A fixed coupon needs a value and a currency",
                details=[{"field": "value", "message": "value and currency are required"}],
            )
        columns["value"] = _minor(value, currency, "value")
        if columns["value"] <= 0:
            raise errors.InvalidCoupon(details=[{"field": "value", "message": "must be > 0"}])
    else:
        if value not in (None, Decimal(0)):
            raise errors.InvalidCoupon(
                details=[{"field": "value", "message": "free_shipping takes no value"}]
            )
        columns["value"] = 0
    minimum = fields.get("min_subtotal")
    if minimum is not None:
        if currency is None:
            raise errors.InvalidCoupon(
                "A min_subtotal needs a currency",
                details=[{"field": "currency", "message": "required with min_subtotal"}],
            )
        columns["min_subtotal_amount"] = _minor(minimum, currency, "min_subtotal")
        if columns["min_subtotal_amount"] < 0:
            raise errors.InvalidCoupon(details=[{"field": "min_subtotal", "message": "< 0"}])
    else:
        columns["min_subtotal_amount"] = None
    starts, ends = columns["starts_at"], columns["ends_at"]
    if starts is not None and ends is not None and ends <= starts:
        raise errors.InvalidCoupon(details=[{"field": "ends_at", "message": "before starts_at"}])
    return columns


# -- the cart ---------------------------------------------------------------------------------


@dataclass
class Priced:
    """A stored line and what the other services say about it now."""

    item: CartItem
    variant: VariantInfo | None
    available: int | None


def _locked(query: Select[tuple[Cart]]) -> Select[tuple[Cart]]:
    """``query`` taking the cart row's lock, its attributes read afresh under it."""
    return query.with_for_update().execution_options(populate_existing=True)


class CartService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        products: ProductClient,
        inventory: InventoryClient,
        users: UserClient | None = None,
        settings: CartSettings,
        publisher: EventPublisher | None = None,
        clock: Callable[[], datetime] = utcnow,
        cache: KeyedCache | None = None,
    ) -> None:
        self.session = session
        self.products = products
        self.inventory = inventory
        self.users = users
        self.settings = settings
        self.publisher = publisher
        self.clock = clock
        self.cache = cache

    # -- finding carts ------------------------------------------------------------------------

    # A write locks the cart row first (``lock``): its lines are read, changed and written
    # back, and two requests on one cart (a double click, two tabs) must take turns, or
    # one's change is lost and a new line is inserted twice. (SQLite's writers take
    # turns anyway; FOR UPDATE is not rendered there.)

    async def _user_cart(self, user_id: uuid.UUID, *, lock: bool = False) -> Cart | None:
        query = select(Cart).where(Cart.open_user_id == user_id)
        result = await self.session.scalars(_locked(query) if lock else query)
        return result.first()

    async def _guest_cart(self, token: str, *, lock: bool = False) -> Cart | None:
        query = select(Cart).where(
            Cart.token_hash == hash_token(token),
            Cart.status == "open",
            Cart.user_id.is_(None),
        )
        result = await self.session.scalars(_locked(query) if lock else query)
        return result.first()

    async def find(self, owner: Owner, *, lock: bool = False) -> Cart | None:
        if owner.user_id is not None:
            return await self._user_cart(owner.user_id, lock=lock)
        if owner.token:
            return await self._guest_cart(owner.token, lock=lock)
        return None

    async def _create_user_cart(self, user_id: uuid.UUID) -> Cart:
        try:
            async with self.session.begin_nested():
                cart = Cart(user_id=user_id, open_user_id=user_id, status="open")
                self.session.add(cart)
                await self.session.flush()
            return cart
        except IntegrityError:  # a concurrent request created it first
            existing = await self._user_cart(user_id, lock=True)
            assert existing is not None
            return existing

    async def get_or_create(self, owner: Owner) -> tuple[Cart, str | None]:
        """The owner's open cart, created when missing; the raw token when a guest
        cart was just created (it is shown once). Locked for the write that follows."""
        cart = await self.find(owner, lock=True)
        if cart is not None:
            return cart, None
        if owner.user_id is not None:
            return await self._create_user_cart(owner.user_id), None
        token = new_token()
        cart = Cart(token_hash=hash_token(token), status="open")
        self.session.add(cart)
        await self.session.flush()
        return cart, token

    async def fresh(self, cart: Cart | None) -> Cart | None:
        """``cart`` read again (as a write committed since left it); itself if gone."""
        if cart is None:
            return None
        return await self.session.get(Cart, cart.id) or cart

    async def _items(self, cart_id: uuid.UUID) -> list[CartItem]:
        result = await self.session.scalars(
            select(CartItem).where(CartItem.cart_id == cart_id).order_by(CartItem.created_at)
        )
        return list(result.all())

    def _touch(self, cart: Cart) -> None:
        cart.updated_at = self.clock()
        cart.abandoned_at = None

    # -- merging a guest cart into the user's ----------------------------------------------------

    async def merge(self, user_id: uuid.UUID, token: str) -> int:
        """Fold the open guest cart of ``token`` into the user's open cart; returns how
        many guest lines were left behind (0: all merged, or no guest cart).

        Quantities add, capped by the per-line limit (never below what the user already
        had) but not by stock: a line short of stock comes over whole and shows its
        SHORT_STOCK warning, as it did in the guest cart. A line the user's cart cannot
        take - priced in another currency, or a new line past ``max_lines`` - is never
        dropped: it stays in the guest cart, which then stays open under its token (a
        later request with both tries again, e.g. once the user's cart is emptied). The
        guest cart is closed as merged once nothing is left in it. Lines are moved
        (deleted from the guest cart) under both carts' row locks, the user's first, so
        a repeat or a concurrent twin adds nothing twice."""
        if await self._guest_cart(token) is None:
            return 0
        target = await self._user_cart(user_id, lock=True) or await self._create_user_cart(user_id)
        guest = await self._guest_cart(token, lock=True)
        if guest is None:  # merged by a concurrent twin meanwhile
            return 0
        guest_items = await self._items(guest.id)
        mine = {i.variant_id: i for i in await self._items(target.id)}
        if not mine:
            target.currency = guest_items[0].currency if guest_items else None
        limit = self.settings.max_quantity_per_line
        left = 0
        changed = False
        for line in guest_items:
            have = mine.get(line.variant_id)
            if line.currency != target.currency or (
                have is None and len(mine) >= self.settings.max_lines
            ):
                left += 1
                continue
            changed = True
            if have is not None:
                have.quantity = max(have.quantity, min(have.quantity + line.quantity, limit))
            else:
                mine[line.variant_id] = CartItem(
                    cart_id=target.id,
                    variant_id=line.variant_id,
                    product_id=line.product_id,
                    sku=line.sku,
                    name=line.name,
                    quantity=min(line.quantity, limit),
                    price_amount=line.price_amount,
                    currency=line.currency,
                )
                self.session.add(mine[line.variant_id])
            await self.session.delete(line)
        # The guest's coupon comes over with the first merge (when the user has none).
        if guest.coupon_code is not None:
            if target.coupon_code is None:
                target.coupon_code, changed = guest.coupon_code, True
            guest.coupon_code = None
        if not left:
            guest.status, guest.merged_into_id = "merged", target.id
            guest.updated_at = self.clock()
        elif changed:
            self._touch(guest)
        if changed:
            self._touch(target)
        await self.session.flush()
        return left

    # -- lines ------------------------------------------------------------------------------

    def _check_quantity(self, quantity: int) -> None:
        limit = self.settings.max_quantity_per_line
        if quantity > limit:
            raise errors.QuantityLimit(
                f"At most {limit} units per line",
                details=[{"field": "body.quantity", "message": f"at most {limit}", "limit": limit}],
            )

    async def _variant(self, variant_id: uuid.UUID) -> VariantInfo:
        found = await self.products.get_variants([variant_id])
        variant = found[0] if found else None
        if variant is None or variant.status != "active":
            raise errors.VariantNotFound()
        return variant

    async def add_item(
        self, owner: Owner, variant_id: uuid.UUID, quantity: int
    ) -> tuple[Cart, str | None]:
        self._check_quantity(quantity)
        variant = await self._variant(variant_id)  # before any write: no lock held meanwhile
        cart, token = await self.get_or_create(owner)
        items = {i.variant_id: i for i in await self._items(cart.id)}
        if not items:
            cart.currency = None
        if cart.currency is not None and cart.currency != variant.currency:
            raise errors.CurrencyMismatch(
                f"The cart is in {cart.currency}; this item is priced in {variant.currency}",
                details=[{"cart_currency": cart.currency, "item_currency": variant.currency}],
            )
        line = items.get(variant_id)
        if line is None:
            if len(items) >= self.settings.max_lines:
                raise errors.CartLineLimit(f"At most {self.settings.max_lines} lines per cart")
            line = CartItem(
                cart_id=cart.id,
                variant_id=variant.id,
                product_id=variant.product_id,
                sku=variant.sku,
                name=variant.name,
                quantity=quantity,
                price_amount=variant.price_amount,
                currency=variant.currency,
            )
            self.session.add(line)
        else:
            self._check_quantity(line.quantity + quantity)
            line.quantity += quantity
            line.price_amount = variant.price_amount
            line.sku, line.name = variant.sku, variant.name
        cart.currency = variant.currency
        self._touch(cart)
        await self.session.flush()
        if self.publisher is not None:
            await self.publisher.publish(
                self.session,
                events.ItemAdded(
                    cart_id=cart.id,
                    user_id=cart.user_id,
                    variant_id=variant.id,
                    product_id=variant.product_id,
                    sku=variant.sku,
                    quantity=quantity,
                    line_quantity=line.quantity,
                    unit_price_amount=variant.price_amount,
                    currency=variant.currency,
                ),
            )
        return cart, token

    async def _line(self, owner: Owner, item_id: uuid.UUID) -> tuple[Cart, CartItem]:
        cart = await self.find(owner, lock=True)
        if cart is None:
            raise errors.CartItemNotFound()
        item = await self.session.get(CartItem, item_id)
        if item is None or item.cart_id != cart.id:
            raise errors.CartItemNotFound()
        return cart, item

    async def update_item(self, owner: Owner, item_id: uuid.UUID, quantity: int) -> Cart:
        self._check_quantity(quantity)
        cart, item = await self._line(owner, item_id)
        item.quantity = quantity
        # Touching a line acknowledges its current price.
        found = await self.products.get_variants([item.variant_id])
        if found and found[0].currency == item.currency:
            item.price_amount = found[0].price_amount
        self._touch(cart)
        await self.session.flush()
        return cart

    async def remove_item(self, owner: Owner, item_id: uuid.UUID) -> Cart:
        cart, item = await self._line(owner, item_id)
        await self.session.delete(item)
        await self.session.flush()
        if not await self._items(cart.id):
            cart.currency = None
        self._touch(cart)
        await self.session.flush()
        return cart

    async def clear(self, owner: Owner) -> Cart | None:
        cart = await self.find(owner, lock=True)
        if cart is None:
            return None
        await self.session.execute(delete(ITEM).where(ITEM.c.cart_id == cart.id))
        cart.currency = None
        cart.coupon_code = None
        self._touch(cart)
        await self.session.flush()
        return cart

    async def remove_ordered(
        self, user_id: uuid.UUID, lines: Sequence[tuple[uuid.UUID, int]], coupon: str | None
    ) -> Cart | None:
        """Take a confirmed order's ``lines`` (variant, quantity) out of the user's cart:
        each line loses the units bought and goes when none are left, so what the
        customer added (or raised) while the order was paid stays. The cart's coupon goes
        only when it is the one the order used (``coupon``); one applied meanwhile, or
        one the order did not use, stays. Not idempotent: a repeat takes the units again.
        None when the user has no open cart."""
        cart = await self._user_cart(user_id, lock=True)
        if cart is None:
            return None
        bought: dict[uuid.UUID, int] = {}
        for variant_id, quantity in lines:
            bought[variant_id] = bought.get(variant_id, 0) + quantity
        left = 0
        for item in await self._items(cart.id):
            taken = bought.get(item.variant_id, 0)
            if taken >= item.quantity:
                await self.session.delete(item)
            else:
                item.quantity -= taken
                left += 1
        if not left:
            cart.currency = None
        if coupon and cart.coupon_code and cart.coupon_code.lower() == coupon.strip().lower():
            cart.coupon_code = None
        self._touch(cart)
        await self.session.flush()
        return cart

    # -- coupons on the cart ------------------------------------------------------------------

    async def apply_coupon(self, owner: Owner, code: str) -> Cart:
        cart = await self.find(owner, lock=True)
        if cart is None:
            raise errors.CartEmpty("Add something to the cart before applying a coupon")
        priced = await self._price(cart)
        if not priced:
            raise errors.CartEmpty("Add something to the cart before applying a coupon")
        coupon = await CouponService(self.session, clock=self.clock).by_code(code)
        currency = cart.currency or self.settings.default_currency
        await self._check_applicable(coupon, self._subtotal(priced), currency, cart.user_id)
        cart.coupon_code = coupon.code
        self._touch(cart)
        await self.session.flush()
        return cart

    async def remove_coupon(self, owner: Owner) -> Cart | None:
        cart = await self.find(owner, lock=True)
        if cart is None:
            return None
        cart.coupon_code = None
        self._touch(cart)
        await self.session.flush()
        return cart

    async def _check_applicable(
        self, coupon: Coupon, subtotal: int, currency: str, user_id: uuid.UUID | None
    ) -> None:
        check_coupon(coupon, subtotal=subtotal, currency=currency, now=self.clock())
        if coupon.max_uses is not None and coupon.uses >= coupon.max_uses:
            raise errors.CouponExhausted()
        if coupon.max_uses_per_user is not None and user_id is not None:
            used = await CouponService(self.session).uses_by(coupon.id, user_id)
            if used >= coupon.max_uses_per_user:
                raise errors.CouponUserLimit()

    # -- reading: prices, stock, totals -------------------------------------------------------

    async def _availability(self, variant_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        if not variant_ids:
            return {}
        try:
            return await self.inventory.availability(variant_ids)
        except DomainError as exc:  # stock is advisory here: show the cart without it
            log.warning("inventory unavailable for the cart", extra={"error": exc.code})
            return {}

    async def _price(
        self,
        cart: Cart,
        items: list[CartItem] | None = None,
        *,
        stock: bool = True,
        known: dict[uuid.UUID, VariantInfo] | None = None,
    ) -> list[Priced]:
        """The lines with what the product service says now (``known``: just asked)."""
        if items is None:
            items = await self._items(cart.id)
        if not items:
            return []
        ids = [i.variant_id for i in items]
        if known is not None and not stock:
            return [Priced(i, known.get(i.variant_id), None) for i in items]
        await release_connection(self.session)
        if stock:
            variants, available = await asyncio.gather(
                self.products.get_variants(ids), self._availability(ids)
            )
        else:
            variants, available = await self.products.get_variants(ids), {}
        by_id = {v.id: v for v in variants}
        return [Priced(i, by_id.get(i.variant_id), available.get(i.variant_id)) for i in items]

    @staticmethod
    def _buyable(p: Priced) -> bool:
        return (
            p.variant is not None
            and p.variant.status == "active"
            and p.variant.currency == p.item.currency
        )

    def _subtotal(self, priced: list[Priced]) -> int:
        return sum(
            p.variant.price_amount * p.item.quantity
            for p in priced
            if p.variant is not None and self._buyable(p)
        )

    async def _location(
        self, cart: Cart, country: str | None, region: str | None
    ) -> tuple[str | None, str | None]:
        if country:
            return country.upper(), region
        if cart.user_id is not None and self.users is not None:
            await release_connection(self.session)
            try:
                address = await self.users.get_default_address(cart.user_id)
            except DomainError:
                address = None
            if address is not None:
                return address.country, region or address.region
        return self.settings.default_country, region

    async def view(
        self,
        cart: Cart | None,
        *,
        token: str | None = None,
        country: str | None = None,
        region: str | None = None,
        items: list[CartItem] | None = None,
        stock: bool = True,
        known: dict[uuid.UUID, VariantInfo] | None = None,
    ) -> s.CartRead:
        """The cart priced now. ``items`` prices these lines instead of the stored ones;
        ``stock=False`` skips the stock lookup (and its warnings).

        A stored cart's full view is cached for ``settings.cache_seconds`` under its
        ``updated_at`` and the location it is taxed for (resolved first: the user's
        default address when the request names no country): every change of the cart
        or of that address makes a new key, and prices and stock changed elsewhere show
        within those seconds (checkout always re-prices)."""
        if cart is None:
            return self._empty(country, region)
        country, region = await self._location(cart, country, region)
        slot: Slot | None = None
        if (
            self.cache is not None
            and self.settings.cache_seconds > 0
            and items is None
            and stock
            and cart.id is not None
        ):
            stamp = cart.updated_at.timestamp() if cart.updated_at else 0
            cache_key = f"{cart.id}:{stamp}:{country or ''}:{region or ''}"
            slot = await self.cache.lookup(CACHE_PREFIX, cache_key)
            if slot.value is not None:
                return s.CartRead.model_validate_json(slot.value).model_copy(
                    update={"token": token}
                )
        read = await self._priced_view(cart, token, country, region, items, stock, known)
        if slot is not None:
            body = read.model_copy(update={"token": None}).model_dump_json().encode()
            await slot.store(body, ttl=self.settings.cache_seconds)
        return read

    async def _priced_view(
        self,
        cart: Cart,
        token: str | None,
        country: str | None,  # resolved: see _location
        region: str | None,
        items: list[CartItem] | None,
        stock: bool,
        known: dict[uuid.UUID, VariantInfo] | None,
    ) -> s.CartRead:
        priced = await self._price(cart, items, stock=stock, known=known)
        currency = cart.currency or self.settings.default_currency
        lines: list[s.CartItemRead] = []
        for p in priced:
            item, variant = p.item, p.variant
            warnings: list[s.LineWarning] = []
            buyable = self._buyable(p)
            unit = variant.price_amount if buyable and variant is not None else 0
            if not buyable:
                warnings.append(
                    s.LineWarning(code="UNAVAILABLE", message="This product is no longer available")
                )
            else:
                if unit != item.price_amount:
                    warnings.append(
                        s.LineWarning(
                            code="PRICE_CHANGED",
                            message=(
                                f"The price changed from {money(item.price_amount, currency)} "
                                f"to {money(unit, currency)}"
                            ),
                            previous_price=money(item.price_amount, currency),
                        )
                    )
                if p.available is not None and p.available < item.quantity:
                    warnings.append(
                        s.LineWarning(
                            code="SHORT_STOCK",
                            message=f"Only {max(p.available, 0)} available",
                            available=max(p.available, 0),
                        )
                    )
            lines.append(
                s.CartItemRead(
                    id=item.id,
                    variant_id=item.variant_id,
                    product_id=item.product_id,
                    name=variant.name if variant is not None else item.name,
                    sku=variant.sku if variant is not None else item.sku,
                    quantity=item.quantity,
                    unit_price=money(unit, currency),
                    line_total=money(unit * item.quantity, currency),
                    unit_price_amount=unit,
                    line_total_amount=unit * item.quantity,
                    available=buyable,
                    warnings=warnings,
                )
            )
        subtotal = self._subtotal(priced)
        coupon_view, terms = await self._coupon_state(cart, subtotal, currency)
        totals = compute_totals(
            subtotal, currency, self.settings, coupon=terms, country=country, region=region
        )
        if coupon_view is not None:
            coupon_view.discount = money(totals.discount, currency)
            coupon_view.free_shipping = totals.free_shipping
        return s.CartRead(
            id=cart.id,
            token=token,
            user_id=cart.user_id,
            items=lines,
            item_count=sum(line.quantity for line in lines),
            subtotal=money(totals.subtotal, currency),
            discount=money(totals.discount, currency),
            shipping=money(totals.shipping, currency),
            tax=money(totals.tax, currency),
            total=money(totals.total, currency),
            currency=currency,
            coupon=coupon_view,
            country=country,
            region=region,
            subtotal_amount=totals.subtotal,
            discount_amount=totals.discount,
            shipping_amount=totals.shipping,
            tax_amount=totals.tax,
            total_amount=totals.total,
        )

    def _empty(self, country: str | None, region: str | None) -> s.CartRead:
        currency = self.settings.default_currency
        zero = money(0, currency)
        return s.CartRead(
            id=None,
            items=[],
            item_count=0,
            subtotal=zero,
            discount=zero,
            shipping=zero,
            tax=zero,
            total=zero,
            currency=currency,
            coupon=None,
            country=country.upper() if country else self.settings.default_country,
            region=region,
            subtotal_amount=0,
            discount_amount=0,
            shipping_amount=0,
            tax_amount=0,
            total_amount=0,
        )

    async def _coupon_state(
        self, cart: Cart, subtotal: int, currency: str
    ) -> tuple[s.CartCouponRead | None, CouponTerms | None]:
        """The applied coupon as it stands now: still valid (its terms) or why not."""
        if cart.coupon_code is None:
            return None, None
        zero = money(0, currency)
        coupon = await CouponService(self.session).find_by_code(cart.coupon_code)
        if coupon is None:
            return (
                s.CartCouponRead(
                    code=cart.coupon_code, valid=False, reason="COUPON_NOT_FOUND", discount=zero
                ),
                None,
            )
        view = s.CartCouponRead(code=coupon.code, type=coupon.type, valid=True, discount=zero)
        try:
            await self._check_applicable(coupon, subtotal, currency, cart.user_id)
        except DomainError as exc:
            view.valid, view.reason = False, exc.code
            return view, None
        return view, coupon_terms(coupon)

    # -- service-to-service --------------------------------------------------------------------

    async def quote(
        self, user_id: uuid.UUID, country: str | None = None, region: str | None = None
    ) -> s.CartRead:
        cart = await self._user_cart(user_id)
        return await self.view(cart, country=country, region=region)

    async def checkout_quote(self, body: s.CheckoutQuote) -> s.CartRead:
        """What a checkout charges now: the user's cart, or ``body.items`` when given, at
        current product prices, with ``body.coupon`` (else the cart's), shipping and tax
        for the address. Nothing is stored: the lines and the coupon are priced as given."""
        coupon = body.coupon
        known: dict[uuid.UUID, VariantInfo] | None = None
        stored: Cart | None = None
        if body.items is None or coupon is None:
            stored = await self._user_cart(body.user_id)
            if coupon is None and stored is not None:
                coupon = stored.coupon_code
        if body.items is None:
            if stored is None:
                return self._empty(body.country, body.region)
            items = await self._items(stored.id)
            currency = stored.currency
        else:
            await release_connection(self.session)
            items, currency, known = await self._transient_items(body.items)
        if not items:
            return self._empty(body.country, body.region)
        cart = Cart(
            id=stored.id if stored is not None and body.items is None else None,
            user_id=body.user_id,
            currency=currency,
            coupon_code=coupon or None,
        )
        return await self.view(
            cart, country=body.country, region=body.region, items=items, stock=False, known=known
        )

    async def _transient_items(
        self, lines: list[s.ItemAdd]
    ) -> tuple[list[CartItem], str | None, dict[uuid.UUID, VariantInfo]]:
        """Unsaved lines for ``lines`` at today's prices (404 naming unknown variants)."""
        variants = {
            v.id: v for v in await self.products.get_variants([x.variant_id for x in lines])
        }
        unknown = [
            str(x.variant_id)
            for x in lines
            if x.variant_id not in variants or variants[x.variant_id].status != "active"
        ]
        if unknown:
            raise errors.VariantNotFound(
                details=[{"variant_id": v, "message": "unknown or not for sale"} for v in unknown]
            )
        currencies = {variants[x.variant_id].currency for x in lines}
        if len(currencies) > 1:
            raise errors.CurrencyMismatch("An order is paid in one currency")
        for x in lines:
            self._check_quantity(x.quantity)
        items = [
            CartItem(
                id=uuid.uuid4(),
                variant_id=x.variant_id,
                product_id=variants[x.variant_id].product_id,
                sku=variants[x.variant_id].sku,
                name=variants[x.variant_id].name,
                quantity=x.quantity,
                price_amount=variants[x.variant_id].price_amount,
                currency=variants[x.variant_id].currency,
            )
            for x in lines
        ]
        return items, currencies.pop(), variants


# -- coupons ------------------------------------------------------------------------------------


class CouponService:
    def __init__(self, session: AsyncSession, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.session = session
        self.clock = clock

    async def find_by_code(self, code: str) -> Coupon | None:
        result = await self.session.scalars(
            select(Coupon).where(Coupon.code_key == code.strip().lower())
        )
        return result.first()

    async def by_code(self, code: str) -> Coupon:
        coupon = await self.find_by_code(code)
        if coupon is None:
            raise errors.CouponNotFound()
        return coupon

    async def get(self, coupon_id: uuid.UUID, *, lock: bool = False) -> Coupon:
        """The coupon; with ``lock``, its row locked for this transaction and read fresh
        (what an edit checks - its uses against a new ``max_uses`` - stays true until it
        commits)."""
        coupon = await self.session.get(
            Coupon, coupon_id, with_for_update=lock, populate_existing=lock
        )
        if coupon is None or coupon.deleted_at is not None:
            raise errors.CouponNotFound()
        return coupon

    async def list(
        self, *, offset: int, limit: int, active: bool | None = None, code: str | None = None
    ) -> tuple[list[Coupon], int]:
        where: list[ColumnElement[bool]] = [Coupon.deleted_at.is_(None)]
        if active is not None:
            where.append(Coupon.active.is_(active))
        if code:
            where.append(Coupon.code_key.contains(code.strip().lower(), autoescape=True))
        total = await self.session.scalar(select(func.count()).select_from(Coupon).where(*where))
        rows = await self.session.scalars(
            select(Coupon)
            .where(*where)
            .order_by(Coupon.created_at.desc(), Coupon.id)
            .offset(offset)
            .limit(limit)
        )
        return list(rows.all()), int(total or 0)

    async def create(self, body: s.CouponCreate) -> Coupon:
        columns = coupon_columns(dict(body))  # dict(): Decimals stay Decimals
        coupon = Coupon(code=body.code, code_key=body.code.lower(), uses=0, **columns)
        try:
            async with self.session.begin_nested():
                self.session.add(coupon)
                await self.session.flush()
        except IntegrityError:
            raise errors.CouponCodeTaken() from None
        return coupon

    async def update(self, coupon_id: uuid.UUID, body: s.CouponUpdate) -> Coupon:
        coupon = await self.get(coupon_id, lock=True)
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        current: dict[str, Any] = {
            "type": coupon.type,
            "currency": coupon.currency,
            "starts_at": coupon.starts_at,
            "ends_at": coupon.ends_at,
            "max_uses": coupon.max_uses,
            "max_uses_per_user": coupon.max_uses_per_user,
            "active": coupon.active,
        }
        currency = changes.get("currency", coupon.currency)
        if coupon.type == "percentage":
            current["value"] = Decimal(coupon.value) / 100
        elif coupon.type == "fixed":
            current["value"] = Money(coupon.value, coupon.currency or "USD").to_decimal()
        if coupon.min_subtotal_amount is not None:
            current["min_subtotal"] = Money(
                coupon.min_subtotal_amount, coupon.currency or "USD"
            ).to_decimal()
        if "type" in changes and changes["type"] != coupon.type and "value" not in changes:
            current.pop("value", None)
        merged = {**current, **{k: v for k, v in changes.items() if k != "code"}}
        if merged.get("active") is None:
            merged["active"] = coupon.active
        merged["currency"] = currency
        columns = coupon_columns(merged)
        if columns["max_uses"] is not None and columns["max_uses"] < coupon.uses:
            raise errors.InvalidCoupon(
                f"max_uses cannot go below the {coupon.uses} uses already made",
                details=[{"field": "max_uses", "message": "below current uses"}],
            )
        if changes.get("code"):
            coupon.code = changes["code"]
            coupon.code_key = changes["code"].lower()
        for key, value in columns.items():
            setattr(coupon, key, value)
        coupon.updated_at = self.clock()
        try:
            async with self.session.begin_nested():
                await self.session.flush()
        except IntegrityError:
            raise errors.CouponCodeTaken() from None
        return coupon

    async def delete(self, coupon_id: uuid.UUID) -> None:
        """Soft delete: redemptions keep pointing at it; its code becomes free."""
        coupon = await self.get(coupon_id, lock=True)
        coupon.deleted_at = self.clock()
        coupon.active = False
        coupon.code_key = None
        await self.session.flush()

    async def uses_by(self, coupon_id: uuid.UUID, user_id: uuid.UUID) -> int:
        count = await self.session.scalar(
            select(func.count())
            .select_from(REDEMPTION)
            .where(
                REDEMPTION.c.coupon_id == coupon_id,
                REDEMPTION.c.user_id == user_id,
                REDEMPTION.c.status == "redeemed",
            )
        )
        return int(count or 0)

    # -- redemption at checkout -------------------------------------------------------------

    def _redemption_read(self, row: Any, coupon: Coupon) -> s.RedemptionRead:
        return s.RedemptionRead(
            id=row.id,
            coupon_id=coupon.id,
            code=coupon.code,
            type=coupon.type,
            order_id=row.order_id,
            user_id=row.user_id,
            discount_amount=row.discount_amount,
            discount=money(row.discount_amount, row.currency),
            currency=row.currency,
            free_shipping=coupon.type == "free_shipping",
            status=row.status,
        )

    async def redeem(self, body: s.RedeemCoupon) -> s.RedemptionRead:
        """Use the coupon for ``order_id``: one use counted, the discount fixed.

        Idempotent per order: the same order gets the first redemption back. The use
        count moves by ONE conditional UPDATE taken first (it also serialises the
        coupon's redemptions); the per-user slot is a unique row after it. Any refusal
        raises, and the unit of work rolls the use back."""
        existing = (
            await self.session.execute(
                select(REDEMPTION).where(REDEMPTION.c.order_id == body.order_id)
            )
        ).first()
        coupon = await self.by_code(body.code)
        if existing is not None:
            if existing.coupon_id == coupon.id and existing.status == "redeemed":
                return self._redemption_read(existing, coupon)
            raise errors.RedemptionConflict()
        now = self.clock()
        check_coupon(coupon, subtotal=body.subtotal_amount, currency=body.currency, now=now)
        discount = discount_for(coupon_terms(coupon), body.subtotal_amount)
        counted = await self.session.execute(
            update(COUPON)
            .where(
                COUPON.c.id == coupon.id,
                COUPON.c.active.is_(True),
                COUPON.c.deleted_at.is_(None),
                (COUPON.c.max_uses.is_(None)) | (COUPON.c.uses < COUPON.c.max_uses),
            )
            .values(uses=COUPON.c.uses + 1, updated_at=now)
        )
        if counted.rowcount != 1:  # type: ignore[attr-defined]
            raise errors.CouponExhausted()
        limit = coupon.max_uses_per_user
        for _attempt in range(3):
            slot: int | None = None
            if limit is not None:
                taken = set(
                    (
                        await self.session.scalars(
                            select(REDEMPTION.c.slot).where(
                                REDEMPTION.c.coupon_id == coupon.id,
                                REDEMPTION.c.user_id == body.user_id,
                                REDEMPTION.c.slot.is_not(None),
                            )
                        )
                    ).all()
                )
                free = [n for n in range(1, limit + 1) if n not in taken]
                if not free:
                    raise errors.CouponUserLimit()
                slot = free[0]
            redemption_id = uuid.uuid4()
            try:
                async with self.session.begin_nested():
                    await self.session.execute(
                        REDEMPTION.insert().values(
                            id=redemption_id,
                            coupon_id=coupon.id,
                            order_id=body.order_id,
                            user_id=body.user_id,
                            slot=slot,
                            discount_amount=discount,
                            currency=body.currency,
                            status="redeemed",
                            created_at=now,
                        )
                    )
            except IntegrityError:
                # A concurrent redemption took this slot (or this order): look again.
                if (
                    await self.session.scalar(
                        select(REDEMPTION.c.id).where(REDEMPTION.c.order_id == body.order_id)
                    )
                ) is not None:
                    raise errors.RedemptionConflict(
                        "This order is being redeemed concurrently"
                    ) from None
                continue
            row = (
                await self.session.execute(
                    select(REDEMPTION).where(REDEMPTION.c.id == redemption_id)
                )
            ).one()
            return self._redemption_read(row, coupon)
        raise errors.CouponUserLimit()

    async def release(self, order_id: uuid.UUID) -> bool:
        """Give the order's coupon use back (compensation). Idempotent: only the first
        call finds a redeemed row to flip; later ones change nothing."""
        now = self.clock()
        released = (
            await self.session.execute(
                update(REDEMPTION)
                .where(REDEMPTION.c.order_id == order_id, REDEMPTION.c.status == "redeemed")
                .values(status="released", slot=None, released_at=now)
                .returning(REDEMPTION.c.coupon_id)
            )
        ).first()
        if released is None:
            return False
        await self.session.execute(
            update(COUPON)
            .where(COUPON.c.id == released.coupon_id, COUPON.c.uses > 0)
            .values(uses=COUPON.c.uses - 1, updated_at=now)
        )
        return True


# -- abandoned carts (a periodic job) ------------------------------------------------------------


async def mark_abandoned(
    session: AsyncSession,
    publisher: EventPublisher,
    settings: CartSettings,
    *,
    now: datetime | None = None,
    batch: int = 200,
) -> int:
    """Report open carts with lines untouched for ``abandoned_after_hours`` once each
    (``cart.abandoned.v1``); the cart stays open and usable. Returns how many."""
    now = now or utcnow()
    cutoff = now - timedelta(hours=settings.abandoned_after_hours)
    has_items = select(ITEM.c.id).where(ITEM.c.cart_id == CART.c.id).exists()
    carts = (
        await session.execute(
            select(CART.c.id, CART.c.user_id, CART.c.currency, CART.c.updated_at)
            .where(
                CART.c.status == "open",
                CART.c.abandoned_at.is_(None),
                CART.c.updated_at < cutoff,
                has_items,
            )
            .limit(batch)
        )
    ).all()
    count = 0
    for cart in carts:
        # Checked again: a cart used (or merged, or closed) since the SELECT is not idle.
        marked = await session.execute(
            update(CART)
            .where(
                CART.c.id == cart.id,
                CART.c.status == "open",
                CART.c.abandoned_at.is_(None),
                CART.c.updated_at < cutoff,
            )
            .values(abandoned_at=now)
        )
        if marked.rowcount != 1:  # type: ignore[attr-defined]
            continue
        totals = (
            await session.execute(
                select(
                    func.coalesce(func.sum(ITEM.c.quantity), 0),
                    # 64-bit product: quantity x price can pass 32 bits even when
                    # neither does.
                    func.coalesce(
                        func.sum(cast(ITEM.c.quantity, BigInteger) * ITEM.c.price_amount), 0
                    ),
                ).where(ITEM.c.cart_id == cart.id)
            )
        ).one()
        await publisher.publish(
            session,
            events.CartAbandoned(
                cart_id=cart.id,
                user_id=cart.user_id,
                item_count=int(totals[0]),
                subtotal_amount=int(totals[1]),
                currency=cart.currency,
                last_activity_at=cart.updated_at,
            ),
        )
        count += 1
    return count
