"""Reserving one item in ONE statement on PostgreSQL: the path for a hot SKU.

Every reservation of an item queues on its row lock. In the general path the lock is
taken by the conditional UPDATE and held until COMMIT, across the statements after it
and the event-loop turns between them; under load each turn waits behind every other
request of the worker, so one hot item sells at a few reservations a second per
turn. Here the UPDATE, the reservation, its line, the movement and the
``inventory.stock_changed`` outbox row are data-modifying CTEs of a single statement
run in autocommit: the lock is held only while the server executes it.

The rules are the same: the UPDATE's ``WHERE`` decides (enough available), and every
other row is inserted ``FROM upd``, so nothing is written when it refuses. The
statement is all or nothing, so a reused key (unique violation) undoes the UPDATE
too. Whatever this path does not serve (short stock, an unknown item, a replayed
key) returns None and the caller takes the general path, which answers precisely.
A threshold crossing (rare) writes its alert and events in a short follow-up unit
of work.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg

from ultramarket.core.db import Database
from ultramarket.core.events import EventPublisher
from ultramarket.core.logging import request_id_var
from ultramarket.services.inventory.events import StockChanged
from ultramarket.services.inventory.models import (
    Reservation,
    ReservationLine,
    StockItem,
    StockMovement,
)
from ultramarket.services.inventory.schemas import ReservationLineRead, ReservationRead

log = logging.getLogger("ultramarket.inventory")


def _sql(outbox: str) -> str:
    item = StockItem.__table__.fullname
    res = Reservation.__table__.fullname
    line = ReservationLine.__table__.fullname
    move = StockMovement.__table__.fullname
    # Only our own table names are interpolated; every value is a $n parameter.
    return f"""
WITH upd AS (
    UPDATE {item} SET reserved = reserved + $2, updated_at = $3
     WHERE id = $1 AND on_hand - reserved >= $2
 RETURNING id, variant_id, sku, warehouse_id, on_hand, reserved, low_stock_threshold
), others AS (
    SELECT coalesce(sum(o.on_hand - o.reserved), 0)::bigint AS available
      FROM {item} o JOIN upd ON o.variant_id = upd.variant_id AND o.id <> upd.id
), res AS (
    INSERT INTO {res} (id, key, status, expires_at, actor, created_at, updated_at)
    SELECT $4, $5, 'active', $6, $7, $3, $3 FROM upd
), new_line AS (
    INSERT INTO {line} (id, reservation_id, item_id, variant_id, quantity, returned)
    SELECT $8, $4, upd.id, upd.variant_id, $2, 0 FROM upd
), new_move AS (
    INSERT INTO {move}
           (id, item_id, delta_on_hand, delta_reserved, reason, actor, reference, created_at)
    SELECT $9, upd.id, 0, $2, 'reservation', $7, $5, $3 FROM upd
), new_event AS (
    INSERT INTO {outbox}
           (id, event_type, payload, request_id, occurred_at, available_at, attempts)
    SELECT $10, '{StockChanged.type}', jsonb_build_object(
               'item_id', upd.id, 'variant_id', upd.variant_id, 'sku', upd.sku,
               'warehouse_id', upd.warehouse_id, 'on_hand', upd.on_hand,
               'reserved', upd.reserved, 'available', upd.on_hand - upd.reserved,
               'variant_available', others.available + upd.on_hand - upd.reserved,
               'reason', 'reservation'),
           $11, $3, $3, 0
      FROM upd, others
)
SELECT upd.id, upd.variant_id, upd.sku, upd.warehouse_id, upd.on_hand, upd.reserved,
       upd.low_stock_threshold, others.available AS others_available
  FROM upd, others
"""  # noqa: S608


_STATEMENTS: dict[str, str] = {}


async def reserve_in_one_statement(
    db: Database,
    publisher: EventPublisher,
    *,
    item_id: uuid.UUID,
    quantity: int,
    key: str,
    ttl_seconds: int,
    actor: str | None,
    clock: Callable[[], datetime],
    crossing: Callable[[Any, int, int], Any],
) -> ReservationRead | None:
    """The new reservation, or None when the general path must answer. ``crossing(row,
    previous_available, variant_available)`` writes a threshold crossing's alert and
    events (called only when one happened)."""
    outbox = publisher.tables.outbox.fullname
    sql = _STATEMENTS.get(outbox)
    if sql is None:
        sql = _STATEMENTS[outbox] = _sql(outbox)
    now = clock()
    reservation_id = uuid.uuid4()
    expires_at = now + timedelta(seconds=ttl_seconds)
    try:
        row = await db.run_statement(
            sql,
            item_id, quantity, now, reservation_id, key, expires_at, actor,
            uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), request_id_var.get(),
        )  # fmt: skip
    except asyncpg.UniqueViolationError:
        return None  # the key is taken: the general path replays or refuses it
    if row is None:
        return None
    db.outbox_written()
    state = SimpleNamespace(**row)
    available = state.on_hand - state.reserved
    previous = available + quantity
    threshold = state.low_stock_threshold
    if (available <= threshold < previous) or (available <= 0 < previous):
        await crossing(state, previous, int(state.others_available) + available)
    return ReservationRead(
        id=reservation_id,
        key=key,
        quantity=quantity,
        status="active",
        expires_at=expires_at,
        created_at=now,
        lines=[
            ReservationLineRead(item_id=state.id, variant_id=state.variant_id, quantity=quantity)
        ],
    )
