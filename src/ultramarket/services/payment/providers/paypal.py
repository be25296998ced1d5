"""PayPal Orders v2 over httpx: create + capture (or authorize, capture, void),
refund a capture; webhooks verified by PayPal's verify-webhook-signature API.

The token, when given, is a PayPal order the buyer already approved (the PayPal
JS SDK's ``orderID``); without one the order is created here with
``payment_source.token`` left out, which the sandbox approves for vaulted buyers.

The buyer made and approved that order, so nothing in it is ours until checked: before
it is captured or authorised it is read back and must be approved, of the intent asked
for, and for exactly the payment's amount and currency (else a decline: an order
approved for 0.01 never pays a 199.99 checkout). The capture or authorisation is read
back in full (``Prefer: return=representation``) and must be for that amount too; one
that is not is refunded or voided and declined.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx

from ultramarket.core.errors import Unavailable
from ultramarket.core.money import Money, exponent
from ultramarket.services.payment.providers.base import (
    ChargeRequest,
    InvalidWebhook,
    PaymentProvider,
    ProviderResult,
    WebhookEvent,
)

log = logging.getLogger("ultramarket.payment.paypal")

# What a PayPal order id looks like (it goes into a URL path: nothing else may).
ORDER_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
# The whole resource in an answer, not only its id and status (PayPal's default).
REPRESENTATION = {"Prefer": "return=representation"}

OUTCOMES = {
    "PAYMENT.CAPTURE.COMPLETED": "succeeded",
    # A pending capture denied after all, or a completed one PayPal took back: the payment
    # fails, even one that had succeeded (the service says so: ``after_success``).
    "PAYMENT.CAPTURE.DENIED": "failed",
    "PAYMENT.CAPTURE.REVERSED": "failed",
    "PAYMENT.CAPTURE.REFUNDED": "refunded",
    "PAYMENT.AUTHORIZATION.VOIDED": "canceled",
}
DECLINES = {
    "PAYMENT.CAPTURE.DENIED": "capture_denied",
    "PAYMENT.CAPTURE.REVERSED": "capture_reversed",
}
# Events whose resource is a refund of the capture (named in its "up" link), not the capture.
ABOUT_A_CAPTURE = ("PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED")
SIGNATURE_HEADERS = {
    "auth_algo": "paypal-auth-algo",
    "cert_url": "paypal-cert-url",
    "transmission_id": "paypal-transmission-id",
    "transmission_sig": "paypal-transmission-sig",
    "transmission_time": "paypal-transmission-time",
}


def _value(amount: int, currency: str) -> dict[str, str]:
    digits = exponent(currency)
    return {"currency_code": currency, "value": f"{Decimal(amount).scaleb(-digits):.{digits}f}"}


class _CredentialsRefused(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__("PayPal refused our credentials")
        self.response = response


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json() if response.content else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _issue(response: httpx.Response) -> str:
    """The reason PayPal gives for a refusal (an Orders issue, or an OAuth error)."""
    body = _body(response)
    details = body.get("details") or [{}]
    first = details[0] if isinstance(details[0], dict) else {}
    return str(first.get("issue") or body.get("name") or body.get("error") or "DECLINED")


def _debug(response: httpx.Response) -> dict[str, Any]:
    """What PayPal's support asks for about a failed call (never our credentials)."""
    return {"paypal_debug_id": _body(response).get("debug_id")}


def _money(value: Any) -> Money | None:
    """A PayPal amount object (``{currency_code, value}``) as Money; None if it is not one."""
    try:
        return Money.of(value["value"], value["currency_code"])
    except (KeyError, TypeError, ValueError):
        return None


def _mismatch(order_id: str | None, what: str) -> ProviderResult:
    """The decline of an order, capture or authorisation of another amount. Its reference
    is the order's, never the capture's: PayPal's later events about a capture given back
    must not find this payment (as a late charge of a failed payment, to refund again)."""
    return ProviderResult(
        "failed", order_id, "amount_mismatch", f"The PayPal {what} is not for this payment's amount"
    )


class PayPalProvider(PaymentProvider):
    slug = "paypal"
    title = "PayPal"
    description = "PayPal Checkout (Orders v2)."

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        webhook_id: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout)
        self.client_id = client_id
        self.client_secret = client_secret
        self.webhook_id = webhook_id
        self._token: tuple[str, float] | None = None

    async def close(self) -> None:
        await self.http.aclose()

    async def _access_token(self) -> str:
        """Our bearer token. PayPal refusing our credentials (a 4xx) raises
        ``_CredentialsRefused``: nothing was asked of it, so nothing was charged."""
        if self._token and self._token[1] > time.monotonic() + 60:
            return self._token[0]
        response = await self._send(
            "POST",
            "/v1/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(self.client_id, self.client_secret),
        )
        if response.status_code != 200:
            log.error(
                "paypal refused our credentials",
                extra={"http_status": response.status_code, "error": _issue(response)},
            )
            raise _CredentialsRefused(response)
        body = response.json()
        self._token = (body["access_token"], time.monotonic() + int(body.get("expires_in", 300)))
        return self._token[0]

    async def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        """One request. No answer - the network, PayPal's own failure (5xx), its rate
        limit (429), the same PayPal-Request-Id still in progress (409) - is Unavailable
        (the outcome is unknown); any other answer is the caller's to read."""
        try:
            response = await self.http.request(method, path, **options)
        except httpx.HTTPError as exc:
            log.warning(
                "paypal did not answer", extra={"path": path, "error_type": type(exc).__name__}
            )
            raise Unavailable("PayPal is unreachable", code="PROVIDER_UNAVAILABLE") from exc
        if response.status_code >= 500 or response.status_code in (409, 429):
            log.warning(
                "paypal failed",
                extra={"path": path, "http_status": response.status_code, **_debug(response)},
            )
            raise Unavailable("PayPal failed", code="PROVIDER_UNAVAILABLE")
        return response

    async def _call(
        self,
        method: str,
        path: str,
        json: Any = None,
        request_id: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            token = await self._access_token()
        except _CredentialsRefused as refused:
            return refused.response  # declined by the caller: nothing was asked of PayPal
        headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
        if request_id:
            headers["PayPal-Request-Id"] = request_id  # PayPal's idempotency key
        return await self._send(method, path, json=json, headers=headers)

    @staticmethod
    def _declined(response: httpx.Response, ref: str | None) -> ProviderResult:
        issue = _issue(response)
        log.info(
            "paypal refused a request",
            extra={"http_status": response.status_code, "issue": issue, **_debug(response)},
        )
        return ProviderResult("failed", ref, issue.lower(), _body(response).get("message"))

    async def _order(
        self, request: ChargeRequest, intent: str
    ) -> tuple[str | None, ProviderResult | None]:
        """The PayPal order to capture or authorise: the buyer's, once checked against
        this payment, or one made here for it. A result instead when it will not do."""
        if request.token:
            return request.token, await self._check_order(request, intent)
        response = await self._call(
            "POST",
            "/v2/checkout/orders",
            {
                "intent": intent,
                "purchase_units": [
                    {
                        "reference_id": request.payment_id,
                        "amount": _value(request.amount, request.currency),
                    }
                ],
            },
            request_id=f"{request.idempotency_key}:order",
        )
        if response.status_code not in (200, 201):
            return None, self._declined(response, None)
        return response.json()["id"], None

    async def _check_order(self, request: ChargeRequest, intent: str) -> ProviderResult | None:
        """The buyer's order must be this payment's: approved, of ``intent``, one purchase
        unit for exactly our amount and currency. None when it is; else the decline.
        An order captured already (COMPLETED) goes on to the capture: if it was our own
        call whose answer was lost, its PayPal-Request-Id replays that answer; if not,
        PayPal refuses it (ORDER_ALREADY_CAPTURED)."""
        order_id = request.token or ""
        if not ORDER_ID.fullmatch(order_id):
            return ProviderResult("failed", None, "invalid_order", "Not a PayPal order id")
        response = await self._call("GET", f"/v2/checkout/orders/{order_id}")
        if response.status_code != 200:
            return self._declined(response, order_id)
        order = response.json()
        units = order.get("purchase_units") or []
        if order.get("intent") != intent:
            return ProviderResult(
                "failed", order_id, "intent_mismatch", f"The PayPal order is not for {intent}"
            )
        if len(units) != 1 or _money(units[0].get("amount")) != Money(
            request.amount, request.currency
        ):
            log.warning(
                "paypal order amount does not match the payment",
                extra={"order_id": order_id, "payment_id": request.payment_id},
            )
            return _mismatch(order_id, "order")
        if order.get("status") not in ("APPROVED", "COMPLETED"):
            return ProviderResult(
                "failed",
                order_id,
                "order_not_approved",
                f"The PayPal order is {order.get('status')}, not approved",
            )
        return None

    @staticmethod
    def _payment_of(body: Any, kind: str) -> dict[str, Any]:
        """The capture or authorisation (``kind``) an order's answer carries."""
        try:
            found = body["purchase_units"][0]["payments"][kind][0]
        except (KeyError, IndexError, TypeError):
            return {}
        return found if isinstance(found, dict) else {}

    async def charge(self, request: ChargeRequest) -> ProviderResult:
        order_id, failed = await self._order(request, "CAPTURE")
        if failed is not None:
            return failed
        response = await self._call(
            "POST",
            f"/v2/checkout/orders/{order_id}/capture",
            {},
            request_id=f"{request.idempotency_key}:capture",
            headers=REPRESENTATION,
        )
        if response.status_code not in (200, 201):
            return self._declined(response, order_id)
        body = response.json()
        capture = self._payment_of(body, "captures")
        if body.get("status") != "COMPLETED" or capture.get("status") not in (
            "COMPLETED",
            "PENDING",
        ):
            return ProviderResult("failed", capture.get("id"), "declined", "PayPal declined")
        if _money(capture.get("amount")) != Money(request.amount, request.currency):
            return await self._give_back(capture, request, order_id)
        # PENDING (an eCheck, a review at PayPal): not paid until PAYMENT.CAPTURE.COMPLETED
        # (or DENIED) names this capture.
        if capture["status"] == "PENDING":
            return ProviderResult("processing", capture["id"], raw={"order_id": order_id})
        return ProviderResult("succeeded", capture["id"], raw={"order_id": order_id})

    async def _give_back(
        self, capture: dict[str, Any], request: ChargeRequest, order_id: str | None
    ) -> ProviderResult:
        """A capture of another amount than ours is refunded in full and declined. Until
        PayPal confirms the refund the outcome is open (Unavailable: the payment stays
        ``processing`` and is asked again, every call under the same request ids)."""
        captured = _money(capture.get("amount"))
        log.error(
            "paypal captured another amount than the payment's: refunding it",
            extra={"capture_id": capture.get("id"), "payment_id": request.payment_id},
        )
        refund = None
        if captured is not None and captured.amount > 0:
            refund = await self.refund(
                capture["id"],
                captured.amount,
                captured.currency,
                f"{request.idempotency_key}:mismatch",
            )
        if refund is None or refund.status != "succeeded":
            raise Unavailable(
                "A PayPal capture of the wrong amount is not refunded yet",
                code="PROVIDER_UNAVAILABLE",
            )
        return _mismatch(order_id, "capture")

    async def authorize(self, request: ChargeRequest) -> ProviderResult:
        order_id, failed = await self._order(request, "AUTHORIZE")
        if failed is not None:
            return failed
        response = await self._call(
            "POST",
            f"/v2/checkout/orders/{order_id}/authorize",
            {},
            request_id=f"{request.idempotency_key}:authorize",
            headers=REPRESENTATION,
        )
        if response.status_code not in (200, 201):
            return self._declined(response, order_id)
        auth = self._payment_of(response.json(), "authorizations")
        if not auth.get("id"):
            return ProviderResult("failed", order_id, "declined", "PayPal authorised nothing")
        if _money(auth.get("amount")) != Money(request.amount, request.currency):
            log.error(
                "paypal authorised another amount than the payment's: voiding it",
                extra={"authorization_id": auth["id"], "payment_id": request.payment_id},
            )
            voided = await self.void(auth["id"], f"{request.idempotency_key}:void")
            if voided.status != "canceled":
                raise Unavailable(
                    "A PayPal authorisation of the wrong amount is not voided yet",
                    code="PROVIDER_UNAVAILABLE",
                )
            return _mismatch(order_id, "authorization")
        return ProviderResult("requires_capture", auth["id"], raw={"order_id": order_id})

    async def capture(
        self, provider_ref: str, amount: int, currency: str, idempotency_key: str
    ) -> ProviderResult:
        """The capture's own id comes back (refunds name it, not the authorisation); a
        retry with the same key is answered the first capture (PayPal-Request-Id)."""
        response = await self._call(
            "POST",
            f"/v2/payments/authorizations/{provider_ref}/capture",
            {"amount": _value(amount, currency), "final_capture": True},
            request_id=idempotency_key,
        )
        if response.status_code not in (200, 201):
            return self._declined(response, provider_ref)
        capture = response.json()
        if capture.get("status") in ("DECLINED", "FAILED"):
            return ProviderResult("failed", capture.get("id"), "declined", "PayPal declined")
        # PENDING: taken, not settled until PAYMENT.CAPTURE.COMPLETED names this capture.
        if capture.get("status") == "PENDING":
            return ProviderResult("processing", capture["id"])
        return ProviderResult("succeeded", capture["id"])

    async def void(self, provider_ref: str, idempotency_key: str) -> ProviderResult:
        response = await self._call(
            "POST",
            f"/v2/payments/authorizations/{provider_ref}/void",
            request_id=idempotency_key,
        )
        if response.status_code not in (200, 204):
            return self._declined(response, provider_ref)
        return ProviderResult("canceled", provider_ref)

    async def refund(
        self, provider_ref: str, amount: int, currency: str, idempotency_key: str
    ) -> ProviderResult:
        response = await self._call(
            "POST",
            f"/v2/payments/captures/{provider_ref}/refund",
            {"amount": _value(amount, currency)},
            request_id=idempotency_key,
        )
        if response.status_code not in (200, 201):
            return self._declined(response, provider_ref)
        body = response.json()
        status = "failed" if body.get("status") in ("FAILED", "CANCELLED") else "succeeded"
        return ProviderResult(status, body.get("id"))

    async def verify_webhook(self, payload: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        import json

        if not self.webhook_id:
            raise InvalidWebhook()
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise InvalidWebhook() from exc
        fields = {name: headers.get(header) for name, header in SIGNATURE_HEADERS.items()}
        if not isinstance(event, dict) or not all(fields.values()) or not event.get("id"):
            raise InvalidWebhook()
        response = await self._call(
            "POST",
            "/v1/notifications/verify-webhook-signature",
            {**fields, "webhook_id": self.webhook_id, "webhook_event": event},
        )
        if response.status_code != 200 or response.json().get("verification_status") != ("SUCCESS"):
            raise InvalidWebhook()
        resource = event.get("resource") or {}
        kind = str(event.get("event_type", ""))
        ref = resource.get("id")
        if kind in ABOUT_A_CAPTURE:
            # The resource is the refund; its capture is in the "up" link.
            for link in resource.get("links", []):
                if link.get("rel") == "up":
                    ref = str(link.get("href", "")).rstrip("/").rsplit("/", 1)[-1]
        refund_ref = refund_amount = None
        if kind == "PAYMENT.CAPTURE.REFUNDED":
            refund_ref = resource.get("id")
            amount = resource.get("amount") or {}
            with contextlib.suppress(ValueError, TypeError):
                refund_amount = Money.of(amount["value"], amount["currency_code"]).amount
        return WebhookEvent(
            id=str(event["id"]),
            type=kind,
            payload=event,
            provider_ref=ref,
            outcome=OUTCOMES.get(kind, "ignored"),  # type: ignore[arg-type]
            decline_code=DECLINES.get(kind),
            refund_ref=refund_ref,
            refund_amount=refund_amount,
        )
