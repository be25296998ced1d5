"""The provider interface (the shape of Netflix/dispatch ``plugins/bases``).

A provider moves money at an outside party (or the wallet ledger). It never touches
the payment tables: the service records what the provider answered.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ultramarket.core.errors import BadRequest


@dataclass(frozen=True)
class ChargeRequest:
    payment_id: str
    amount: int  # minor units
    currency: str
    token: str | None
    idempotency_key: str  # passed on, so a retried call never charges twice
    description: str = ""
    user_id: str | None = None


@dataclass(frozen=True)
class ProviderResult:
    # ``processing``: taken but not settled yet (a PayPal capture PENDING, a Stripe intent
    # ``processing``): neither paid nor failed until the provider's webhook says which.
    status: Literal["succeeded", "processing", "requires_capture", "failed", "canceled"]
    provider_ref: str | None = None
    decline_code: str | None = None
    message: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook delivery, reduced to what the service acts on."""

    id: str
    type: str
    payload: dict[str, Any]
    # The provider reference of the payment it is about, and what it means for it.
    provider_ref: str | None = None
    outcome: Literal["succeeded", "failed", "canceled", "refunded", "ignored"] = "ignored"
    decline_code: str | None = None
    # outcome "refunded" (a refund made at the provider, e.g. from its dashboard): the
    # refund's own reference and amount, and the payment's refunded total when known
    # (all amounts in minor units).
    # Our payment id, when the provider echoes it (Stripe metadata): finds a payment whose
    # provider call never answered, so it has no provider reference yet.
    payment_id: str | None = None
    refund_ref: str | None = None
    refund_amount: int | None = None
    refunded_total: int | None = None


class InvalidWebhook(BadRequest):
    code = "INVALID_SIGNATURE"
    message = "Webhook signature verification failed"


class PaymentProvider(abc.ABC):
    """One payment gateway. ``authorize`` + ``capture``/``void`` is the two-step
    flow; ``charge`` is both at once. Declines come back as a ``failed`` result, not
    as an exception; an exception means the provider could not be reached."""

    slug: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]

    @abc.abstractmethod
    async def authorize(self, request: ChargeRequest) -> ProviderResult: ...

    @abc.abstractmethod
    async def capture(
        self, provider_ref: str, amount: int, currency: str, idempotency_key: str
    ) -> ProviderResult:
        """Capture an authorisation. The result's ``provider_ref`` is what was captured
        (PayPal: a capture id, not the authorisation's), for refunds to name."""

    @abc.abstractmethod
    async def void(self, provider_ref: str, idempotency_key: str) -> ProviderResult: ...

    @abc.abstractmethod
    async def charge(self, request: ChargeRequest) -> ProviderResult: ...

    @abc.abstractmethod
    async def refund(
        self, provider_ref: str, amount: int, currency: str, idempotency_key: str
    ) -> ProviderResult: ...

    async def card_fingerprint(self, token: str) -> str | None:
        """The provider's own fingerprint of the card behind ``token`` - the same for
        every token made from that card - when it keeps one (None otherwise)."""
        return None

    async def verify_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        raise InvalidWebhook(f"{self.slug} sends no webhooks")

    async def close(self) -> None:
        return None
