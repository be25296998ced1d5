"""A fake PayPal (Orders v2 and Payments v2, as far as our provider uses them) on an
httpx.MockTransport: orders with an intent, a status and an amount; captures,
authorisations and refunds replayed for a repeated PayPal-Request-Id (PayPal's
idempotency); an authorisation's capture answers its id and status only unless
``Prefer: return=representation`` asks for the whole resource. Imported by module
name; not a test file."""

from __future__ import annotations

import json
from typing import Any

import httpx

from ultramarket.services.payment.providers.paypal import PayPalProvider

SIGNATURE = {
    "paypal-auth-algo": "SHA256withRSA",
    "paypal-cert-url": "https://api.paypal.com/cert",
    "paypal-transmission-id": "t1",
    "paypal-transmission-sig": "good",
    "paypal-transmission-time": "2026-11-21T00:00:00Z",
}


def amount(value: str, currency: str = "USD") -> dict[str, str]:
    return {"currency_code": currency, "value": value}


class FakePayPal:
    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.captures: dict[str, dict[str, Any]] = {}
        self.authorizations: dict[str, dict[str, Any]] = {}
        self.refunds: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str, str | None]] = []  # method, path, request id
        self.full: list[str] = []  # the paths asked for the whole resource back
        # The first answer to each PayPal-Request-Id (by path): status and body.
        self.answered: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.created: list[dict[str, str]] = []  # the amounts of orders we made
        self.capture_status = "COMPLETED"  # what a new order capture comes out as
        self.captured_value: str | None = None  # a capture of another amount than the order's
        self.declined: set[str] = set()  # orders whose capture PayPal declines
        self.void_refused: set[str] = set()  # authorisations PayPal will not void
        self.lost: set[str] = set()  # paths whose next answer never reaches us (done, though)
        self.token_status = 200
        self.token_error: Exception | None = None  # the token call never answered
        self.forced: dict[str, int] = {}  # path -> the error status PayPal answers it with
        self._made: dict[str, int] = {}

    def approved(
        self,
        order_id: str,
        value: str,
        currency: str = "USD",
        *,
        intent: str = "CAPTURE",
        status: str = "APPROVED",
        units: int = 1,
    ) -> None:
        """An order a buyer made and approved in PayPal's window."""
        self.orders[order_id] = {
            "id": order_id,
            "intent": intent,
            "status": status,
            "purchase_units": [
                {"reference_id": f"unit-{n}", "amount": amount(value, currency)}
                for n in range(units)
            ],
        }

    def provider(self, **options: Any) -> PayPalProvider:
        return PayPalProvider(
            "https://paypal.test",
            "cid",
            "secret",
            webhook_id="WH1",
            transport=httpx.MockTransport(self.handle),
            **options,
        )

    def _next(self, prefix: str) -> str:
        self._made[prefix] = self._made.get(prefix, 0) + 1
        return f"{prefix}{self._made[prefix]}"

    def handle(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        request_id = request.headers.get("paypal-request-id")
        self.calls.append((method, path, request_id))
        if path in self.forced:
            return _error(self.forced[path], "FORCED")
        if path == "/v1/oauth2/token":
            if self.token_error is not None:
                raise self.token_error
            if self.token_status != 200:
                return httpx.Response(self.token_status, json={"error": "invalid_client"})
            return httpx.Response(200, json={"access_token": "A21", "expires_in": 3600})
        assert request.headers["authorization"] == "Bearer A21"
        if request_id is not None and (path, request_id) in self.answered:
            status, content = self.answered[(path, request_id)]  # PayPal's idempotency
            return httpx.Response(status, content=content)
        response = self._route(request, method, path)
        if request_id is not None and response.status_code < 500:
            self.answered[(path, request_id)] = (response.status_code, response.read())
        if path in self.lost:
            self.lost.discard(path)
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    def _route(self, request: httpx.Request, method: str, path: str) -> httpx.Response:
        full = "return=representation" in request.headers.get("prefer", "")
        if full:
            self.full.append(path)
        parts = path.strip("/").split("/")
        body = json.loads(request.content) if request.content else {}
        if path == "/v2/checkout/orders" and method == "POST":
            order_id = self._next("ORDER")
            unit = body["purchase_units"][0]
            self.created.append(unit["amount"])
            self.approved(order_id, unit["amount"]["value"], unit["amount"]["currency_code"])
            self.orders[order_id]["intent"] = body["intent"]
            return httpx.Response(201, json={"id": order_id, "status": "CREATED"})
        if parts[:3] == ["v2", "checkout", "orders"] and len(parts) == 4 and method == "GET":
            order = self.orders.get(parts[3])
            if order is None:
                return _error(404, "RESOURCE_NOT_FOUND")
            return httpx.Response(200, json=order)
        if parts[:3] == ["v2", "checkout", "orders"] and len(parts) == 5:
            return self._order_action(parts[3], parts[4])
        if parts[:3] == ["v2", "payments", "authorizations"] and len(parts) == 5:
            return self._authorization_action(parts[3], parts[4], body, full)
        if parts[:3] == ["v2", "payments", "captures"] and parts[4:] == ["refund"]:
            capture = self.captures.get(parts[3])
            if capture is None:
                return _error(404, "RESOURCE_NOT_FOUND")
            refund = {
                "id": self._next("REF"),
                "status": "COMPLETED",
                "amount": body.get("amount") or capture["amount"],
                "capture_id": parts[3],
            }
            self.refunds.append(refund)
            return httpx.Response(201, json={"id": refund["id"], "status": "COMPLETED"})
        if path == "/v1/notifications/verify-webhook-signature":
            good = body.get("transmission_sig") == "good"
            return httpx.Response(
                200, json={"verification_status": "SUCCESS" if good else "FAILURE"}
            )
        return _error(404, "RESOURCE_NOT_FOUND")

    def _order_action(self, order_id: str, action: str) -> httpx.Response:
        order = self.orders.get(order_id)
        if order is None:
            return _error(404, "RESOURCE_NOT_FOUND")
        if order_id in self.declined:
            return _error(422, "UNPROCESSABLE_ENTITY", "INSTRUMENT_DECLINED")
        if order["status"] == "COMPLETED":
            return _error(422, "UNPROCESSABLE_ENTITY", "ORDER_ALREADY_CAPTURED")
        if order["status"] != "APPROVED":
            return _error(422, "UNPROCESSABLE_ENTITY", "ORDER_NOT_APPROVED")
        unit = order["purchase_units"][0]
        order["status"] = "COMPLETED"
        if action == "capture":
            capture = {
                "id": self._next("CAP"),
                "status": self.capture_status,
                "amount": amount(self.captured_value, unit["amount"]["currency_code"])
                if self.captured_value
                else unit["amount"],
            }
            self.captures[capture["id"]] = capture
            unit["payments"] = {"captures": [capture]}
        else:
            auth = {"id": self._next("AUTH"), "status": "CREATED", "amount": unit["amount"]}
            self.authorizations[auth["id"]] = auth
            unit["payments"] = {"authorizations": [auth]}
        return httpx.Response(201, json=order)

    def _authorization_action(
        self, auth_id: str, action: str, body: dict[str, Any], full: bool
    ) -> httpx.Response:
        auth = self.authorizations.get(auth_id)
        if auth is None:
            return _error(404, "RESOURCE_NOT_FOUND")
        if action == "void":
            if auth_id in self.void_refused or auth["status"] != "CREATED":
                return _error(422, "UNPROCESSABLE_ENTITY", "AUTHORIZATION_ALREADY_CAPTURED")
            auth["status"] = "VOIDED"
            return httpx.Response(204)
        if auth["status"] != "CREATED":
            return _error(422, "UNPROCESSABLE_ENTITY", "AUTHORIZATION_ALREADY_CAPTURED")
        auth["status"] = "CAPTURED"
        capture = {
            "id": self._next("CAP"),
            "status": self.capture_status,
            "amount": body.get("amount") or auth["amount"],
        }
        self.captures[capture["id"]] = capture
        if not full:
            return httpx.Response(201, json={"id": capture["id"], "status": capture["status"]})
        return httpx.Response(201, json=capture)


def _error(status: int, name: str, issue: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"name": name, "message": name.replace("_", " ").lower()}
    if issue:
        body["details"] = [{"issue": issue}]
    return httpx.Response(status, json=body)
