"""Stripe through the official SDK: PaymentIntents (create+confirm, capture, cancel)
and refunds; webhooks verified with ``stripe.Webhook.construct_event``.

The token is a PaymentMethod id (``pm_...``) made by Stripe.js in the browser.
``api_base`` points the SDK elsewhere (localstripe in tests).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import stripe

from ultramarket.core.errors import Unavailable
from ultramarket.services.payment.providers.base import (
    ChargeRequest,
    InvalidWebhook,
    PaymentProvider,
    ProviderResult,
    WebhookEvent,
)

log = logging.getLogger("ultramarket.payment.stripe")

OUTCOMES = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "failed",
    "payment_intent.canceled": "canceled",
    "charge.refunded": "refunded",
}


# The decline code of a refusal Stripe gives no code for, by its kind.
ERROR_CODES = {
    "AuthenticationError": "authentication_error",
    "PermissionError": "permission_error",
    "IdempotencyError": "idempotency_error",
}


class StripeProvider(PaymentProvider):
    slug = "stripe"
    title = "Stripe"
    description = "Cards through Stripe PaymentIntents."

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        webhook_secret: str | None = None,
        tolerance: int = 300,
        timeout: float = 10.0,
    ) -> None:
        options: dict[str, Any] = {"http_client": stripe.HTTPXClient(timeout=timeout)}
        if api_base:
            options["base_addresses"] = {"api": api_base}
        self.client = stripe.StripeClient(api_key, max_network_retries=1, **options)
        self.webhook_secret = webhook_secret
        self.tolerance = tolerance

    @staticmethod
    def _result(intent: Any) -> ProviderResult:
        status = intent.status
        # ``processing``: Stripe is still settling it (some cards, bank debits); the
        # payment_intent.succeeded / payment_failed event decides it.
        if status in ("succeeded", "processing", "requires_capture", "canceled"):
            return ProviderResult(status, intent.id, raw={"status": status})
        error = intent.to_dict().get("last_payment_error") or {}
        return ProviderResult(
            "failed",
            intent.id,
            error.get("decline_code") or error.get("code") or "card_declined",
            error.get("message") or f"payment intent is {status}",
        )

    @staticmethod
    def _refused(exc: stripe.StripeError, action: str, ref: str | None = None) -> ProviderResult:
        """Stripe's error, logged, as the result it means. No answer - the network,
        Stripe's own failure (5xx), its rate limit (429), a concurrent request with the
        same idempotency key (409) - is Unavailable: the outcome is unknown. Any other
        4xx (a bad or missing payment method, an amount too small, a refund of a charge
        refunded already, a revoked key) is Stripe refusing the request: nothing was
        done, so it is a definitive failure, not a payment left processing."""
        status = exc.http_status
        transient = (
            isinstance(exc, stripe.APIConnectionError)
            or status is None
            or status >= 500
            or status in (409, 429)
        )
        code = exc.code or ERROR_CODES.get(type(exc).__name__, "invalid_request_error")
        log.log(
            logging.ERROR if status in (401, 403) else logging.WARNING,
            "stripe did not %s",
            action,
            extra={
                "error_type": type(exc).__name__,
                "http_status": status,
                "code": exc.code,
                "stripe_request_id": exc.request_id,
                "error_message": str(exc)[:300],  # Stripe masks keys in its messages
            },
        )
        if transient:
            raise Unavailable(
                "The card processor is unavailable", code="PROVIDER_UNAVAILABLE"
            ) from exc
        return ProviderResult(
            "failed", ref, code, f"The card processor refused the {action} ({code})"
        )

    async def _create(self, request: ChargeRequest, capture_method: str) -> ProviderResult:
        params: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "payment_method": request.token,
            "confirm": True,
            "capture_method": capture_method,
            # Kept in metadata: not every Stripe-compatible server takes ``description``.
            "metadata": {"payment_id": request.payment_id, "note": request.description},
        }
        try:
            intent = await self.client.v1.payment_intents.create_async(
                params, {"idempotency_key": request.idempotency_key}
            )
        except stripe.CardError as exc:
            error = exc.error
            return ProviderResult(
                "failed",
                getattr(error, "payment_intent", None) and error.payment_intent.id,
                (getattr(error, "decline_code", None) or exc.code or "card_declined"),
                exc.user_message or "Your card was declined.",
            )
        except stripe.StripeError as exc:
            error = exc.error
            return self._refused(
                exc,
                "payment",
                getattr(getattr(error, "payment_intent", None), "id", None),
            )
        return self._result(intent)

    async def authorize(self, request: ChargeRequest) -> ProviderResult:
        return await self._create(request, "manual")

    async def charge(self, request: ChargeRequest) -> ProviderResult:
        return await self._create(request, "automatic")

    async def capture(
        self, provider_ref: str, amount: int, currency: str, idempotency_key: str
    ) -> ProviderResult:
        try:
            intent = await self.client.v1.payment_intents.capture_async(
                provider_ref, {"amount_to_capture": amount}, {"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            return self._refused(exc, "capture", provider_ref)
        return self._result(intent)

    async def void(self, provider_ref: str, idempotency_key: str) -> ProviderResult:
        try:
            intent = await self.client.v1.payment_intents.cancel_async(
                provider_ref, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            return self._refused(exc, "void", provider_ref)
        return self._result(intent)

    async def refund(
        self, provider_ref: str, amount: int, currency: str, idempotency_key: str
    ) -> ProviderResult:
        try:
            refund = await self.client.v1.refunds.create_async(
                {"payment_intent": provider_ref, "amount": amount},
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            return self._refused(exc, "refund")
        status = "failed" if refund.status in ("failed", "canceled") else "succeeded"
        return ProviderResult(status, refund.id, raw={"status": refund.status})

    async def card_fingerprint(self, token: str) -> str | None:
        """The PaymentMethod's ``card.fingerprint``: Stripe.js makes a new ``pm_`` every
        time a card is typed in, the fingerprint is the card's. None when Stripe does
        not say (not a card, not answering): the fraud rules then know the token only."""
        if not token.startswith("pm_"):
            return None
        try:
            method = await self.client.v1.payment_methods.retrieve_async(token)
        except stripe.StripeError as exc:
            log.warning(
                "stripe did not give the card's fingerprint",
                extra={"error_type": type(exc).__name__, "http_status": exc.http_status},
            )
            return None
        card = method.to_dict().get("card") or {}
        fingerprint = card.get("fingerprint")
        return str(fingerprint) if fingerprint else None

    async def verify_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        signature = headers.get("stripe-signature")
        if not self.webhook_secret or not signature:
            raise InvalidWebhook()
        try:
            event = stripe.Webhook.construct_event(
                payload, signature, self.webhook_secret, tolerance=self.tolerance
            )
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise InvalidWebhook() from exc
        data = event.to_dict()
        obj = data["data"]["object"]
        outcome = OUTCOMES.get(data["type"], "ignored")
        ref = obj.get("payment_intent") if obj.get("object") == "charge" else obj.get("id")
        error = obj.get("last_payment_error") or {}
        refunds = (obj.get("refunds") or {}).get("data") or [{}]
        return WebhookEvent(
            id=data["id"],
            type=data["type"],
            payload=data,
            provider_ref=ref,
            outcome=outcome,  # type: ignore[arg-type]
            decline_code=error.get("decline_code") or error.get("code"),
            payment_id=(obj.get("metadata") or {}).get("payment_id"),
            # charge.refunded: the charge's cumulative amount_refunded, and its newest refund.
            refund_ref=refunds[0].get("id") if outcome == "refunded" else None,
            refund_amount=refunds[0].get("amount") if outcome == "refunded" else None,
            refunded_total=obj.get("amount_refunded") if outcome == "refunded" else None,
        )
