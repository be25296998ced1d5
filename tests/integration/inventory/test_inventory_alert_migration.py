"""The one-open-alert migration puts the alerts in line with the items before it indexes
them: duplicates resolved (the oldest stays), stale ones resolved, missing ones opened."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from ultramarket import registry
from ultramarket.core.db import Database, utcnow
from ultramarket.core.migrations import downgrade, upgrade
from ultramarket.services.inventory.models import DEFAULT_WAREHOUSE_ID, StockAlert, StockItem

BEFORE = "4ebb2dfdcacb"  # the revision before the index


async def test_the_migration_puts_open_alerts_in_line_with_the_items(stack) -> None:
    spec = next(s for s in registry.load_all() if s.name == "inventory")
    downgrade(spec, stack.database_url, BEFORE)
    db = Database(stack.database_url, schemas=["inventory"])
    now = utcnow()
    counts = {"dup": (2, 0), "stale": (10, 0), "out": (0, 0), "low": (3, 0), "fine": (9, 1)}
    ids = {name: uuid.uuid4() for name in counts}

    def alert(name: str, kind: str, age: int, resolved: bool = False) -> StockAlert:
        return StockAlert(
            item_id=ids[name], variant_id=ids[name], sku=name, warehouse_id=DEFAULT_WAREHOUSE_ID,
            kind=kind, available=0, threshold=5, created_at=now - timedelta(minutes=age),
            resolved_at=now if resolved else None,
        )  # fmt: skip

    try:
        async with db.session() as session:
            for name, (on_hand, reserved) in counts.items():
                session.add(
                    StockItem(
                        id=ids[name],
                        variant_id=ids[name],
                        sku=name,
                        warehouse_id=DEFAULT_WAREHOUSE_ID,
                        on_hand=on_hand,
                        reserved=reserved,
                        low_stock_threshold=5,
                    )
                )
            await session.flush()
            session.add_all(
                [
                    # Two open of a kind (a crossing's alert written twice): the oldest stays.
                    alert("dup", "low_stock", 30),
                    alert("dup", "low_stock", 20),
                    alert("dup", "low_stock", 10),
                    # Opened late from stale figures: the item has 10 now.
                    alert("stale", "out_of_stock", 5),
                    alert("stale", "low_stock", 5),
                    # Low (and out) with none open: created at 0, or only resolved ones.
                    alert("low", "low_stock", 50, resolved=True),
                ]
            )
        upgrade(spec, stack.database_url)
        async with db.read_session() as session:
            rows = (
                await session.execute(
                    select(StockAlert.sku, StockAlert.kind, StockAlert.created_at).where(
                        StockAlert.item_id.in_(list(ids.values())),
                        StockAlert.resolved_at.is_(None),
                    )
                )
            ).all()
    finally:
        await db.dispose()
    opened = sorted((sku, kind) for sku, kind, _ in rows)
    assert opened == [
        ("dup", "low_stock"),
        ("low", "low_stock"),
        ("out", "low_stock"),
        ("out", "out_of_stock"),
    ]
    [kept] = [at for sku, _, at in rows if sku == "dup"]
    assert kept == now - timedelta(minutes=30)
