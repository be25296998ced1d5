"""Helpers shared by the inventory API tests (imported by module name; not a test file)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from tests.support import assert_error, ok  # noqa: F401 - re-exported for the tests

from ultramarket.core.container import Container
from ultramarket.services.inventory.models import StockItem, StockMovement
from ultramarket.services.inventory.schemas import StockUpdate
from ultramarket.services.inventory.service import InventoryService

API = "/api/v1/inventory"


async def stocked(
    container: Container, on_hand: int, *, threshold: int | None = None, sku: str | None = None
) -> tuple[uuid.UUID, uuid.UUID]:
    """A variant with an item in the default warehouse holding ``on_hand``: (item, variant)."""
    variant_id = uuid.uuid4()
    async with container.db("inventory").session() as session:
        service = InventoryService(session, container.publisher("inventory"), actor="test")
        await service.ensure_variant(variant_id, sku or f"SKU-{variant_id.hex[:8]}")
        item_id = await session.scalar(
            select(StockItem.id).where(StockItem.variant_id == variant_id)
        )
        assert item_id is not None
        await service.update_item(
            item_id, StockUpdate(on_hand=on_hand, low_stock_threshold=threshold)
        )
    return item_id, variant_id


async def item_state(container: Container, item_id: uuid.UUID) -> dict[str, int]:
    """The item's counts and the sums of its movement log."""
    async with container.db("inventory").read_session() as session:
        item = await session.get(StockItem, item_id)
        assert item is not None
        on_hand, reserved = item.on_hand, item.reserved
        sums = (
            await session.execute(
                select(
                    func.coalesce(func.sum(StockMovement.delta_on_hand), 0),
                    func.coalesce(func.sum(StockMovement.delta_reserved), 0),
                ).where(StockMovement.item_id == item_id)
            )
        ).one()
    return {
        "on_hand": on_hand,
        "reserved": reserved,
        "moved_on_hand": int(sums[0]),
        "moved_reserved": int(sums[1]),
    }


def assert_audit(state: dict[str, int]) -> None:
    assert state["on_hand"] == state["moved_on_hand"], state
    assert state["reserved"] == state["moved_reserved"], state
    assert 0 <= state["reserved"] <= state["on_hand"], state


async def outbox(container: Container) -> list[tuple[str, dict[str, Any]]]:
    table = container.events("inventory").outbox
    async with container.db("inventory").read_session() as session:
        rows = await session.execute(
            select(table.c.event_type, table.c.payload).order_by(table.c.occurred_at)
        )
        return [(r[0], r[1]) for r in rows]
