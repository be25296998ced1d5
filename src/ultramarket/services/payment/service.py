"""Payment and wallet use cases.

A payment is created ``processing`` and leaves it by conditional UPDATEs
(``WHERE status IN (:expected)``); a refund grows ``refunded_amount`` by one
UPDATE whose ``WHERE refunded_amount + :x <= amount`` holds the rule, so two
concurrent full refunds refund once. Events go to the outbox in the same unit of
work. A decline is committed (``persist_changes``) so the failed payment, its fraud
signals and the idempotency record survive the 402.

A charge is committed ``processing`` (with the claim of its key) before its provider
is asked, and nothing is held while the provider answers: a charge the provider makes
is never one we hold no record of. The request asking holds the payment
(``in_flight_until``, ``charge_lease_seconds``): a retry with the key waits for its
answer; once it is gone (an unknown outcome, an error, a crash past the lease), the
retry or the sweeper asks the provider again with the same provider idempotency key,
which answers with the charge it made, if any (``hold.Hold``). A wallet deposit's card
charge goes the same way, its attempt committed and held first.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Update, and_, bindparam, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from ultramarket.core.config import PaymentSettings
from ultramarket.core.db import Database, utcnow, write_if_in
from ultramarket.core.errors import (
    Conflict,
    DomainError,
    NotFound,
    PaymentFailed,
    Unavailable,
    ValidationFailed,
)
from ultramarket.core.events import Event, EventPublisher
from ultramarket.core.money import Money
from ultramarket.services.payment import events, fraud
from ultramarket.services.payment import schemas as s
from ultramarket.services.payment.hold import Hold
from ultramarket.services.payment.idempotency import (
    FORFEITED,
    Idempotency,
    KeyUnfinished,
    answer_unfinished,
    error_body,
)
from ultramarket.services.payment.ledger import EXTERNAL_BANK, EXTERNAL_CARD, Ledger
from ultramarket.services.payment.models import (
    DepositAttempt,
    LedgerEntry,
    Payment,
    PaymentEvent,
    PaymentRefund,
    WalletAccount,
)
from ultramarket.services.payment.providers import Providers
from ultramarket.services.payment.providers.base import (
    ChargeRequest,
    PaymentProvider,
    ProviderResult,
    WebhookEvent,
)
from ultramarket.services.payment.providers.wallet import WalletProvider

log = logging.getLogger("ultramarket.payment")
PAY = Payment.__table__
REFUND = PaymentRefund.__table__
REFUNDABLE = ("succeeded", "partially_refunded")
# The caller whose refunds are already on the order they belong to: the order service
# claims each refund on the order before it asks for it. Every other refund (a manager
# through POST /payments/{id}/refund, the provider) is ``external`` for the order.
ORDER_SERVICE = "order"
# The decline code of a payment given up after its provider never answered.
PROVIDER_UNREACHABLE = "provider_unreachable"

ATTEMPT = DepositAttempt.__table__
# How a deposit's charge names it to the provider (its events echo it: ``deposit:<id>``).
DEPOSIT = "deposit:"


@lru_cache(maxsize=64)
def _move(expected: tuple[str, ...], keys: tuple[str, ...]) -> Update:
    """The conditional UPDATE of a payment from one of ``expected`` setting ``keys``,
    built once a shape: its values bound as ``payment_id`` and ``new_<key>``."""
    return (
        update(PAY)
        .where(PAY.c.id == bindparam("payment_id"), or_(*(PAY.c.status == x for x in expected)))
        .values({key: bindparam(f"new_{key}") for key in keys})
        .returning(PAY.c.id)
    )


class PaymentNotFound(NotFound):
    code = "PAYMENT_NOT_FOUND"
    message = "No such payment"


class OutcomeUnknown(Unavailable):
    code = "PAYMENT_PROCESSING"
    message = "The payment provider did not answer; the payment is being confirmed"
    persist_changes = True  # the processing payment and its key are kept


class PaymentPending(OutcomeUnknown):
    message = "The provider has not settled the payment yet; it is being confirmed"


class DepositPending(OutcomeUnknown):
    message = "The card charge of the deposit is not confirmed yet; it is being confirmed"


class PaymentBlocked(PaymentFailed):
    code = "PAYMENT_BLOCKED"
    message = "The payment was blocked by our fraud checks"
    persist_changes = True


class PaymentDeclined(PaymentFailed):
    code = "PAYMENT_FAILED"
    message = "The payment was declined"
    persist_changes = True


class RefundExceedsRefundable(Conflict):
    code = "REFUND_EXCEEDS_REFUNDABLE"
    message = "The amount is more than what is left to refund"


class IllegalPaymentState(Conflict):
    code = "ILLEGAL_PAYMENT_STATE"
    message = "The payment is not in a state that allows this"


class ChargeForfeited(Conflict):
    code = FORFEITED
    message = "The checkout ran out of time and was ended; nothing was charged"


class VoidFailed(Conflict):
    code = "VOID_FAILED"
    message = "The provider did not void the authorisation"


class RefundFailed(Conflict):
    code = "REFUND_FAILED"
    message = "The provider refused the refund"


def money_of(value: Any, currency: str) -> Money:
    try:
        return Money.of(value, currency)
    except ValueError as exc:
        detail = [{"field": "amount", "message": str(exc)}]
        raise ValidationFailed(str(exc), details=detail) from None


def fingerprint_of(token: str | None) -> str | None:
    return hashlib.sha256(token.encode()).hexdigest() if token else None


async def card_fingerprint(provider: PaymentProvider, token: str | None) -> str | None:
    """What the fraud rules know a card by, hashed: the provider's fingerprint of the
    card when it keeps one (a Stripe ``pm_`` is new each time the card is typed in, so
    the token alone never matched another user's use of the card), else the token."""
    if not token:
        return None
    card = await provider.card_fingerprint(token)
    return fingerprint_of(f"card:{provider.slug}:{card}" if card else token)


def provider_key(scope: str, *parts: str) -> str:
    """The idempotency key sent to a provider for one money move: derived from what our
    own record is scoped by (the kind of move, the resource, the caller, the client's
    key), so it is the same on every retry of that move and never shared with another
    (a refund and a charge, two callers' same key). Hashed: bounded and opaque."""
    digest = hashlib.sha256("\x1f".join((scope, *parts)).encode()).hexdigest()
    return f"um-{digest[:48]}"


class PaymentService:
    def __init__(
        self,
        session: AsyncSession,
        publisher: EventPublisher | None,
        providers: Providers,
        settings: PaymentSettings,
        *,
        actor: str | None = None,
        database: Database | None = None,
    ) -> None:
        self.session = session
        # The session's database: a charge's claim and its result are each written by
        # it as one statement of their own (committed at once) when given.
        self.database = database
        self.publisher = publisher
        self.providers = providers
        self.settings = settings
        self.actor = actor
        # The key a create() is answering: the answer goes in with the provider's result.
        self._answering: Idempotency | None = None
        # The payment this request holds while it asks the provider (``in_flight_until``).
        self._hold = Hold(session, PAY, settings)

    # -- helpers -------------------------------------------------------------------------

    def _provider(self, payment: Payment) -> PaymentProvider:
        if payment.provider == "wallet":
            return WalletProvider(Ledger(self.session), str(payment.user_id))
        return self.providers.get(payment.provider)

    async def _transition(
        self,
        payment: Payment,
        expected: tuple[str, ...],
        *,
        then: Event | None = None,
        answer: bool = False,
        alone: bool = False,
        **values: Any,
    ) -> bool:
        """Move ``payment`` on from one of the ``expected`` statuses (one conditional
        UPDATE) and publish ``then`` with it - and, with ``answer``, record the payment as
        the answer to the key being answered - in one statement; False when it was in
        none of them (nothing else is written; it is reloaded to show where it is).
        ``alone``: nothing after it is to be undone with it, so when the unit of work
        holds nothing yet, the statement commits by itself (no session transaction)."""
        values["updated_at"] = utcnow()
        for name, value in values.items():  # as it will be: what the answer shows
            set_committed_value(payment, name, value)
        rows = []
        if then is not None and self.publisher is not None:
            rows.append((self.publisher.tables.outbox, self.publisher.outbox_row(then)))
        recorded = None
        if answer and self._answering is not None:
            body = s.PaymentRead.of(payment).model_dump(mode="json")
            recorded = self._answering.answer(201, body)
        guard = _move(expected, tuple(values))
        params = {"payment_id": payment.id, **{f"new_{k}": v for k, v in values.items()}}
        updates = [recorded] if recorded is not None else []
        database = self._own_writes() if alone else None
        if database is not None:
            moved = await database.write_if(guard, params, *rows, updates=updates)
        else:
            moved = await write_if_in(self.session, guard, params, *rows, updates=updates)
        if moved is None:
            await self.session.refresh(payment)
            return False
        if rows:
            assert self.publisher is not None
            self.publisher.written(self.session)
        if recorded is not None:
            assert self._answering is not None
            self._answering.answered()
        return True

    async def _publish(self, event: Any) -> None:
        if self.publisher is not None:
            await self.publisher.publish(self.session, event)

    def _event_fields(self, p: Payment) -> dict[str, Any]:
        return {
            "payment_id": p.id,
            "order_id": p.order_id,
            "user_id": p.user_id,
            "method": p.method,
            "provider": p.provider,
            "amount": p.amount,
            "currency": p.currency,
        }

    async def get(self, payment_id: uuid.UUID) -> Payment:
        payment = await self.session.get(Payment, payment_id)
        if payment is None:
            raise PaymentNotFound()
        return payment

    async def get_visible(self, payment_id: uuid.UUID, user_id: str | None) -> Payment:
        """``user_id`` None: any payment (MANAGER+); else only that user's (404 otherwise)."""
        payment = await self.get(payment_id)
        if user_id is not None and str(payment.user_id) != user_id:
            raise PaymentNotFound()
        return payment

    async def _succeeded(self, payment: Payment) -> None:
        await self._publish(events.PaymentSucceeded(**self._event_fields(payment)))

    async def _failed(self, payment: Payment) -> None:
        await self._publish(
            events.PaymentFailed(**self._event_fields(payment), decline_code=payment.decline_code)
        )

    # -- create --------------------------------------------------------------------------

    async def create(
        self,
        user_id: uuid.UUID,
        body: s.PaymentCreate,
        *,
        ip: str | None,
        idempotency_key: str | None,
        owner: str,
    ) -> tuple[s.PaymentRead, bool]:
        """Charge (or authorise) once. Returns the payment and whether it is new."""
        request = body.model_dump(mode="json", exclude={"ip"})
        idem = Idempotency(self.session, "payment.create", owner, idempotency_key, request)
        payment = self._new_payment(user_id, body, ip=ip, key=idempotency_key, owner=owner)
        resumed = False
        try:
            # The payment row goes in with the claim of the key (one statement).
            replay = await idem.begin(payment, committed_by=self._own_writes())
        except KeyUnfinished:
            replay, resumed = None, True
        if replay is not None:
            return s.PaymentRead.model_validate(replay[1]), False
        self._answering = idem
        if not resumed:
            # The payment and the claim of its key are committed before the provider is
            # asked: a charge the provider makes is never one we hold no record of (a
            # crash after its answer leaves the payment ``processing`` for a retry or the
            # sweeper to settle).
            await self._hold.hold_nothing()
            self._hold.holding = payment.id
        try:
            if resumed:
                read = await self._resume(idem, user_id, body, key=idempotency_key, owner=owner)
            else:
                read = await self._create(payment, body, ip=ip, key=idempotency_key)
        except DomainError as error:
            # An unknown outcome leaves the key unanswered: the next try resumes it.
            if error.persist_changes and not isinstance(error, OutcomeUnknown):
                await idem.fail(error)
            raise
        except Exception:
            await self._hold.let_go()
            raise
        if idem.unanswered:  # a charge records its answer with the provider's result
            await idem.finish(201, read.model_dump(mode="json"))
        return read, not resumed

    async def _resume(
        self,
        idem: Idempotency,
        user_id: uuid.UUID,
        body: s.PaymentCreate,
        *,
        key: str | None,
        owner: str,
    ) -> s.PaymentRead:
        """A retry of a key whose request has not answered: while that request is still
        asking the provider, wait for its answer; once it is over (its provider call
        went unanswered, or it died), ask the provider again with the SAME provider
        idempotency key (it answers the first call's result, or makes the charge now if
        the first never arrived)."""
        payment = await self._claimed_with(body.order_id, key)
        if payment is None:  # nothing was kept: start afresh
            payment = self._new_payment(user_id, body, ip=None, key=key, owner=owner)
            self.session.add(payment)
            await self.session.flush()
            return await self._create(payment, body, ip=None, key=key)
        if payment.status == "processing":
            answer = await self._answer_of_first(idem, payment)
            if answer is not None:
                return answer
        if payment.status == "processing":
            await self.resume(payment)
        if payment.status == "failed":  # given up meanwhile: the retry is told so
            raise PaymentDeclined(
                payment.failure_message or None,
                details=[{"decline_code": payment.decline_code, "payment_id": str(payment.id)}],
            )
        return s.PaymentRead.of(payment)

    def _own_writes(self) -> Database | None:
        """The database to write the next statement on by itself (committed at once),
        when this unit of work holds nothing it must be atomic with; else None (the
        statement joins the session's transaction)."""
        return None if self.session.in_transaction() else self.database

    def in_flight(self, payment: Payment, now: datetime | None = None) -> bool:
        """A request is asking the provider about ``payment`` (it holds it)."""
        return self._hold.on(payment, now)

    async def take_over(self, payment: Payment, now: datetime | None = None) -> bool:
        """Hold ``payment`` for this request, to ask its provider again (``Hold.take``).
        False when another took it or it was settled."""
        return await self._hold.take(payment, now)

    async def _answer_of_first(self, idem: Idempotency, payment: Payment) -> s.PaymentRead | None:
        """Wait for the answer of the request that holds ``payment`` (the key's first):
        that answer (a recorded error raised as it was), or None once this request
        holds the payment instead (the first is over without an answer). Past
        ``charge_wait_seconds``: 503 PAYMENT_PROCESSING, to retry later."""
        pending = {"payment_id": str(payment.id)}  # (read now: a rollback expires it)
        body = await self._hold.answer_of_first(
            idem, payment, lambda: PaymentPending(details=[pending])
        )
        return None if body is None else s.PaymentRead.model_validate(body)

    def _new_payment(
        self,
        user_id: uuid.UUID,
        body: s.PaymentCreate,
        *,
        ip: str | None,
        key: str | None,
        owner: str,
    ) -> Payment:
        """The ``processing`` payment a request makes (not written yet)."""
        money = money_of(body.amount, body.currency)
        if body.method == "card" and not body.token:
            raise ValidationFailed(
                "A card payment needs a token",
                details=[{"field": "token", "message": "required for method card"}],
            )
        if body.method == "wallet":
            provider_slug = "wallet"
        elif body.method == "paypal":
            provider_slug = "paypal"
        else:
            provider_slug = self.settings.card_provider
        payment_id = uuid.uuid4()
        now = utcnow()
        return Payment(
            id=payment_id,
            user_id=user_id,
            order_id=body.order_id,
            method=body.method,
            provider=provider_slug,
            status="processing",
            amount=money.amount,
            currency=money.currency,
            refunded_amount=0,
            fingerprint=fingerprint_of(body.token) if body.method == "card" else None,
            provider_token=body.token,
            capture=body.capture,
            idempotency_key=key,
            # Scoped as the key's own record is (the move, the caller, the key): the same
            # for every try of that key - a retry after a crash that rolled this row back
            # too - and never another key's or caller's. Without a key, this payment's.
            provider_key=provider_key("payment.create", owner, key)
            if key
            else provider_key("payment.create", str(payment_id)),
            ip=ip,
            actor=self.actor,
            created_at=now,
            in_flight_until=self._hold.until(now),
        )

    async def _create(
        self, payment: Payment, body: s.PaymentCreate, *, ip: str | None, key: str | None
    ) -> s.PaymentRead:
        """Screen the written payment (fraud rules), then ask the provider."""
        user_id = payment.user_id
        money = Money(payment.amount, payment.currency)
        # Fraud rules guard money coming from outside; wallet money was checked on deposit.
        review = False
        if body.method == "card":
            fingerprint = await card_fingerprint(self._provider(payment), body.token)
            if fingerprint != payment.fingerprint:
                payment.fingerprint = fingerprint  # (written with the payment's next write)
        if body.method != "wallet":
            assessment = await fraud.assess(
                self.session,
                self.settings,
                user_id=user_id,
                money=money,
                fingerprint=payment.fingerprint,
                ip=ip,
                exclude=payment.id,
            )
            await fraud.record(self.session, assessment, user_id, payment.id)
            if assessment.score >= self.settings.fraud_block_score:
                payment.risk_score = assessment.score
                payment.status = "failed"
                payment.decline_code = "blocked"
                payment.failure_message = "blocked by fraud checks"
                await self.session.flush()
                await self._failed(payment)
                raise PaymentBlocked(
                    details=[
                        {
                            "risk_score": assessment.score,
                            "rules": [r for r, _, _ in assessment.signals],
                        }
                    ]
                )
            review = assessment.score >= self.settings.fraud_review_score
            if (payment.risk_score, payment.review_required) != (assessment.score, review):
                payment.risk_score, payment.review_required = assessment.score, review
                await self.session.flush()  # (a flush with nothing to write is not free)

        await self._call_provider(payment, body, key, authorize_only=review or not body.capture)
        return s.PaymentRead.of(payment)

    async def resume(self, payment: Payment) -> None:
        """The sweeper: ask the provider again about a payment left ``processing`` (same
        provider key, same token), as a retry with its Idempotency-Key would. One with a
        provider reference was answered already - taken, not settled (a pending charge or
        capture) - and only the provider's webhook settles it: asking again would at best
        replay the same answer, at worst re-authorise a captured authorisation."""
        if payment.provider_ref is not None:
            payment.in_flight_until = None  # (kept with the 503: nobody is asking)
            raise PaymentPending(details=[{"payment_id": str(payment.id)}])
        key = payment.idempotency_key
        await self._call_provider(
            payment,
            s.PaymentCreate(
                order_id=payment.order_id,
                amount=s.money_str(payment.amount, payment.currency),
                currency=payment.currency,
                method=payment.method,  # type: ignore[arg-type]
                token=payment.provider_token,
                capture=payment.capture,
            ),
            key,
            authorize_only=payment.review_required or not payment.capture,
        )

    async def give_up(self, payment: Payment) -> bool:
        """The sweeper, past ``processing_give_up_hours``: a payment its provider never
        answered about is failed, so the order behind it ends (the order sweeper gives
        its stock back). Should the provider report the charge later, its webhook gets
        the money refunded (``_return_late_charge``). False if it left ``processing``."""
        hours = self.settings.processing_give_up_hours
        return await self._transition(
            payment,
            ("processing",),
            then=events.PaymentFailed(
                **self._event_fields(payment), decline_code=PROVIDER_UNREACHABLE
            ),
            status="failed",
            decline_code=PROVIDER_UNREACHABLE,
            failure_message=f"The payment provider did not answer for {hours:g} hours",
        )

    async def _call_provider(
        self, payment: Payment, body: s.PaymentCreate, key: str | None, *, authorize_only: bool
    ) -> None:
        provider = self._provider(payment)
        if payment.idempotency_key != key:  # a resumed payment takes the retry's key
            payment.idempotency_key = key
        charge = ChargeRequest(
            payment_id=str(payment.id),
            amount=payment.amount,
            currency=payment.currency,
            token=body.token,
            # The one it was first asked with, on every retry of it (rows older than the
            # stored key were asked with the payment id's).
            idempotency_key=payment.provider_key or provider_key("payment.create", str(payment.id)),
            description=f"order {body.order_id}",
            user_id=str(payment.user_id),
        )
        await (
            self._hold.hold_nothing()
        )  # (the fraud rules' reads and signals, a take-over's reload)
        try:
            result = await (
                provider.authorize(charge) if authorize_only else provider.charge(charge)
            )
        except Unavailable as exc:
            # No answer: the charge may or may not have happened. Keep the payment
            # ``processing`` (committed, with its key) and let it go: a retry with the
            # key resumes it at once, and the provider's webhook (matched by our payment
            # id) settles it.
            payment.in_flight_until = None
            raise OutcomeUnknown(exc.message, details=[{"payment_id": str(payment.id)}]) from exc
        await self._apply_result(payment, result)

    async def _apply_result(self, payment: Payment, result: ProviderResult) -> None:
        if result.status == "processing":
            # Taken but not settled (a PayPal capture PENDING, a Stripe intent processing):
            # neither paid nor failed. It stays ``processing`` with the reference the
            # provider's webhook will name when it settles it, committed, its key left
            # unanswered (a retry resumes it, as the sweeper does), and a 503 meanwhile.
            if await self._transition(
                payment,
                ("processing",),
                alone=True,
                provider_ref=result.provider_ref,
                in_flight_until=None,
            ):
                raise PaymentPending(details=[{"payment_id": str(payment.id)}])
            return  # settled meanwhile (the provider's webhook): answered as it is now
        if result.status == "failed":
            decline = result.decline_code or "declined"
            await self._transition(
                payment,
                ("processing",),
                then=events.PaymentFailed(**self._event_fields(payment), decline_code=decline),
                alone=True,
                in_flight_until=None,
                status="failed",
                provider_ref=result.provider_ref,
                decline_code=decline,
                failure_message=(result.message or "declined")[:500],
            )
            raise PaymentDeclined(
                result.message or "The payment was declined",
                details=[
                    {
                        "decline_code": payment.decline_code,
                        "payment_id": str(payment.id),
                        "provider": payment.provider,
                    }
                ],
            )
        values: dict[str, Any] = {
            "status": result.status,
            "provider_ref": result.provider_ref,
            "in_flight_until": None,
        }
        succeeded = None
        if result.status == "succeeded":
            values["succeeded_at"] = utcnow()
            succeeded = events.PaymentSucceeded(**self._event_fields(payment))
        await self._transition(
            payment, ("processing",), then=succeeded, answer=True, alone=True, **values
        )

    # -- capture / void ------------------------------------------------------------------

    async def capture(self, payment_id: uuid.UUID) -> s.PaymentRead:
        payment = await self.get(payment_id)
        moved = await self._transition(
            payment,
            ("requires_capture",),
            status="succeeded",
            succeeded_at=utcnow(),
            review_required=False,
        )
        if not moved:
            raise IllegalPaymentState(f"Cannot capture a payment that is {payment.status}")
        result = await self._provider(payment).capture(
            payment.provider_ref or "",
            payment.amount,
            payment.currency,
            # One capture a payment: a retry after a lost answer gets the first one back.
            provider_key("payment.capture", str(payment.id)),
        )
        if result.status not in ("succeeded", "processing"):
            # Raising rolls the status change back: the authorisation stays as it was.
            raise PaymentFailed(
                result.message or "The capture failed",
                details=[{"decline_code": result.decline_code}],
            )
        # What was captured is what refunds name (PayPal: the capture, not the authorisation).
        captured = result.provider_ref or payment.provider_ref
        if result.status == "processing":
            # Taken, not settled: the provider's webhook names this capture when it is.
            await self._transition(
                payment,
                ("succeeded",),
                status="processing",
                succeeded_at=None,
                provider_ref=captured,
            )
            raise PaymentPending(details=[{"payment_id": str(payment.id)}])
        if captured != payment.provider_ref:
            payment.provider_ref = captured
            await self.session.flush()
        await self._succeeded(payment)
        return s.PaymentRead.of(payment)

    async def void(self, payment_id: uuid.UUID) -> s.PaymentRead:
        payment = await self.get(payment_id)
        moved = await self._transition(payment, ("requires_capture",), status="canceled")
        if not moved:
            raise IllegalPaymentState(f"Cannot void a payment that is {payment.status}")
        provider = self._provider(payment)
        if isinstance(provider, WalletProvider):
            result = await provider.release(
                payment.provider_ref or "", payment.amount, payment.currency
            )
        else:
            result = await provider.void(
                payment.provider_ref or "", provider_key("payment.void", str(payment.id))
            )
        if result.status != "canceled":
            # Raising rolls the status change back: the authorisation stays as it was
            # (it may have been captured, or have expired, at the provider).
            raise VoidFailed(
                result.message or None, details=[{"decline_code": result.decline_code}]
            )
        return s.PaymentRead.of(payment)

    # -- refunds -------------------------------------------------------------------------

    async def refund(
        self,
        payment_id: uuid.UUID,
        body: s.RefundCreate,
        *,
        idempotency_key: str | None,
        owner: str,
    ) -> s.RefundResult:
        request = {"payment_id": str(payment_id), **body.model_dump(mode="json")}
        idem = Idempotency(self.session, "payment.refund", owner, idempotency_key, request)
        replay = await idem.begin()
        if replay is not None:
            return s.RefundResult.model_validate(replay[1])
        result = await self._refund(
            payment_id,
            body,
            # Scoped as our own record is (caller and key) and to the payment: another
            # caller's same key, or the same key on another payment, is another refund.
            provider_key("payment.refund", str(payment_id), owner, idempotency_key)
            if idempotency_key
            else None,
        )
        await idem.finish(201, result.model_dump(mode="json"))
        return result

    async def _refund(
        self, payment_id: uuid.UUID, body: s.RefundCreate, provider_idempotency_key: str | None
    ) -> s.RefundResult:
        payment = await self.get(payment_id)
        if payment.status not in REFUNDABLE:
            raise IllegalPaymentState(f"Cannot refund a payment that is {payment.status}")
        refundable = payment.amount - payment.refunded_amount
        amount = money_of(body.amount, payment.currency).amount if body.amount else refundable
        if amount > refundable or amount <= 0:
            raise RefundExceedsRefundable(
                details=[{"refundable": s.money_str(refundable, payment.currency)}]
            )
        if not await self._claim_refund(payment, amount):
            raise RefundExceedsRefundable()
        refund_id = uuid.uuid4()
        answer = await self._provider(payment).refund(
            payment.provider_ref or "",
            amount,
            payment.currency,
            provider_idempotency_key or provider_key("payment.refund", str(refund_id)),
        )
        if (known := await self._recorded_already(payment, answer, amount)) is not None:
            return known

        if answer.status != "succeeded":
            raise RefundFailed(answer.message or None)
        refund = await self._record_refund(
            payment,
            refund_id,
            amount,
            body.reason,
            answer.provider_ref,
            actor=self.actor,
            external=self.actor != ORDER_SERVICE,
        )
        return s.RefundResult(refund=refund_read(refund), payment=s.PaymentRead.of(payment))

    async def _recorded_already(
        self, payment: Payment, answer: ProviderResult, amount: int
    ) -> s.RefundResult | None:
        """The provider answered with a refund it had made before, and that we recorded:
        a retry of a refund whose first try's answer was lost after the provider refunded
        (our record rolled back), the provider's webhook having recorded the refund
        meanwhile. Decided under the payment's row lock (taken by the claim, which any
        recording of a refund takes too): the claim just made is released and the
        recorded refund is the answer, so the money is counted once."""
        if answer.status != "succeeded" or answer.provider_ref is None:
            return None
        refund = await self.session.scalar(
            select(PaymentRefund).where(
                PaymentRefund.payment_id == payment.id,
                PaymentRefund.provider_ref == answer.provider_ref,
            )
        )
        if refund is None:
            return None
        await self.session.execute(
            update(PAY)
            .where(PAY.c.id == payment.id)
            .values(
                refunded_amount=PAY.c.refunded_amount - amount,
                status=case(
                    (PAY.c.refunded_amount - amount == 0, "succeeded"), else_="partially_refunded"
                ),
                updated_at=utcnow(),
            )
        )
        await self.session.refresh(payment)
        log.warning(
            "refund answered with one recorded already: counted once",
            extra={"payment_id": str(payment.id), "refund_id": str(refund.id)},
        )
        return s.RefundResult(refund=refund_read(refund), payment=s.PaymentRead.of(payment))

    async def _claim_refund(self, payment: Payment, amount: int) -> bool:
        """THE rule, in one statement: never refund more than was paid, even when two
        refunds race (the second re-reads the row after the first commits)."""
        result = await self.session.execute(
            update(PAY)
            .where(
                PAY.c.id == payment.id,
                PAY.c.status.in_(REFUNDABLE),
                PAY.c.refunded_amount + amount <= PAY.c.amount,
            )
            .values(
                refunded_amount=PAY.c.refunded_amount + amount,
                status=case(
                    (PAY.c.refunded_amount + amount == PAY.c.amount, "refunded"),
                    else_="partially_refunded",
                ),
                updated_at=utcnow(),
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await self.session.refresh(payment)
        return True

    async def _record_refund(
        self,
        payment: Payment,
        refund_id: uuid.UUID,
        amount: int,
        reason: str,
        provider_ref: str | None,
        *,
        actor: str | None,
        external: bool = False,
    ) -> PaymentRefund:
        refund = PaymentRefund(
            id=refund_id,
            payment_id=payment.id,
            amount=amount,
            currency=payment.currency,
            reason=reason,
            status="succeeded",
            provider_ref=provider_ref,
            actor=actor,
            created_at=utcnow(),
        )
        self.session.add(refund)
        await self.session.flush()
        await self._publish(
            events.PaymentRefunded(
                **self._event_fields(payment),
                refund_id=refund.id,
                refund_amount=amount,
                refunded_amount=payment.refunded_amount,
                reason=reason,
                fully_refunded=payment.status == "refunded",
                external=external,
            )
        )
        return refund

    # -- webhooks ------------------------------------------------------------------------

    async def webhook(self, slug: str, payload: bytes, headers: Any) -> s.WebhookAck:
        provider = self.providers.get(slug)
        event = await provider.verify_webhook(payload, headers)
        try:
            async with self.session.begin_nested():
                self.session.add(
                    PaymentEvent(
                        id=uuid.uuid4(),
                        provider=slug,
                        event_id=event.id,
                        event_type=event.type,
                        payload=event.payload,
                        received_at=utcnow(),
                    )
                )
                await self.session.flush()
        except IntegrityError:
            return s.WebhookAck(replayed=True, event_id=event.id, event_type=event.type)
        if event.provider_ref and event.outcome != "ignored":
            payment = await self.session.scalar(
                select(Payment).where(
                    Payment.provider == slug, Payment.provider_ref == event.provider_ref
                )
            )
            if payment is None and event.payment_id and event.payment_id.startswith(DEPOSIT):
                wallet = WalletService(self.session, self.providers, self.settings)
                await wallet.deposit_event(slug, event)
            elif payment is None and event.payment_id:
                payment = await self._unanswered(slug, event.payment_id, event.provider_ref)
            if payment is not None and event.outcome == "refunded":
                await self._external_refund(payment, event)
            elif payment is not None:
                await self._apply_webhook(payment, event.outcome, event.decline_code)
        return s.WebhookAck(event_id=event.id, event_type=event.type)

    async def _unanswered(self, slug: str, payment_id: str, provider_ref: str) -> Payment | None:
        """The payment a provider event names by our id, when its charge call never
        answered (no provider reference yet): it learns its reference here."""
        try:
            ours = uuid.UUID(payment_id)
        except ValueError:
            return None
        payment = await self.session.get(Payment, ours)
        if payment is None or payment.provider != slug or payment.provider_ref is not None:
            return None
        payment.provider_ref = provider_ref
        await self.session.flush()
        return payment

    async def _external_refund(self, payment: Payment, event: WebhookEvent) -> None:
        """A refund made at the provider (its dashboard, a dispute): record it, once. Our
        own refunds are recorded before the provider's event arrives, so they match by
        reference or leave no difference against the provider's total."""
        # Decided under the payment's row lock, on what it holds now: a refund of ours
        # whose provider call is still returning (it holds the lock until it commits),
        # or another event of the same payment, has written its part first.
        await self.session.get(Payment, payment.id, with_for_update=True, populate_existing=True)
        if event.refund_ref and await self.session.scalar(
            select(PaymentRefund.id).where(
                PaymentRefund.payment_id == payment.id,
                PaymentRefund.provider_ref == event.refund_ref,
            )
        ):
            return
        if event.refunded_total is not None:
            amount = event.refunded_total - payment.refunded_amount
        else:
            amount = event.refund_amount or 0
        amount = min(amount, payment.amount - payment.refunded_amount)
        if amount <= 0:
            return
        if await self._claim_refund(payment, amount):
            await self._record_refund(
                payment, uuid.uuid4(), amount, "refunded at the provider", event.refund_ref,
                actor="webhook", external=True,
            )  # fmt: skip

    async def _apply_webhook(self, payment: Payment, outcome: str, decline: str | None) -> None:
        if outcome == "succeeded":
            moved = await self._transition(
                payment,
                ("processing", "requires_capture"),
                then=events.PaymentSucceeded(**self._event_fields(payment)),
                status="succeeded",
                succeeded_at=utcnow(),
            )
            # Failed before it ever succeeded (given up, or a decline the provider went back
            # on): its order has ended, so the money goes back.
            if not moved and payment.status == "failed" and payment.succeeded_at is None:
                await self._return_late_charge(payment)
        elif outcome == "failed":
            decline = decline or "declined"
            moved = await self._transition(
                payment,
                ("processing",),
                then=events.PaymentFailed(**self._event_fields(payment), decline_code=decline),
                status="failed",
                decline_code=decline,
            )
            if not moved and payment.status == "succeeded":
                await self._taken_back(payment, decline)
        elif outcome == "canceled":
            await self._transition(payment, ("requires_capture", "processing"), status="canceled")

    async def _taken_back(self, payment: Payment, decline: str) -> None:
        """The provider failed a payment that had succeeded (a PayPal capture denied or
        reversed): nothing was paid after all, so it fails - no refund can be made of it -
        and its ``payment.failed`` says it had succeeded. Its order may be confirmed or
        shipped already; the order service does not act on this event yet, so it is
        logged as an error for staff to follow up."""
        moved = await self._transition(
            payment,
            ("succeeded",),
            then=events.PaymentFailed(
                **self._event_fields(payment), decline_code=decline, after_success=True
            ),
            status="failed",
            decline_code=decline,
            failure_message="The provider took the payment back after it had succeeded",
        )
        if moved:
            log.error(
                "payment taken back by its provider after it had succeeded",
                extra={
                    "payment_id": str(payment.id),
                    "order_id": payment.order_id,
                    "decline_code": decline,
                },
            )

    async def _return_late_charge(self, payment: Payment) -> None:
        """The provider took the money for a payment that had failed (given up, or
        declined first) - its order has ended: refund it all at once and record it. A
        refund the provider refuses fails the webhook, which the provider delivers again."""
        answer = await self._provider(payment).refund(
            payment.provider_ref or "", payment.amount, payment.currency, f"{payment.id}:late"
        )
        if answer.status != "succeeded":
            raise RefundFailed(answer.message or None)
        if not await self._transition(
            payment, ("failed",), status="refunded", refunded_amount=payment.amount
        ):
            return  # a concurrent delivery of the same news refunded it
        await self._record_refund(
            payment,
            uuid.uuid4(),
            payment.amount,
            "charged after the payment had failed",
            answer.provider_ref,
            actor="webhook",
        )
        log.warning(
            "late charge of a failed payment: refunded",
            extra={"payment_id": str(payment.id), "amount": payment.amount},
        )

    # -- reads ---------------------------------------------------------------------------

    async def forfeit(self, order_id: str, key: str, owner: str) -> Payment | None:
        """For the order sweeper ending a checkout it finds without a charge: take the
        checkout's key so that no charge is ever made with it (its late charge is refused
        with ``CHARGE_FORFEITED``); None then. When a charge holds the key, its payment:
        one still in flight holds the key's claim uncommitted, and this waits for it (on
        the unique index, or SQLite's write lock) instead of reading "no payment yet"."""
        idem = Idempotency(self.session, "payment.create", owner, key, {"forfeit": order_id})
        try:
            claimed = await idem.begin() is None
        except (DomainError, KeyUnfinished):
            # A charge's claim (another body, or unfinished), or a forfeit answered before.
            claimed = False
        if claimed:
            await idem.fail(ChargeForfeited())
            return None
        return await self._claimed_with(order_id, key)

    async def _claimed_with(self, order_id: str, key: str | None) -> Payment | None:
        """The payment written with the claim of ``key`` for ``order_id`` by this caller:
        never another payment naming the order (another key, or another caller's)."""
        return cast(
            Payment | None,
            await self.session.scalar(
                select(Payment)
                .where(
                    Payment.order_id == order_id,
                    Payment.idempotency_key == key,
                    Payment.actor == self.actor,
                )
                .order_by(Payment.created_at.desc(), Payment.id)
                .limit(1)
            ),
        )

    async def list(
        self,
        *,
        user_id: uuid.UUID | None,
        status: str | None,
        order_id: str | None,
        offset: int,
        limit: int,
        sort: str | None,
    ) -> tuple[list[Payment], int]:
        query = select(Payment)
        if user_id is not None:
            query = query.where(Payment.user_id == user_id)
        if status:
            query = query.where(Payment.status == status)
        if order_id:
            query = query.where(Payment.order_id == order_id)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery()))
        sortable = {
            "created_at": Payment.created_at,
            "amount": Payment.amount,
            "status": Payment.status,
        }
        column = sortable.get((sort or "-created_at").lstrip("-"), Payment.created_at)
        order = column.desc() if (sort or "-created_at").startswith("-") else column.asc()
        rows = await self.session.scalars(
            query.order_by(order, Payment.id).offset(offset).limit(limit)
        )
        return list(rows), int(total or 0)

    async def analytics(self, days: int) -> s.PaymentAnalytics:
        until = utcnow()
        since = until - timedelta(days=days)
        day = func.date(PAY.c.created_at)
        paid = {"succeeded", "refunded", "partially_refunded"}
        # A payment that failed is a failure, whatever became of a charge its provider
        # made later (refunded at once: ``_return_late_charge``, which keeps the decline
        # code - a sale never has one): not a sale, nor its volume.
        outcome = case(
            (and_(PAY.c.status.in_(paid), PAY.c.decline_code.is_not(None)), "failed"),
            else_=PAY.c.status,
        ).label("outcome")
        rows = (
            await self.session.execute(
                select(
                    PAY.c.provider,
                    PAY.c.currency,
                    outcome,
                    day.label("day"),
                    func.count().label("n"),
                    func.coalesce(func.sum(PAY.c.amount), 0).label("amount"),
                    func.coalesce(func.sum(PAY.c.refunded_amount), 0).label("refunded"),
                )
                .where(PAY.c.created_at >= since)
                .group_by(PAY.c.provider, PAY.c.currency, outcome, day)
            )
        ).all()

        def blank() -> dict[str, int]:
            return {"count": 0, "succeeded": 0, "failed": 0, "volume": 0, "refunded": 0}

        totals: dict[str, dict[str, int]] = defaultdict(blank)
        providers: dict[tuple[str, str], dict[str, int]] = defaultdict(blank)
        days_: dict[tuple[str, str], dict[str, int]] = defaultdict(blank)
        for r in rows:
            day_key = str(r.day)[:10]
            for bucket in (
                totals[r.currency],
                providers[(r.provider, r.currency)],
                days_[(day_key, r.currency)],
            ):
                bucket["count"] += r.n
                if r.outcome in paid:
                    bucket["succeeded"] += r.n
                    bucket["volume"] += int(r.amount)
                    bucket["refunded"] += int(r.refunded)
                elif r.outcome == "failed":
                    bucket["failed"] += r.n

        def rate(b: dict[str, int]) -> float:
            tried = b["succeeded"] + b["failed"]
            return round(b["succeeded"] / tried, 4) if tried else 0.0

        count = sum(b["count"] for b in totals.values())
        succeeded = sum(b["succeeded"] for b in totals.values())
        failed = sum(b["failed"] for b in totals.values())
        return s.PaymentAnalytics(
            since=since,
            until=until,
            count=count,
            succeeded=succeeded,
            failed=failed,
            success_rate=round(succeeded / (succeeded + failed), 4) if succeeded + failed else 0.0,
            totals=[
                s.CurrencyTotals(
                    currency=c,
                    count=b["count"],
                    succeeded=b["succeeded"],
                    failed=b["failed"],
                    success_rate=rate(b),
                    volume=s.money_str(b["volume"], c),
                    refunded=s.money_str(b["refunded"], c),
                    net=s.money_str(b["volume"] - b["refunded"], c),
                )
                for c, b in sorted(totals.items())
            ],
            by_provider=[
                s.ProviderStats(
                    provider=p,
                    currency=c,
                    count=b["count"],
                    succeeded=b["succeeded"],
                    failed=b["failed"],
                    success_rate=rate(b),
                    volume=s.money_str(b["volume"], c),
                    refunded=s.money_str(b["refunded"], c),
                )
                for (p, c), b in sorted(providers.items())
            ],
            by_day=[
                s.DayStats(
                    day=datetime.fromisoformat(d).date(),
                    currency=c,
                    count=b["count"],
                    succeeded=b["succeeded"],
                    failed=b["failed"],
                    volume=s.money_str(b["volume"], c),
                    refunded=s.money_str(b["refunded"], c),
                )
                for (d, c), b in sorted(days_.items())
            ],
        )


def refund_read(refund: PaymentRefund) -> s.RefundRead:
    return s.RefundRead(
        id=refund.id,
        payment_id=refund.payment_id,
        amount=s.money_str(refund.amount, refund.currency),
        currency=refund.currency,
        reason=refund.reason,
        status=refund.status,
        provider_reference=refund.provider_ref,
        created_at=refund.created_at,
    )


class WalletService:
    """Deposits (charged through the card provider), withdrawals, balance, history."""

    def __init__(
        self, session: AsyncSession, providers: Providers, settings: PaymentSettings
    ) -> None:
        self.session = session
        self.ledger = Ledger(session)
        self.providers = providers
        self.settings = settings
        # The attempt this request holds while its card is charged (``in_flight_until``).
        self._hold = Hold(session, ATTEMPT, settings)

    async def balance(self, user_id: uuid.UUID, currency: str | None) -> s.WalletRead:
        currency = currency or self.settings.default_currency
        amount = await self.ledger.balance(str(user_id), currency)
        return s.WalletRead(balance=s.money_str(amount, currency), currency=currency)

    async def transactions(
        self, user_id: uuid.UUID, currency: str | None, offset: int, limit: int
    ) -> tuple[list[s.WalletTransaction], int]:
        entry, account = LedgerEntry.__table__, WalletAccount.__table__
        where = [account.c.owner == str(user_id)]
        if currency:
            where.append(account.c.currency == currency)
        base = select(entry).join(account, account.c.id == entry.c.account_id).where(*where)
        total = await self.session.scalar(select(func.count()).select_from(base.subquery()))
        rows = (
            await self.session.execute(
                base.order_by(entry.c.created_at.desc(), entry.c.id).offset(offset).limit(limit)
            )
        ).all()
        items = [
            s.WalletTransaction(
                id=r.id,
                transaction_id=r.transaction_id,
                kind=r.kind,
                amount=s.money_str(r.amount, r.currency),
                currency=r.currency,
                balance_after=(
                    None if r.balance_after is None else s.money_str(r.balance_after, r.currency)
                ),
                reference=r.reference,
                created_at=r.created_at,
            )
            for r in rows
        ]
        return items, int(total or 0)

    async def _screen_deposit(
        self, attempt: DepositAttempt, money: Money, idem: Idempotency
    ) -> None:
        """Card money entering the wallet passes the same fraud rules as a card payment.
        A deposit cannot wait for a review, so at the review score it is refused too
        (the signals are kept with the attempt, and the refusal replays for the same
        key)."""
        assessment = await fraud.assess(
            self.session,
            self.settings,
            user_id=attempt.user_id,
            money=money,
            fingerprint=attempt.fingerprint,
            ip=attempt.ip,
            exclude=attempt.id,
        )
        await fraud.record(self.session, assessment, attempt.user_id, attempt.id)
        if assessment.score >= min(
            self.settings.fraud_review_score, self.settings.fraud_block_score
        ):
            attempt.status, attempt.in_flight_until = "blocked", None
            self.session.add(attempt)
            error = PaymentBlocked(
                details=[
                    {
                        "risk_score": assessment.score,
                        "rules": [r for r, _, _ in assessment.signals],
                    }
                ]
            )
            await idem.fail(error)
            raise error

    async def deposit(
        self,
        user_id: uuid.UUID,
        body: s.WalletDeposit,
        *,
        idempotency_key: str | None,
        ip: str | None = None,
    ) -> tuple[s.WalletMoveResult, bool]:
        provider = self.providers.card()
        # Before the key is claimed: the provider may be asked for it (Stripe), and the
        # claim's unit of work holds the write lock on SQLite.
        fingerprint = await card_fingerprint(provider, body.token)
        idem = Idempotency(
            self.session,
            "wallet.deposit",
            str(user_id),
            idempotency_key,
            body.model_dump(mode="json"),
        )
        try:
            replay = await idem.begin()
        except KeyUnfinished:  # its first request is charging the card, or went unanswered
            pending = await self._pending_deposit(user_id, idempotency_key)
            if pending is not None:
                return await self._resume_deposit(idem, pending), False
            replay = None  # (nothing was kept: start afresh)
        if replay is not None:
            return s.WalletMoveResult.model_validate(replay[1]), False
        money = money_of(body.amount, body.currency)
        deposit_id = uuid.uuid4()
        now = utcnow()
        # The card attempt, as the fraud rules count it, and what asking again takes.
        attempt = DepositAttempt(
            id=deposit_id,
            user_id=user_id,
            amount=money.amount,
            currency=money.currency,
            status="processing",
            fingerprint=fingerprint,
            ip=ip,
            created_at=now,
            provider=provider.slug,
            provider_token=body.token,
            provider_key=provider_key(
                "wallet.deposit", str(user_id), idempotency_key or str(deposit_id)
            ),
            idempotency_key=idempotency_key,
            in_flight_until=self._hold.until(now),
        )
        await self._screen_deposit(attempt, money, idem)
        self.session.add(attempt)
        # The attempt (held by this request), the claim of its key and the fraud signals
        # are committed before the card is charged: a charge the provider makes is never
        # one we hold no record of (a crash after its answer leaves the attempt
        # ``processing`` for a retry or the sweeper to settle, with the same provider
        # key), and nothing is locked while the provider answers.
        await self.session.commit()
        self._hold.holding = attempt.id
        return await self._charge_deposit(attempt), True

    async def _pending_deposit(self, user_id: uuid.UUID, key: str | None) -> DepositAttempt | None:
        """The deposit of ``key`` (its request has not answered), as committed now."""
        attempt: DepositAttempt | None = await self.session.scalar(
            select(DepositAttempt)
            .where(DepositAttempt.user_id == user_id, DepositAttempt.idempotency_key == key)
            .order_by(DepositAttempt.created_at.desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )
        return attempt

    async def _resume_deposit(
        self, idem: Idempotency, attempt: DepositAttempt
    ) -> s.WalletMoveResult:
        """A retry of a key whose request has not answered: while that request is still
        charging the card, wait for its answer; once it is over (its charge went
        unanswered, or it died), ask the provider again with the SAME provider key (it
        answers with the first call's charge, or makes it now if the first never
        arrived)."""
        if attempt.status == "processing":
            pending = {"deposit_id": str(attempt.id)}  # (read now: a rollback expires it)
            body = await self._hold.answer_of_first(
                idem, attempt, lambda: DepositPending(details=[pending])
            )
            if body is not None:
                return s.WalletMoveResult.model_validate(body)
        if attempt.status == "processing":  # this request holds it now
            return await self._charge_deposit(attempt)
        # Settled meanwhile (the sweeper, a webhook): its key was answered with it.
        return s.WalletMoveResult.model_validate((await idem.reread())[1])

    async def _locked(self, attempt_id: uuid.UUID) -> DepositAttempt | None:
        return await self.session.get(
            DepositAttempt, attempt_id, with_for_update=True, populate_existing=True
        )

    async def _charge_deposit(self, attempt: DepositAttempt) -> s.WalletMoveResult:
        """Ask the card provider for a deposit's charge - again, for one left
        ``processing``: the same provider, key and token, so it is one charge - and settle
        the deposit on the answer. No answer, or one the provider has not settled: it
        stays ``processing``, committed with its key unanswered (503): the retry, the
        sweeper or the provider's webhook settles it."""
        if attempt.status != "processing":
            raise IllegalPaymentState(f"The deposit is {attempt.status}")
        deposit = {"deposit_id": str(attempt.id)}
        if attempt.provider_ref is not None:  # answered, not settled: the webhook decides
            await self._move_deposit(attempt, in_flight_until=None)  # (nobody is asking)
            raise DepositPending(details=[deposit])
        await self._hold.hold_nothing()  # (a take-over's reload)
        try:
            answer = await self.providers.get(attempt.provider or "").charge(
                ChargeRequest(
                    payment_id=f"{DEPOSIT}{attempt.id}",
                    amount=attempt.amount,
                    currency=attempt.currency,
                    token=attempt.provider_token,
                    idempotency_key=attempt.provider_key or "",
                    description="wallet deposit",
                    user_id=str(attempt.user_id),
                )
            )
        except Unavailable as exc:
            # No answer: kept ``processing`` (committed with the 503) and let go, so that
            # a retry with the key asks again at once.
            await self._move_deposit(attempt, in_flight_until=None)
            raise DepositPending(exc.message, details=[deposit]) from exc
        except Exception:
            await self._hold.let_go()
            raise
        try:
            return await self._settle_deposit(attempt, answer)
        except DomainError:  # settled, declined or pending: as meant
            raise
        except Exception:
            await self._hold.let_go()
            raise

    async def _settle_deposit(
        self, attempt: DepositAttempt, answer: ProviderResult
    ) -> s.WalletMoveResult:
        """Settle a ``processing`` deposit on its provider's answer, once (a conditional
        UPDATE): credited and answered 201 on success; failed and answered with the 402
        (PaymentDeclined raised) on a decline; a charge not settled yet keeps its
        reference and stays (DepositPending raised)."""
        if answer.status == "processing":
            await self._move_deposit(
                attempt, provider_ref=answer.provider_ref, in_flight_until=None
            )
            raise DepositPending(details=[{"deposit_id": str(attempt.id)}])
        if answer.status != "succeeded":
            error = PaymentDeclined(
                answer.message or "The card was declined",
                details=[{"decline_code": answer.decline_code or "declined"}],
            )
            if await self._move_deposit(
                attempt, status="failed", provider_ref=answer.provider_ref, in_flight_until=None
            ):
                await self._answer_deposit(attempt, error.status_code, error_body(error))
            raise error
        if not await self._move_deposit(
            attempt, status="succeeded", provider_ref=answer.provider_ref, in_flight_until=None
        ):
            return await self._as_settled(attempt, answer)
        move = await self.ledger.transfer(
            EXTERNAL_CARD,
            str(attempt.user_id),
            attempt.amount,
            attempt.currency,
            kind="deposit",
            reference=answer.provider_ref,
        )
        result = s.WalletMoveResult(
            transaction_id=move.transaction_id,
            kind="deposit",
            amount=s.money_str(attempt.amount, attempt.currency),
            currency=attempt.currency,
            balance=s.money_str(move.balance_after or 0, attempt.currency),
            provider_reference=answer.provider_ref,
        )
        await self._answer_deposit(attempt, 201, result.model_dump(mode="json"))
        return result

    async def _as_settled(
        self, attempt: DepositAttempt, answer: ProviderResult
    ) -> s.WalletMoveResult:
        """The answer for a deposit something else settled while this request charged its
        card (the provider's webhook; a retry or the sweeper after the hold ran out): its
        credit as it was made. One dropped meanwhile (failed) that this request's charge
        went through for gets that charge back."""
        if attempt.status != "succeeded":
            if attempt.status == "failed" and answer.provider_ref:
                await self._hold.hold_nothing()
                await self._return_late_deposit(attempt, answer.provider_ref)
            raise PaymentDeclined(
                "The deposit was dropped before its card charge was confirmed; any charge "
                "is refunded",
                details=[{"deposit_id": str(attempt.id)}],
            )
        if attempt.provider_ref is None:  # credited on news naming no charge
            raise IllegalPaymentState("The deposit was credited already")
        entry = LedgerEntry.__table__
        credit = (
            await self.session.execute(
                select(entry.c.transaction_id, entry.c.balance_after)
                .join(WalletAccount, WalletAccount.id == entry.c.account_id)
                .where(
                    entry.c.kind == "deposit",
                    entry.c.reference == attempt.provider_ref,
                    WalletAccount.owner == str(attempt.user_id),
                )
            )
        ).one()
        return s.WalletMoveResult(
            transaction_id=credit.transaction_id,
            kind="deposit",
            amount=s.money_str(attempt.amount, attempt.currency),
            currency=attempt.currency,
            balance=s.money_str(credit.balance_after or 0, attempt.currency),
            provider_reference=attempt.provider_ref,
        )

    async def _move_deposit(self, attempt: DepositAttempt, **values: Any) -> bool:
        """Move a deposit on from ``processing`` (one conditional UPDATE); False when
        something else settled it first."""
        moved = await self.session.scalar(
            update(ATTEMPT)
            .where(ATTEMPT.c.id == attempt.id, ATTEMPT.c.status == "processing")
            .values(**values)
            .returning(ATTEMPT.c.id)
        )
        if moved is None:
            await self.session.refresh(attempt)
            return False
        for name, value in values.items():
            set_committed_value(attempt, name, value)
        return True

    async def _answer_deposit(
        self, attempt: DepositAttempt, status: int, body: dict[str, Any]
    ) -> None:
        """The answer of the deposit's key, by whoever settled it (this request, its
        retry, the sweeper, a webhook): the key's next retry replays it."""
        if attempt.idempotency_key is not None:
            await answer_unfinished(
                self.session,
                "wallet.deposit",
                str(attempt.user_id),
                attempt.idempotency_key,
                status,
                body,
            )

    async def resume_deposit(self, attempt_id: uuid.UUID, now: datetime | None = None) -> bool:
        """The sweeper: ask the provider again about a deposit left ``processing``, unless
        a request is charging its card (holds it). False when it is not (any more) or is
        held; DepositPending when it is still unanswered."""
        attempt = await self.session.get(DepositAttempt, attempt_id, populate_existing=True)
        if attempt is None or attempt.status != "processing":
            return False
        if not await self._hold.take(attempt, now):
            return False
        with contextlib.suppress(PaymentDeclined):  # settled: failed, its key answered
            await self._charge_deposit(attempt)
        return True

    async def give_up_deposit(self, attempt_id: uuid.UUID, now: datetime | None = None) -> bool:
        """The sweeper, past ``processing_give_up_hours``: a deposit its provider never
        settled is dropped (failed; a charge reported later is refunded)."""
        attempt = await self._locked(attempt_id)
        if attempt is None or self._hold.on(attempt, now):
            return False
        if not await self._move_deposit(attempt, status="failed", in_flight_until=None):
            return False
        hours = self.settings.processing_give_up_hours
        error = PaymentDeclined(
            f"The card provider did not answer for {hours:g} hours",
            details=[{"decline_code": PROVIDER_UNREACHABLE}],
        )
        await self._answer_deposit(attempt, error.status_code, error_body(error))
        return True

    async def deposit_event(self, slug: str, event: WebhookEvent) -> None:
        """A provider's news of a deposit's charge (its event names ``deposit:<id>``):
        settles one still ``processing``; a charge of one that had failed is refunded."""
        try:
            attempt_id = uuid.UUID((event.payment_id or "").removeprefix(DEPOSIT))
        except ValueError:
            return
        attempt = await self._locked(attempt_id)
        if attempt is None or attempt.provider != slug:
            return
        if attempt.status == "processing" and event.outcome in ("succeeded", "failed"):
            answer = ProviderResult(event.outcome, event.provider_ref, event.decline_code)
            with contextlib.suppress(PaymentDeclined):
                await self._settle_deposit(attempt, answer)
        elif attempt.status == "failed" and event.outcome == "succeeded":
            await self._return_late_deposit(attempt, event.provider_ref or "")

    async def _return_late_deposit(self, attempt: DepositAttempt, charge_ref: str) -> None:
        """The card was charged for a deposit that had failed (dropped, nothing credited):
        the money goes back. A refund the provider refuses fails the webhook, which the
        provider delivers again."""
        answer = await self.providers.get(attempt.provider or "").refund(
            charge_ref,
            attempt.amount,
            attempt.currency,
            provider_key("wallet.deposit.late", str(attempt.id)),
        )
        if answer.status != "succeeded":
            raise RefundFailed(answer.message or None)
        moved = await self.session.scalar(
            update(ATTEMPT)
            .where(ATTEMPT.c.id == attempt.id, ATTEMPT.c.status == "failed")
            .values(status="refunded", provider_ref=charge_ref)
            .returning(ATTEMPT.c.id)
        )
        if moved is not None:
            log.warning(
                "late charge of a failed wallet deposit: refunded",
                extra={"deposit_id": str(attempt.id), "amount": attempt.amount},
            )

    async def withdraw(
        self, user_id: uuid.UUID, body: s.WalletWithdraw, *, idempotency_key: str | None
    ) -> tuple[s.WalletMoveResult, bool]:
        idem = Idempotency(
            self.session,
            "wallet.withdraw",
            str(user_id),
            idempotency_key,
            body.model_dump(mode="json"),
        )
        replay = await idem.begin()
        if replay is not None:
            return s.WalletMoveResult.model_validate(replay[1]), False
        money = money_of(body.amount, body.currency)
        move = await self.ledger.transfer(
            str(user_id), EXTERNAL_BANK, money.amount, money.currency, kind="withdrawal"
        )
        result = s.WalletMoveResult(
            transaction_id=move.transaction_id,
            kind="withdrawal",
            amount=str(money),
            currency=money.currency,
            balance=s.money_str(move.balance_after or 0, money.currency),
        )
        await idem.finish(201, result.model_dump(mode="json"))
        return result, True


async def _sweep(
    database: Any,
    model: type[Payment] | type[DepositAttempt],
    settings: PaymentSettings,
    what: str,
    resume: Callable[[AsyncSession, uuid.UUID], Awaitable[bool]],
    give_up: Callable[[AsyncSession, uuid.UUID], Awaitable[bool]],
    *,
    older_than: timedelta,
    now: datetime | None,
    limit: int,
) -> int:
    """The rows of ``model`` still ``processing`` a while after their provider call
    went unanswered: each asked again (``resume``) in its own unit of work; one still
    unanswered past ``processing_give_up_hours`` is given up. How many were settled."""
    now = now or utcnow()
    give_up_before = now - timedelta(hours=settings.processing_give_up_hours)
    async with database.read_session() as session:
        due = list(
            (
                await session.execute(
                    select(model.id, model.created_at)
                    .where(model.status == "processing", model.created_at < now - older_than)
                    .order_by(model.created_at)
                    .limit(limit)
                )
            ).all()
        )
    settled = 0
    for row_id, created_at in due:
        try:
            async with database.session() as session:
                settled += await resume(session, row_id)
        except DomainError as exc:
            if created_at >= give_up_before:
                log.warning(
                    f"{what} still unanswered", extra={f"{what}_id": str(row_id), "error": exc.code}
                )
                continue
            async with database.session() as session:
                if await give_up(session, row_id):
                    settled += 1
                    log.error(
                        f"{what} given up: its provider never answered",
                        extra={f"{what}_id": str(row_id), "error": exc.code},
                    )
    return settled


async def resume_deposits(
    database: Any,
    providers: Providers,
    settings: PaymentSettings,
    *,
    older_than: timedelta = timedelta(minutes=1),
    now: datetime | None = None,
    limit: int = 50,
) -> int:
    """Wallet deposits still ``processing`` a while after their card charge went
    unanswered: asked again (same provider key) - credited on success, dropped on a
    decline; one still unsettled past ``processing_give_up_hours`` is dropped."""

    async def resume(session: AsyncSession, attempt_id: uuid.UUID) -> bool:
        return await WalletService(session, providers, settings).resume_deposit(attempt_id, now)

    async def give_up(session: AsyncSession, attempt_id: uuid.UUID) -> bool:
        wallet = WalletService(session, providers, settings)
        return await wallet.give_up_deposit(attempt_id, now)

    return await _sweep(
        database, DepositAttempt, settings, "deposit", resume, give_up,
        older_than=older_than, now=now, limit=limit,
    )  # fmt: skip


async def resume_processing(
    database: Any,
    publisher: EventPublisher | None,
    providers: Providers,
    settings: PaymentSettings,
    *,
    older_than: timedelta = timedelta(minutes=1),
    now: datetime | None = None,
    limit: int = 50,
) -> int:
    """Payments still ``processing`` a while after their provider call went unanswered:
    asked again, each in its own unit of work; one still unanswered past
    ``processing_give_up_hours`` is given up (failed). Returns how many were settled."""

    def service(session: AsyncSession) -> PaymentService:
        return PaymentService(
            session, publisher, providers, settings, actor="sweeper", database=database
        )

    async def resume(session: AsyncSession, payment_id: uuid.UUID) -> bool:
        payments = service(session)
        payment = await payments.get(payment_id)
        # One a request is still asking its provider about is that request's to settle.
        if payment.status != "processing" or not await payments.take_over(payment, now):
            return False
        await payments.resume(payment)
        return True

    async def give_up(session: AsyncSession, payment_id: uuid.UUID) -> bool:
        payments = service(session)
        payment = await payments.get(payment_id)
        return not payments.in_flight(payment, now) and await payments.give_up(payment)

    return await _sweep(
        database, Payment, settings, "payment", resume, give_up,
        older_than=older_than, now=now, limit=limit,
    )  # fmt: skip
