"""HTTP routes of the cart service: parse, authorise, call CartService, reply.

A caller's cart is the user's (with ``Authorization``) or the guest cart named by the
``X-Cart-Token`` header. A request carrying both first merges the guest cart into the
user's (once). Lines the user's cart cannot take (another currency, past the line
limit) stay in the guest cart, which stays open: such a reply carries the token in
``X-Cart-Token`` again, so the client keeps it (a later request with both retries).
Guests get their token in ``X-Cart-Token`` on every reply and in the body's ``token``
when the cart is created. Coupons are managed by MANAGER+ under
``/api/v1/coupons``; ``/api/v1/cart/internal/...`` serves the order service only.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.container import Container
from ultramarket.core.deps import ContainerDep, container_of, read_session, unit_of_work
from ultramarket.core.errors import Forbidden
from ultramarket.core.schemas import Envelope, Page, PageParams, page_params
from ultramarket.core.security import (
    OptionalPrincipal,
    Principal,
    current_principal,
    require,
)
from ultramarket.core.service import ServiceRouter
from ultramarket.services.cart import schemas as s
from ultramarket.services.cart.config import cart_settings
from ultramarket.services.cart.models import Cart
from ultramarket.services.cart.service import CartService, CouponService, Owner, coupon_read
from ultramarket.services.inventory.client import InventoryClient
from ultramarket.services.product.client import ProductClient
from ultramarket.services.user.client import UserClient

TOKEN_HEADER = "X-Cart-Token"
Responses = dict[int | str, dict[str, Any]]

router = ServiceRouter(prefix="/api/v1/cart", tags=["cart"])
coupons = ServiceRouter(prefix="/api/v1/coupons", tags=["coupons"])

Session = Annotated[AsyncSession, unit_of_work("cart")]
ReadSession = Annotated[AsyncSession, read_session("cart")]
Manager = Annotated[Principal, require("coupon:write")]
Paging = Annotated[PageParams, Depends(page_params)]
CountryQuery = Annotated[
    str | None, Query(pattern=r"^[A-Za-z]{2}$", description="ISO country for tax")
]
RegionQuery = Annotated[
    str | None,
    Query(
        max_length=100,
        description='Region for tax: an ISO 3166-2 code ("CA", "US-CA") or its name ("California")',
    ),
]


async def cart_owner(
    principal: OptionalPrincipal,
    token: Annotated[
        str | None,
        Header(alias=TOKEN_HEADER, max_length=200, description="A guest cart's token"),
    ] = None,
) -> Owner:
    user_id = principal.user_id if principal is not None and principal.kind == "user" else None
    return Owner(user_id=user_id, token=token or None)


OwnerDep = Annotated[Owner, Depends(cart_owner)]


def build_service(container: ContainerDep, session: AsyncSession) -> CartService:
    return CartService(
        session,
        products=container.client(ProductClient, "cart"),
        inventory=container.client(InventoryClient, "cart"),
        users=container.client(UserClient, "cart"),
        settings=cart_settings(container),
        publisher=container.publisher("cart"),
        cache=container.cache,
    )


async def merge_guest(service: CartService, owner: Owner, response: Response) -> None:
    """With a user and a guest token, merge the guest cart into the user's; while it
    keeps lines the user's cart could not take, the reply hands its token back."""
    if owner.user_id is None or not owner.token:
        return
    if await service.merge(owner.user_id, owner.token):
        response.headers[TOKEN_HEADER] = owner.token


class CartWrites:
    """A write to the caller's cart in a unit of work of its own (after merging a guest
    cart into the user's), and its reply priced once that has committed: pricing calls
    the product, inventory and user services, and no transaction - no row lock, on
    SQLite no write lock - is held across those calls."""

    def __init__(
        self,
        container: ContainerDep,
        owner: OwnerDep,
        response: Response,
        country: CountryQuery = None,
        region: RegionQuery = None,
    ) -> None:
        self.container = container
        self.owner = owner
        self.response = response
        self.country = country
        self.region = region

    @asynccontextmanager
    async def change(self) -> AsyncIterator[CartService]:
        """The service on a write session, committed when the block ends."""
        async with self.container.db("cart").session() as session:
            service = build_service(self.container, session)
            await merge_guest(service, self.owner, self.response)
            yield service

    async def reply(self, cart: Cart | None, token: str | None = None) -> Envelope[s.CartRead]:
        """The reply: ``cart`` as it stands now, priced on a read session for the
        request's ``country``/``region``; a guest's token in its header."""
        guest_header(self.response, self.owner, token)
        async with self.container.db("cart").read_session() as session:
            service = build_service(self.container, session)
            view = await service.view(
                await service.fresh(cart), token=token, country=self.country, region=self.region
            )
        return Envelope(data=view)


async def cart_reader(
    container: ContainerDep, owner: OwnerDep, response: Response
) -> AsyncIterator[CartService]:
    """Reads take no write lock; a request that merges a guest cart first commits the
    merge before it reads."""
    db = container.db("cart")
    if owner.user_id is not None and owner.token:
        async with db.session() as session:
            await merge_guest(build_service(container, session), owner, response)
    async with db.read_session() as session:
        yield build_service(container, session)


Writes = Annotated[CartWrites, Depends()]
CartsReader = Annotated[CartService, Depends(cart_reader, scope="function")]


def guest_header(response: Response, owner: Owner, token: str | None) -> None:
    if owner.user_id is None:
        token = token or owner.token
        if token:
            response.headers[TOKEN_HEADER] = token


ERRORS: Responses = {422: {"description": "Invalid input (VALIDATION_ERROR)"}}
ITEM_ERRORS: Responses = {
    **ERRORS,
    404: {"description": "VARIANT_NOT_FOUND (unknown or not for sale), CART_ITEM_NOT_FOUND"},
    409: {"description": "CURRENCY_MISMATCH (the cart holds another currency)"},
}
COUPON_APPLY_ERRORS: Responses = {
    404: {"description": "COUPON_NOT_FOUND"},
    409: {"description": "COUPON_EXHAUSTED, COUPON_USER_LIMIT"},
    422: {
        "description": "CART_EMPTY, COUPON_INACTIVE, COUPON_NOT_STARTED, COUPON_EXPIRED, "
        "COUPON_MIN_SUBTOTAL, COUPON_CURRENCY_MISMATCH"
    },
}


# -- service-to-service (the order service's checkout), first: routes match in order --------------

INTERNAL_ERRORS: Responses = {
    401: {"description": "Not authenticated"},
    403: {"description": "Services only"},
}


def check_service(principal: Principal) -> None:
    if not principal.is_service:
        raise Forbidden("Services only")


async def service_only(request: Request) -> Principal:
    principal = await current_principal(request)
    check_service(principal)
    return principal


# What the internal routes below and the in-process client (``local``) both run.


async def quote_checkout(
    container: Container, principal: Principal, body: s.CheckoutQuote
) -> s.CartRead:
    check_service(principal)
    async with container.db("cart").read_session() as session:
        return await build_service(container, session).checkout_quote(body)


async def take_ordered(
    container: Container, principal: Principal, user_id: uuid.UUID, body: s.RemoveOrdered
) -> s.ClearResult:
    check_service(principal)
    async with container.db("cart").session() as session:
        cart = await build_service(container, session).remove_ordered(
            user_id, [(line.variant_id, line.quantity) for line in body.items], body.coupon
        )
    return s.ClearResult(user_id=user_id, cleared=cart is not None)


ServiceCaller = Annotated[Principal, Depends(service_only)]


@router.get(
    "/internal/users/{user_id}",
    response_model=Envelope[s.CartRead],
    responses=INTERNAL_ERRORS,
    summary="A user's cart, priced for checkout (services only)",
)
async def internal_quote(
    user_id: uuid.UUID,
    _caller: ServiceCaller,
    container: ContainerDep,
    session: ReadSession,
    country: CountryQuery = None,
    region: RegionQuery = None,
) -> Envelope[s.CartRead]:
    carts = build_service(container, session)
    return Envelope(data=await carts.quote(user_id, country, region))


@router.post(
    "/internal/quote",
    response_model=Envelope[s.CartRead],
    responses={
        **INTERNAL_ERRORS,
        **ITEM_ERRORS,
        409: {"description": "CURRENCY_MISMATCH (lines in several currencies)"},
    },
    summary="Price a checkout: the user's cart or explicit lines (services only)",
)
async def internal_checkout_quote(
    body: s.CheckoutQuote, request: Request, principal: ServiceCaller
) -> Envelope[s.CartRead]:
    return Envelope(data=await quote_checkout(container_of(request), principal, body))


@router.delete(
    "/internal/users/{user_id}",
    response_model=Envelope[s.ClearResult],
    responses=INTERNAL_ERRORS,
    summary="Empty a user's cart, lines and coupon (services only)",
)
async def internal_clear(
    user_id: uuid.UUID, _caller: ServiceCaller, container: ContainerDep, session: Session
) -> Envelope[s.ClearResult]:
    # No pricing here: nothing but this write may happen while it holds the lock.
    cart = await build_service(container, session).clear(Owner(user_id=user_id))
    return Envelope(data=s.ClearResult(user_id=user_id, cleared=cart is not None))


@router.post(
    "/internal/users/{user_id}/ordered",
    response_model=Envelope[s.ClearResult],
    responses={**INTERNAL_ERRORS, 422: {"description": "Invalid input (VALIDATION_ERROR)"}},
    summary="Take a confirmed order's lines out of the user's cart (services only)",
)
async def internal_remove_ordered(
    user_id: uuid.UUID, body: s.RemoveOrdered, container: ContainerDep, principal: ServiceCaller
) -> Envelope[s.ClearResult]:
    """What the customer added or raised while the order was paid stays in the cart."""
    return Envelope(data=await take_ordered(container, principal, user_id, body))


@router.post(
    "/internal/coupons/redeem",
    response_model=Envelope[s.RedemptionRead],
    responses={
        **INTERNAL_ERRORS,
        **COUPON_APPLY_ERRORS,
        409: {"description": "COUPON_EXHAUSTED, COUPON_USER_LIMIT, REDEMPTION_CONFLICT"},
    },
    summary="Use a coupon for an order (services only; idempotent per order)",
)
async def internal_redeem(
    body: s.RedeemCoupon, _caller: ServiceCaller, session: Session
) -> Envelope[s.RedemptionRead]:
    return Envelope(data=await CouponService(session).redeem(body))


@router.post(
    "/internal/coupons/release",
    response_model=Envelope[s.ReleaseResult],
    responses=INTERNAL_ERRORS,
    summary="Give an order's coupon use back (services only; idempotent)",
)
async def internal_release(
    body: s.ReleaseCoupon, _caller: ServiceCaller, session: Session
) -> Envelope[s.ReleaseResult]:
    released = await CouponService(session).release(body.order_id)
    return Envelope(data=s.ReleaseResult(order_id=body.order_id, released=released))


# -- the caller's cart ----------------------------------------------------------------------------


@router.get("", response_model=Envelope[s.CartRead], responses=ERRORS)
@router.get("/", response_model=Envelope[s.CartRead], include_in_schema=False)
async def get_cart(
    carts: CartsReader,
    owner: OwnerDep,
    response: Response,
    country: CountryQuery = None,
    region: RegionQuery = None,
) -> Envelope[s.CartRead]:
    """The cart at current prices, with warnings and totals (tax for ``country``/``region``,
    else the user's default address). No cart yet: an empty one with ``id`` null."""
    cart = await carts.find(owner)
    guest_header(response, owner, None)
    return Envelope(data=await carts.view(cart, country=country, region=region))


@router.post("/items", status_code=201, response_model=Envelope[s.CartRead], responses=ITEM_ERRORS)
async def add_item(body: s.ItemAdd, writes: Writes) -> Envelope[s.CartRead]:
    """Add units of a variant (to its line when present). Creates the cart on first use."""
    async with writes.change() as carts:
        cart, token = await carts.add_item(writes.owner, body.variant_id, body.quantity)
    return await writes.reply(cart, token)


@router.put("/items/{item_id}", response_model=Envelope[s.CartRead], responses=ITEM_ERRORS)
async def update_item(
    item_id: uuid.UUID, body: s.ItemUpdate, writes: Writes
) -> Envelope[s.CartRead]:
    """Set a line's quantity (this also accepts its current price)."""
    async with writes.change() as carts:
        cart = await carts.update_item(writes.owner, item_id, body.quantity)
    return await writes.reply(cart)


@router.delete("/items/{item_id}", response_model=Envelope[s.CartRead], responses=ITEM_ERRORS)
async def remove_item(item_id: uuid.UUID, writes: Writes) -> Envelope[s.CartRead]:
    async with writes.change() as carts:
        cart = await carts.remove_item(writes.owner, item_id)
    return await writes.reply(cart)


@router.delete("", response_model=Envelope[s.CartRead], responses=ERRORS)
@router.delete("/", response_model=Envelope[s.CartRead], include_in_schema=False)
async def clear_cart(writes: Writes) -> Envelope[s.CartRead]:
    """Empty the cart (lines and coupon)."""
    async with writes.change() as carts:
        cart = await carts.clear(writes.owner)
    return await writes.reply(cart)


@router.post("/coupon", response_model=Envelope[s.CartRead], responses=COUPON_APPLY_ERRORS)
async def apply_coupon(body: s.CouponApply, writes: Writes) -> Envelope[s.CartRead]:
    """Apply a coupon (checked now; used only at checkout). Replaces any other coupon."""
    async with writes.change() as carts:
        cart = await carts.apply_coupon(writes.owner, body.code)
    return await writes.reply(cart)


@router.delete("/coupon", response_model=Envelope[s.CartRead], responses=ERRORS)
async def remove_coupon(writes: Writes) -> Envelope[s.CartRead]:
    async with writes.change() as carts:
        cart = await carts.remove_coupon(writes.owner)
    return await writes.reply(cart)


# -- coupons (MANAGER+) ---------------------------------------------------------------------------

COUPON_ERRORS: Responses = {
    401: {"description": "Not authenticated"},
    403: {"description": "Needs MANAGER or higher"},
    422: {"description": "Invalid input (VALIDATION_ERROR)"},
}
ONE_COUPON_ERRORS: Responses = {**COUPON_ERRORS, 404: {"description": "COUPON_NOT_FOUND"}}


@coupons.get("", response_model=Page[s.CouponRead], responses=COUPON_ERRORS)
@coupons.get("/", response_model=Page[s.CouponRead], include_in_schema=False)
async def list_coupons(
    _manager: Manager,
    session: ReadSession,
    paging: Paging,
    active: bool | None = None,
    code: Annotated[str | None, Query(max_length=40)] = None,
) -> Page[s.CouponRead]:
    """Coupons, newest first; filter by ``active`` and a part of the ``code``."""
    rows, total = await CouponService(session).list(
        offset=paging.offset, limit=paging.limit, active=active, code=code
    )
    return Page.of(
        [coupon_read(c) for c in rows], page=paging.page, limit=paging.limit, total=total
    )


@coupons.post(
    "",
    status_code=201,
    response_model=Envelope[s.CouponRead],
    responses={**COUPON_ERRORS, 409: {"description": "COUPON_CODE_TAKEN (case-insensitive)"}},
)
@coupons.post("/", status_code=201, response_model=Envelope[s.CouponRead], include_in_schema=False)
async def create_coupon(
    body: s.CouponCreate, _manager: Manager, session: Session
) -> Envelope[s.CouponRead]:
    return Envelope(data=coupon_read(await CouponService(session).create(body)))


@coupons.get("/{coupon_id}", response_model=Envelope[s.CouponRead], responses=ONE_COUPON_ERRORS)
async def get_coupon(
    coupon_id: uuid.UUID, _manager: Manager, session: ReadSession
) -> Envelope[s.CouponRead]:
    return Envelope(data=coupon_read(await CouponService(session).get(coupon_id)))


@coupons.put(
    "/{coupon_id}",
    response_model=Envelope[s.CouponRead],
    responses={**ONE_COUPON_ERRORS, 409: {"description": "COUPON_CODE_TAKEN"}},
)
async def update_coupon(
    coupon_id: uuid.UUID, body: s.CouponUpdate, _manager: Manager, session: Session
) -> Envelope[s.CouponRead]:
    """Change any subset of the fields (the result is validated as a whole)."""
    return Envelope(data=coupon_read(await CouponService(session).update(coupon_id, body)))


@coupons.delete("/{coupon_id}", status_code=204, responses=ONE_COUPON_ERRORS)
async def delete_coupon(coupon_id: uuid.UUID, _manager: Manager, session: Session) -> Response:
    """Retire a coupon: it stops applying, its redemptions stay, its code becomes free."""
    await CouponService(session).delete(coupon_id)
    return Response(status_code=204)
