"""After checkout: the status machine, tracking, cancellation, refunds, notes, stats."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from order_helpers import (
    API,
    PAYMENTS,
    assert_error,
    checkout,
    checkout_body,
    configure,
    make_variant,
    ok,
    payments_of,
    stock,
)
from sqlalchemy import event, select, update

from ultramarket.core.db import utcnow
from ultramarket.core.errors import Unavailable
from ultramarket.services.inventory.client import InventoryClient
from ultramarket.services.order.models import OrderRefund
from ultramarket.services.order.sweeper import sweep
from ultramarket.services.payment.client import PaymentClient
from ultramarket.services.payment.events import PaymentRefunded
from ultramarket.services.product.models import Product


async def set_status(client, manager, order, target: str):
    url = f"{API}/{order['id']}/status"
    return await client.put(url, json={"status": target}, headers=manager.headers)


async def _placed(client, container, drain, make_user, *, price="20.00", quantity=2, stock_=10):
    configure(container)
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price=price, stock=stock_)
    user = await make_user()
    order = ok(await checkout(client, user, checkout_body([(v["variant_id"], quantity)])), 201)
    return manager, user, v, order


async def test_fulfilment_moves_with_tracking_and_refuses_illegal_moves(
    client, container, drain, make_user
):
    manager, user, _v, order = await _placed(client, container, drain, make_user)
    url = f"{API}/{order['id']}/status"

    assert_error(
        await client.put(url, json={"status": "processing"}, headers=user.headers), 403, "FORBIDDEN"
    )
    ok(await client.put(url, json={"status": "processing"}, headers=manager.headers))
    shipped = ok(
        await client.put(
            url,
            json={
                "status": "shipped",
                "carrier": "UPS",
                "tracking_number": "1Z999",
                "tracking_url": "https://ups.example/1Z999",
                "note": "left the warehouse",
            },
            headers=manager.headers,
        )
    )
    assert shipped["status"] == "shipped"
    assert shipped["shipped_at"] is not None
    tracking = ok(await client.get(f"{API}/{order['id']}/tracking", headers=user.headers))
    assert (tracking["carrier"], tracking["tracking_number"]) == ("UPS", "1Z999")
    assert [h["status"] for h in tracking["history"]] == [
        "pending",
        "confirmed",
        "processing",
        "shipped",
    ]
    assert tracking["history"][-1]["note"] == "left the warehouse"

    # Backwards, or to a status with its own route: 409.
    for target in ("processing", "pending", "refunded", "payment_failed"):
        response = await client.put(url, json={"status": target}, headers=manager.headers)
        assert_error(response, 409, "ILLEGAL_TRANSITION")
    assert_error(
        await client.put(url, json={"status": "lost"}, headers=manager.headers),
        422,
        "VALIDATION_ERROR",
    )
    ok(await client.put(url, json={"status": "delivered"}, headers=manager.headers))
    after = ok(await client.get(f"{API}/{order['id']}", headers=user.headers))
    assert after["status"] == "delivered"
    assert after["delivered_at"] is not None
    # A stranger does not learn the order exists.
    stranger = await make_user()
    assert_error(
        await client.get(f"{API}/{order['id']}", headers=stranger.headers), 404, "ORDER_NOT_FOUND"
    )
    assert_error(
        await client.get(f"{API}/{order['id']}/tracking", headers=stranger.headers),
        404,
        "ORDER_NOT_FOUND",
    )


async def test_owner_cancel_refunds_and_restocks(client, container, drain, make_user):
    manager, user, v, order = await _placed(client, container, drain, make_user)
    assert (await stock(container, v["variant_id"]))["on_hand"] == 8

    cancelled = ok(
        await client.post(
            f"{API}/{order['id']}/cancel", json={"reason": "changed my mind"}, headers=user.headers
        )
    )

    assert cancelled["status"] == "cancelled"
    assert cancelled["payment_status"] == "refunded"
    assert cancelled["refunded"] == cancelled["total"]
    assert [r["status"] for r in cancelled["refunds"]] == ["succeeded"]
    s = await stock(container, v["variant_id"])
    assert (s["on_hand"], s["reserved"], s["log_on_hand"]) == (10, 0, 10)
    [payment] = await payments_of(client, manager, order["id"])
    assert payment["status"] == "refunded"
    assert payment["refunded_amount"] == order["total"]
    # Twice is refused, and nothing moves again.
    again = await client.post(f"{API}/{order['id']}/cancel", headers=user.headers)
    assert_error(again, 409, "NOT_CANCELLABLE")
    assert (await stock(container, v["variant_id"]))["on_hand"] == 10


async def test_owner_cannot_cancel_after_shipping_but_staff_can_until_delivery(
    client, container, drain, make_user
):
    manager, user, v, order = await _placed(client, container, drain, make_user)
    url = f"{API}/{order['id']}"
    ok(await client.put(f"{url}/status", json={"status": "shipped"}, headers=manager.headers))

    assert_error(await client.post(f"{url}/cancel", headers=user.headers), 409, "NOT_CANCELLABLE")
    done = ok(await client.post(f"{url}/cancel", headers=manager.headers))
    assert done["status"] == "cancelled"
    assert done["payment_status"] == "refunded"
    # Shipped units are with the carrier: not back on the shelf.
    assert (await stock(container, v["variant_id"]))["on_hand"] == 8

    _m, _user2, _v2, second = await _placed(client, container, drain, make_user)
    url2 = f"{API}/{second['id']}"
    for target in ("shipped", "delivered"):
        ok(await client.put(f"{url2}/status", json={"status": target}, headers=manager.headers))
    assert_error(
        await client.post(f"{url2}/cancel", headers=manager.headers), 409, "NOT_CANCELLABLE"
    )


async def test_partial_refunds_by_amount_and_lines_never_exceed_what_was_paid(
    client, container, drain, make_user
):
    manager, user, v, order = await _placed(client, container, drain, make_user, quantity=4)
    url = f"{API}/{order['id']}/refund"
    # 4 x 20.00 = 80.00, free shipping, CA tax 5.80 -> 85.80
    assert order["total"] == "85.80"
    assert_error(
        await client.post(url, json={"amount": "1.00"}, headers=user.headers), 403, "FORBIDDEN"
    )

    part = ok(
        await client.post(
            url, json={"amount": "10.00", "reason": "scratch"}, headers=manager.headers
        ),
        201,
    )
    assert part["status"] == "partially_refunded"
    assert part["refunded"] == "10.00"

    [line] = part["items"]
    by_line = ok(
        await client.post(
            url,
            json={"lines": [{"order_item_id": line["id"], "quantity": 1}]},
            headers=manager.headers,
        ),
        201,
    )
    assert by_line["refunded"] == "31.45"  # + one unit's share of the line: 85.80 / 4
    assert by_line["items"][0]["refunded_quantity"] == 1
    assert (await stock(container, v["variant_id"]))["on_hand"] == 7  # not shipped: restocked

    too_much = await client.post(url, json={"amount": "60.00"}, headers=manager.headers)
    assert_error(too_much, 409, "REFUND_EXCEEDS_PAID")
    too_many = await client.post(
        url, json={"lines": [{"order_item_id": line["id"], "quantity": 4}]}, headers=manager.headers
    )
    assert_error(too_many, 409, "REFUND_EXCEEDS_PAID")
    both = await client.post(
        url,
        json={"amount": "1.00", "lines": [{"order_item_id": line["id"], "quantity": 1}]},
        headers=manager.headers,
    )
    assert_error(both, 422, "VALIDATION_ERROR")
    for bad in ({"amount": "-1"}, {"amount": "abc"}, {"amount": "1.001"}):
        assert_error(
            await client.post(url, json=bad, headers=manager.headers), 422, "VALIDATION_ERROR"
        )
    unknown = await client.post(
        url,
        json={"lines": [{"order_item_id": order["id"], "quantity": 1}]},
        headers=manager.headers,
    )
    assert_error(unknown, 422, "UNKNOWN_ORDER_LINE")

    rest = ok(await client.post(url, json={}, headers=manager.headers), 201)
    assert rest["status"] == "refunded"
    assert rest["refunded"] == "85.80"
    assert rest["payment_status"] == "refunded"
    assert_error(
        await client.post(url, json={"amount": "0.01"}, headers=manager.headers),
        409,
        "NOT_REFUNDABLE",
    )
    payment = ok(await client.get(f"{PAYMENTS}/{order['payment_id']}", headers=manager.headers))
    assert payment["refunded_amount"] == "85.80"
    assert payment["status"] == "refunded"


async def test_refund_idempotency_key_replays(client, container, drain, make_user):
    manager, _user, _v, order = await _placed(client, container, drain, make_user)
    url = f"{API}/{order['id']}/refund"
    headers = {**manager.headers, "Idempotency-Key": "r-1"}

    first = ok(await client.post(url, json={"amount": "5.00"}, headers=headers), 201)
    again = await client.post(url, json={"amount": "5.00"}, headers=headers)
    assert ok(again)["refunded"] == first["refunded"] == "5.00"
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await client.post(url, json={"amount": "6.00"}, headers=headers)
    assert_error(other, 409, "IDEMPOTENCY_KEY_REUSED")


async def test_notes_customer_and_internal(client, container, drain, make_user):
    manager, user, _v, order = await _placed(client, container, drain, make_user)
    url = f"{API}/{order['id']}/notes"

    ok(await client.post(url, json={"body": "Please knock twice"}, headers=user.headers), 201)
    ok(await client.post(url, json={"body": "VIP", "internal": True}, headers=manager.headers), 201)
    assert_error(
        await client.post(url, json={"body": "x", "internal": True}, headers=user.headers),
        403,
        "FORBIDDEN",
    )
    assert_error(
        await client.post(url, json={"body": ""}, headers=user.headers), 422, "VALIDATION_ERROR"
    )

    mine = ok(await client.get(url, headers=user.headers))
    assert [n["body"] for n in mine] == ["Please knock twice"]
    staff = ok(await client.get(url, headers=manager.headers))
    assert [(n["body"], n["internal"]) for n in staff] == [
        ("Please knock twice", False),
        ("VIP", True),
    ]
    shown = ok(await client.get(f"{API}/{order['id']}", headers=user.headers))
    assert [n["body"] for n in shown["notes"]] == ["Please knock twice"]


async def test_stats_and_manager_filters(client, container, drain, make_user, monkeypatch):
    manager, user, v, order = await _placed(client, container, drain, make_user)
    second = ok(await checkout(client, user, checkout_body([(v["variant_id"], 1)])), 201)
    ok(await client.post(f"{API}/{second['id']}/cancel", headers=user.headers))
    third = ok(await checkout(client, user, checkout_body([(v["variant_id"], 1)])), 201)
    refund = f"{API}/{third['id']}/refund"
    ok(await client.post(refund, json={"amount": "10.00"}, headers=manager.headers), 201)

    async def unknown(self, *args, **kwargs):
        raise Unavailable("payment service unreachable", code="UPSTREAM_UNAVAILABLE")

    monkeypatch.setattr(PaymentClient, "refund", unknown)  # a claim left pending
    assert_error(
        await client.post(refund, json={"amount": "5.00"}, headers=manager.headers),
        503,
        "UPSTREAM_UNAVAILABLE",
    )

    assert_error(await client.get(f"{API}/stats", headers=user.headers), 403, "FORBIDDEN")
    stats = ok(await client.get(f"{API}/stats", headers=manager.headers))
    assert stats["total_orders"] == 3
    assert stats["by_status"]["confirmed"] == 1
    assert stats["by_status"]["cancelled"] == 1
    assert stats["by_status"]["partially_refunded"] == 1
    [usd] = stats["revenue"]
    # Kept orders only (the cancelled one is no sale), net of refunds that went through
    # (the pending 5.00 is not one yet): 40.00 + 5.99 shipping + 2.90 tax = 48.89, and
    # 20.00 + 5.99 + 1.45 = 27.44 less 10.00 refunded.
    assert usd["orders"] == 2
    assert usd["revenue"] == "76.33"
    assert usd["refunded"] == "10.00"
    assert usd["net_revenue"] == "66.33"
    assert usd["average_order_value"] == "33.16"

    confirmed = ok(await client.get(API, headers=manager.headers, params={"status": "confirmed"}))
    assert [o["id"] for o in confirmed] == [order["id"]]
    mine = ok(await client.get(API, headers=user.headers, params={"user_id": str(manager.id)}))
    # user_id ignored for customers
    assert {o["id"] for o in mine} == {order["id"], second["id"], third["id"]}


async def test_fraud_review_holds_the_order_until_a_manager_decides(
    client, container, drain, make_user
):
    configure(container)
    container.settings.payments.fraud_review_score = 0  # every payment goes to review
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="20.00", stock=10)
    user = await make_user()

    held = ok(await checkout(client, user, checkout_body([(v["variant_id"], 2)])), 201)
    rejected = ok(await checkout(client, user, checkout_body([(v["variant_id"], 3)])), 201)

    for order in (held, rejected):
        assert order["status"] == "pending"
        assert order["on_hold"] is True
        assert order["payment_status"] == "authorized"
    # The units are kept for the held orders: no TTL will free them.
    assert (await stock(container, v["variant_id"]))["on_hand"] == 5
    assert_error(await set_status(client, manager, held, "processing"), 409, "ILLEGAL_TRANSITION")

    approved = ok(await set_status(client, manager, held, "confirmed"))
    assert approved["status"] == "confirmed"
    assert approved["payment_status"] == "paid"
    assert approved["on_hold"] is False
    [payment] = await payments_of(client, manager, held["id"])
    assert payment["status"] == "succeeded"

    cancelled = ok(await client.post(f"{API}/{rejected['id']}/cancel", headers=manager.headers))
    assert cancelled["status"] == "cancelled"
    assert cancelled["payment_status"] == "voided"
    [voided] = await payments_of(client, manager, rejected["id"])
    assert voided["status"] == "canceled"
    assert (await stock(container, v["variant_id"]))["on_hand"] == 8
    # Approving a confirmed order by hand is not a thing.
    assert_error(await set_status(client, manager, held, "confirmed"), 409, "ILLEGAL_TRANSITION")

    # The customer is not told about the fraud review nor who on the staff decided;
    # staff see both.
    hold = ("pending", "pending", "system", "Awaiting payment confirmation")
    assert [
        (h["from_status"], h["status"], h["actor"], h["note"]) for h in held["status_history"]
    ] == [(None, "pending", "customer", None), hold]
    for order, decided in ((held, "confirmed"), (rejected, "cancelled")):
        url = f"{API}/{order['id']}"
        shown = ok(await client.get(url, headers=user.headers))["status_history"]
        tracked = ok(await client.get(f"{url}/tracking", headers=user.headers))["history"]
        assert shown == tracked
        assert [(h["from_status"], h["status"], h["actor"], h["note"]) for h in shown] == [
            (None, "pending", "customer", None),
            hold,
            ("pending", decided, "staff", None),
        ]
        staff = ok(await client.get(url, headers=manager.headers))["status_history"]
        assert [(h["actor"], h["note"]) for h in staff] == [
            (f"user:{user.id}", None),
            ("system:fraud", "Held for review: payment authorised, not captured"),
            (f"user:{manager.id}", None),
        ]


async def test_a_refund_made_at_the_provider_shows_on_the_order(
    client, container, drain, make_user
):
    manager, user, _v, order = await _placed(client, container, drain, make_user)
    event = PaymentRefunded(
        payment_id=order["payment_id"],
        order_id=order["id"],
        user_id=order["user_id"],
        method="card",
        provider="stripe",
        amount=order["total_amount"],
        currency="USD",
        refund_id=uuid.uuid4(),
        refund_amount=1000,
        refunded_amount=1000,
        reason="refunded at the provider",
        fully_refunded=False,
        external=True,
    )
    for _ in range(2):  # a redelivery (another envelope, same refund) counts once
        async with container.db("payment").session() as session:
            await container.publisher("payment").publish(session, event)
        await drain()

    shown = ok(await client.get(f"{API}/{order['id']}", headers=user.headers))
    assert shown["refunded"] == "10.00"
    assert shown["status"] == "partially_refunded"
    assert [(r["amount"], r["status"]) for r in shown["refunds"]] == [("10.00", "succeeded")]
    # What is left can still be refunded, and no more.
    url = f"{API}/{order['id']}/refund"
    too_much = await client.post(url, json={"amount": order["total"]}, headers=manager.headers)
    assert_error(too_much, 409, "REFUND_EXCEEDS_PAID")


async def test_confirmed_orders_count_as_sales_and_cancellations_take_them_back(
    client, container, drain, make_user
):
    _manager, user, v, order = await _placed(client, container, drain, make_user, quantity=3)

    async def sold() -> int:
        await drain()
        async with container.db("product").read_session() as session:
            product = await session.get(Product, uuid.UUID(v["product_id"]))
            return product.sales_count

    assert await sold() == 3
    ok(await client.post(f"{API}/{order['id']}/cancel", headers=user.headers))
    assert await sold() == 0


async def test_a_failed_restock_after_a_refund_is_retried_by_the_sweeper(
    client, container, drain, make_user, monkeypatch
):
    manager, _user, v, order = await _placed(client, container, drain, make_user, quantity=3)
    real = InventoryClient.restock

    async def down(self, *args, **kwargs):
        raise Unavailable("inventory service unreachable", code="UPSTREAM_UNAVAILABLE")

    monkeypatch.setattr(InventoryClient, "restock", down)
    [line] = order["items"]
    body = {"lines": [{"order_item_id": line["id"], "quantity": 2}]}
    refunded = ok(
        await client.post(f"{API}/{order['id']}/refund", json=body, headers=manager.headers), 201
    )
    assert refunded["refunded_amount"] > 0  # the money went back regardless
    assert (await stock(container, v["variant_id"]))["on_hand"] == 7  # not yet

    monkeypatch.setattr(InventoryClient, "restock", real)
    later = utcnow() + timedelta(minutes=5)
    await sweep(container, clock=lambda: later)
    assert (await stock(container, v["variant_id"]))["on_hand"] == 9
    await sweep(container, clock=lambda: later)  # once only
    assert (await stock(container, v["variant_id"]))["on_hand"] == 9


async def test_a_refund_of_units_already_restocked_is_not_retried_forever(
    client, container, drain, make_user
):
    """The units went back before the refund asked (a cancellation whose refund was
    refused restocked them): the refund's restock is refused as exceeding what is
    returnable, and that ends it instead of a retry on every sweep."""
    manager, _user, v, order = await _placed(client, container, drain, make_user, quantity=3)
    inventory = container.clients.get(InventoryClient, "order")
    await inventory.restock(f"order:{order['id']}", reference=f"cancel:{order['id']}")
    assert (await stock(container, v["variant_id"]))["on_hand"] == 10

    [line] = order["items"]
    body = {"lines": [{"order_item_id": line["id"], "quantity": 2}]}
    ok(await client.post(f"{API}/{order['id']}/refund", json=body, headers=manager.headers), 201)
    async with container.db("order").read_session() as session:
        flags = set(await session.scalars(select(OrderRefund.restock)))
    assert flags == {False}
    await sweep(container, clock=lambda: utcnow() + timedelta(minutes=5))
    assert (await stock(container, v["variant_id"]))["on_hand"] == 10  # never twice


async def test_a_refund_moves_the_order_from_the_status_a_concurrent_move_left(
    client, container, drain, make_user
):
    """The refund read the order ``confirmed``; a manager moved it to ``processing``
    before the refund's move: the order still ends ``refunded``, not ``processing``."""
    from sqlalchemy import update

    from ultramarket.services.order.models import Order
    from ultramarket.services.order.service import OrderService

    db = container.db("order")
    if db.dialect == "sqlite":
        pytest.skip("SQLite: the refund's transaction holds the write lock from its first read")
    _manager, _user, _v, placed = await _placed(client, container, drain, make_user)
    order_id = uuid.UUID(placed["id"])
    async with db.session() as session:
        orders = OrderService(session, container.publisher("order"))
        order = await session.get(Order, order_id)
        assert order is not None
        assert order.status == "confirmed"
        async with db.session() as other:  # the manager's move, committed meanwhile
            await other.execute(
                update(Order).where(Order.id == order_id).values(status="processing")
            )
        refund = OrderRefund(
            id=uuid.uuid4(), order_id=order_id, amount=order.paid_amount, reason="test",
            lines=[], status="succeeded", actor="test",
        )  # fmt: skip
        session.add(refund)
        await orders.refunded(order, refund, note_prefix="Refunded")
    final = ok(await client.get(f"{API}/{placed['id']}", headers=_manager.headers))
    assert (final["status"], final["payment_status"]) == ("refunded", "refunded")


async def test_cancelling_after_a_refund_that_kept_units_off_the_shelf_restocks_the_rest(
    client, container, drain, make_user
):
    """3 units sold; 2 refunded with ``restock: false`` (damaged); then the order is
    cancelled: only the third unit goes back. Before, the cancellation restocked every
    unit not yet returned - the two damaged ones too, phantom stock for sale."""
    manager, user, v, order = await _placed(client, container, drain, make_user, quantity=3)
    assert (await stock(container, v["variant_id"]))["on_hand"] == 7
    [line] = order["items"]
    damaged = {"lines": [{"order_item_id": line["id"], "quantity": 2}], "restock": False}
    url = f"{API}/{order['id']}"
    ok(await client.post(f"{url}/refund", json=damaged, headers=manager.headers), 201)
    assert (await stock(container, v["variant_id"]))["on_hand"] == 7

    cancelled = ok(await client.post(f"{url}/cancel", headers=user.headers))
    assert (cancelled["status"], cancelled["payment_status"]) == ("cancelled", "refunded")
    assert cancelled["refunded"] == cancelled["total"]
    level = await stock(container, v["variant_id"])
    assert (level["on_hand"], level["reserved"], level["log_on_hand"]) == (8, 0, 8)
    await sweep(container, clock=lambda: utcnow() + timedelta(minutes=5))
    assert (await stock(container, v["variant_id"]))["on_hand"] == 8


async def test_cancelling_after_a_restocking_refund_returns_each_unit_once(
    client, container, drain, make_user
):
    manager, user, v, order = await _placed(client, container, drain, make_user, quantity=3)
    [line] = order["items"]
    back = {"lines": [{"order_item_id": line["id"], "quantity": 1}]}
    url = f"{API}/{order['id']}"
    ok(await client.post(f"{url}/refund", json=back, headers=manager.headers), 201)
    assert (await stock(container, v["variant_id"]))["on_hand"] == 8
    ok(await client.post(f"{url}/cancel", headers=user.headers))
    await sweep(container, clock=lambda: utcnow() + timedelta(minutes=5))
    level = await stock(container, v["variant_id"])
    assert (level["on_hand"], level["reserved"], level["log_on_hand"]) == (10, 0, 10)


async def test_a_refund_made_through_the_payments_route_shows_on_the_order(
    client, container, drain, make_user
):
    """A manager refunds part of the payment through ``POST /payments/{id}/refund``: the
    order shows it, and a later cancellation refunds only what is left."""
    manager, user, _v, order = await _placed(client, container, drain, make_user)
    assert order["total"] == "48.89"
    ok(
        await client.post(
            f"{PAYMENTS}/{order['payment_id']}/refund",
            json={"amount": "10.00", "reason": "goodwill"},
            headers=manager.headers,
        ),
        201,
    )
    await drain()

    shown = ok(await client.get(f"{API}/{order['id']}", headers=user.headers))
    assert shown["status"] == shown["payment_status"] == "partially_refunded"
    assert shown["refunded"] == "10.00"
    assert [(r["amount"], r["reason"], r["status"]) for r in shown["refunds"]] == [
        ("10.00", "goodwill", "succeeded")
    ]
    await drain()  # the order's own refund.v1 events are not counted back again
    assert ok(await client.get(f"{API}/{order['id']}", headers=user.headers))["refunded"] == "10.00"

    cancelled = ok(await client.post(f"{API}/{order['id']}/cancel", headers=user.headers))
    assert (cancelled["status"], cancelled["payment_status"]) == ("cancelled", "refunded")
    assert cancelled["refunded"] == "48.89"
    assert [(r["amount"], r["status"]) for r in cancelled["refunds"]] == [
        ("10.00", "succeeded"),
        ("38.89", "succeeded"),
    ]
    await drain()
    [payment] = await payments_of(client, manager, order["id"])
    assert (payment["status"], payment["refunded_amount"]) == ("refunded", "48.89")
    after = ok(await client.get(f"{API}/{order['id']}", headers=user.headers))
    assert after["refunded"] == "48.89"
    assert len(after["refunds"]) == 2


async def test_a_refund_made_elsewhere_while_a_claim_is_pending_is_recorded_once_it_ends(
    client, container, drain, make_user, monkeypatch
):
    """A manager refunds the whole order; before the payment service answers it, the
    whole payment is refunded through the payments route. That refund's event finds the
    order's claim pending (the order's refunded total already holds it): it is retried,
    not marked handled. The claim is then refused and given back, and the retry records
    the refund: the order ends refunded, as the money did."""
    manager, user, _v, order = await _placed(client, container, drain, make_user)
    real = PaymentClient.refund
    payment_url = f"{PAYMENTS}/{order['payment_id']}/refund"

    async def raced(self, *args, **kwargs):
        ok(await client.post(payment_url, json={}, headers=manager.headers), 201)
        await drain()  # the event meets the pending claim
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(PaymentClient, "refund", raced)
    refused = await client.post(f"{API}/{order['id']}/refund", json={}, headers=manager.headers)
    assert_error(refused, 409, "ILLEGAL_PAYMENT_STATE")  # nothing left to refund
    monkeypatch.setattr(PaymentClient, "refund", real)
    shown = ok(await client.get(f"{API}/{order['id']}", headers=user.headers))
    assert (shown["refunded"], shown["status"]) == ("0.00", "confirmed")  # not yet

    outbox = container.publisher("payment").tables.outbox
    async with container.db("payment").session() as session:  # the retry's backoff is over
        waiting = await session.execute(
            update(outbox)
            .where(outbox.c.event_type == PaymentRefunded.type, outbox.c.published_at.is_(None))
            .values(available_at=utcnow() - timedelta(seconds=1))
        )
        assert waiting.rowcount == 1
    await drain()

    shown = ok(await client.get(f"{API}/{order['id']}", headers=user.headers))
    assert (shown["status"], shown["payment_status"]) == ("refunded", "refunded")
    assert shown["refunded"] == shown["total"]
    assert sorted((r["amount"], r["status"]) for r in shown["refunds"]) == [
        (order["total"], "failed"),
        (order["total"], "succeeded"),
    ]


async def test_moments_without_an_offset_are_utc_and_a_date_alone_is_accepted(
    client, container, drain, make_user
):
    manager, user, _v, order = await _placed(client, container, drain, make_user)
    url = f"{API}/{order['id']}"

    def moment(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    tracked = ok(
        await client.put(
            f"{url}/tracking", json={"estimated_delivery": "2026-12-01"}, headers=manager.headers
        )
    )
    assert moment(tracked["estimated_delivery"]) == datetime(2026, 12, 1, tzinfo=UTC)
    shipped = ok(
        await client.put(
            f"{url}/status",
            json={"status": "shipped", "estimated_delivery": "2026-12-03T10:00:00"},
            headers=manager.headers,
        )
    )
    assert moment(shipped["estimated_delivery"]) == datetime(2026, 12, 3, 10, tzinfo=UTC)
    offset = {"estimated_delivery": "2026-12-03T10:00:00+02:00"}
    tracked = ok(await client.put(f"{url}/tracking", json=offset, headers=manager.headers))
    assert moment(tracked["estimated_delivery"]) == datetime(2026, 12, 3, 8, tzinfo=UTC)
    assert_error(
        await client.put(
            f"{url}/tracking", json={"estimated_delivery": "soon"}, headers=manager.headers
        ),
        422,
        "VALIDATION_ERROR",
    )

    created = moment(order["created_at"])
    before = (created - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    after = (created + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    for who in (user, manager):
        found = ok(await client.get(API, params={"from": before, "to": after}, headers=who.headers))
        assert [o["id"] for o in found] == [order["id"]]
        assert ok(await client.get(API, params={"from": after}, headers=who.headers)) == []
        assert ok(await client.get(API, params={"to": "2000-01-01"}, headers=who.headers)) == []
    stats = ok(
        await client.get(
            f"{API}/stats", params={"from": before, "to": after}, headers=manager.headers
        )
    )
    assert stats["total_orders"] == 1
    none = ok(
        await client.get(f"{API}/stats", params={"to": "2000-01-01"}, headers=manager.headers)
    )
    assert none["total_orders"] == 0
    assert_error(
        await client.get(API, params={"from": "yesterday"}, headers=manager.headers),
        422,
        "VALIDATION_ERROR",
    )


async def test_the_order_list_counts_units_of_its_page_only(client, container, drain, make_user):
    """The item counts of a page come from that page's lines: no statement aggregates
    the whole order_item table (once a LEFT JOIN of a GROUP BY over every line)."""
    manager, user, v, first = await _placed(client, container, drain, make_user, quantity=2)
    second = ok(await checkout(client, user, checkout_body([(v["variant_id"], 3)])), 201)
    seen: list[str] = []

    def on_execute(conn, cursor, statement, *args) -> None:
        seen.append(" ".join(statement.split()))

    engine = container.db("order").engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        page = ok(await client.get(API, params={"limit": 1}, headers=manager.headers))
        mine = ok(await client.get(API, headers=user.headers))
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)

    assert [(o["id"], o["item_count"]) for o in page] == [(second["id"], 3)]
    assert [(o["id"], o["item_count"]) for o in mine] == [(second["id"], 3), (first["id"], 2)]
    sums = [s for s in seen if "order_item" in s and "sum(" in s.lower()]
    assert len(sums) == 2, seen
    assert all(re.search(r"order_item\.order_id IN \(", s) for s in sums), sums


async def test_tracking_is_set_only_while_fulfilling_and_is_noted_in_the_history(
    client, container, drain, make_user
):
    manager, user, v, order = await _placed(client, container, drain, make_user)
    body = {"carrier": "UPS", "tracking_number": "1Z999", "tracking_url": "https://ups.example/1"}

    tracking = ok(
        await client.put(f"{API}/{order['id']}/tracking", json=body, headers=manager.headers)
    )
    assert (tracking["status"], tracking["carrier"], tracking["tracking_number"]) == (
        "confirmed",
        "UPS",
        "1Z999",
    )
    last = tracking["history"][-1]
    assert (last["from_status"], last["status"]) == ("confirmed", "confirmed")
    assert last["note"] == "Tracking: carrier UPS, tracking number 1Z999, tracking link updated"
    assert_error(
        await client.put(f"{API}/{order['id']}/tracking", json=body, headers=user.headers),
        403,
        "FORBIDDEN",
    )

    cancelled = ok(await checkout(client, user, checkout_body([(v["variant_id"], 1)])), 201)
    ok(await client.post(f"{API}/{cancelled['id']}/cancel", headers=user.headers))
    refunded = ok(await checkout(client, user, checkout_body([(v["variant_id"], 1)])), 201)
    ok(await client.post(f"{API}/{refunded['id']}/refund", json={}, headers=manager.headers), 201)
    for ended in (cancelled, refunded):
        url = f"{API}/{ended['id']}"
        error = assert_error(
            await client.put(f"{url}/tracking", json=body, headers=manager.headers),
            409,
            "NOT_TRACKABLE",
        )
        assert error["details"] == [{"status": "cancelled" if ended is cancelled else "refunded"}]
        shown = ok(await client.get(url, headers=manager.headers))
        assert (shown["carrier"], shown["tracking_number"]) == (None, None)
        assert all(
            h["note"] is None or "Tracking" not in h["note"] for h in shown["status_history"]
        )
