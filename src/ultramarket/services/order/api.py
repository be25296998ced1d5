"""HTTP routes of the order service: /api/v1/orders.

Customers see their own orders (another's is 404); MANAGER+ (``order:read:any``) see
all. ``POST /`` is the checkout saga (``checkout.py``); cancel and refund are in
``refunds.py``; everything else is ``OrderService`` on one session.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.deps import (
    ContainerDep,
    container_of,
    ip_of,
    read_session,
    unit_of_work,
)
from ultramarket.core.errors import Forbidden
from ultramarket.core.schemas import Envelope, Page, PageParams, page_params
from ultramarket.core.security import CurrentPrincipal, Principal, require
from ultramarket.core.service import ServiceRouter
from ultramarket.services.cart.client import CartClient
from ultramarket.services.inventory.client import InventoryClient
from ultramarket.services.order import schemas as s
from ultramarket.services.order.checkout import Checkout
from ultramarket.services.order.config import order_settings
from ultramarket.services.order.flows import FAULTS_KEY, Parts
from ultramarket.services.order.refunds import Refunds
from ultramarket.services.order.service import OrderService, actor_of
from ultramarket.services.order.status import Status
from ultramarket.services.payment.client import PaymentClient
from ultramarket.services.user.client import UserClient

Responses = dict[int | str, dict[str, Any]]

router = ServiceRouter(prefix="/api/v1/orders", tags=["orders"])

Session = Annotated[AsyncSession, unit_of_work("order")]
ReadSession = Annotated[AsyncSession, read_session("order")]
Paging = Annotated[PageParams, Depends(page_params)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
]
Buyer = Annotated[Principal, require("order:create")]
Staff = Annotated[Principal, require("order:write:any")]
Refunder = Annotated[Principal, require("order:refund")]
Analyst = Annotated[Principal, require("order:read:any")]
Since = Annotated[
    s.Moment | None,
    Query(alias="from", description="Created at or after (ISO 8601; without an offset, UTC)"),
]
Until = Annotated[
    s.Moment | None,
    Query(alias="to", description="Created before (ISO 8601; without an offset, UTC)"),
]


def parts(container: Any) -> Parts:
    return Parts(
        db=container.db("order"),
        publisher=container.publisher("order"),
        cart=container.client(CartClient, "order"),
        inventory=container.client(InventoryClient, "order"),
        payments=container.client(PaymentClient, "order"),
        users=container.client(UserClient, "order"),
        settings=order_settings(container),
        faults=container.extras.setdefault(FAULTS_KEY, set()),
    )


async def orders_reader(session: ReadSession) -> OrderService:
    return OrderService(session)


async def orders_writer(container: ContainerDep, session: Session) -> OrderService:
    return OrderService(session, container.publisher("order"))


Orders = Annotated[OrderService, Depends(orders_reader)]
OrdersWriter = Annotated[OrderService, Depends(orders_writer)]

ERRORS: Responses = {
    401: {"description": "Not authenticated"},
    403: {"description": "Missing permission"},
    422: {"description": "Invalid input (VALIDATION_ERROR)"},
}
ORDER_ERRORS: Responses = {**ERRORS, 404: {"description": "ORDER_NOT_FOUND (or not yours)"}}
CHECKOUT_ERRORS: Responses = {
    **ERRORS,
    402: {"description": "PAYMENT_FAILED (declined; details carry decline_code), PAYMENT_BLOCKED"},
    404: {"description": "VARIANT_NOT_FOUND, COUPON_NOT_FOUND"},
    409: {
        "description": "INSUFFICIENT_STOCK (details name each short line), PRODUCT_UNAVAILABLE, "
        "COUPON_EXHAUSTED, COUPON_USER_LIMIT, PRICE_CHANGED, RESERVATION_EXPIRED, "
        "IDEMPOTENCY_KEY_REUSED (same key, other body), CHECKOUT_IN_PROGRESS"
    },
    422: {"description": "CART_EMPTY, a coupon that does not apply, invalid input"},
    503: {"description": "A service was unreachable; the order settles within minutes"},
}


# -- checkout -----------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=Envelope[s.OrderRead],
    responses=CHECKOUT_ERRORS,
    summary="Check out: the cart (or explicit items) becomes a paid, confirmed order",
)
@router.post("/", status_code=201, response_model=Envelope[s.OrderRead], include_in_schema=False)
async def checkout(
    body: s.CheckoutCreate,
    principal: Buyer,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[s.OrderRead]:
    """Re-prices the lines, reserves the stock, takes the payment and confirms the
    order; any refusal gives everything back and answers with the reason. The same
    ``Idempotency-Key`` returns the first result (``Idempotent-Replayed: true``),
    never a second order or charge; with another body it is 409."""
    if principal.kind != "user":
        raise Forbidden("Orders are placed by users")
    order, created = await Checkout(parts(container_of(request))).run(
        principal, body, idempotency_key, ip_of(request)
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return Envelope(data=order)


# -- reading ------------------------------------------------------------------------------------


@router.get("", response_model=Page[s.OrderSummary], responses=ERRORS)
@router.get("/", response_model=Page[s.OrderSummary], include_in_schema=False)
async def list_orders(
    orders: Orders,
    principal: CurrentPrincipal,
    paging: Paging,
    status: Annotated[list[Status] | None, Query(description="One or more statuses")] = None,
    user_id: uuid.UUID | None = None,
    since: Since = None,
    until: Until = None,
    number: Annotated[str | None, Query(max_length=32)] = None,
) -> Page[s.OrderSummary]:
    """Own orders, newest first; MANAGER+ see all, filtered by status, user and a
    ``from``/``to`` date range. ``sort``: created_at, total, number, status."""
    if principal.can("order:read:any"):
        owner = user_id
    elif principal.kind == "user":
        owner = principal.user_id
    else:
        raise Forbidden("Needs order:read:any")
    rows, total = await orders.list(
        user_id=owner,
        statuses=status or (),
        since=since,
        until=until,
        number=number,
        offset=paging.offset,
        limit=paging.limit,
        sort=paging.sort,
    )
    return Page.of(rows, page=paging.page, limit=paging.limit, total=total)


@router.get("/stats", response_model=Envelope[s.OrderStats], responses=ERRORS)
async def order_stats(
    orders: Orders,
    _staff: Analyst,
    since: Since = None,
    until: Until = None,
) -> Envelope[s.OrderStats]:
    """Counts by status, and per currency the sales of kept orders (paid, not cancelled
    or failed): revenue, the refunds that went through, net revenue and average order
    value (net revenue per kept order)."""
    return Envelope(data=await orders.stats(since=since, until=until))


@router.get("/{order_id}", response_model=Envelope[s.OrderRead], responses=ORDER_ERRORS)
async def get_order(
    order_id: uuid.UUID, orders: Orders, principal: CurrentPrincipal
) -> Envelope[s.OrderRead]:
    order = await orders.get_for(principal, order_id)
    staff = principal.can("order:read:any")
    return Envelope(data=await orders.read(order, staff=staff))


@router.get("/{order_id}/tracking", response_model=Envelope[s.TrackingRead], responses=ORDER_ERRORS)
async def get_tracking(
    order_id: uuid.UUID, orders: Orders, principal: CurrentPrincipal
) -> Envelope[s.TrackingRead]:
    order = await orders.get_for(principal, order_id)
    return Envelope(data=await orders.tracking(order, staff=principal.can("order:read:any")))


# -- changing -----------------------------------------------------------------------------------


@router.put(
    "/{order_id}/status",
    response_model=Envelope[s.OrderRead],
    responses={**ORDER_ERRORS, 409: {"description": "ILLEGAL_TRANSITION"}},
)
async def update_status(
    order_id: uuid.UUID, body: s.StatusUpdate, principal: Staff, container: ContainerDep
) -> Envelope[s.OrderRead]:
    """MANAGER+: move along processing → shipped → delivered (with tracking details);
    ``confirmed`` approves an order held for fraud review (captures the payment);
    ``cancelled`` cancels as ``POST /{id}/cancel`` does. Anything else the machine
    does not allow is 409."""
    flows = parts(container)
    if body.status == "cancelled":
        await Refunds(flows).cancel(order_id, principal, body.note)
    else:
        async with flows.db.session() as session:
            orders = OrderService(session, flows.publisher)
            order = await orders.get(order_id)
            if body.status != "confirmed":
                await orders.set_status(order, body, actor_of(principal))
        if body.status == "confirmed":
            await Checkout(flows).approve(order, actor_of(principal))
    async with flows.db.read_session() as session:
        orders = OrderService(session)
        return Envelope(data=await orders.read(await orders.get(order_id), staff=True))


@router.put(
    "/{order_id}/tracking",
    response_model=Envelope[s.TrackingRead],
    responses={
        **ORDER_ERRORS,
        409: {"description": "NOT_TRACKABLE (not paid, or cancelled, failed or refunded)"},
    },
)
async def update_tracking(
    order_id: uuid.UUID, body: s.TrackingUpdate, orders: OrdersWriter, principal: Staff
) -> Envelope[s.TrackingRead]:
    """MANAGER+ and the shipping service: carrier, tracking number and URL, estimate,
    while the order is paid and being fulfilled (confirmed to delivered); each update is
    noted in the status history."""
    order = await orders.set_tracking(await orders.get(order_id), body, actor_of(principal))
    return Envelope(data=await orders.tracking(order, staff=True))


@router.post(
    "/{order_id}/cancel",
    response_model=Envelope[s.OrderRead],
    responses={**ORDER_ERRORS, 409: {"description": "NOT_CANCELLABLE"}},
)
async def cancel_order(
    order_id: uuid.UUID,
    principal: CurrentPrincipal,
    container: ContainerDep,
    body: s.CancelRequest | None = None,
) -> Envelope[s.OrderRead]:
    """The owner before shipping, MANAGER+ before delivery: the stock is released or
    restocked, the payment refunded (or its authorisation voided), the coupon use
    given back, and ``order.cancelled`` published."""
    flows = parts(container)
    await Refunds(flows).cancel(order_id, principal, body.reason if body else None)
    async with flows.db.read_session() as session:
        orders = OrderService(session)
        order = await orders.get(order_id)
        return Envelope(data=await orders.read(order, staff=principal.can("order:read:any")))


@router.post(
    "/{order_id}/refund",
    status_code=201,
    response_model=Envelope[s.OrderRead],
    responses={
        **ORDER_ERRORS,
        409: {
            "description": "REFUND_EXCEEDS_PAID (more than is left), NOT_REFUNDABLE, "
            "IDEMPOTENCY_KEY_REUSED"
        },
        422: {"description": "UNKNOWN_ORDER_LINE, amount and lines both given, invalid input"},
    },
)
async def refund_order(
    order_id: uuid.UUID,
    body: s.RefundCreate,
    principal: Refunder,
    container: ContainerDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[s.OrderRead]:
    """MANAGER+: refund everything left (empty body), an ``amount``, or ``lines``
    (``[{order_item_id, quantity}]``; the units go back to stock unless shipped). Never
    more than was paid, even when refunds race; ``order.refunded`` is published."""
    flows = parts(container)
    _refund, _order, created = await Refunds(flows).refund(
        order_id, principal, body, idempotency_key
    )
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    async with flows.db.read_session() as session:
        orders = OrderService(session)
        return Envelope(data=await orders.read(await orders.get(order_id), staff=True))


# -- notes --------------------------------------------------------------------------------------


@router.get("/{order_id}/notes", response_model=Envelope[list[s.NoteRead]], responses=ORDER_ERRORS)
async def list_notes(
    order_id: uuid.UUID, orders: Orders, principal: CurrentPrincipal
) -> Envelope[list[s.NoteRead]]:
    """The customer sees the notes meant for them; staff also see internal ones."""
    order = await orders.get_for(principal, order_id)
    notes = await orders.notes(order.id, internal=principal.can("order:read:any"))
    return Envelope(data=[s.NoteRead.model_validate(n) for n in notes])


@router.post(
    "/{order_id}/notes",
    status_code=201,
    response_model=Envelope[s.NoteRead],
    responses={**ORDER_ERRORS, 409: {"description": "NOTE_LIMIT"}},
)
async def add_note(
    order_id: uuid.UUID,
    body: s.NoteCreate,
    orders: OrdersWriter,
    principal: CurrentPrincipal,
    container: ContainerDep,
) -> Envelope[s.NoteRead]:
    """The owner adds customer notes; MANAGER+ may mark a note ``internal``."""
    order = await orders.get_for(principal, order_id)
    limit = order_settings(container).max_notes_per_order
    note = await orders.add_note(order, principal, body, limit=limit)
    return Envelope(data=s.NoteRead.model_validate(note))
