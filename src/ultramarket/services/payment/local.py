"""The payment client's in-process twin (all-in-one mode): a checkout's charge runs the
route's own unit of work and rules without going through the app."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from ultramarket.core.clients import InProcessClient
from ultramarket.services.payment import schemas as s
from ultramarket.services.payment.api import KeyText, charge_for_user, payment_unit
from ultramarket.services.payment.client import PaymentClient

# The charge route's Idempotency-Key header, as the route constrains it.
IDEMPOTENCY_KEY: TypeAdapter[str] = TypeAdapter(KeyText)


class InProcessPaymentClient(PaymentClient, InProcessClient):
    async def _charge(self, body: dict[str, Any], idempotency_key: str) -> s.PaymentRead:
        request = self.parse(
            s.InternalCharge, body, headers=[("Idempotency-Key", IDEMPOTENCY_KEY, idempotency_key)]
        )

        async def run() -> s.PaymentRead:
            async with payment_unit(self.services, self.principal) as payments:
                payment, _ = await charge_for_user(
                    payments, self.principal, request, idempotency_key
                )
            return payment

        # Safe to retry: the key makes a repeated call return the first payment.
        return await self.call("charge", run, idempotent=True)
