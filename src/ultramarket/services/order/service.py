"""Orders on one session: finding and showing them, status moves, notes, tracking,
statistics. The flows that call other services (checkout, cancel, refund) are in
``checkout.py`` and ``refunds.py``; they use this class for every write.

Every status change is ``move()``: one conditional UPDATE (``WHERE status IN
(sources)``) plus a history row, so concurrent actors cannot both move an order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.db import utcnow
from ultramarket.core.errors import Conflict, Forbidden
from ultramarket.core.events import Event, EventPublisher
from ultramarket.core.money import Money
from ultramarket.core.security import Principal
from ultramarket.services.order import events, status
from ultramarket.services.order import schemas as s
from ultramarket.services.order.errors import IllegalTransition, NotTrackable, OrderNotFound
from ultramarket.services.order.models import (
    Order,
    OrderItem,
    OrderNote,
    OrderRefund,
    OrderStatusChange,
)

ORDER = Order.__table__
ITEM = OrderItem.__table__
HISTORY = OrderStatusChange.__table__
# The order a user's Idempotency-Key placed: built once (``Database.fetch_one``).
ORDER_BY_KEY = select(ORDER.c.id).where(
    ORDER.c.user_id == bindparam("user_id"), ORDER.c.idempotency_key == bindparam("key")
)
NOTE = OrderNote.__table__
REFUND = OrderRefund.__table__

SORTS: dict[str, Any] = {
    "created_at": Order.created_at,
    "total": Order.total_amount,
    "number": Order.number,
    "status": Order.status,
}

TRACKING_FIELDS = {
    "carrier": "carrier",
    "tracking_number": "tracking number",
    "tracking_url": "tracking link",
    "estimated_delivery": "estimated delivery",
}


def money(amount: int, currency: str) -> str:
    return str(Money(amount, currency))


def actor_of(principal: Principal | None) -> str:
    if principal is None:
        return "system"
    if principal.is_service:
        return f"service:{principal.service or principal.subject}"
    return f"user:{principal.subject}"


# Notes written for staff, by who wrote them: the customer reads these instead.
CUSTOMER_NOTES = {"system:fraud": "Awaiting payment confirmation"}


def for_customer(change: s.StatusChangeRead, owner: uuid.UUID) -> s.StatusChangeRead:
    """A history entry as the order's customer sees it: who made it is "customer", "staff"
    or "system" (no staff member's or service's name), and staff-only notes are replaced."""
    actor = change.actor
    if actor is not None:
        if actor == f"user:{owner}":
            actor = "customer"
        elif actor.startswith("user:"):
            actor = "staff"
        else:
            actor = "system"
    note = CUSTOMER_NOTES.get(change.actor or "", change.note)
    return change.model_copy(update={"actor": actor, "note": note})


def tracked(values: dict[str, Any]) -> str:
    """The history note of a tracking update (the URL is named, not repeated)."""
    said = []
    for field, label in TRACKING_FIELDS.items():
        if field not in values:
            continue
        value = values[field]
        if value is None:
            said.append(f"{label} removed")
        elif field == "tracking_url":
            said.append(f"{label} updated")
        elif isinstance(value, datetime):
            said.append(f"{label} {value.isoformat(timespec='minutes')}")
        else:
            said.append(f"{label} {value}")
    return "Tracking: " + ", ".join(said)


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Share ``total`` minor units out in proportion to ``weights``; the shares sum to
    ``total`` exactly (largest remainders get the leftover units, ties to the first)."""
    whole = sum(weights)
    if whole <= 0 or total == 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    leftover = total - sum(shares)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in by_remainder[:leftover]:
        shares[i] += 1
    return shares


def line_events(items: Iterable[OrderItem]) -> list[events.OrderLine]:
    return [
        events.OrderLine(
            item_id=i.id,
            variant_id=i.variant_id,
            product_id=i.product_id,
            sku=i.sku,
            name=i.name,
            quantity=i.quantity,
            unit_price_amount=i.unit_price_amount,
            total_amount=i.total_amount,
        )
        for i in items
    ]


def present(
    order: Order,
    items: Sequence[OrderItem],
    history: list[s.StatusChangeRead],
    notes: Sequence[OrderNote],
    refunds: Sequence[OrderRefund],
) -> s.OrderRead:
    """The order as the API shows it, from its loaded parts."""
    c = order.currency
    return s.OrderRead(
        id=order.id,
        number=order.number,
        user_id=order.user_id,
        status=order.status,  # type: ignore[arg-type]
        payment_status=order.payment_status,
        on_hold=order.on_hold,
        items=[
            s.OrderItemRead(
                id=i.id,
                variant_id=i.variant_id,
                product_id=i.product_id,
                sku=i.sku,
                name=i.name,
                quantity=i.quantity,
                refunded_quantity=i.refunded_quantity,
                unit_price=money(i.unit_price_amount, c),
                subtotal=money(i.subtotal_amount, c),
                discount=money(i.discount_amount, c),
                tax=money(i.tax_amount, c),
                line_total=money(i.total_amount, c),
                unit_price_amount=i.unit_price_amount,
                line_total_amount=i.total_amount,
            )
            for i in items
        ],
        item_count=sum(i.quantity for i in items),
        subtotal=money(order.subtotal_amount, c),
        discount=money(order.discount_amount, c),
        shipping=money(order.shipping_amount, c),
        tax=money(order.tax_amount, c),
        total=money(order.total_amount, c),
        refunded=money(order.refunded_amount, c),
        currency=c,
        subtotal_amount=order.subtotal_amount,
        discount_amount=order.discount_amount,
        shipping_amount=order.shipping_amount,
        tax_amount=order.tax_amount,
        total_amount=order.total_amount,
        refunded_amount=order.refunded_amount,
        coupon_code=order.coupon_code,
        shipping_address=order.shipping_address,
        billing_address=order.billing_address,
        shipping_rate_id=order.shipping_rate_id,
        payment_method=order.payment_method,
        payment_id=order.payment_id,
        cancel_reason=order.cancel_reason,
        carrier=order.carrier,
        tracking_number=order.tracking_number,
        tracking_url=order.tracking_url,
        estimated_delivery=order.estimated_delivery,
        status_history=history,
        notes=[s.NoteRead.model_validate(n) for n in notes],
        refunds=[
            s.RefundRead(
                id=r.id,
                amount=money(r.amount, c),
                currency=c,
                reason=r.reason,
                status=r.status,
                lines=r.lines or [],
                created_at=r.created_at,
            )
            for r in refunds
        ],
        created_at=order.created_at,
        updated_at=order.updated_at,
        confirmed_at=order.confirmed_at,
        shipped_at=order.shipped_at,
        delivered_at=order.delivered_at,
        cancelled_at=order.cancelled_at,
    )


class OrderService:
    def __init__(
        self,
        session: AsyncSession,
        publisher: EventPublisher | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session = session
        self.publisher = publisher
        self.clock = clock

    # -- finding --------------------------------------------------------------------------------

    async def get(self, order_id: uuid.UUID) -> Order:
        order = await self.session.get(Order, order_id, populate_existing=True)
        if order is None:
            raise OrderNotFound()
        return order

    async def get_for(self, principal: Principal, order_id: uuid.UUID) -> Order:
        """The order when ``principal`` owns it or may read any (404 otherwise: another
        customer's order is not shown to exist)."""
        order = await self.get(order_id)
        if not (principal.owns(order.user_id) or principal.can("order:read:any")):
            raise OrderNotFound()
        return order

    async def items(self, order_id: uuid.UUID) -> list[OrderItem]:
        result = await self.session.scalars(
            select(OrderItem).where(OrderItem.order_id == order_id).order_by(OrderItem.position)
        )
        return list(result.all())

    async def history(self, order: Order, *, staff: bool) -> list[s.StatusChangeRead]:
        """The status history; as its customer sees it unless for ``staff``."""
        rows = await self.session.execute(
            select(HISTORY).where(HISTORY.c.order_id == order.id).order_by(HISTORY.c.created_at)
        )
        changes = [
            s.StatusChangeRead(
                from_status=r.from_status,
                status=r.to_status,
                note=r.note,
                actor=r.actor,
                at=r.created_at,
            )
            for r in rows
        ]
        return changes if staff else [for_customer(c, order.user_id) for c in changes]

    async def notes(self, order_id: uuid.UUID, *, internal: bool) -> list[OrderNote]:
        query = select(OrderNote).where(OrderNote.order_id == order_id)
        if not internal:
            query = query.where(OrderNote.internal.is_(False))
        result = await self.session.scalars(query.order_by(OrderNote.created_at))
        return list(result.all())

    async def refunds(self, order_id: uuid.UUID) -> list[OrderRefund]:
        result = await self.session.scalars(
            select(OrderRefund)
            .where(OrderRefund.order_id == order_id)
            .order_by(OrderRefund.created_at)
        )
        return list(result.all())

    # -- showing --------------------------------------------------------------------------------

    async def read(self, order: Order, *, staff: bool) -> s.OrderRead:
        """The whole order; internal notes, and who made each change, only for ``staff``."""
        return present(
            order,
            await self.items(order.id),
            await self.history(order, staff=staff),
            await self.notes(order.id, internal=staff),
            await self.refunds(order.id),
        )

    async def list(
        self,
        *,
        user_id: uuid.UUID | None,
        statuses: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        number: str | None = None,
        offset: int,
        limit: int,
        sort: str | None,
    ) -> tuple[list[s.OrderSummary], int]:
        conditions: list[Any] = []
        if user_id is not None:
            conditions.append(Order.user_id == user_id)
        if statuses:
            conditions.append(Order.status.in_(list(statuses)))
        if since is not None:
            conditions.append(Order.created_at >= since)
        if until is not None:
            conditions.append(Order.created_at < until)
        if number:
            conditions.append(Order.number == number.upper())
        total = await self.session.scalar(
            select(func.count()).select_from(ORDER).where(*conditions)
        )
        field = (sort or "-created_at").lstrip("-")
        column = SORTS.get(field, Order.created_at)
        ordering = column.desc() if (sort or "-").startswith("-") else column.asc()
        query: Select[Any] = (
            select(Order)
            .where(*conditions)
            .order_by(ordering, Order.id)
            .offset(offset)
            .limit(limit)
        )
        page = list((await self.session.scalars(query)).all())
        # The unit counts of this page's orders only (never an aggregate over every line).
        units: dict[uuid.UUID, int] = {}
        if page:
            units = {
                row.order_id: int(row.units)
                for row in await self.session.execute(
                    select(ITEM.c.order_id, func.sum(ITEM.c.quantity).label("units"))
                    .where(ITEM.c.order_id.in_([o.id for o in page]))
                    .group_by(ITEM.c.order_id)
                )
            }
        return [
            s.OrderSummary(
                id=o.id,
                number=o.number,
                user_id=o.user_id,
                status=o.status,
                payment_status=o.payment_status,
                item_count=units.get(o.id, 0),
                total=money(o.total_amount, o.currency),
                total_amount=o.total_amount,
                refunded=money(o.refunded_amount, o.currency),
                currency=o.currency,
                created_at=o.created_at,
            )
            for o in page
        ], int(total or 0)

    # -- changing -------------------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        if self.publisher is not None:
            await self.publisher.publish(self.session, event)

    async def move(
        self,
        order: Order,
        sources: Iterable[str],
        target: str,
        *,
        actor: str,
        note: str | None = None,
        **values: Any,
    ) -> bool:
        """Move ``order`` to ``target`` if it is still in one of ``sources`` (one
        conditional UPDATE, plus the history row); False when it was not. ``order`` is
        refreshed either way."""
        now = self.clock()
        previous = order.status
        moved = await self.session.scalar(
            update(ORDER)
            .where(ORDER.c.id == order.id, ORDER.c.status.in_(list(sources)))
            .values(status=target, updated_at=now, **values)
            .returning(ORDER.c.status)
        )
        await self.session.refresh(order)
        if moved is None:
            return False
        if previous != target or note:
            await self._history(order.id, previous, target, actor=actor, note=note, at=now)
        return True

    async def _history(
        self,
        order_id: uuid.UUID,
        previous: str | None,
        target: str,
        *,
        actor: str,
        note: str | None,
        at: datetime,
    ) -> None:
        self.session.add(
            OrderStatusChange(
                order_id=order_id,
                from_status=previous,
                to_status=target,
                note=note,
                actor=actor,
                created_at=at,
            )
        )
        await self.session.flush()

    async def refunded(self, order: Order, refund: OrderRefund, *, note_prefix: str) -> None:
        """Money went back (``refund`` is succeeded): the payment status, the order's
        status while it is in a paid state, ``order.refunded``. Only succeeded refunds
        count: a claim still pending may yet be refused and given back."""
        done = int(
            await self.session.scalar(
                select(func.coalesce(func.sum(REFUND.c.amount), 0)).where(
                    REFUND.c.order_id == order.id, REFUND.c.status == "succeeded"
                )
            )
            or 0
        )
        full = done >= order.paid_amount
        order.payment_status = "refunded" if full else "partially_refunded"
        # From the status it is in: a manager's move meanwhile (shipped -> delivered) makes
        # the conditional move miss; it refreshes the order, and the move is tried again.
        for _ in range(3):
            if order.status not in status.PAID or await self.move(
                order,
                [order.status],
                "refunded" if full else "partially_refunded",
                actor=refund.actor or "system",
                note=f"{note_prefix} {Money(refund.amount, order.currency)} {order.currency}",
            ):
                break
        await self.publish(
            events.OrderRefunded(
                order_id=order.id,
                number=order.number,
                user_id=order.user_id,
                currency=order.currency,
                refund_id=refund.id,
                amount=refund.amount,
                total_refunded=done,
                full=full,
                reason=refund.reason,
                lines=list(refund.lines or []),
            )
        )

    async def set_status(self, order: Order, body: s.StatusUpdate, actor: str) -> Order:
        """A manager's move along the fulfilment path (processing, shipped, delivered).

        Confirmation and cancellation are flows of their own (see ``Checkout.approve`` and
        ``Refunds.cancel``); refunds go through ``POST /{id}/refund``."""
        target = body.status
        if target not in status.MANUAL or target in ("confirmed", "cancelled"):
            raise IllegalTransition(
                f"Set {target} through its own route"
                if target in status.REFUNDS
                else f"An order cannot be set to {target} here",
                details=[{"from": order.status, "to": target}],
            )
        went_back = (target == "processing" and order.shipped_at is not None) or (
            target in ("processing", "shipped") and order.delivered_at is not None
        )
        if went_back or not status.can_move(order.status, target):
            raise IllegalTransition(
                f"An order that is {order.status} cannot become {target}",
                details=[{"from": order.status, "to": target}],
            )
        now = self.clock()
        values: dict[str, Any] = {
            k: v
            for k, v in (
                ("carrier", body.carrier),
                ("tracking_number", body.tracking_number),
                ("tracking_url", body.tracking_url),
                ("estimated_delivery", body.estimated_delivery),
            )
            if v is not None
        }
        if target == "shipped":
            values["shipped_at"] = now
        elif target == "delivered":
            values["delivered_at"] = now
            if order.shipped_at is None:
                values["shipped_at"] = now
        previous = order.status
        if not await self.move(order, [previous], target, actor=actor, note=body.note, **values):
            raise IllegalTransition(
                "The order changed meanwhile; reload it",
                details=[{"from": order.status, "to": target}],
            )
        await self.publish(
            events.OrderStatusChanged(
                order_id=order.id,
                number=order.number,
                user_id=order.user_id,
                currency=order.currency,
                from_status=previous,
                to_status=target,
                note=body.note,
                tracking_number=order.tracking_number,
                carrier=order.carrier,
            )
        )
        return order

    async def set_tracking(self, order: Order, body: s.TrackingUpdate, actor: str) -> Order:
        """Carrier, tracking number and URL, estimate: only while the order is paid and
        being fulfilled (409 NOT_TRACKABLE otherwise); each change is in its history."""
        values = body.model_dump(exclude_unset=True)
        for _ in range(3):  # a status move meanwhile: try again from the status it left
            if order.status not in status.PAID:
                raise NotTrackable(
                    f"An order that is {order.status} takes no tracking details",
                    details=[{"status": order.status}],
                )
            if not values:
                return order
            current = order.status
            if await self.move(
                order, [current], current, actor=actor, note=tracked(values), **values
            ):
                return order
        raise NotTrackable("The order changed meanwhile; reload it")

    async def tracking(self, order: Order, *, staff: bool) -> s.TrackingRead:
        return s.TrackingRead(
            order_id=order.id,
            number=order.number,
            status=order.status,
            carrier=order.carrier,
            tracking_number=order.tracking_number,
            tracking_url=order.tracking_url,
            estimated_delivery=order.estimated_delivery,
            shipped_at=order.shipped_at,
            delivered_at=order.delivered_at,
            history=await self.history(order, staff=staff),
        )

    async def add_note(
        self, order: Order, principal: Principal, body: s.NoteCreate, *, limit: int
    ) -> OrderNote:
        staff = principal.can("order:write:any")
        if body.internal and not staff:
            raise Forbidden("Only staff may write internal notes")
        count = await self.session.scalar(
            select(func.count()).select_from(NOTE).where(NOTE.c.order_id == order.id)
        )
        if int(count or 0) >= limit:
            raise Conflict(f"An order holds at most {limit} notes", code="NOTE_LIMIT")
        note = OrderNote(
            order_id=order.id,
            author_id=actor_of(principal),
            author_role=principal.role.value if principal.role is not None else None,
            internal=body.internal,
            body=body.body,
            created_at=self.clock(),
        )
        self.session.add(note)
        await self.session.flush()
        return note

    # -- statistics -----------------------------------------------------------------------------

    async def stats(self, *, since: datetime | None, until: datetime | None) -> s.OrderStats:
        conditions: list[Any] = []
        if since is not None:
            conditions.append(ORDER.c.created_at >= since)
        if until is not None:
            conditions.append(ORDER.c.created_at < until)
        by_status = {
            row.status: int(row.n)
            for row in await self.session.execute(
                select(ORDER.c.status, func.count().label("n"))
                .where(*conditions)
                .group_by(ORDER.c.status)
            )
        }
        # Kept orders: paid and not given up (cancelled or failed orders are not sales);
        # a returned (refunded) order stays, its refunds taking its money back out.
        kept = [ORDER.c.status.in_(status.SOLD), ORDER.c.paid_amount > 0, *conditions]
        refunded = {
            row.currency: int(row.refunded or 0)
            for row in await self.session.execute(
                select(ORDER.c.currency, func.sum(REFUND.c.amount).label("refunded"))
                .join(REFUND, REFUND.c.order_id == ORDER.c.id)
                .where(REFUND.c.status == "succeeded", *kept)  # not claims still pending
                .group_by(ORDER.c.currency)
            )
        }
        revenue = []
        for row in await self.session.execute(
            select(
                ORDER.c.currency,
                func.count().label("n"),
                func.sum(ORDER.c.paid_amount).label("paid"),
            )
            .where(*kept)
            .group_by(ORDER.c.currency)
            .order_by(ORDER.c.currency)
        ):
            paid, n, c = int(row.paid or 0), int(row.n), row.currency
            back = refunded.get(c, 0)
            revenue.append(
                s.CurrencyStats(
                    currency=c,
                    orders=n,
                    revenue=money(paid, c),
                    refunded=money(back, c),
                    net_revenue=money(paid - back, c),
                    average_order_value=money((paid - back) // n if n else 0, c),
                    revenue_amount=paid,
                    refunded_amount=back,
                )
            )
        return s.OrderStats(
            since=since,
            until=until,
            total_orders=sum(by_status.values()),
            by_status={k: by_status.get(k, 0) for k in status.STATUSES},
            revenue=revenue,
        )
