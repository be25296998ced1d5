"""The built-in ``test`` provider: no outside account, deterministic answers.

Card tokens ending ``0002`` are declined (``card_declined``), ``9995`` lack funds
(``insufficient_funds``); every other token succeeds. Provider ids derive from the
idempotency key, so a retried call returns the same id.
"""

from __future__ import annotations

import hashlib

from ultramarket.services.payment.providers.base import (
    ChargeRequest,
    PaymentProvider,
    ProviderResult,
)

DECLINES = {
    "0002": ("card_declined", "Your card was declined."),
    "9995": ("insufficient_funds", "Your card has insufficient funds."),
}


def _ref(prefix: str, seed: str) -> str:
    return f"{prefix}_test_{hashlib.sha256(seed.encode()).hexdigest()[:24]}"


class TestProvider(PaymentProvider):
    __test__ = False  # not a pytest class
    slug = "test"
    title = "Test gateway"
    description = "Deterministic card gateway for development and tests."

    def _decline(self, request: ChargeRequest) -> ProviderResult | None:
        token = request.token or ""
        for suffix, (code, message) in DECLINES.items():
            if token.endswith(suffix):
                return ProviderResult("failed", _ref("ch", request.idempotency_key), code, message)
        return None

    async def authorize(self, request: ChargeRequest) -> ProviderResult:
        return self._decline(request) or ProviderResult(
            "requires_capture", _ref("auth", request.idempotency_key)
        )

    async def capture(
        self, provider_ref: str, amount: int, currency: str, idempotency_key: str
    ) -> ProviderResult:
        return ProviderResult("succeeded", provider_ref)

    async def void(self, provider_ref: str, idempotency_key: str) -> ProviderResult:
        return ProviderResult("canceled", provider_ref)

    async def charge(self, request: ChargeRequest) -> ProviderResult:
        return self._decline(request) or ProviderResult(
            "succeeded", _ref("ch", request.idempotency_key)
        )

    async def refund(
        self, provider_ref: str, amount: int, currency: str, idempotency_key: str
    ) -> ProviderResult:
        return ProviderResult("succeeded", _ref("re", idempotency_key))
