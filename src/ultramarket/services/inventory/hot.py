"""Reservations in ONE statement on PostgreSQL: the checkout's path and a hot SKU's.

Every reservation of an item queues on its row lock. In the general path the lock is
taken by the conditional UPDATE and held until COMMIT, across the statements after it
and the event-loop turns between them; under load each turn waits behind every other
request of the worker. Here the whole reservation - the locks, the check, the UPDATEs,
the reservation, its lines, the movements, the ``inventory.stock_changed`` outbox
rows and, for an item left low, its alerts and their events - is data-modifying CTEs of
a single statement run in autocommit: the locks are held only while the server executes
it, and the checkout pays one round trip, not twenty.

The rules are those of the general path:

- each line takes one item: the one named, or for a variant the default warehouse's
  when it has enough, else the one with the most available;
- all or nothing: the items are locked in id order (``FOR UPDATE``: no deadlock
  between two reservations, and the rows read are the latest versions), the verdict
  is taken over all of them, and the UPDATE and every insert run only FROM a
  positive verdict. The UPDATE keeps its own guard too.

A statement either commits whole or not at all, so a reused key (unique violation)
undoes everything. Whatever this path does not serve (short stock, an unknown item, a
replayed key) returns None and the caller takes the general path, which answers
precisely.

An item the reservation leaves at or under its threshold (or at 0) gets its open
``low_stock`` (``out_of_stock``) alert in the same statement, from the figures of the
locked row: ``INSERT ... ON CONFLICT DO NOTHING`` on the one-open-alert-per-kind index,
so an alert already open stays the only one, and only an alert actually opened writes
its ``inventory.low_stock`` (``out_of_stock``) event, stamped like the stock change. No
follow-up transaction: nothing can land after a newer change of the item, and nothing
can fail after the reservation committed.

Committing a reservation (the sale) is one statement too: the reservation's conditional
status change, its lines, the locks in id order, the stock UPDATE and the movements.
A sale leaves ``available`` as it was, so it writes no event.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Literal

import asyncpg

from ultramarket.core.db import Database
from ultramarket.core.events import EventPublisher
from ultramarket.core.logging import request_id_var
from ultramarket.services.inventory.events import LowStock, OutOfStock, StockChanged
from ultramarket.services.inventory.models import (
    DEFAULT_WAREHOUSE_ID,
    Reservation,
    ReservationLine,
    StockAlert,
    StockItem,
    StockMovement,
)
from ultramarket.services.inventory.schemas import ReservationLineRead, ReservationRead

log = logging.getLogger("ultramarket.inventory")

ITEM = StockItem.__table__.fullname
RES = Reservation.__table__.fullname
LINE = ReservationLine.__table__.fullname
MOVE = StockMovement.__table__.fullname
ALERT = StockAlert.__table__.fullname

# The item each wanted line takes ($1: item ids, or variant ids; $2: quantities).
_PICK = {
    "item": """
    SELECT w.n, w.quantity, w.ref AS id
      FROM unnest($1::uuid[], $2::int[]) WITH ORDINALITY AS w(ref, quantity, n)""",
    # The default warehouse when it has enough, else the most available (reserve_lines).
    "variant": f"""
    SELECT DISTINCT ON (w.n) w.n, w.quantity, i.id
      FROM unnest($1::uuid[], $2::int[]) WITH ORDINALITY AS w(ref, quantity, n)
      JOIN {ITEM} i ON i.variant_id = w.ref
     ORDER BY w.n,
              (i.warehouse_id = '{DEFAULT_WAREHOUSE_ID}' AND i.on_hand - i.reserved >= w.quantity)
                DESC,
              i.on_hand - i.reserved DESC,
              i.warehouse_id = '{DEFAULT_WAREHOUSE_ID}' DESC,
              i.id""",  # noqa: S608 (our table name and constant only)
}


# All or nothing over several lines: the items locked in id order (the rows read are
# then the latest versions), one verdict over all of them. One line needs neither: its
# UPDATE's guard decides alone.
_VERDICT = f"""
), locked AS (
    SELECT i.id, i.on_hand, i.reserved
      FROM {ITEM} i WHERE i.id = ANY(ARRAY(SELECT id FROM pick)) ORDER BY i.id FOR UPDATE
), verdict AS (
    SELECT count(DISTINCT p.id) = cardinality($2::int[])
           AND bool_and(l.on_hand - l.reserved >= p.quantity) AS ok
      FROM pick p JOIN locked l ON l.id = p.id"""  # noqa: S608


def _reserve_sql(outbox: str, by: Literal["item", "variant"], single: bool) -> str:
    # Only our own table names and constants are interpolated; every value is a $n parameter.
    return f"""
WITH pick AS ({_PICK[by]}{"" if single else _VERDICT}
), upd AS (
    UPDATE {ITEM} i SET reserved = i.reserved + p.quantity, updated_at = $3
      FROM pick p{"" if single else ", verdict v"}
     WHERE {"" if single else "v.ok AND "}i.id = p.id AND i.on_hand - i.reserved >= p.quantity
 RETURNING i.id, i.variant_id, i.sku, i.warehouse_id, i.on_hand, i.reserved,
           i.low_stock_threshold, p.n, p.quantity,
           -- The events' time, read with the row locked ($3 was read before any wait for
           -- the lock): the stock mirror keeps the newest event's figure, and a
           -- reservation that waited behind another must come out the newer.
           clock_timestamp() AS at
), others AS (
    SELECT u.id, coalesce(sum(o.on_hand - o.reserved), 0)::bigint AS available
      FROM upd u LEFT JOIN {ITEM} o ON o.variant_id = u.variant_id AND o.id <> u.id
     GROUP BY u.id
), res AS (
    INSERT INTO {RES} (id, key, status, expires_at, actor, created_at, updated_at)
    SELECT $4, $5, 'active', $6, $7, $3, $3
      {"FROM upd" if single else "FROM verdict WHERE verdict.ok"}
), new_lines AS (
    INSERT INTO {LINE} (id, reservation_id, item_id, variant_id, quantity, returned)
    SELECT ($8::uuid[])[u.n], $4, u.id, u.variant_id, u.quantity, 0 FROM upd u
), new_moves AS (
    INSERT INTO {MOVE}
           (id, item_id, delta_on_hand, delta_reserved, reason, actor, reference, created_at)
    SELECT ($9::uuid[])[u.n], u.id, 0, u.quantity, 'reservation', $7, $5, $3 FROM upd u
), new_events AS (
    INSERT INTO {outbox}
           (id, event_type, payload, request_id, occurred_at, available_at, attempts)
    SELECT ($10::uuid[])[u.n], '{StockChanged.type}', jsonb_build_object(
               'item_id', u.id, 'variant_id', u.variant_id, 'sku', u.sku,
               'warehouse_id', u.warehouse_id, 'on_hand', u.on_hand,
               'reserved', u.reserved, 'available', u.on_hand - u.reserved,
               'variant_available', o.available + u.on_hand - u.reserved,
               'reason', 'reservation'),
           $11, u.at, $3, 0
      FROM upd u JOIN others o ON o.id = u.id
), new_alerts AS (
    -- The item left low (at or under its threshold) or out (at 0): its open alert of the
    -- kind, unless one is open already (the partial unique index over open alerts).
    INSERT INTO {ALERT}
           (id, item_id, variant_id, sku, warehouse_id, kind, available, threshold, created_at)
    SELECT gen_random_uuid(), u.id, u.variant_id, u.sku, u.warehouse_id, k.kind,
           u.on_hand - u.reserved, u.low_stock_threshold, $3
      FROM upd u
     CROSS JOIN LATERAL (VALUES ('low_stock', u.low_stock_threshold), ('out_of_stock', 0))
           AS k(kind, level)
     WHERE u.on_hand - u.reserved <= k.level
        ON CONFLICT (item_id, kind) WHERE resolved_at IS NULL DO NOTHING
 RETURNING item_id, kind
), alert_events AS (
    INSERT INTO {outbox}
           (id, event_type, payload, request_id, occurred_at, available_at, attempts)
    SELECT gen_random_uuid(),
           CASE a.kind WHEN 'low_stock' THEN '{LowStock.type}' ELSE '{OutOfStock.type}' END,
           jsonb_build_object(
               'item_id', u.id, 'variant_id', u.variant_id, 'sku', u.sku,
               'warehouse_id', u.warehouse_id, 'on_hand', u.on_hand,
               'reserved', u.reserved, 'available', u.on_hand - u.reserved,
               'variant_available', o.available + u.on_hand - u.reserved)
           || CASE a.kind WHEN 'low_stock'
                THEN jsonb_build_object('threshold', u.low_stock_threshold)
                ELSE '{{}}'::jsonb END,
           $11, u.at, $3, 0
      FROM new_alerts a JOIN upd u ON u.id = a.item_id JOIN others o ON o.id = u.id
)
SELECT u.id, u.variant_id, u.quantity FROM upd u ORDER BY u.id
"""  # noqa: S608


_COMMIT_SQL = f"""
WITH res AS (
    UPDATE {RES} SET status = 'committed', closed_at = $2, updated_at = $2
     -- By its key's unique index: a generic plan may prefer (status, expires_at), which
     -- walks every dead 'active' version that committed reservations leave behind.
     WHERE id = (SELECT id FROM {RES} WHERE key = $1) AND status = 'active' AND expires_at > $2
 RETURNING id, key, expires_at, created_at
), lines AS (
    SELECT l.item_id, l.variant_id, l.quantity, l.returned
      FROM {LINE} l JOIN res ON l.reservation_id = res.id
), locked AS (
    SELECT i.id FROM {ITEM} i WHERE i.id = ANY(ARRAY(SELECT item_id FROM lines))
     ORDER BY i.id FOR UPDATE
), per_item AS (
    SELECT item_id, sum(quantity)::int AS quantity FROM lines GROUP BY item_id
), upd AS (
    UPDATE {ITEM} i
       SET on_hand = i.on_hand - p.quantity, reserved = i.reserved - p.quantity, updated_at = $2
      FROM per_item p WHERE i.id = p.item_id AND i.id = ANY(ARRAY(SELECT id FROM locked))
), moves AS (
    INSERT INTO {MOVE}
           (id, item_id, delta_on_hand, delta_reserved, reason, actor, reference, created_at)
    SELECT gen_random_uuid(), l.item_id, -l.quantity, -l.quantity, 'sale', $3, $1, $2
      FROM lines l
)
SELECT res.id, res.key, res.expires_at, res.created_at,
       l.item_id, l.variant_id, l.quantity, l.returned
  FROM res JOIN lines l ON true
 ORDER BY l.item_id
"""  # noqa: S608

_STATEMENTS: dict[tuple[str, str, bool], str] = {}


async def reserve_in_one_statement(
    db: Database,
    publisher: EventPublisher,
    *,
    lines: Sequence[tuple[uuid.UUID, int]],
    by: Literal["item", "variant"],
    key: str,
    ttl_seconds: int,
    actor: str | None,
    clock: Callable[[], datetime],
) -> ReservationRead | None:
    """The new reservation of ``lines`` ((item or variant id, quantity), as ``by`` says),
    or None when the general path must answer."""
    outbox = publisher.tables.outbox.fullname
    shape = (outbox, by, len(lines) == 1)
    sql = _STATEMENTS.get(shape)
    if sql is None:
        sql = _STATEMENTS[shape] = _reserve_sql(*shape)
    now = clock()
    reservation_id = uuid.uuid4()
    expires_at = now + timedelta(seconds=ttl_seconds)
    count = len(lines)
    try:
        rows = await db.run_statement(
            sql,
            [ref for ref, _ in lines], [quantity for _, quantity in lines], now,
            reservation_id, key, expires_at, actor,
            [uuid.uuid4() for _ in range(count)], [uuid.uuid4() for _ in range(count)],
            [uuid.uuid4() for _ in range(count)], request_id_var.get(),
        )  # fmt: skip
    except asyncpg.UniqueViolationError:
        return None  # the key is taken: the general path replays or refuses it
    except asyncpg.DeadlockDetectedError:
        # The same key at once on the general path, which inserts the key before it
        # locks the items (a retry racing its first try): this statement was undone
        # whole; the general path waits for the other and replays or refuses.
        return None
    if len(rows) != count:
        return None  # refused: nothing was written
    db.outbox_written(publisher.tables.service)
    return ReservationRead(
        id=reservation_id,
        key=key,
        quantity=sum(row["quantity"] for row in rows),
        status="active",
        expires_at=expires_at,
        created_at=now,
        lines=[
            ReservationLineRead(
                item_id=row["id"], variant_id=row["variant_id"], quantity=row["quantity"]
            )
            for row in rows
        ],
    )


async def commit_in_one_statement(
    db: Database, *, key: str, actor: str | None, clock: Callable[[], datetime]
) -> ReservationRead | None:
    """The committed reservation, or None when it was not active and unexpired (the
    general path answers why)."""
    rows = await db.run_statement(_COMMIT_SQL, key, clock(), actor)
    if not rows:
        return None
    first = rows[0]
    return ReservationRead(
        id=first["id"],
        key=first["key"],
        quantity=sum(row["quantity"] for row in rows),
        status="committed",
        expires_at=first["expires_at"],
        created_at=first["created_at"],
        lines=[
            ReservationLineRead(
                item_id=row["item_id"],
                variant_id=row["variant_id"],
                quantity=row["quantity"],
                returned=row["returned"],
            )
            for row in rows
        ],
    )
