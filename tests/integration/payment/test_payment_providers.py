"""Stripe (SDK against localstripe; webhook signatures computed as Stripe does) and
PayPal (Orders v2 on an httpx.MockTransport)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from fake_paypal import SIGNATURE, FakePayPal
from tests.support import error_reason

from ultramarket.services.payment.models import Payment
from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.providers.stripe import StripeProvider

API = "/api/v1/payments"
SECRET = "whsec_test_secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def localstripe():
    exe = shutil.which("localstripe") or str(Path(sys.executable).parent / "localstripe")
    if not Path(exe).exists():
        pytest.skip("localstripe is not installed (dev dependency)")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.skip("localstripe did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=5)


def sign(payload: bytes, secret: str = SECRET, at: int | None = None) -> str:
    at = at or int(time.time())
    mac = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


async def test_payment_stripe_charge_refund_and_webhooks(client, make_user, container, localstripe):
    stripe_provider = StripeProvider("sk_test_local", api_base=localstripe, webhook_secret=SECRET)
    providers_of(container).set(stripe_provider)
    container.settings.payments.card_provider = "stripe"
    user = await make_user()
    manager = await make_user("MANAGER")
    pm = await stripe_provider.client.v1.payment_methods.create_async(
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    body = {
        "order_id": "o-s",
        "amount": "12.34",
        "currency": "USD",
        "method": "card",
        "token": pm.id,
    }
    response = await client.post(API, json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    payment = response.json()["data"]
    assert payment["provider"] == "stripe"
    assert payment["status"] == "succeeded"
    assert payment["provider_reference"].startswith("pi_")
    refund = await client.post(
        f"{API}/{payment['id']}/refund",
        json={"amount": "2.34", "reason": "x"},
        headers=manager.headers,
    )
    assert refund.status_code == 201, refund.text
    own_refund = refund.json()["data"]["refund"]["provider_reference"]
    assert own_refund.startswith("re_")
    url = f"{API}/webhooks/stripe"

    # Stripe reports refunds on the charge: ours (already recorded) changes nothing, one
    # made in Stripe's dashboard is recorded once, however often it is delivered.
    async def charge_refunded(event_id: str, total: int, latest: str, latest_amount: int):
        event = {
            "id": event_id,
            "object": "event",
            "type": "charge.refunded",
            "data": {
                "object": {
                    "id": "ch_1",
                    "object": "charge",
                    "payment_intent": payment["provider_reference"],
                    "amount_refunded": total,
                    "refunds": {"data": [{"id": latest, "amount": latest_amount}]},
                }
            },
        }
        payload = json.dumps(event).encode()
        answer = await client.post(
            url, content=payload, headers={"Stripe-Signature": sign(payload)}
        )
        assert answer.status_code == 200, answer.text
        got = await client.get(f"{API}/{payment['id']}", headers=manager.headers)
        return got.json()["data"]

    assert (await charge_refunded("evt_r1", 234, own_refund, 234))["refunded_amount"] == "2.34"
    external = await charge_refunded("evt_r2", 734, "re_dashboard", 500)
    assert (external["refunded_amount"], external["status"]) == ("7.34", "partially_refunded")
    again = await charge_refunded("evt_r3", 734, "re_dashboard", 500)
    assert again["refunded_amount"] == "7.34"

    # An authorisation, then Stripe tells us it succeeded: the webhook moves it.
    held = await client.post(
        API, json={**body, "order_id": "o-h", "capture": False}, headers=user.headers
    )
    held_data = held.json()["data"]
    assert held_data["status"] == "requires_capture"
    event = {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": held_data["provider_reference"], "object": "payment_intent"}},
    }
    payload = json.dumps(event).encode()
    good = await client.post(url, content=payload, headers={"Stripe-Signature": sign(payload)})
    assert good.status_code == 200, good.text
    assert good.json()["data"]["replayed"] is False
    got = await client.get(f"{API}/{held_data['id']}", headers=user.headers)
    assert got.json()["data"]["status"] == "succeeded"
    replay = await client.post(url, content=payload, headers={"Stripe-Signature": sign(payload)})
    assert replay.status_code == 200
    assert replay.json()["data"]["replayed"] is True
    bad = await client.post(
        url, content=payload, headers={"Stripe-Signature": sign(payload, "whsec_wrong")}
    )
    assert bad.status_code == 400
    assert error_reason(bad) == "INVALID_SIGNATURE"
    old = await client.post(
        url,
        content=payload,
        headers={"Stripe-Signature": sign(payload, at=int(time.time()) - 3600)},
    )
    assert old.status_code == 400
    missing = await client.post(url, content=payload)
    assert missing.status_code == 400


async def test_payment_paypal_orders_and_webhook(client, make_user, container):
    paypal = FakePayPal()
    paypal.approved("DECLINE", "19.99")
    paypal.declined.add("DECLINE")
    providers_of(container).set(paypal.provider())
    user = await make_user()
    manager = await make_user("MANAGER")
    body = {"order_id": "o-p", "amount": "19.99", "currency": "USD", "method": "paypal"}
    response = await client.post(API, json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    payment = response.json()["data"]
    assert payment["provider"] == "paypal"
    assert payment["provider_reference"] == "CAP1"
    assert paypal.created == [{"currency_code": "USD", "value": "19.99"}]
    declined = await client.post(
        API, json={**body, "order_id": "o-d", "token": "DECLINE"}, headers=user.headers
    )
    assert declined.status_code == 402
    assert declined.json()["error"]["details"][0]["decline_code"] == "instrument_declined"
    refund = await client.post(
        f"{API}/{payment['id']}/refund", json={"reason": "x"}, headers=manager.headers
    )
    assert refund.status_code == 201, refund.text
    event = {
        "id": "WH-EVT-1",
        "event_type": "PAYMENT.CAPTURE.COMPLETED",
        "resource": {"id": "CAP1"},
    }
    headers = SIGNATURE
    url = f"{API}/webhooks/paypal"
    first = await client.post(url, content=json.dumps(event), headers=headers)
    assert first.status_code == 200, first.text
    again = await client.post(url, content=json.dumps(event), headers=headers)
    assert again.json()["data"]["replayed"] is True
    bad = await client.post(
        url, content=json.dumps(event), headers={**headers, "paypal-transmission-sig": "forged"}
    )
    assert bad.status_code == 400
    assert error_reason(bad) == "INVALID_SIGNATURE"


async def test_stripe_webhook_settles_a_payment_whose_charge_never_answered(
    client, make_user, container, localstripe
):
    """The charge call timed out (the payment is ``processing`` with no Stripe reference);
    Stripe's event names it by the payment id we put in the intent's metadata."""
    stripe_provider = StripeProvider("sk_test_local", api_base=localstripe, webhook_secret=SECRET)
    providers_of(container).set(stripe_provider)
    user = await make_user()
    payment_id = uuid.uuid4()
    async with container.db("payment").session() as session:
        session.add(
            Payment(
                id=payment_id, user_id=uuid.UUID(user.id), order_id="o-lost", method="card",
                provider="stripe", status="processing", amount=1500, currency="USD",
            )
        )  # fmt: skip
    event = {
        "id": "evt_lost",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": "pi_lost",
                "object": "payment_intent",
                "metadata": {"payment_id": str(payment_id)},
            }
        },
    }
    payload = json.dumps(event).encode()
    answer = await client.post(
        f"{API}/webhooks/stripe", content=payload, headers={"Stripe-Signature": sign(payload)}
    )
    assert answer.status_code == 200, answer.text
    got = (await client.get(f"{API}/{payment_id}", headers=user.headers)).json()["data"]
    assert (got["status"], got["provider_reference"]) == ("succeeded", "pi_lost")


async def test_a_card_typed_in_again_by_other_users_is_known_by_its_stripe_fingerprint(
    client, make_user, container, localstripe
):
    """Stripe.js makes a new PaymentMethod each time a card is typed in: the fraud rules
    know the card by Stripe's fingerprint of it, not by the pm_ id."""
    stripe_provider = StripeProvider("sk_test_local", api_base=localstripe, webhook_secret=SECRET)
    providers_of(container).set(stripe_provider)
    payments = container.settings.payments
    payments.card_provider = "stripe"
    payments.fraud_fingerprint_max_users = 1
    payments.fraud_block_score = payments.fraud_fingerprint_score

    async def typed_in(number: str) -> str:
        method = await stripe_provider.client.v1.payment_methods.create_async(
            {
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
            }
        )
        return method.id

    def body(token: str) -> dict[str, str]:
        return {
            "order_id": "o-f",
            "amount": "10.00",
            "currency": "USD",
            "method": "card",
            "token": token,
        }

    first, second, third = await make_user(), await make_user(), await make_user()
    response = await client.post(
        API, json=body(await typed_in("4242424242424242")), headers=first.headers
    )
    assert response.status_code == 201, response.text
    again = await typed_in("4242424242424242")
    blocked = await client.post(API, json=body(again), headers=second.headers)
    assert blocked.status_code == 402, blocked.text
    assert error_reason(blocked) == "PAYMENT_BLOCKED"
    assert "card_fingerprint" in blocked.json()["error"]["details"][0]["rules"]
    other = await client.post(
        API, json=body(await typed_in("5555555555554444")), headers=third.headers
    )
    assert other.status_code == 201, other.text
