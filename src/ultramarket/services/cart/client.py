"""The typed client the order service uses to call the cart service."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from ultramarket.core.clients import ServiceClient
from ultramarket.services.cart.schemas import CartRead, RedemptionRead

PREFIX = "/api/v1/cart/internal"


class CartClient(ServiceClient):
    service = "cart"

    async def get_cart(
        self, user_id: uuid.UUID, country: str | None = None, region: str | None = None
    ) -> CartRead:
        """The user's cart priced now (an empty cart with ``id`` None when they have none);
        tax for ``country``/``region``, else the user's default address."""
        params = {k: v for k, v in (("country", country), ("region", region)) if v}
        data = await self.request("GET", f"{PREFIX}/users/{user_id}", params=params or None)
        return CartRead.model_validate(data)

    async def quote(
        self, user_id: uuid.UUID, country: str | None, region: str | None = None
    ) -> CartRead:
        return await self.get_cart(user_id, country, region)

    async def checkout_quote(
        self,
        user_id: uuid.UUID,
        *,
        items: Iterable[tuple[uuid.UUID, int]] | None = None,
        coupon: str | None = None,
        country: str | None = None,
        region: str | None = None,
    ) -> CartRead:
        """What a checkout charges now: the user's cart (or ``items``) re-priced from the
        product service, with ``coupon`` (else the cart's; ``""`` for none), shipping and
        tax for ``country``/``region``. No stock is read: reserving is the stock check.
        Raises 404 VARIANT_NOT_FOUND / 409 CURRENCY_MISMATCH for bad ``items``."""
        body = {
            "user_id": str(user_id),
            "items": None
            if items is None
            else [{"variant_id": str(v), "quantity": q} for v, q in items],
            "coupon": coupon,
            "country": country,
            "region": region,
        }
        return await self._quote(body)

    async def _quote(self, body: dict[str, Any]) -> CartRead:
        data = await self.request("POST", f"{PREFIX}/quote", json=body, idempotent=True)
        return CartRead.model_validate(data)

    async def clear(self, user_id: uuid.UUID) -> bool:
        """Empty the user's cart (lines and coupon); safe to repeat. False: no cart.
        After a checkout use ``remove_ordered``: this also drops what was added since."""
        data = await self.request("DELETE", f"{PREFIX}/users/{user_id}")
        return bool(data["cleared"])

    async def remove_ordered(
        self,
        user_id: uuid.UUID,
        items: Iterable[tuple[uuid.UUID, int]],
        *,
        coupon: str | None = None,
    ) -> bool:
        """After a confirmed checkout: take the order's ``items`` (variant, quantity) out
        of the user's cart, and its coupon when it is ``coupon`` (the one the order used).
        Lines added or raised meanwhile keep the rest. Not retried (a repeat would take
        the units twice): a lost call leaves the bought lines in the cart. False: no cart."""
        body = {
            "items": [{"variant_id": str(v), "quantity": q} for v, q in items],
            "coupon": coupon,
        }
        return await self._remove_ordered(user_id, body)

    async def _remove_ordered(self, user_id: uuid.UUID, body: dict[str, Any]) -> bool:
        data = await self.request(
            "POST", f"{PREFIX}/users/{user_id}/ordered", json=body, idempotent=False
        )
        return bool(data["cleared"])

    async def redeem_coupon(
        self,
        code: str,
        user_id: uuid.UUID,
        order_id: uuid.UUID,
        subtotal_amount: int,
        currency: str,
    ) -> RedemptionRead:
        """Use the coupon for the order; ``.discount_amount`` is the discount in minor units
        (``.free_shipping`` for a free-shipping coupon). Idempotent per order id.
        Raises 404 COUPON_NOT_FOUND, 422 COUPON_EXPIRED / COUPON_NOT_STARTED /
        COUPON_MIN_SUBTOTAL / COUPON_CURRENCY_MISMATCH / COUPON_INACTIVE,
        409 COUPON_EXHAUSTED / COUPON_USER_LIMIT / REDEMPTION_CONFLICT."""
        body = {
            "code": code,
            "user_id": str(user_id),
            "order_id": str(order_id),
            "subtotal_amount": subtotal_amount,
            "currency": currency,
        }
        # Safe to retry: the order id makes a repeat return the first redemption.
        data = await self.request("POST", f"{PREFIX}/coupons/redeem", json=body, idempotent=True)
        return RedemptionRead.model_validate(data)

    async def release_coupon(self, order_id: uuid.UUID) -> bool:
        """Compensation: give the order's coupon use back. True when a use was returned,
        False when there was none (never redeemed, or already released)."""
        data = await self.request(
            "POST",
            f"{PREFIX}/coupons/release",
            json={"order_id": str(order_id)},
            idempotent=True,
        )
        return bool(data["released"])
