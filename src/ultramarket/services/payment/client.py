"""The typed client other services (the order service) use to take payments."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from ultramarket.core.clients import ServiceClient
from ultramarket.services.payment.schemas import PaymentRead, RefundResult

PREFIX = "/api/v1/payments"


class PaymentClient(ServiceClient):
    service = "payment"

    async def _pay(
        self,
        order_id: str,
        user_id: uuid.UUID,
        amount: Decimal | str,
        currency: str,
        method: str,
        token: str | None,
        idempotency_key: str,
        capture: bool,
        ip: str | None = None,
    ) -> PaymentRead:
        body = {
            "order_id": order_id,
            "user_id": str(user_id),
            "amount": str(amount),
            "currency": currency,
            "method": method,
            "token": token,
            "capture": capture,
            "ip": ip,
        }
        return await self._charge(body, idempotency_key)

    async def _charge(self, body: dict[str, Any], idempotency_key: str) -> PaymentRead:
        # Safe to retry: the key makes a repeated call return the first payment.
        data = await self.request(
            "POST",
            f"{PREFIX}/internal/charges",
            json=body,
            headers={"Idempotency-Key": idempotency_key},
            idempotent=True,
        )
        return PaymentRead.model_validate(data)

    async def charge(
        self,
        order_id: str,
        user_id: uuid.UUID,
        amount: Decimal | str,
        currency: str,
        method: str,
        token: str | None,
        idempotency_key: str,
        ip: str | None = None,
    ) -> PaymentRead:
        """Charge now (402 PaymentFailed on a decline, PAYMENT_BLOCKED on fraud)."""
        return await self._pay(
            order_id, user_id, amount, currency, method, token, idempotency_key, True, ip
        )

    async def authorize(
        self,
        order_id: str,
        user_id: uuid.UUID,
        amount: Decimal | str,
        currency: str,
        method: str,
        token: str | None,
        idempotency_key: str,
        ip: str | None = None,
    ) -> PaymentRead:
        """Authorise only (``requires_capture``); capture or void it later."""
        return await self._pay(
            order_id, user_id, amount, currency, method, token, idempotency_key, False, ip
        )

    async def capture(self, payment_id: uuid.UUID) -> PaymentRead:
        data = await self.request("POST", f"{PREFIX}/{payment_id}/capture")
        return PaymentRead.model_validate(data)

    async def void(self, payment_id: uuid.UUID) -> PaymentRead:
        data = await self.request("POST", f"{PREFIX}/{payment_id}/void")
        return PaymentRead.model_validate(data)

    async def refund(
        self,
        payment_id: uuid.UUID,
        amount: Decimal | str | None,
        reason: str,
        idempotency_key: str,
    ) -> RefundResult:
        body = {"amount": None if amount is None else str(amount), "reason": reason}
        data = await self.request(
            "POST",
            f"{PREFIX}/{payment_id}/refund",
            json=body,
            headers={"Idempotency-Key": idempotency_key},
            idempotent=True,
        )
        return RefundResult.model_validate(data)

    async def get(self, payment_id: uuid.UUID) -> PaymentRead:
        data = await self.request("GET", f"{PREFIX}/{payment_id}")
        return PaymentRead.model_validate(data)

    async def forfeit(self, order_id: str, idempotency_key: str) -> PaymentRead | None:
        """The payment this service's charge with ``idempotency_key`` made, or None - and
        then no charge is ever made with that key (the order sweeper ending a checkout)."""
        data = await self.request(
            "POST",
            f"{PREFIX}/internal/charges/forfeit",
            json={"order_id": order_id},
            headers={"Idempotency-Key": idempotency_key},
            idempotent=True,
        )
        return None if data is None else PaymentRead.model_validate(data)
