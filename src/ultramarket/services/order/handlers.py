"""The order service's reactions to other services' events.

A refund the order service did not make itself reaches us as ``payment.refunded``
with ``external: true``: one made at the payment provider (its dashboard, a
dispute), or by staff through ``POST /api/v1/payments/{id}/refund``. It is recorded
on the order as a succeeded refund, with the same bounds as ours (never past what
was paid), so the order's refunded total and status match the money. Refunds the
order service made itself are already on the order and are not ``external``.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update

from ultramarket.core.db import after_commit
from ultramarket.core.events import HandlerContext, Subscription, subscription
from ultramarket.services.order.errors import RefundClaimPending
from ultramarket.services.order.metrics import REFUNDED
from ultramarket.services.order.models import Order, OrderRefund
from ultramarket.services.order.service import ORDER, OrderService
from ultramarket.services.payment import events as payment_events


async def on_payment_refunded(ctx: HandlerContext) -> None:
    event = payment_events.PaymentRefunded.model_validate(ctx.envelope.data)
    if not event.external:
        return
    try:
        order_id = uuid.UUID(event.order_id)
    except ValueError:
        return  # a payment not taken by a checkout
    orders = OrderService(ctx.session, ctx.services.publisher("order"))
    # Under the order's row lock: a refund claim of ours committing meanwhile is counted
    # in what is left to refund, not past it.
    order = await ctx.session.get(Order, order_id, with_for_update=True, populate_existing=True)
    if order is None or order.payment_id != event.payment_id:
        return
    seen = await ctx.session.scalar(
        select(OrderRefund.id).where(OrderRefund.payment_refund_id == event.refund_id)
    )
    if seen is not None:
        return
    room = order.paid_amount - order.refunded_amount
    # ``refunded_amount`` holds our pending claims too. The payment service never refunds
    # past what was paid, so a claim this refund leaves no room for is going to be refused
    # and given back: what the money allows is measured without them...
    pending = int(
        await ctx.session.scalar(
            select(func.coalesce(func.sum(OrderRefund.amount), 0)).where(
                OrderRefund.order_id == order.id, OrderRefund.status == "pending"
            )
        )
        or 0
    )
    amount = min(event.refund_amount, room + pending)
    if amount <= 0:
        return
    if amount > room:
        # ...but recorded only once the claim has ended: the event is retried (with
        # backoff, dead-lettered at the last attempt), never marked handled and dropped.
        raise RefundClaimPending(
            details=[{"order_id": str(order.id), "refund_id": str(event.refund_id)}]
        )
    claimed = await ctx.session.scalar(
        update(ORDER)
        .where(ORDER.c.id == order.id, ORDER.c.refunded_amount + amount <= ORDER.c.paid_amount)
        .values(refunded_amount=ORDER.c.refunded_amount + amount)
        .returning(ORDER.c.id)
    )
    if claimed is None:  # nothing left to record on the order: a refund is never counted past
        return  # what was paid
    await ctx.session.refresh(order)
    refund = OrderRefund(
        id=uuid.uuid4(),
        order_id=order.id,
        amount=amount,
        reason=event.reason[:500],
        lines=[],
        status="succeeded",
        payment_refund_id=event.refund_id,
        actor="service:payment",
    )
    ctx.session.add(refund)
    await orders.refunded(order, refund, note_prefix="Refunded through the payment service:")
    currency = order.currency

    async def count() -> None:  # once committed: a batch that rolls back runs this again
        REFUNDED.labels(currency).inc(amount)

    after_commit(ctx.session, count)


def subscriptions() -> list[Subscription]:
    return [subscription("order", payment_events.PaymentRefunded, on_payment_refunded)]
