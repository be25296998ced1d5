"""Restock: sold units of a committed reservation go back to stock (an order cancelled or
refunded before shipping), never more than were sold, once per reference."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from inventory_helpers import API, assert_audit, assert_error, item_state, ok, outbox, stocked
from sqlalchemy import func, select

from ultramarket.core.container import Container
from ultramarket.core.errors import Conflict, ValidationFailed
from ultramarket.services.inventory.client import InventoryClient
from ultramarket.services.inventory.models import StockMovement


async def sold(client, headers, key: str, lines: list[tuple[uuid.UUID, int]]) -> None:
    """Reserve and commit ``lines`` under ``key``: the sale an order makes."""
    body = {"key": key, "lines": [{"variant_id": str(v), "quantity": q} for v, q in lines]}
    ok(await client.post(f"{API}/reservations", json=body, headers=headers), 201)
    ok(await client.post(f"{API}/reservations/{key}/commit", headers=headers))


async def restock(
    client, headers, key: str, reference: str, lines: list[tuple[uuid.UUID, int]] | None = None
) -> Any:
    body = {
        "reference": reference,
        "lines": None
        if lines is None
        else [{"variant_id": str(v), "quantity": q} for v, q in lines],
    }
    return await client.post(f"{API}/reservations/{key}/restock", json=body, headers=headers)


def returned(reservation: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(quantity, returned) per variant."""
    return {
        line["variant_id"]: (line["quantity"], line["returned"]) for line in reservation["lines"]
    }


async def restock_movements(container: Container, item_id: uuid.UUID) -> list[tuple[int, str]]:
    async with container.db("inventory").read_session() as session:
        rows = await session.execute(
            select(StockMovement.delta_on_hand, StockMovement.reference)
            .where(StockMovement.item_id == item_id, StockMovement.reason == "restock")
            .order_by(StockMovement.created_at)
        )
        return [(r[0], r[1]) for r in rows]


async def movement_count(container: Container) -> int:
    async with container.db("inventory").read_session() as session:
        return int(await session.scalar(select(func.count()).select_from(StockMovement)) or 0)


async def test_restock_without_lines_gives_every_sold_unit_back(client, container, make_user):
    manager = await make_user(role="MANAGER")
    a_item, a = await stocked(container, 10)
    b_item, b = await stocked(container, 2, threshold=1)
    await sold(client, manager.headers, "order-1", [(a, 3), (b, 2)])
    assert (await item_state(container, b_item))["on_hand"] == 0
    published = len(await outbox(container))

    data = ok(await restock(client, manager.headers, "order-1", "cancel-1"))

    assert (data["key"], data["status"], data["quantity"]) == ("order-1", "committed", 5)
    assert returned(data) == {str(a): (3, 3), str(b): (2, 2)}
    for item_id, on_hand in ((a_item, 10), (b_item, 2)):
        state = await item_state(container, item_id)
        assert (state["on_hand"], state["reserved"]) == (on_hand, 0)
        assert_audit(state)
    assert await restock_movements(container, a_item) == [(3, "order-1")]
    assert await restock_movements(container, b_item) == [(2, "order-1")]
    events = (await outbox(container))[published:]
    restocked = [
        p for t, p in events if t == "inventory.stock_changed.v1" and p["reason"] == "restock"
    ]
    assert {(p["variant_id"], p["on_hand"]) for p in restocked} == {(str(a), 10), (str(b), 2)}
    back = [p for t, p in events if t == "inventory.back_in_stock.v1"]
    assert [(p["variant_id"], p["available"]) for p in back] == [(str(b), 2)]
    # The reservation reads the same afterwards, and the alert for b is resolved.
    again = ok(await client.get(f"{API}/reservations/order-1", headers=manager.headers))
    assert again == data
    alerts = ok(await client.get(f"{API}/alerts", headers=manager.headers))
    assert [x for x in alerts if x["variant_id"] == str(b) and x["kind"] == "out_of_stock"] == []


async def test_partial_restocks_add_up_to_what_was_sold(client, container, make_user):
    manager = await make_user(role="MANAGER")
    a_item, a = await stocked(container, 10)
    b_item, b = await stocked(container, 10)
    await sold(client, manager.headers, "order-2", [(a, 5), (b, 2)])

    first = ok(await restock(client, manager.headers, "order-2", "refund-1", [(a, 2)]))
    assert returned(first) == {str(a): (5, 2), str(b): (2, 0)}
    assert (await item_state(container, a_item))["on_hand"] == 7
    assert (await item_state(container, b_item))["on_hand"] == 8

    # Without lines: what is left on every line.
    rest = ok(await restock(client, manager.headers, "order-2", "cancel"))
    assert returned(rest) == {str(a): (5, 5), str(b): (2, 2)}
    assert await restock_movements(container, a_item) == [(2, "order-2"), (3, "order-2")]

    # Nothing left: a new reference changes nothing (and is no error).
    before = await movement_count(container)
    empty = ok(await restock(client, manager.headers, "order-2", "cancel-again"))
    assert returned(empty) == returned(rest)
    assert await movement_count(container) == before
    for item_id in (a_item, b_item):
        state = await item_state(container, item_id)
        assert (state["on_hand"], state["reserved"]) == (10, 0)
        assert_audit(state)


async def test_over_return_is_refused_and_nothing_changes(client, container, make_user):
    manager = await make_user(role="MANAGER")
    a_item, a = await stocked(container, 10)
    b_item, b = await stocked(container, 10)
    await sold(client, manager.headers, "order-3", [(a, 3), (b, 2)])
    ok(await restock(client, manager.headers, "order-3", "refund-1", [(b, 1)]))
    before = {item: await item_state(container, item) for item in (a_item, b_item)}
    moves = await movement_count(container)

    # a's line is fine, b's asks one more than is left: neither is restocked.
    response = await restock(client, manager.headers, "order-3", "refund-2", [(a, 1), (b, 2)])
    error = assert_error(response, 409, "RESTOCK_EXCEEDS_RETURNABLE")
    assert error["details"] == [{"variant_id": str(b), "requested": 2, "returnable": 1}]

    stranger = uuid.uuid4()
    response = await restock(client, manager.headers, "order-3", "refund-2", [(stranger, 1)])
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert [d["variant_id"] for d in error["details"]] == [str(stranger)]

    for lines in (
        [{"variant_id": str(a), "quantity": 0}],
        [{"variant_id": str(a), "quantity": 1}] * 2,
        [],
    ):
        body = {"reference": "refund-2", "lines": lines}
        response = await client.post(
            f"{API}/reservations/order-3/restock", json=body, headers=manager.headers
        )
        assert_error(response, 422, "VALIDATION_ERROR")
    for reference in ("", "x" * 201):
        response = await restock(client, manager.headers, "order-3", reference)
        assert_error(response, 422, "VALIDATION_ERROR")

    for item_id, state in before.items():
        assert await item_state(container, item_id) == state
    assert await movement_count(container) == moves
    data = ok(await client.get(f"{API}/reservations/order-3", headers=manager.headers))
    assert returned(data) == {str(a): (3, 0), str(b): (2, 1)}
    # A refused request keeps nothing: its reference is still free.
    data = ok(await restock(client, manager.headers, "order-3", "refund-2", [(a, 1), (b, 1)]))
    assert returned(data) == {str(a): (3, 1), str(b): (2, 2)}


async def test_only_a_committed_reservation_is_restocked(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, variant = await stocked(container, 10)
    lines = [{"variant_id": str(variant), "quantity": 2}]
    for key in ("active-1", "released-1"):
        body = {"key": key, "lines": lines}
        ok(await client.post(f"{API}/reservations", json=body, headers=manager.headers), 201)
    ok(await client.post(f"{API}/reservations/released-1/release", headers=manager.headers))
    before = await item_state(container, item_id)

    for key, status in (("active-1", "active"), ("released-1", "released")):
        response = await restock(client, manager.headers, key, "cancel")
        error = assert_error(response, 409, "RESERVATION_NOT_COMMITTED")
        assert status in error["message"]
    response = await restock(client, manager.headers, "no-such-order", "cancel")
    assert_error(response, 404, "RESERVATION_NOT_FOUND")

    assert await item_state(container, item_id) == before
    data = ok(await client.get(f"{API}/reservations/active-1", headers=manager.headers))
    assert (data["status"], data["lines"][0]["returned"]) == ("active", 0)


async def test_same_reference_replays_and_other_lines_conflict(client, container, make_user):
    manager = await make_user(role="MANAGER")
    item_id, variant = await stocked(container, 10)
    await sold(client, manager.headers, "order-4", [(variant, 4)])

    first = ok(await restock(client, manager.headers, "order-4", "refund-7", [(variant, 2)]))
    moves = await movement_count(container)
    again = ok(await restock(client, manager.headers, "order-4", "refund-7", [(variant, 2)]))
    assert again == first
    assert returned(again) == {str(variant): (4, 2)}
    assert await movement_count(container) == moves
    assert (await item_state(container, item_id))["on_hand"] == 8

    for lines in ([(variant, 1)], None):
        response = await restock(client, manager.headers, "order-4", "refund-7", lines)
        error = assert_error(response, 409, "IDEMPOTENCY_KEY_REUSED")
        assert error["details"] == [{"key": "order-4", "reference": "refund-7"}]
    state = await item_state(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (8, 0)
    assert_audit(state)
    assert await restock_movements(container, item_id) == [(2, "order-4")]

    # The reference is scoped to its reservation: another order may use the same one.
    await sold(client, manager.headers, "order-5", [(variant, 1)])
    data = ok(await restock(client, manager.headers, "order-5", "refund-7", [(variant, 1)]))
    assert returned(data) == {str(variant): (1, 1)}
    assert (await item_state(container, item_id))["on_hand"] == 8


async def test_restock_is_for_staff_and_services(client, container, make_user):
    manager = await make_user(role="MANAGER")
    customer = await make_user()
    item_id, variant = await stocked(container, 10)
    await sold(client, manager.headers, "order-6", [(variant, 3)])

    response = await restock(client, customer.headers, "order-6", "cancel")
    assert_error(response, 403, "FORBIDDEN")
    response = await restock(client, {}, "order-6", "cancel")
    assert_error(response, 401, "UNAUTHENTICATED")
    assert (await item_state(container, item_id))["on_hand"] == 7

    # The order service, through its typed client.
    inventory = container.client(InventoryClient, "order")
    partial = await inventory.restock("order-6", "refund-line-1", [(variant, 1)])
    assert [(line.variant_id, line.quantity, line.returned) for line in partial.lines] == [
        (variant, 3, 1)
    ]
    assert await inventory.restock("order-6", "refund-line-1", [(variant, 1)]) == partial
    with pytest.raises(Conflict) as conflict:
        await inventory.restock("order-6", "refund-line-2", [(variant, 3)])
    assert conflict.value.code == "RESTOCK_EXCEEDS_RETURNABLE"
    with pytest.raises(ValidationFailed):
        await inventory.restock("order-6", "refund-line-2", [(uuid.uuid4(), 1)])
    rest = await inventory.restock("order-6", "cancel")
    assert (rest.status, rest.lines[0].returned) == ("committed", 3)
    state = await item_state(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (10, 0)
    assert_audit(state)


async def test_restock_never_lifts_on_hand_above_the_maximum(client, container, make_user):
    """Counted up to the maximum after the sale: giving the sold units back would pass it,
    so the restock is a 409 and nothing changes (its reference stays free)."""
    manager = await make_user(role="MANAGER")
    item_id, variant = await stocked(container, 10)
    await sold(client, manager.headers, "order-max", [(variant, 4)])
    ok(await client.put(f"{API}/{item_id}", json={"on_hand": 999_999_998},
                        headers=manager.headers))  # fmt: skip
    moves = await movement_count(container)

    response = await restock(client, manager.headers, "order-max", "cancel")
    error = assert_error(response, 409, "STOCK_LIMIT_EXCEEDED")
    assert error["details"] == [
        {"on_hand": 999_999_998, "requested_delta": 4, "maximum": 1_000_000_000}
    ]

    state = await item_state(container, item_id)
    assert (state["on_hand"], state["reserved"]) == (999_999_998, 0)
    assert_audit(state)
    assert await movement_count(container) == moves
    data = ok(await client.get(f"{API}/reservations/order-max", headers=manager.headers))
    assert returned(data) == {str(variant): (4, 0)}
    # Two of them still fit.
    data = ok(await restock(client, manager.headers, "order-max", "cancel", [(variant, 2)]))
    assert returned(data) == {str(variant): (4, 2)}
    assert (await item_state(container, item_id))["on_hand"] == 1_000_000_000
