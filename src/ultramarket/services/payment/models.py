"""Tables owned by the payment service.

Amounts are integer minor units beside a ``currency``. A payment's status changes
only by conditional UPDATEs (``WHERE status = :expected``); refunds grow
``refunded_amount`` with ``WHERE refunded_amount + :x <= amount``. The wallet is a
double-entry ledger: every move is two ``ledger_entry`` rows summing to zero, and a
user account's cached ``balance`` equals the sum of its entries.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from ultramarket.core.db import IdMixin, TimestampMixin, service_base, utcnow
from ultramarket.core.events import event_tables

Base = service_base("payment")
EVENTS = event_tables(Base.metadata, "payment")

STATUSES = (
    "requires_payment",
    "processing",
    "requires_capture",
    "succeeded",
    "failed",
    "canceled",
    "refunded",
    "partially_refunded",
)


class Payment(TimestampMixin, IdMixin, Base):
    __tablename__ = "payment"
    __table_args__ = (
        Index(None, "user_id", "created_at"),
        Index(None, "order_id"),
        Index(None, "provider", "provider_ref"),
        Index(None, "fingerprint"),
        Index(None, "ip", "created_at"),
        Index(None, "created_at"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("refunded_amount >= 0", name="refunded_not_negative"),
        CheckConstraint("refunded_amount <= amount", name="refunded_within_amount"),
    )

    user_id: Mapped[uuid.UUID]
    order_id: Mapped[str] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(16))  # card | wallet | paypal
    provider: Mapped[str] = mapped_column(String(16))  # test | stripe | paypal | wallet
    status: Mapped[str] = mapped_column(String(24), default="requires_payment")
    # Money in minor units, 64-bit as the product's price and the order's amounts are.
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    decline_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(String(500))
    risk_score: Mapped[int] = mapped_column(default=0)
    review_required: Mapped[bool] = mapped_column(default=False)
    # sha256 of the provider's fingerprint of the card, else of the card token
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    # What a resumed provider call must send again (the provider's own token, e.g. a
    # Stripe payment-method id or an approved PayPal order id: never card data).
    provider_token: Mapped[str | None] = mapped_column(String(200))
    capture: Mapped[bool] = mapped_column(default=True, server_default=true())
    # The request's Idempotency-Key.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # The idempotency key sent to the provider, kept so that every later ask (a retry, the
    # sweeper) sends the same one. Derived from the client's key when there is one (not
    # from this row's id), so a retry after a crash that rolled this row back asks the
    # provider with the key of the charge it may have made. NULL on older rows: theirs
    # derives from the payment id (``PaymentService._call_provider``).
    provider_key: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(100))  # the user, or the calling service
    succeeded_at: Mapped[datetime | None]
    # Until when the request asking the provider about this payment holds it (it is
    # committed ``processing`` before the provider is asked): a retry with its key waits
    # for that request's answer, the sweeper leaves it alone. NULL: nobody is asking.
    in_flight_until: Mapped[datetime | None]


class PaymentRefund(IdMixin, Base):
    __tablename__ = "payment_refund"
    __table_args__ = (
        Index(None, "payment_id"),
        Index(None, "created_at"),
        # One record of each refund the provider made (NULL references are all distinct).
        Index(None, "payment_id", "provider_ref", unique=True),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payment.payment.id"))
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units, 64-bit
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="succeeded")
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaymentEvent(IdMixin, Base):
    """Webhook deliveries received, keyed by the provider's event id (replay log)."""

    __tablename__ = "payment_event"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(120))
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class DepositAttempt(IdMixin, Base):
    """A card charge into a wallet, with its outcome. Deposits make no ``payment`` row;
    the fraud rules count these beside payments, so the wallet is no way around them.

    It is committed ``processing``, with what asking again takes (the provider, its
    token and key), before the card is charged. One whose charge went unanswered (or is
    not settled at the provider, or whose request died) stays so; the retry with its
    Idempotency-Key, the sweeper or the provider's webhook (which names it
    ``deposit:<id>``) settles it: credited on success, dropped on failure."""

    __tablename__ = "deposit_attempt"
    __table_args__ = (
        Index(None, "user_id", "created_at"),
        Index(None, "fingerprint"),
        Index(None, "ip", "created_at"),
        Index(None, "status", "created_at"),
    )

    user_id: Mapped[uuid.UUID]
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units, 64-bit
    currency: Mapped[str] = mapped_column(String(3))
    # processing | succeeded | failed | blocked | refunded (charged after it had failed)
    status: Mapped[str] = mapped_column(String(16))
    # sha256 of the provider's fingerprint of the card, else of the card token
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    provider: Mapped[str | None] = mapped_column(String(16))  # the card provider charged
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    provider_token: Mapped[str | None] = mapped_column(String(200))  # never card data
    provider_key: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))  # the client's
    # Until when the request charging the card holds the attempt (committed
    # ``processing`` before the card is charged), as for a payment. NULL: nobody is asking.
    in_flight_until: Mapped[datetime | None]


class IdempotencyRecord(IdMixin, Base):
    """The first response to an ``Idempotency-Key`` (per scope and caller)."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("scope", "owner", "key"), Index(None, "created_at"))

    scope: Mapped[str] = mapped_column(String(64))  # payment.create, wallet.deposit, ...
    owner: Mapped[str] = mapped_column(String(100))  # user id or service name
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    response: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WalletAccount(TimestampMixin, IdMixin, Base):
    """A ledger account: a user's wallet (``owner`` = user id) or a platform account
    (``owner`` = ``external:card``, ``external:bank``, ``platform:sales``)."""

    __tablename__ = "wallet_account"
    __table_args__ = (
        UniqueConstraint("owner", "currency"),
        CheckConstraint("kind != 'user' OR balance >= 0", name="user_balance_not_negative"),
    )

    owner: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))  # user | platform
    user_id: Mapped[uuid.UUID | None]
    currency: Mapped[str] = mapped_column(String(3))
    # Cached; kept for user accounts only (platform balances are derived from entries,
    # so every wallet move does not queue on one hot platform row).
    balance: Mapped[int] = mapped_column(BigInteger, default=0)  # minor units, 64-bit


class LedgerEntry(IdMixin, Base):
    __tablename__ = "ledger_entry"
    __table_args__ = (
        Index(None, "account_id", "created_at"),
        Index(None, "transaction_id"),
        Index(None, "reference"),
    )

    transaction_id: Mapped[uuid.UUID]  # the two entries of one move share it
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payment.wallet_account.id"))
    amount: Mapped[int] = mapped_column(BigInteger)  # signed minor units, 64-bit; + credits
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(16))  # deposit | withdrawal | payment | refund
    reference: Mapped[str | None] = mapped_column(String(200))  # payment id, provider ref
    balance_after: Mapped[int | None] = mapped_column(BigInteger)  # user side only
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FraudSignal(IdMixin, Base):
    __tablename__ = "fraud_signal"
    __table_args__ = (Index(None, "user_id", "created_at"), Index(None, "payment_id"))

    payment_id: Mapped[uuid.UUID | None]
    user_id: Mapped[uuid.UUID]
    rule: Mapped[str] = mapped_column(String(32))
    score: Mapped[int]
    detail: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
