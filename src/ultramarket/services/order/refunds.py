"""Cancelling and refunding orders.

Money goes back in two steps. First one transaction *claims* the refund: it grows
``orders.refunded_amount`` (and each refunded line's ``refunded_quantity``) by
conditional UPDATEs bounded by what was paid, and writes an ``order_refund`` row
``pending``. Only then is the payment service asked to refund (keyed by the refund's
id, so a retry cannot refund twice). Two concurrent full refunds cannot both claim:
the second finds nothing left and gets 409. A refused refund gives its claim back;
an unknown outcome leaves the row ``pending`` for the sweeper to retry.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ultramarket.core.errors import DomainError, ValidationFailed
from ultramarket.core.money import Money
from ultramarket.core.security import Principal
from ultramarket.services.order import events, status
from ultramarket.services.order import schemas as s
from ultramarket.services.order.errors import (
    IdempotencyKeyReused,
    NotCancellable,
    NotRefundable,
    RefundExceedsPaid,
    RefundFailedBefore,
    RefundInProgress,
    UnknownOrderLine,
)
from ultramarket.services.order.flows import UNKNOWN_OUTCOME, Flow, body_hash, log, reservation_key
from ultramarket.services.order.metrics import ORDERS, REFUNDED
from ultramarket.services.order.models import Order, OrderItem, OrderRefund
from ultramarket.services.order.service import (
    ITEM,
    ORDER,
    REFUND,
    OrderService,
    actor_of,
    line_events,
)


def line_refund(item: OrderItem, quantity: int) -> int:
    """What ``quantity`` more units of a line give back: the line's total shared over
    its units, so refunding every unit, in any steps, returns exactly the total."""
    before = item.total_amount * item.refunded_quantity // item.quantity
    after = item.total_amount * (item.refunded_quantity + quantity) // item.quantity
    return after - before


class Refunds(Flow):
    # -- cancel ---------------------------------------------------------------------------------

    async def cancel(self, order_id: uuid.UUID, principal: Principal, reason: str | None) -> Order:
        """Owner before shipping, staff before delivery: free or restock the units,
        refund what was paid (void an authorisation), give the coupon back."""
        async with self.rx() as orders:
            order = await orders.get_for(principal, order_id)
        staff = principal.can("order:write:any")
        allowed = status.STAFF_CANCELLABLE if staff else status.OWNER_CANCELLABLE
        if order.status == "pending" and not order.on_hold:
            # Its checkout is still running (or settling after a failure): whether money
            # moved is not known yet. It ends on its own within minutes.
            raise NotCancellable(
                "The checkout of this order is still settling; try again in a few minutes",
                code="CHECKOUT_SETTLING",
                details=[{"status": order.status}],
            )
        if (
            order.status not in allowed
            or order.delivered_at is not None
            or (not staff and order.shipped_at is not None)
        ):
            raise NotCancellable(
                f"An order that is {order.status} cannot be cancelled"
                + ("" if staff else " by its owner"),
                details=[{"status": order.status}],
            )
        previous = order.status
        refund: OrderRefund | None = None
        async with self.tx() as orders:
            order = await orders.get(order_id)
            items = await orders.items(order.id)
            moved = await orders.move(
                order,
                [previous],
                "cancelled",
                actor=actor_of(principal),
                note=reason,
                cancel_reason=reason or "cancelled",
                cancelled_at=self.clock(),
                settled=False,
            )
            if not moved:
                raise NotCancellable("The order changed meanwhile; reload it")
            left = order.paid_amount - order.refunded_amount
            if left > 0 and order.payment_status in ("paid", "partially_refunded"):
                refund = await self._claim(
                    orders,
                    order,
                    items,
                    amount=left,
                    lines=[(i, i.quantity - i.refunded_quantity) for i in items],
                    reason="order_cancelled",
                    actor=actor_of(principal),
                    # Its units go back as this refund's (the order's end restocks
                    # only what no refund covers): never those an earlier refund kept out.
                    restock=order.shipped_at is None,
                    key=None,
                    digest=None,
                )
            await orders.publish(
                events.OrderCancelled(
                    order_id=order.id,
                    number=order.number,
                    user_id=order.user_id,
                    currency=order.currency,
                    previous_status=previous,
                    reason=reason,
                    items=line_events(items) if previous != "pending" else [],
                    was_confirmed=previous != "pending",
                    refund_amount=left if refund is not None else 0,
                )
            )
        ORDERS.labels("cancelled").inc()
        try:
            if order.payment_status == "authorized" and order.payment_id is not None:
                await self._void(order)
            if refund is not None:
                await self._pay_out(order, refund)
        finally:
            # Back on the shelf whether or not the money moved yet; a refund the payment
            # service refused gave its units back to the order, which restocks them.
            if refund is not None and await self._claim_stands(refund):
                await self._restock(order, refund)
            await self.settle(order, restock=order.shipped_at is None)
        return order

    async def _claim_stands(self, refund: OrderRefund) -> bool:
        async with self.rx() as orders:
            now = await orders.session.scalar(
                select(REFUND.c.status).where(REFUND.c.id == refund.id)
            )
        return now != "failed"

    async def _void(self, order: Order) -> None:
        assert order.payment_id is not None
        outcome = "voided"
        try:
            await self.parts.payments.void(order.payment_id)
        except DomainError as exc:
            payment = await self.parts.payments.get(order.payment_id)
            if payment.status != "succeeded":
                log.warning("authorisation not voided", extra={"error": exc.code})
                return
            # Captured meanwhile (an approval raced this cancellation): refund it.
            await self.parts.payments.refund(
                payment.id, None, "order_cancelled", idempotency_key=f"checkout:{order.id}"
            )
            outcome = "refunded"
        async with self.tx() as orders:
            fresh = await orders.get(order.id)
            fresh.payment_status = outcome

    # -- refund ---------------------------------------------------------------------------------

    async def refund(
        self,
        order_id: uuid.UUID,
        principal: Principal,
        body: s.RefundCreate,
        key: str | None,
    ) -> tuple[OrderRefund, Order, bool]:
        """Refund all that is left, an amount, or lines; (refund, order, created)."""
        digest = body_hash(body)
        async with self.tx() as orders:
            order = await orders.get_for(principal, order_id)
            if key is not None:
                replay = await self._by_key(orders, order.id, key, digest)
                if replay is not None:
                    return replay, order, False
            # A cancelled order whose refund was refused keeps its money: refundable too.
            if order.status not in (*status.PAID, "cancelled") or order.payment_status not in (
                "paid",
                "partially_refunded",
            ):
                raise NotRefundable(
                    f"An order that is {order.status} has no payment to refund",
                    details=[{"status": order.status, "payment_status": order.payment_status}],
                )
            items = await orders.items(order.id)
            left = order.paid_amount - order.refunded_amount
            lines: list[tuple[OrderItem, int]] = []
            if body.lines is not None:
                by_id = {i.id: i for i in items}
                for line in body.lines:
                    item = by_id.get(line.order_item_id)
                    if item is None:
                        raise UnknownOrderLine(details=[{"order_item_id": str(line.order_item_id)}])
                    if line.quantity > item.quantity - item.refunded_quantity:
                        raise RefundExceedsPaid(
                            f"At most {item.quantity - item.refunded_quantity} more units of "
                            f"{item.sku} can be refunded",
                            details=[
                                {
                                    "order_item_id": str(item.id),
                                    "refundable_quantity": item.quantity - item.refunded_quantity,
                                }
                            ],
                        )
                    lines.append((item, line.quantity))
                amount = sum(line_refund(i, q) for i, q in lines)
                everything = all(
                    i.refunded_quantity + {x.id: q for x, q in lines}.get(i.id, 0) == i.quantity
                    for i in items
                )
                if everything:
                    amount = left  # the last units take the shipping back too
            elif body.amount is not None:
                try:
                    amount = Money.of(body.amount, order.currency).amount
                except ValueError as exc:
                    raise ValidationFailed(
                        str(exc), details=[{"field": "amount", "message": str(exc)}]
                    ) from None
            else:
                amount = left
                lines = [(i, i.quantity - i.refunded_quantity) for i in items]
            if amount <= 0 or amount > left:
                raise RefundExceedsPaid(
                    f"At most {Money(left, order.currency)} {order.currency} can be refunded",
                    details=[{"refundable": str(Money(left, order.currency))}],
                )
            restock = body.restock if body.restock is not None else order.shipped_at is None
            refund = await self._claim(
                orders,
                order,
                items,
                amount=amount,
                lines=lines,
                reason=body.reason,
                actor=actor_of(principal),
                restock=restock and bool(lines),
                key=key,
                digest=digest,
            )
        await self._pay_out(order, refund)
        async with self.rx() as orders:
            fresh_refund = await orders.session.get(OrderRefund, refund.id)
            assert fresh_refund is not None
            return fresh_refund, await orders.get(order.id), True

    async def _by_key(
        self, orders: OrderService, order_id: uuid.UUID, key: str, digest: str
    ) -> OrderRefund | None:
        refund = (
            await orders.session.scalars(
                select(OrderRefund).where(
                    OrderRefund.order_id == order_id, OrderRefund.idempotency_key == key
                )
            )
        ).first()
        if refund is None:
            return None
        if refund.request_hash != digest:
            raise IdempotencyKeyReused()
        if refund.status == "pending":
            raise RefundInProgress()
        if refund.status == "failed":
            raise RefundFailedBefore(refund.failure or "The refund was refused")
        return refund

    async def _claim(
        self,
        orders: OrderService,
        order: Order,
        items: list[OrderItem],
        *,
        amount: int,
        lines: list[tuple[OrderItem, int]],
        reason: str,
        actor: str,
        restock: bool,
        key: str | None,
        digest: str | None,
    ) -> OrderRefund:
        session = orders.session
        for item, quantity in lines:
            if quantity <= 0:
                continue
            # Exactly the count we priced from: a concurrent refund of the line fails us.
            grown = await session.scalar(
                update(ITEM)
                .where(ITEM.c.id == item.id, ITEM.c.refunded_quantity == item.refunded_quantity)
                .values(refunded_quantity=ITEM.c.refunded_quantity + quantity)
                .returning(ITEM.c.id)
            )
            if grown is None:
                raise RefundExceedsPaid("The order changed meanwhile; reload it")
        claimed = await session.scalar(
            update(ORDER)
            .where(
                ORDER.c.id == order.id,
                ORDER.c.refunded_amount + amount <= ORDER.c.paid_amount,
            )
            .values(refunded_amount=ORDER.c.refunded_amount + amount, updated_at=self.clock())
            .returning(ORDER.c.id)
        )
        if claimed is None:
            raise RefundExceedsPaid("Nothing is left to refund")
        refund = OrderRefund(
            id=uuid.uuid4(),
            order_id=order.id,
            amount=amount,
            reason=reason,
            lines=[
                {"order_item_id": str(i.id), "variant_id": str(i.variant_id), "quantity": q}
                for i, q in lines
                if q > 0
            ],
            status="pending",
            restock=restock,
            idempotency_key=key,
            request_hash=digest,
            actor=actor,
        )
        session.add(refund)
        try:
            await session.flush()
        except IntegrityError:
            raise RefundInProgress() from None
        await session.refresh(order)
        return refund

    async def _pay_out(self, order: Order, refund: OrderRefund) -> None:
        """Move the claimed money; settle the claim from the answer."""
        if order.payment_id is None:
            raise NotRefundable("The order has no payment")
        try:
            result = await self.parts.payments.refund(
                order.payment_id,
                str(Money(refund.amount, order.currency)),
                refund.reason,
                idempotency_key=f"order-refund:{refund.id}",
            )
        except UNKNOWN_OUTCOME:
            raise  # the claim stays pending; the sweeper retries with the same key
        except DomainError as exc:
            await self._give_back_claim(order, refund, exc)
            raise
        async with self.tx() as orders:
            fresh = await orders.get(order.id)
            done = await orders.session.scalar(
                update(REFUND)
                .where(REFUND.c.id == refund.id, REFUND.c.status == "pending")
                .values(
                    status="succeeded",
                    payment_refund_id=result.refund.id,
                    updated_at=self.clock(),
                )
                .returning(REFUND.c.id)
            )
            if done is None:
                return  # another attempt (the sweeper) finished it
            await orders.refunded(fresh, refund, note_prefix="Refunded")
        REFUNDED.labels(order.currency).inc(refund.amount)
        await self._restock(order, refund)

    async def _restock(self, order: Order, refund: OrderRefund) -> None:
        """Put a refund's unshipped units back on the shelf (idempotent per refund); the
        flag clears once they are back, so the sweeper retries a failure."""
        if not (refund.restock and refund.lines):
            return
        try:
            await self.parts.inventory.restock(
                reservation_key(order.id),
                reference=f"refund:{refund.id}",
                lines=[(uuid.UUID(x["variant_id"]), int(x["quantity"])) for x in refund.lines],
            )
        except DomainError as exc:
            if exc.code != "RESTOCK_EXCEEDS_RETURNABLE":
                log.warning("refunded units not restocked yet", extra={"error": exc.code})
                return
            # The units went back already (the order's cancellation restocked them): a
            # retry would be refused the same way forever. Done, with a word for staff in
            # case only some of them had.
            log.warning(
                "refunded units already returned; not restocked again",
                extra={"order_id": str(order.id), "refund_id": str(refund.id)},
            )
        async with self.tx() as orders:
            await orders.session.execute(
                update(REFUND).where(REFUND.c.id == refund.id).values(restock=False)
            )

    async def _give_back_claim(self, order: Order, refund: OrderRefund, error: DomainError) -> None:
        async with self.tx() as orders:
            done = await orders.session.scalar(
                update(REFUND)
                .where(REFUND.c.id == refund.id, REFUND.c.status == "pending")
                .values(status="failed", failure=f"{error.code}: {error.message}"[:500])
                .returning(REFUND.c.id)
            )
            if done is None:
                return
            await orders.session.execute(
                update(ORDER)
                .where(ORDER.c.id == order.id)
                .values(refunded_amount=ORDER.c.refunded_amount - refund.amount)
            )
            for line in refund.lines or []:
                await orders.session.execute(
                    update(ITEM)
                    .where(ITEM.c.id == uuid.UUID(line["order_item_id"]))
                    .values(refunded_quantity=ITEM.c.refunded_quantity - int(line["quantity"]))
                )

    async def retry_pending(self, *, limit: int = 50) -> int:
        """The sweeper: finish refunds whose outcome was unknown (same key, so a refund
        that did go through is not made twice)."""
        cutoff = self.clock() - timedelta(seconds=30)
        async with self.rx() as orders:
            rows = list(
                (
                    await orders.session.execute(
                        select(OrderRefund, Order)
                        .join(Order, Order.id == OrderRefund.order_id)
                        .where(OrderRefund.status == "pending", OrderRefund.updated_at < cutoff)
                        .limit(limit)
                    )
                ).all()
            )
        done = 0
        for refund, order in rows:
            try:
                await self._pay_out(order, refund)
                done += 1
            except DomainError as exc:
                log.warning("refund not finished yet", extra={"error": exc.code})
        async with self.rx() as orders:
            unstocked = (
                await orders.session.execute(
                    select(OrderRefund, Order)
                    .join(Order, Order.id == OrderRefund.order_id)
                    .where(
                        OrderRefund.status == "succeeded",
                        OrderRefund.restock.is_(True),
                        OrderRefund.updated_at < cutoff,
                    )
                    .limit(limit)
                )
            ).all()
        for refund, order in unstocked:
            await self._restock(order, refund)
        return done
