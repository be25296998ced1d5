"""The ``wallet`` provider: pays from the user's wallet through the ledger.

Charge moves money from the user to ``platform:sales``; authorise parks it in
``platform:held`` (capture moves it on to sales, void gives it back); refunds move
it from sales back to the user. It works inside the caller's unit of work.
"""

from __future__ import annotations

from ultramarket.services.payment.ledger import HELD, SALES, InsufficientFunds, Ledger
from ultramarket.services.payment.providers.base import (
    ChargeRequest,
    PaymentProvider,
    ProviderResult,
)


class WalletProvider(PaymentProvider):
    slug = "wallet"
    title = "Wallet"
    description = "The customer's UltraMarket wallet balance."

    def __init__(self, ledger: Ledger, user_id: str) -> None:
        self.ledger = ledger
        self.user_id = user_id

    async def _take(self, request: ChargeRequest, target: str, status: str) -> ProviderResult:
        try:
            move = await self.ledger.transfer(
                self.user_id,
                target,
                request.amount,
                request.currency,
                kind="payment",
                reference=request.payment_id,
            )
        except InsufficientFunds:
            return ProviderResult(
                "failed", None, "insufficient_funds", "The wallet balance is too low."
            )
        return ProviderResult(status, f"wtx_{move.transaction_id.hex}")  # type: ignore[arg-type]

    async def charge(self, request: ChargeRequest) -> ProviderResult:
        return await self._take(request, SALES, "succeeded")

    async def authorize(self, request: ChargeRequest) -> ProviderResult:
        return await self._take(request, HELD, "requires_capture")

    async def capture(
        self, provider_ref: str, amount: int, currency: str, idempotency_key: str
    ) -> ProviderResult:
        await self.ledger.transfer(
            HELD, SALES, amount, currency, kind="payment", reference=provider_ref
        )
        return ProviderResult("succeeded", provider_ref)

    async def void(self, provider_ref: str, idempotency_key: str) -> ProviderResult:
        raise NotImplementedError("use release(amount, currency)")

    async def release(self, provider_ref: str, amount: int, currency: str) -> ProviderResult:
        await self.ledger.transfer(
            HELD, self.user_id, amount, currency, kind="refund", reference=provider_ref
        )
        return ProviderResult("canceled", provider_ref)

    async def refund(
        self, provider_ref: str, amount: int, currency: str, idempotency_key: str
    ) -> ProviderResult:
        move = await self.ledger.transfer(
            SALES, self.user_id, amount, currency, kind="refund", reference=provider_ref
        )
        return ProviderResult("succeeded", f"wtx_{move.transaction_id.hex}")
