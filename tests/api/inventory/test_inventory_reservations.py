"""Reservations: single-item and multi-line, idempotent by key, commit, release, expiry."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import orjson
import pytest
from inventory_helpers import API, assert_audit, assert_error, item_state, ok, outbox, stocked

from ultramarket.core.clients import Reply
from ultramarket.core.db import utcnow
from ultramarket.core.errors import Conflict
from ultramarket.services.inventory.client import InventoryClient
from ultramarket.services.inventory.service import release_expired


async def test_reserve_returns_201_and_replays_by_key(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, _ = await stocked(container, 10)
    body = {"quantity": 3, "key": "order-1", "ttl_seconds": 600}
    first = ok(
        await client.post(f"{API}/{item_id}/reserve", json=body, headers=manager.headers), 201
    )
    assert set(first) >= {"id", "key", "quantity", "status", "expires_at"}
    assert (first["key"], first["quantity"], first["status"]) == ("order-1", 3, "active")
    again = ok(
        await client.post(f"{API}/{item_id}/reserve", json=body, headers=manager.headers), 200
    )
    assert again["id"] == first["id"]
    state = await item_state(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (10, 3)
    item = ok(await client.get(f"{API}/{item_id}", headers=manager.headers))
    assert item["available"] == 7
    response = await client.post(
        f"{API}/{item_id}/reserve", json={**body, "quantity": 4}, headers=manager.headers
    )
    assert_error(response, 409, "IDEMPOTENCY_KEY_REUSED")
    assert (await item_state(container, item_id))["reserved"] == 3


async def test_short_stock_is_409_with_what_is_available(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, variant_id = await stocked(container, 5)
    response = await client.post(
        f"{API}/{item_id}/reserve", json={"quantity": 6, "key": "big"}, headers=manager.headers
    )
    error = assert_error(response, 409, "INSUFFICIENT_STOCK")
    assert error["details"] == [
        {"item_id": str(item_id), "variant_id": str(variant_id), "requested": 6, "available": 5}
    ]
    state = await item_state(container, item_id)
    assert state["reserved"] == 0
    assert_audit(state)
    # Nothing kept: the key is free for a smaller request.
    ok(
        await client.post(
            f"{API}/{item_id}/reserve", json={"quantity": 5, "key": "big"}, headers=manager.headers
        ),
        201,
    )


async def test_quantity_must_be_positive(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, variant_id = await stocked(container, 5)
    for quantity in (0, -1, "two"):
        response = await client.post(
            f"{API}/{item_id}/reserve",
            json={"quantity": quantity, "key": "q"},
            headers=manager.headers,
        )
        assert_error(response, 422, "VALIDATION_ERROR")
        response = await client.post(
            f"{API}/reservations",
            json={"key": "q", "lines": [{"variant_id": str(variant_id), "quantity": quantity}]},
            headers=manager.headers,
        )
        assert_error(response, 422, "VALIDATION_ERROR")
    response = await client.post(
        f"{API}/{uuid.uuid4()}/reserve", json={"quantity": 1, "key": "q"}, headers=manager.headers
    )
    assert_error(response, 404, "ITEM_NOT_FOUND")
    assert (await item_state(container, item_id))["reserved"] == 0


async def test_release_by_key(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, _ = await stocked(container, 10)
    other_id, _ = await stocked(container, 10)
    ok(
        await client.post(
            f"{API}/{item_id}/reserve", json={"quantity": 4, "key": "r-1"}, headers=manager.headers
        ),
        201,
    )
    response = await client.delete(f"{API}/{other_id}/reserve?key=r-1", headers=manager.headers)
    assert_error(response, 404, "RESERVATION_NOT_FOUND")
    response = await client.delete(f"{API}/{item_id}/reserve?key=nope", headers=manager.headers)
    assert_error(response, 404, "RESERVATION_NOT_FOUND")
    data = ok(await client.delete(f"{API}/{item_id}/reserve?key=r-1", headers=manager.headers))
    assert data["status"] == "released"
    state = await item_state(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (10, 0)
    assert_audit(state)
    response = await client.delete(f"{API}/{item_id}/reserve?key=r-1", headers=manager.headers)
    assert_error(response, 409, "RESERVATION_NOT_ACTIVE")


async def test_multi_line_commit_is_a_sale_once(client, container, make_user):
    manager = await make_user(role="MANAGER")
    a_item, a = await stocked(container, 10)
    b_item, b = await stocked(container, 3)
    body = {
        "key": "order-42",
        "ttl_seconds": 900,
        "lines": [{"variant_id": str(a), "quantity": 2}, {"variant_id": str(b), "quantity": 3}],
    }
    data = ok(await client.post(f"{API}/reservations", json=body, headers=manager.headers), 201)
    assert data["quantity"] == 5
    assert len(data["lines"]) == 2
    replay = ok(await client.post(f"{API}/reservations", json=body, headers=manager.headers), 200)
    assert replay["id"] == data["id"]
    committed = ok(
        await client.post(f"{API}/reservations/order-42/commit", headers=manager.headers)
    )
    assert committed["status"] == "committed"
    for item_id, on_hand in ((a_item, 8), (b_item, 0)):
        state = await item_state(container, item_id)
        assert (state["on_hand"], state["reserved"]) == (on_hand, 0)
        assert_audit(state)
    response = await client.post(f"{API}/reservations/order-42/commit", headers=manager.headers)
    assert_error(response, 409, "RESERVATION_ALREADY_COMMITTED")
    response = await client.post(f"{API}/reservations/order-42/release", headers=manager.headers)
    assert_error(response, 409, "RESERVATION_ALREADY_COMMITTED")
    assert (await item_state(container, a_item))["on_hand"] == 8
    response = await client.post(f"{API}/reservations/nope/commit", headers=manager.headers)
    assert_error(response, 404, "RESERVATION_NOT_FOUND")


async def test_multi_line_is_all_or_nothing(client, container, make_user):
    manager = await make_user(role="MANAGER")
    a_item, a = await stocked(container, 10)
    b_item, b = await stocked(container, 1)
    c_item, c = await stocked(container, 0)
    missing = uuid.uuid4()
    body = {
        "key": "order-short",
        "lines": [
            {"variant_id": str(a), "quantity": 2},
            {"variant_id": str(b), "quantity": 3},
            {"variant_id": str(c), "quantity": 1},
            {"variant_id": str(missing), "quantity": 1},
        ],
    }
    response = await client.post(f"{API}/reservations", json=body, headers=manager.headers)
    error = assert_error(response, 409, "INSUFFICIENT_STOCK")
    short = {d["variant_id"]: (d["requested"], d["available"]) for d in error["details"]}
    assert short == {str(b): (3, 1), str(c): (1, 0), str(missing): (1, 0)}
    for item_id in (a_item, b_item, c_item):
        state = await item_state(container, item_id)
        assert state["reserved"] == 0
        assert_audit(state)
    response = await client.get(f"{API}/reservations/order-short", headers=manager.headers)
    assert_error(response, 404, "RESERVATION_NOT_FOUND")
    dup = {"key": "d", "lines": [{"variant_id": str(a), "quantity": 1}] * 2}
    response = await client.post(f"{API}/reservations", json=dup, headers=manager.headers)
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_release_then_commit_is_refused(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, variant = await stocked(container, 4)
    body = {"key": "o-7", "lines": [{"variant_id": str(variant), "quantity": 4}]}
    ok(await client.post(f"{API}/reservations", json=body, headers=manager.headers), 201)
    data = ok(await client.post(f"{API}/reservations/o-7/release", headers=manager.headers))
    assert data["status"] == "released"
    response = await client.post(f"{API}/reservations/o-7/commit", headers=manager.headers)
    assert_error(response, 409, "RESERVATION_NOT_ACTIVE")
    state = await item_state(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (4, 0)
    assert_audit(state)


async def test_sweeper_expires_reservations_after_ttl(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, variant = await stocked(container, 5)
    ok(
        await client.post(
            f"{API}/{item_id}/reserve",
            json={"quantity": 2, "key": "short-lived", "ttl_seconds": 1},
            headers=manager.headers,
        ),
        201,
    )
    body = {
        "key": "long-lived",
        "ttl_seconds": 3600,
        "lines": [{"variant_id": str(variant), "quantity": 1}],
    }
    ok(await client.post(f"{API}/reservations", json=body, headers=manager.headers), 201)
    db, publisher = container.db("inventory"), container.publisher("inventory")
    assert await release_expired(db, publisher) == 0  # not due yet
    later = utcnow() + timedelta(seconds=5)
    assert await release_expired(db, publisher, now=later) == 1
    assert await release_expired(db, publisher, now=later) == 0  # never twice
    data = ok(await client.get(f"{API}/reservations/short-lived", headers=manager.headers))
    assert data["status"] == "expired"
    state = await item_state(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (5, 1)
    assert_audit(state)
    response = await client.post(f"{API}/reservations/short-lived/commit", headers=manager.headers)
    assert_error(response, 409, "RESERVATION_EXPIRED")
    reasons = [p["reason"] for t, p in await outbox(container) if t == "inventory.stock_changed.v1"]
    assert reasons[-1] == "expiry"


async def test_commit_after_ttl_expires_it_instead(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, variant = await stocked(container, 5)
    body = {"key": "late", "ttl_seconds": 1, "lines": [{"variant_id": str(variant), "quantity": 2}]}
    ok(await client.post(f"{API}/reservations", json=body, headers=manager.headers), 201)
    from sqlalchemy import update

    from ultramarket.services.inventory.models import Reservation

    async with container.db("inventory").session() as session:
        await session.execute(
            update(Reservation).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    response = await client.post(f"{API}/reservations/late/commit", headers=manager.headers)
    assert_error(response, 409, "RESERVATION_EXPIRED")
    data = ok(await client.get(f"{API}/reservations/late", headers=manager.headers))
    assert data["status"] == "expired"
    state = await item_state(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (5, 0)
    assert_audit(state)


async def test_replaying_a_key_with_another_ttl_is_409(client, container, make_user):
    """A replay is the same request: the same lines AND the same TTL. Another TTL is
    another request under a used key, not a silent 200 with the first expiry."""
    manager = await make_user(role="MANAGER")
    item_id, variant = await stocked(container, 10)
    body = {"quantity": 2, "key": "ttl-1", "ttl_seconds": 60}
    first = ok(await client.post(f"{API}/{item_id}/reserve", json=body, headers=manager.headers),
               201)  # fmt: skip
    assert (
        ok(await client.post(f"{API}/{item_id}/reserve", json=body, headers=manager.headers))
        == first
    )
    response = await client.post(
        f"{API}/{item_id}/reserve", json={**body, "ttl_seconds": 86400}, headers=manager.headers
    )
    error = assert_error(response, 409, "IDEMPOTENCY_KEY_REUSED")
    assert error["details"][0]["key"] == "ttl-1"

    lines = {"key": "ttl-2", "ttl_seconds": 60,
             "lines": [{"variant_id": str(variant), "quantity": 1}]}  # fmt: skip
    made = ok(await client.post(f"{API}/reservations", json=lines, headers=manager.headers), 201)
    assert ok(await client.post(f"{API}/reservations", json=lines, headers=manager.headers)) == made
    for other in ({**lines, "ttl_seconds": 86400}, {k: v for k, v in lines.items()
                                                     if k != "ttl_seconds"}):  # fmt: skip
        response = await client.post(f"{API}/reservations", json=other, headers=manager.headers)
        assert_error(response, 409, "IDEMPOTENCY_KEY_REUSED")
    for key in ("ttl-1", "ttl-2"):
        data = ok(await client.get(f"{API}/reservations/{key}", headers=manager.headers))
        assert data["expires_at"] == (first if key == "ttl-1" else made)["expires_at"]
    state = await item_state(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (10, 3)
    assert_audit(state)


async def test_replaying_a_closed_reservation_is_409_not_active(client, container, make_user):
    """A released or expired reservation holds nothing: replaying its key must not answer
    as if the units were held. A committed one replays as committed (the sale stands)."""
    manager = await make_user(role="MANAGER")
    item_id, variant = await stocked(container, 10)

    def one(key: str) -> dict:
        return {"key": key, "ttl_seconds": 60,
                "lines": [{"variant_id": str(variant), "quantity": 1}]}  # fmt: skip

    async def reserve(key: str) -> httpx.Response:
        return await client.post(f"{API}/reservations", json=one(key), headers=manager.headers)

    async def reserve_item(key: str) -> httpx.Response:
        return await client.post(
            f"{API}/{item_id}/reserve",
            json={"quantity": 1, "key": key, "ttl_seconds": 60},
            headers=manager.headers,
        )

    for key in ("gone-released", "gone-expired"):
        ok(await reserve(key), 201)
    ok(await client.post(f"{API}/reservations/gone-released/release", headers=manager.headers))
    later = utcnow() + timedelta(seconds=61)
    db, publisher = container.db("inventory"), container.publisher("inventory")
    assert await release_expired(db, publisher, now=later) == 1
    ok(await reserve("sold"), 201)
    ok(await client.post(f"{API}/reservations/sold/commit", headers=manager.headers))

    for key, status in (("gone-released", "released"), ("gone-expired", "expired")):
        for replay in (reserve, reserve_item):
            error = assert_error(await replay(key), 409, "RESERVATION_NOT_ACTIVE")
            assert error["details"] == [{"key": key, "status": status}]
    again = ok(await reserve("sold"))
    assert (again["status"], again["quantity"]) == ("committed", 1)
    state = await item_state(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (9, 0)
    assert_audit(state)


async def test_the_client_refuses_a_reservation_that_is_not_active(client, container, make_user):
    manager = await make_user(role="MANAGER")
    _, variant = await stocked(container, 5)
    inventory = container.client(InventoryClient, "order")
    made = await inventory.reserve("order:c-1", [(variant, 2)], ttl_seconds=60)
    assert made.status == "active"
    assert await inventory.reserve("order:c-1", [(variant, 2)], ttl_seconds=60) == made
    await inventory.release("order:c-1")
    with pytest.raises(Conflict) as refused:
        await inventory.reserve("order:c-1", [(variant, 2)], ttl_seconds=60)
    assert refused.value.code == "RESERVATION_NOT_ACTIVE"

    # Whatever the server answers: a reservation that holds nothing is never handed over
    # as if it did.
    closed = {**made.model_dump(mode="json"), "status": "released"}

    class Replays:
        async def send(self, method, path, *, json, params, headers) -> Reply:
            return Reply(200, {}, orjson.dumps({"success": True, "data": closed}))

        async def close(self) -> None:
            return None

    async def token(caller: str) -> str:
        return "t"

    stale = InventoryClient(Replays(), caller="order", token=token)
    with pytest.raises(Conflict) as refused:
        await stale.reserve("order:c-1", [(variant, 2)], ttl_seconds=60)
    assert refused.value.code == "RESERVATION_NOT_ACTIVE"
    listed = ok(await client.get(f"{API}/reservations/order:c-1", headers=manager.headers))
    assert listed["status"] == "released"
