"""The checkout saga (ARCHITECTURE.md, "Checkout"), and the sweeper that finishes
checkouts a crash left behind.

    quote (cart prices the lines from the product service, with coupon, shipping, tax)
    -> order ``pending`` (committed: from here every step has a row to record against)
    -> reserve every line (inventory, key ``order:<id>``, with a TTL)
    -> redeem the coupon (cart, idempotent per order)
    -> charge (payment, idempotency key ``order:<id>``)
    -> commit the reservation -> ``confirmed`` + ``order.confirmed`` -> empty the cart

Any refusal compensates in reverse (release the stock and the coupon, refund a
charge) and ends the order ``cancelled`` or ``payment_failed`` with the error stored,
so a retry with the same Idempotency-Key gets the same answer. An *unknown* outcome
(a service unreachable) compensates nothing: the order stays ``pending`` and the
sweeper settles it from what the other services say happened.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from ultramarket.core.db import columns_of, rows_of
from ultramarket.core.errors import (
    ERROR_CLASSES,
    Conflict,
    DomainError,
    NotFound,
    PaymentFailed,
    Unavailable,
    ValidationFailed,
)
from ultramarket.core.money import Money
from ultramarket.core.security import Principal
from ultramarket.services.cart.schemas import CartRead
from ultramarket.services.order import events
from ultramarket.services.order import schemas as s
from ultramarket.services.order.errors import (
    CartEmpty,
    CheckoutInProgress,
    IdempotencyKeyReused,
    IllegalTransition,
    LinesUnavailable,
    PriceChanged,
    ReservationLost,
)
from ultramarket.services.order.flows import (
    UNKNOWN_OUTCOME,
    Flow,
    Parts,
    body_hash,
    failure_of,
    log,
    reservation_key,
)
from ultramarket.services.order.metrics import ORDERS, REVENUE
from ultramarket.services.order.models import Order, OrderItem, OrderNote, OrderStatusChange
from ultramarket.services.order.service import (
    HISTORY,
    ORDER,
    ORDER_BY_KEY,
    OrderService,
    actor_of,
    allocate,
    for_customer,
    line_events,
    present,
)
from ultramarket.services.payment.schemas import PaymentRead

# Crockford-style alphabet without 0/O/1/I: numbers read aloud over the phone.
NUMBER_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
COUPON_STATUS = {"COUPON_NOT_FOUND": 404, "COUPON_EXHAUSTED": 409, "COUPON_USER_LIMIT": 409}

# ``pending`` -> ``confirmed`` and paid, only from ``pending``: built once, its values bound.
CONFIRM = (
    update(ORDER)
    .where(ORDER.c.id == bindparam("order_id"), ORDER.c.status == "pending")
    .values(
        status="confirmed",
        payment_status="paid",
        payment_id=bindparam("new_payment_id"),
        paid_amount=ORDER.c.total_amount,
        on_hold=False,
        confirmed_at=bindparam("new_confirmed_at"),
        updated_at=bindparam("new_updated_at"),
    )
    .returning(*ORDER.c)
)


def replayed_error(failure: dict[str, Any]) -> DomainError:
    cls = ERROR_CLASSES.get(int(failure.get("status", 409)), Conflict)
    return cls(
        failure.get("message"),
        code=failure.get("code"),
        details=failure.get("details") or [],
        persist_changes=False,
    )


class Checkout(Flow):
    def __init__(self, parts: Parts) -> None:
        super().__init__(parts)
        # What this checkout wrote, to answer without reading it back.
        self.lines: list[OrderItem] = []
        self.opened_at = self.clock()
        self.confirmed: Order | None = None
        self.note_id: uuid.UUID | None = None

    # -- the saga -------------------------------------------------------------------------------

    async def run(
        self,
        principal: Principal,
        body: s.CheckoutCreate,
        key: str | None,
        ip: str | None = None,
    ) -> tuple[s.OrderRead, bool]:
        """Place the order; (the order, True) when this call placed it, (the first
        result, False) when ``key`` was used before with the same body."""
        user_id = principal.user_id
        digest = body_hash(body)
        if key is not None:
            existing = await self._placed_with(user_id, key)
            if existing is not None:
                return await self._replay(existing, digest), False

        shipping = await self._shipping_address(user_id, body)
        quote = await self.parts.cart.checkout_quote(
            user_id,
            items=None if body.items is None else [(i.variant_id, i.quantity) for i in body.items],
            # Explicit lines take only the coupon named with them, never the cart's.
            coupon=body.coupon if body.coupon is not None or body.items is None else "",
            country=shipping["country"],
            region=shipping.get("region"),
        )
        self._check_quote(quote)

        order = await self._create(principal, body, key, digest, quote, shipping)
        if order is None:  # a concurrent retry with the same key created it first
            assert key is not None
            existing = await self._placed_with(user_id, key)
            assert existing is not None
            return await self._replay(existing, digest), False
        self.fault("after_create")

        try:
            await self.parts.inventory.reserve(
                reservation_key(order.id),
                [(i.variant_id, i.quantity) for i in quote.items],
                ttl_seconds=self.settings.reservation_ttl_seconds,
            )
        except UNKNOWN_OUTCOME:
            raise  # maybe reserved, maybe not: the sweeper settles the order
        except DomainError as exc:
            await self._abort(order, exc, "cancelled")
            raise
        self.fault("after_reserve")

        try:
            if quote.coupon is not None:
                await self._redeem(order, quote)
            payment = await self._charge(order, body, ip)
        except UNKNOWN_OUTCOME:
            raise
        except DomainError as exc:
            await self._abort(
                order, exc, "payment_failed" if exc.status_code == 402 else "cancelled"
            )
            raise
        self.fault("after_payment")

        if payment.status == "requires_capture":
            await self._hold(order, payment)
            async with self.rx() as orders:
                return await orders.read(await orders.get(order.id), staff=False), True
        await self._complete(order, payment)
        if self.confirmed is None:  # confirmed by another actor: read what it wrote
            async with self.rx() as orders:
                return await orders.read(await orders.get(order.id), staff=False), True
        return self._placed(principal, body), True

    async def _placed_with(self, user_id: uuid.UUID, key: str) -> uuid.UUID | None:
        """The order the user's ``key`` placed, if any."""
        row = await self.parts.db.fetch_one(ORDER_BY_KEY, user_id=user_id, key=key)
        return None if row is None else row["id"]

    def _placed(self, principal: Principal, body: s.CheckoutCreate) -> s.OrderRead:
        """The order just confirmed, from what this checkout wrote (no reads)."""
        assert self.confirmed is not None
        actor = actor_of(principal)
        history = [  # as its customer sees it, as every checkout answer is
            for_customer(change, self.confirmed.user_id)
            for change in (
                s.StatusChangeRead(
                    from_status=None, status="pending", note=None, actor=actor, at=self.opened_at
                ),
                s.StatusChangeRead(
                    from_status="pending",
                    status="confirmed",
                    note=None,
                    actor="system:checkout",
                    at=self.confirmed.confirmed_at or self.opened_at,
                ),
            )
        ]
        notes = (
            [
                OrderNote(
                    id=self.note_id,
                    order_id=self.confirmed.id,
                    author_id=actor,
                    author_role=principal.role.value if principal.role else None,
                    internal=False,
                    body=body.note,
                    created_at=self.opened_at,
                )
            ]
            if body.note and self.note_id
            else []
        )
        return present(self.confirmed, self.lines, history, notes, [])

    async def _shipping_address(self, user_id: uuid.UUID, body: s.CheckoutCreate) -> dict[str, Any]:
        if body.shipping_address is not None:
            return body.shipping_address.model_dump(exclude_none=True)
        address = await self.parts.users.get_default_address(user_id)
        if address is None:
            raise ValidationFailed(
                "A shipping address is needed (none given and no default address)",
                details=[{"field": "body.shipping_address", "message": "required"}],
            )
        return s.Address.model_validate(
            address.model_dump(include=set(s.Address.model_fields))
        ).model_dump(exclude_none=True)

    @staticmethod
    def _check_quote(quote: CartRead) -> None:
        if not quote.items:
            raise CartEmpty()
        unavailable = [
            {"variant_id": str(i.variant_id), "sku": i.sku, "message": "no longer for sale"}
            for i in quote.items
            if not i.available
        ]
        if unavailable:
            raise LinesUnavailable(details=unavailable)
        coupon = quote.coupon
        if coupon is not None and not coupon.valid:
            reason = coupon.reason or "COUPON_INVALID"
            cls = ERROR_CLASSES[COUPON_STATUS.get(reason, 422)]
            raise cls(
                f"The coupon {coupon.code} cannot be used: {reason}",
                code=reason,
                details=[{"field": "coupon", "code": coupon.code, "reason": reason}],
            )

    def _number(self) -> str:
        day = self.clock().strftime("%y%m%d")
        tail = "".join(secrets.choice(NUMBER_ALPHABET) for _ in range(6))
        return f"{self.settings.number_prefix}-{day}-{tail}"

    async def _create(
        self,
        principal: Principal,
        body: s.CheckoutCreate,
        key: str | None,
        digest: str,
        quote: CartRead,
        shipping: dict[str, Any],
    ) -> Order | None:
        """Write the ``pending`` order with its lines; None when ``key`` is taken."""
        now = self.clock()
        currency = quote.currency
        subtotals = [i.line_total_amount for i in quote.items]
        discounts = allocate(quote.discount_amount, subtotals)
        taxes = allocate(
            quote.tax_amount, [a - d for a, d in zip(subtotals, discounts, strict=True)]
        )
        for attempt in range(3):
            order_id = uuid.uuid4()
            order = Order(
                id=order_id,
                number=self._number(),
                user_id=principal.user_id,
                email=principal.email,
                status="pending",
                payment_status="unpaid",
                currency=currency,
                subtotal_amount=quote.subtotal_amount,
                discount_amount=quote.discount_amount,
                shipping_amount=quote.shipping_amount,
                tax_amount=quote.tax_amount,
                total_amount=quote.total_amount,
                coupon_code=quote.coupon.code if quote.coupon is not None else None,
                shipping_address=shipping,
                billing_address=(
                    body.billing_address.model_dump(exclude_none=True)
                    if body.billing_address is not None
                    else None
                ),
                shipping_rate_id=body.shipping_rate_id,
                payment_method=body.payment.method,
                from_cart=body.items is None,
                idempotency_key=key,
                request_hash=digest,
                created_at=now,
                updated_at=now,
            )
            lines = [
                OrderItem(
                    id=uuid.uuid4(),
                    order_id=order_id,
                    position=n,
                    variant_id=i.variant_id,
                    product_id=i.product_id,
                    sku=i.sku,
                    name=i.name,
                    quantity=i.quantity,
                    refunded_quantity=0,
                    unit_price_amount=i.unit_price_amount,
                    subtotal_amount=i.line_total_amount,
                    discount_amount=discounts[n],
                    tax_amount=taxes[n],
                    total_amount=i.line_total_amount - discounts[n] + taxes[n],
                )
                for n, i in enumerate(quote.items)
            ]
            actor = actor_of(principal)
            history = OrderStatusChange(
                id=uuid.uuid4(), order_id=order_id, to_status="pending", actor=actor, created_at=now
            )
            rows: list[Any] = [order, *lines, history]
            if body.note:
                self.note_id = uuid.uuid4()
                rows.append(
                    OrderNote(
                        id=self.note_id,
                        order_id=order_id,
                        author_id=actor,
                        author_role=principal.role.value if principal.role else None,
                        internal=False,
                        body=body.note,
                        created_at=now,
                    )
                )
            try:
                # The order, its lines, its first history row (and note) in one write.
                await self.parts.db.write_together(*rows_of(*rows))
                self.lines = lines
                self.opened_at = now
                return order
            except IntegrityError:
                if key is not None and await self._placed_with(principal.user_id, key) is not None:
                    return None
                if attempt == 2:
                    raise
                # Otherwise the number collided (one in a billion a day): draw another.
        raise AssertionError("unreachable")

    async def _redeem(self, order: Order, quote: CartRead) -> None:
        assert quote.coupon is not None
        redemption = await self.parts.cart.redeem_coupon(
            quote.coupon.code, order.user_id, order.id, quote.subtotal_amount, quote.currency
        )
        if redemption.discount_amount != quote.discount_amount:
            # The coupon changed between the quote and its use: charge nothing.
            raise PriceChanged(
                details=[
                    {
                        "field": "coupon",
                        "quoted_discount": quote.discount,
                        "discount_now": redemption.discount,
                    }
                ]
            )

    async def _charge(self, order: Order, body: s.CheckoutCreate, ip: str | None) -> PaymentRead:
        token = getattr(body.payment, "token", None)
        payment = await self.parts.payments.charge(
            str(order.id),
            order.user_id,
            str(Money(order.total_amount, order.currency)),
            order.currency,
            body.payment.method,
            token,
            idempotency_key=reservation_key(order.id),
            ip=ip,
        )
        # Recorded on the order with its outcome; until then the sweeper finds the
        # payment by order id.
        order.payment_id = payment.id
        return payment

    async def _abort(self, order: Order, error: DomainError, target: str) -> None:
        """Compensate a refused step: give back the stock and the coupon, end the order
        in ``target`` with the error stored for replays."""
        async with self.tx() as orders:
            fresh = await orders.get(order.id)
            moved = await orders.move(
                fresh,
                ["pending"],
                target,
                actor="system:checkout",
                note=f"{error.code}: {error.message}"[:1000],
                failure=failure_of(error),
                settled=False,
                payment_status="failed" if target == "payment_failed" else fresh.payment_status,
                cancel_reason=error.code if target == "cancelled" else None,
                cancelled_at=self.clock() if target == "cancelled" else None,
            )
            if moved:
                await self._publish_end(orders, fresh, target, error.code)
            ended = fresh.status in ("cancelled", "payment_failed")  # as refreshed by move
        if moved:
            ORDERS.labels(target).inc()
        if ended:
            await self.settle(order, restock=True)
        # Otherwise the order moved on meanwhile (a checkout finishing, a sweeper): it
        # keeps its stock and its coupon use; giving them back would restock a sale.

    async def _publish_end(
        self, orders: OrderService, order: Order, target: str, reason: str
    ) -> None:
        if target == "payment_failed":
            await orders.publish(
                events.OrderPaymentFailed(
                    order_id=order.id,
                    number=order.number,
                    user_id=order.user_id,
                    currency=order.currency,
                    total_amount=order.total_amount,
                    reason=reason,
                )
            )
        else:
            await orders.publish(
                events.OrderCancelled(
                    order_id=order.id,
                    number=order.number,
                    user_id=order.user_id,
                    currency=order.currency,
                    previous_status="pending",
                    reason=reason,
                    items=[],
                    was_confirmed=False,
                    refund_amount=0,
                )
            )

    async def _complete(
        self, order: Order, payment: PaymentRead, *, clear_cart: bool = True
    ) -> None:
        """The money is in: turn the reservation into a sale, confirm, empty the cart
        (not when the sweeper finishes a checkout later: the cart may be a new one)."""
        if Money.of(payment.amount, payment.currency) != Money(order.total_amount, order.currency):
            # Never confirm an order with a payment that does not cover it exactly: the
            # charge goes back and the order ends (left pending, every sweep would find
            # the same charge again and the customer would stay charged).
            log.error(
                "payment does not match the order",
                extra={"order_id": str(order.id), "payment_id": str(payment.id)},
            )
            mismatch = Conflict(
                "The payment does not match the order; it was refunded",
                code="PAYMENT_MISMATCH",
            )
            await self._refund_checkout(order, payment, mismatch)
            raise mismatch
        await self._commit_stock(order, payment)
        if not await self._confirm(order, payment, actor="system:checkout"):
            if await self._confirmed_by_another(order, payment):
                return  # a sweeper (or a retry) finished this same checkout first
            # Ended meanwhile (the sweeper gave up on it): the charge goes back.
            ended = Conflict(
                "The checkout ran out of time and was cancelled; the charge was refunded",
                code="CHECKOUT_CANCELLED",
            )
            await self._refund_checkout(order, payment, ended)
            raise ended
        if order.from_cart and clear_cart:
            try:
                # Only what was bought leaves the cart: lines added (or raised) while
                # the order was paid stay.
                await self.parts.cart.remove_ordered(
                    order.user_id,
                    [(line.variant_id, line.quantity) for line in self.lines],
                    coupon=order.coupon_code,
                )
            except DomainError as exc:  # the order stands; a stale cart is only cosmetic
                log.warning("cart not emptied after checkout", extra={"error": exc.code})

    async def _commit_stock(self, order: Order, payment: PaymentRead) -> None:
        """Turn the reservation into a sale. An unknown outcome is left to the sweeper; a
        reservation that ran out (or was released) first undoes the payment."""
        try:
            await self.parts.inventory.commit(reservation_key(order.id))
        except UNKNOWN_OUTCOME:
            raise
        except DomainError as exc:
            if not await self._committed_already(order):
                lost = ReservationLost(details=[{"reason": exc.code}])
                await self._refund_checkout(order, payment, lost)
                raise lost from exc

    async def _confirmed_by_another(self, order: Order, payment: PaymentRead) -> bool:
        async with self.rx() as orders:
            current = await orders.get(order.id)
        return (
            current.status != "pending"
            and current.payment_id == payment.id
            and (current.status not in ("cancelled", "payment_failed"))
        )

    async def _committed_already(self, order: Order) -> bool:
        try:
            reservation = await self.parts.inventory.get_reservation(reservation_key(order.id))
        except NotFound:
            return False
        return reservation.status == "committed"

    async def _confirm(self, order: Order, payment: PaymentRead, *, actor: str) -> bool:
        """``pending`` -> ``confirmed`` (one conditional UPDATE), its history row and
        ``order.confirmed``, all in one write; False when the order was no longer pending."""
        now = self.clock()
        if not self.lines or self.lines[0].order_id != order.id:
            # The sweeper finishing a checkout (one after another): the lines are in the
            # database.
            async with self.rx() as orders:
                self.lines = list(await orders.items(order.id))
        history = OrderStatusChange(
            id=uuid.uuid4(),
            order_id=order.id,
            from_status="pending",
            to_status="confirmed",
            actor=actor,
            created_at=now,
        )
        after = [(HISTORY, columns_of(history))]
        publisher = self.parts.publisher
        if publisher is not None:
            event = events.OrderConfirmed(
                order_id=order.id,
                number=order.number,
                user_id=order.user_id,
                currency=order.currency,
                email=order.email,
                items=line_events(self.lines),
                subtotal_amount=order.subtotal_amount,
                discount_amount=order.discount_amount,
                shipping_amount=order.shipping_amount,
                tax_amount=order.tax_amount,
                total_amount=order.total_amount,
                coupon_code=order.coupon_code,
                payment_method=order.payment_method,
                shipping_country=(order.shipping_address or {}).get("country"),
                confirmed_at=now,
            )
            after.append((publisher.tables.outbox, publisher.outbox_row(event)))
        row = await self.parts.db.write_if(
            CONFIRM,
            {
                "order_id": order.id,
                "new_payment_id": payment.id,
                "new_confirmed_at": now,
                "new_updated_at": now,
            },
            *after,
        )
        if row is None:
            return False
        if publisher is not None:
            self.parts.db.outbox_written(publisher.tables.service)
        self.confirmed = confirmed = Order(**row)
        ORDERS.labels("confirmed").inc()
        REVENUE.labels(confirmed.currency).inc(confirmed.total_amount)
        return True

    async def _refund_checkout(
        self, order: Order, payment: PaymentRead, error: DomainError | None
    ) -> None:
        """Give a checkout's charge back (void an authorisation) and end the order."""
        if payment.status == "requires_capture":
            await self.parts.payments.void(payment.id)
        elif payment.status == "succeeded":
            await self.parts.payments.refund(
                payment.id, None, "checkout_failed", idempotency_key=f"checkout:{order.id}"
            )
        if error is not None:
            await self._abort(order, error, "cancelled")
        async with self.tx() as orders:
            fresh = await orders.get(order.id)
            fresh.payment_id = payment.id
            fresh.payment_status = "refunded" if payment.status == "succeeded" else "voided"
            if error is not None:  # what a retry with the same key is answered
                fresh.failure = failure_of(error)

    async def _hold(self, order: Order, payment: PaymentRead) -> None:
        """Fraud review: the card is only authorised. Keep the stock (commit the
        reservation, so no TTL frees it) and wait for a manager (``approve``/cancel)."""
        await self._commit_stock(order, payment)
        async with self.tx() as orders:
            fresh = await orders.get(order.id)
            held = await orders.move(
                fresh,
                ["pending"],
                "pending",
                actor="system:fraud",
                note="Held for review: payment authorised, not captured",
                on_hold=True,
                payment_status="authorized",
                payment_id=payment.id,
            )
        if not held:  # ended meanwhile: let the authorisation go
            await self._refund_checkout(order, payment, None)

    async def approve(self, order: Order, actor: str) -> None:
        """A manager clears a held order: capture the authorisation, confirm."""
        if order.status != "pending" or not order.on_hold or order.payment_id is None:
            raise IllegalTransition(
                "Only an order held for review can be confirmed by hand",
                details=[{"from": order.status, "to": "confirmed"}],
            )
        try:
            payment = await self.parts.payments.capture(order.payment_id)
        except Conflict:
            # Captured by an earlier attempt whose answer was lost: carry on from it.
            payment = await self.parts.payments.get(order.payment_id)
            if payment.status != "succeeded":
                raise
        if not await self._confirm(order, payment, actor=actor):
            # Cancelled while we captured: the money goes back.
            await self._refund_checkout(order, payment, None)
            raise IllegalTransition("The order was cancelled meanwhile; the capture was refunded")

    # -- replays --------------------------------------------------------------------------------

    async def _replay(self, order_id: uuid.UUID, digest: str) -> s.OrderRead:
        """The first result of a checkout: wait while it is still running, then return
        the order or raise the error it ended with."""
        deadline = asyncio.get_running_loop().time() + self.settings.idempotency_wait_seconds
        pause = 0.02
        while True:
            async with self.rx() as orders:
                order = await orders.get(order_id)
                if order.request_hash != digest:
                    raise IdempotencyKeyReused()
                if order.failure is not None:
                    raise replayed_error(order.failure)
                if order.status != "pending" or order.on_hold:
                    return await orders.read(order, staff=False)
            if asyncio.get_running_loop().time() >= deadline:
                raise CheckoutInProgress()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)

    # -- the sweeper ----------------------------------------------------------------------------

    async def reconcile_stale(self, *, limit: int = 100) -> int:
        """Settle checkouts stuck in ``pending`` past the timeout (a crash, a service
        that was down) from what the payment and inventory services say happened."""
        cutoff = self.clock() - timedelta(seconds=self.settings.pending_timeout_seconds)
        async with self.tx() as orders:
            stale = list(
                (
                    await orders.session.scalars(
                        select(Order.id)
                        .where(
                            Order.status == "pending",
                            Order.on_hold.is_(False),
                            Order.created_at < cutoff,
                        )
                        .order_by(Order.created_at)
                        .limit(limit)
                    )
                ).all()
            )
        done = 0
        for order_id in stale:
            try:
                await self._reconcile(order_id)
                done += 1
            except DomainError as exc:
                log.warning(
                    "pending order not reconciled yet",
                    extra={"order_id": str(order_id), "error": exc.code},
                )
        return done

    async def _reconcile(self, order_id: uuid.UUID) -> None:
        async with self.tx() as orders:
            order = await orders.get(order_id)
        if order.status != "pending":
            return
        payment = await self._find_payment(order)
        if payment is not None and payment.status in ("succeeded", "requires_capture"):
            try:
                if payment.status == "requires_capture":
                    await self._hold(order, payment)
                else:
                    await self._complete(order, payment, clear_cart=False)
            except UNKNOWN_OUTCOME:
                raise
            except DomainError:
                pass  # settled by the refusal itself (refunded, order ended)
            return
        if payment is not None and payment.status == "processing":
            raise Unavailable("The payment is still processing", code="PAYMENT_PROCESSING")
        if payment is not None and payment.status == "failed":
            # Declined, or given up after its provider never answered: a retry is told so.
            declined = PaymentFailed(
                "The payment failed",
                details=[{"decline_code": payment.decline_code, "payment_id": str(payment.id)}],
            )
            await self._abort(order, declined, "payment_failed")
            return
        error = Conflict(
            "The checkout did not finish in time; nothing was charged",
            code="CHECKOUT_TIMEOUT",
        )
        await self._abort(order, error, "cancelled")

    async def _find_payment(self, order: Order) -> PaymentRead | None:
        if order.payment_id is not None:
            return await self.parts.payments.get(order.payment_id)
        # Taking the charge's key: a charge still in flight is waited for, and one that
        # has not started yet can never be made (the sweeper is about to end the order).
        return await self.parts.payments.forfeit(str(order.id), reservation_key(order.id))

    async def settle_pending(self, *, limit: int = 100) -> int:
        """Retry giving back what failed or cancelled orders still hold."""
        cutoff = self.clock() - timedelta(seconds=5)
        async with self.tx() as orders:
            rows = list(
                (
                    await orders.session.scalars(
                        select(Order)
                        .where(
                            Order.settled.is_(False),
                            Order.status.in_(["cancelled", "payment_failed"]),
                            Order.updated_at < cutoff,
                        )
                        .limit(limit)
                    )
                ).all()
            )
        settled = 0
        for order in rows:
            if await self.settle(order, restock=order.shipped_at is None):
                settled += 1
        return settled
