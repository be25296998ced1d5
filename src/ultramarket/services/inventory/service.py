"""Inventory use cases: stock per variant and warehouse, reservations, alerts.

Every change of ``on_hand`` or ``reserved`` is ONE conditional UPDATE whose
``WHERE`` holds the rule (enough available, never below reserved) and whose
``RETURNING`` gives the counts after it; the row count decides, never a value read
in Python first, and ``on_hand`` never passes ``MAX_STOCK``. Each change writes a
``stock_movement`` row and its events in the same unit of work; a change that leaves the
item at or under its threshold (or at 0) makes sure its alert is open (one per kind, by
a partial unique index), and one that lifts it above resolves it. Reservation status
changes are conditional UPDATEs too (``WHERE status = 'active'``), so two commits,
or a commit racing the sweeper, can never both win. A restock gives sold units back
(``reservation_line.returned``, raised by a conditional UPDATE), never more than were sold.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Row, and_, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.db import Database, insert_for, utcnow
from ultramarket.core.errors import Conflict, NotFound, ValidationFailed
from ultramarket.core.events import EventPublisher
from ultramarket.services.inventory import events
from ultramarket.services.inventory.hot import commit_in_one_statement, reserve_in_one_statement
from ultramarket.services.inventory.models import (
    DEFAULT_WAREHOUSE_CODE,
    DEFAULT_WAREHOUSE_ID,
    DEFAULT_WAREHOUSE_NAME,
    Reservation,
    ReservationLine,
    ReservationReturn,
    StockAlert,
    StockItem,
    StockMovement,
    Warehouse,
)
from ultramarket.services.inventory.schemas import (
    MAX_STOCK,
    ItemCreate,
    ReservationLineRead,
    ReservationRead,
    StockUpdate,
    WarehouseCreate,
    WarehouseUpdate,
)

DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE
DEADLOCK_TRIES = 5  # of a general-path reservation racing one-statement copies of it
log = logging.getLogger("ultramarket.inventory")

ITEM = StockItem.__table__
RES = Reservation.__table__
LINE = ReservationLine.__table__
RETURNS = ReservationReturn.__table__
ALERT = StockAlert.__table__
MOVE = StockMovement.__table__
ITEM_COLUMNS = (
    ITEM.c.id,
    ITEM.c.variant_id,
    ITEM.c.sku,
    ITEM.c.warehouse_id,
    ITEM.c.on_hand,
    ITEM.c.reserved,
    ITEM.c.low_stock_threshold,
    ITEM.c.updated_at,
)
_OTHER = ITEM.alias("other_item")
_OTHERS_AVAILABLE = (
    select(func.coalesce(func.sum(_OTHER.c.on_hand - _OTHER.c.reserved), 0))
    .where(_OTHER.c.variant_id == ITEM.c.variant_id, _OTHER.c.id != ITEM.c.id)
    .scalar_subquery()
    .label("others_available")
)
SORTABLE = {
    "sku": ITEM.c.sku,
    "on_hand": ITEM.c.on_hand,
    "reserved": ITEM.c.reserved,
    "available": ITEM.c.on_hand - ITEM.c.reserved,
    "updated_at": ITEM.c.updated_at,
}


# -- errors --------------------------------------------------------------------------------------


class ItemNotFound(NotFound):
    code = "ITEM_NOT_FOUND"
    message = "No such inventory item"


class WarehouseNotFound(NotFound):
    code = "WAREHOUSE_NOT_FOUND"
    message = "No such warehouse"


class ReservationNotFound(NotFound):
    code = "RESERVATION_NOT_FOUND"
    message = "No such reservation"


class InsufficientStock(Conflict):
    code = "INSUFFICIENT_STOCK"
    message = "Not enough stock available"


class StockBelowReserved(Conflict):
    code = "STOCK_BELOW_RESERVED"
    message = "On hand cannot go below what is reserved"


class StockLimitExceeded(Conflict):
    code = "STOCK_LIMIT_EXCEEDED"
    message = f"On hand cannot exceed {MAX_STOCK:,} units"


class ReservationKeyReused(Conflict):
    code = "IDEMPOTENCY_KEY_REUSED"
    message = "This reservation key was used for another request (other lines or TTL)"


class ReservationNotActive(Conflict):
    code = "RESERVATION_NOT_ACTIVE"
    message = "The reservation is no longer active"


class ReservationCommitted(Conflict):
    code = "RESERVATION_ALREADY_COMMITTED"
    message = "The reservation was already committed"


class ReservationExpired(Conflict):
    code = "RESERVATION_EXPIRED"
    message = "The reservation has expired"


class ReservationNotCommitted(Conflict):
    code = "RESERVATION_NOT_COMMITTED"
    message = "Only a committed reservation can be restocked"


class RestockExceedsReturnable(Conflict):
    code = "RESTOCK_EXCEEDS_RETURNABLE"
    message = "More units than were sold and not yet returned"


class RestockReferenceReused(Conflict):
    code = "IDEMPOTENCY_KEY_REUSED"
    message = "This restock reference was used with other lines"


class WarehouseInUse(Conflict):
    code = "WAREHOUSE_IN_USE"
    message = "The warehouse still holds stock items"


class DuplicateWarehouse(Conflict):
    code = "DUPLICATE_WAREHOUSE"
    message = "A warehouse with this code exists"


class DuplicateItem(Conflict):
    code = "ITEM_EXISTS"
    message = "This variant is already stocked in this warehouse"


# -- queries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemQuery:
    sku: str | None = None
    warehouse: str | None = None  # id or code
    variant_id: uuid.UUID | None = None
    low_stock: bool | None = None


@dataclass(frozen=True)
class Wanted:
    """One line to reserve: ``quantity`` of ``item_id`` (a stock item of ``variant_id``)."""

    item_id: uuid.UUID | None  # None: the variant is not stocked anywhere
    variant_id: uuid.UUID
    quantity: int


class InventoryService:
    def __init__(
        self,
        session: AsyncSession,
        publisher: EventPublisher | None = None,
        *,
        actor: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        database: Database | None = None,
    ) -> None:
        self.session = session
        self.publisher = publisher
        self.actor = actor
        self.clock = clock
        # Given on PostgreSQL: one-item reservations take the one-statement path (hot.py).
        self.database = (
            database if database is not None and database.dialect == "postgresql" else None
        )

    # -- the one way stock changes ---------------------------------------------------------------

    async def _change(
        self,
        item_id: uuid.UUID,
        *,
        on_hand: int = 0,
        reserved: int = 0,
        guard: Any,
        reason: str,
        reference: str | None = None,
        movement_first: bool = False,
    ) -> Row[Any] | None:
        """Apply the deltas in one conditional UPDATE; None when ``guard`` refused (or no item).

        The movement row, the events and any alert go in the same transaction. With
        ``movement_first`` the movement row is written before the UPDATE, so the row lock
        is held for fewer statements: only for callers that roll back when it refuses."""
        movement = insert(MOVE).values(
            id=uuid.uuid4(),
            item_id=item_id,
            delta_on_hand=on_hand,
            delta_reserved=reserved,
            reason=reason,
            actor=self.actor,
            reference=reference,
            created_at=self.clock(),
        )
        if movement_first:
            await self.session.execute(movement)
        # The other items of the variant, read in the same statement (no extra round trip
        # while the row is locked): the event's variant_available.
        # A sale (on_hand and reserved down alike) leaves ``available`` as it was: no
        # threshold can be crossed and the stock mirror has nothing to learn.
        visible = on_hand != reserved
        # SQLite renders RETURNING columns unqualified, so there the correlated sum would
        # compare the other items with themselves: _after_change reads it afterwards.
        correlated = (
            self.publisher is not None
            and visible
            and self.session.get_bind().dialect.name != "sqlite"
        )
        returning = (*ITEM_COLUMNS, _OTHERS_AVAILABLE) if correlated else ITEM_COLUMNS
        row = (
            await self.session.execute(
                update(ITEM)
                .where(ITEM.c.id == item_id, guard)
                .values(
                    on_hand=ITEM.c.on_hand + on_hand,
                    reserved=ITEM.c.reserved + reserved,
                    updated_at=self.clock(),
                )
                .returning(*returning)
            )
        ).one_or_none()
        if row is None:
            return None
        if not movement_first:
            await self.session.execute(movement)
        if not visible:
            return row
        available = row.on_hand - row.reserved
        await self._after_change(
            row,
            previous_available=available - (on_hand - reserved),
            previous_threshold=row.low_stock_threshold,
            reason=reason,
            variant_available=int(row.others_available or 0) + available if correlated else None,
        )
        return row

    async def _after_change(
        self,
        row: Row[Any],
        *,
        previous_available: int,
        previous_threshold: int,
        reason: str,
        variant_available: int | None = None,
        changed_written: bool = False,
    ) -> None:
        """The item's alerts after the change, and its events (``variant_available``:
        summed over the variant's items; read here when not given). ``changed_written``:
        no ``stock_changed`` event (written already, or no count changed).

        Left low (or out of stock): its alert of the kind is open, whether or not this
        change crossed the line (an item created low, or low with no alert): opened if
        none is, with its event; never a second one. Lifted above: resolved. The caller
        holds the item's row lock."""
        available = row.on_hand - row.reserved
        threshold = row.low_stock_threshold
        low, was_low = available <= threshold, previous_available <= previous_threshold
        out, was_out = available <= 0, previous_available <= 0
        opened = await self._open_alerts(row, out=out) if low else set()
        pending: list[events.StockEvent] = []
        shape: dict[str, Any] | None = None
        if self.publisher is not None:
            if variant_available is None:
                variant_available = await self.session.scalar(
                    select(func.coalesce(func.sum(ITEM.c.on_hand - ITEM.c.reserved), 0)).where(
                        ITEM.c.variant_id == row.variant_id
                    )
                )
            shape = {
                "item_id": row.id,
                "variant_id": row.variant_id,
                "sku": row.sku,
                "warehouse_id": row.warehouse_id,
                "on_hand": row.on_hand,
                "reserved": row.reserved,
                "available": available,
                "variant_available": int(variant_available or 0),
            }
            if not changed_written:
                pending.append(events.StockChanged(**shape, reason=reason))
        if "low_stock" in opened and shape is not None:
            pending.append(events.LowStock(**shape, threshold=threshold))
        if was_low and not low:
            await self._resolve_alerts(row.id, None)
        if "out_of_stock" in opened and shape is not None:
            pending.append(events.OutOfStock(**shape))
        if was_out and not out:
            if low:  # (else resolved above)
                await self._resolve_alerts(row.id, "out_of_stock")
            if shape is not None:
                pending.append(events.BackInStock(**shape))
        if self.publisher is not None:
            for event in pending:
                await self.publisher.publish(self.session, event)

    async def _open_alerts(self, row: Any, *, out: bool) -> set[str]:
        """Make sure the low item's ``low_stock`` (and, when ``out``, ``out_of_stock``)
        alert is open, in one statement; the kinds it opened (none already open)."""
        kinds = ["low_stock", "out_of_stock"] if out else ["low_stock"]
        now = self.clock()
        opened = await self.session.scalars(
            insert_for(self.session, ALERT)
            .values(
                [
                    {
                        "id": uuid.uuid4(),
                        "item_id": row.id,
                        "variant_id": row.variant_id,
                        "sku": row.sku,
                        "warehouse_id": row.warehouse_id,
                        "kind": kind,
                        "available": row.on_hand - row.reserved,
                        "threshold": row.low_stock_threshold,
                        "created_at": now,
                    }
                    for kind in kinds
                ]
            )
            .on_conflict_do_nothing(
                index_elements=["item_id", "kind"], index_where=ALERT.c.resolved_at.is_(None)
            )
            .returning(ALERT.c.kind)
        )
        return set(opened)

    async def _resolve_alerts(self, item_id: uuid.UUID, kind: str | None) -> None:
        query = update(ALERT).where(ALERT.c.item_id == item_id, ALERT.c.resolved_at.is_(None))
        if kind is not None:
            query = query.where(ALERT.c.kind == kind)
        await self.session.execute(query.values(resolved_at=self.clock()))

    # -- items -----------------------------------------------------------------------------------

    async def get_item(self, item_id: uuid.UUID) -> Row[Any]:
        row = (
            await self.session.execute(select(*ITEM_COLUMNS).where(ITEM.c.id == item_id))
        ).one_or_none()
        if row is None:
            raise ItemNotFound()
        return row

    async def list_items(
        self, query: ItemQuery, *, offset: int, limit: int, sort: str | None
    ) -> tuple[list[Row[Any]], int]:
        conditions: list[Any] = []
        if query.sku:
            conditions.append(ITEM.c.sku == query.sku)
        if query.variant_id:
            conditions.append(ITEM.c.variant_id == query.variant_id)
        if query.warehouse:
            try:
                conditions.append(ITEM.c.warehouse_id == uuid.UUID(query.warehouse))
            except ValueError:
                code = select(Warehouse.id).where(Warehouse.code == query.warehouse)
                conditions.append(ITEM.c.warehouse_id.in_(code.scalar_subquery()))
        if query.low_stock is not None:
            low = ITEM.c.on_hand - ITEM.c.reserved <= ITEM.c.low_stock_threshold
            conditions.append(low if query.low_stock else ~low)
        total = await self.session.scalar(select(func.count()).select_from(ITEM).where(*conditions))
        field = (sort or "sku").lstrip("-")
        if field not in SORTABLE:
            raise ValidationFailed(
                f"cannot sort by {field!r}", details=[{"sortable": sorted(SORTABLE)}]
            )
        order = SORTABLE[field].desc() if (sort or "").startswith("-") else SORTABLE[field].asc()
        rows = (
            await self.session.execute(
                select(*ITEM_COLUMNS)
                .where(*conditions)
                .order_by(order, ITEM.c.id)
                .offset(offset)
                .limit(limit)
            )
        ).all()
        return list(rows), int(total or 0)

    async def movements(
        self, item_id: uuid.UUID, *, offset: int, limit: int
    ) -> tuple[list[StockMovement], int]:
        await self.get_item(item_id)
        total = await self.session.scalar(
            select(func.count()).select_from(MOVE).where(MOVE.c.item_id == item_id)
        )
        rows = await self.session.scalars(
            select(StockMovement)
            .where(StockMovement.item_id == item_id)
            .order_by(StockMovement.created_at.desc(), StockMovement.id)
            .offset(offset)
            .limit(limit)
        )
        return list(rows), int(total or 0)

    async def availability(self, variant_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Units available per variant over every warehouse; unknown variants count 0."""
        result = dict.fromkeys(variant_ids, 0)
        if not variant_ids:
            return result
        rows = await self.session.execute(
            select(ITEM.c.variant_id, func.sum(ITEM.c.on_hand - ITEM.c.reserved))
            .where(ITEM.c.variant_id.in_(list(variant_ids)))
            .group_by(ITEM.c.variant_id)
        )
        for variant_id, available in rows:
            result[variant_id] = max(int(available or 0), 0)
        return result

    async def create_item(self, body: ItemCreate) -> Row[Any]:
        warehouse_id = body.warehouse_id or await self.ensure_default_warehouse()
        # FOR KEY SHARE (what the foreign key takes, taken first): a delete of the
        # warehouse waits for this item and then finds it, or this finds it gone.
        found = await self.session.scalar(
            select(Warehouse.id)
            .where(Warehouse.id == warehouse_id)
            .with_for_update(read=True, key_share=True)
        )
        if found is None:
            raise WarehouseNotFound()
        sku = body.sku or await self.session.scalar(
            select(ITEM.c.sku).where(ITEM.c.variant_id == body.variant_id).limit(1)
        )
        if not sku:
            raise ValidationFailed(
                "sku is required for a variant not stocked yet",
                details=[{"loc": ["body", "sku"], "msg": "required"}],
            )
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "variant_id": body.variant_id,
            "sku": sku,
            "warehouse_id": warehouse_id,
            "on_hand": 0,
            "reserved": 0,
            "created_at": self.clock(),
            "updated_at": self.clock(),
        }
        if body.low_stock_threshold is not None:
            values["low_stock_threshold"] = body.low_stock_threshold
        created = (
            await self.session.execute(
                insert_for(self.session, ITEM)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["variant_id", "warehouse_id"])
                .returning(*ITEM_COLUMNS)
            )
        ).one_or_none()
        if created is None:
            raise DuplicateItem()
        item_id = created.id
        if body.on_hand:
            await self._change(
                item_id, on_hand=body.on_hand, guard=ITEM.c.id == item_id, reason="initial count"
            )
        else:
            await self._new_item(created)
        return await self.get_item(item_id)

    async def _new_item(self, row: Row[Any]) -> None:
        """A new item at 0 is out of stock and low: its alerts (and events) from the start."""
        await self._after_change(
            row,
            previous_available=row.on_hand - row.reserved,
            previous_threshold=row.low_stock_threshold,
            reason="new item",
            changed_written=True,
        )

    async def update_item(self, item_id: uuid.UUID, body: StockUpdate) -> Row[Any]:
        """Set (``on_hand``) or adjust (``delta``) the count; never below what is reserved."""
        delta = body.delta
        reason = body.reason or "adjustment"
        if body.on_hand is not None:
            # A count: lock the row, then apply the difference as a delta (still guarded).
            current = await self.session.scalar(
                select(ITEM.c.on_hand).where(ITEM.c.id == item_id).with_for_update()
            )
            if current is None:
                raise ItemNotFound()
            delta = body.on_hand - current
            reason = body.reason or "count"
        if delta:
            guard = ITEM.c.on_hand + delta >= ITEM.c.reserved
            if delta > 0:  # never past the maximum (the bound cannot overflow: see MAX_STOCK)
                guard = and_(guard, ITEM.c.on_hand <= MAX_STOCK - delta)
            row = await self._change(item_id, on_hand=delta, guard=guard, reason=reason)
            if row is None:
                item = await self.get_item(item_id)
                if item.on_hand + delta > MAX_STOCK:
                    raise _above_maximum(item, delta)
                raise StockBelowReserved(
                    details=[
                        {
                            "on_hand": item.on_hand,
                            "reserved": item.reserved,
                            "available": item.on_hand - item.reserved,
                            "requested_delta": delta,
                        }
                    ]
                )
        if body.low_stock_threshold is not None:
            previous = await self.session.scalar(
                select(ITEM.c.low_stock_threshold).where(ITEM.c.id == item_id).with_for_update()
            )
            if previous is None:
                raise ItemNotFound()
            row = (
                await self.session.execute(
                    update(ITEM)
                    .where(ITEM.c.id == item_id)
                    .values(low_stock_threshold=body.low_stock_threshold, updated_at=self.clock())
                    .returning(*ITEM_COLUMNS)
                )
            ).one()
            if previous != body.low_stock_threshold:
                await self._after_change(
                    row,
                    previous_available=row.on_hand - row.reserved,
                    previous_threshold=previous,
                    reason="threshold",
                )
        return await self.get_item(item_id)

    async def set_on_hand(self, variant_id: uuid.UUID, on_hand: int, reason: str = "count") -> bool:
        """Set the default-warehouse count of a variant (seeding, imports). False: no item."""
        item_id = await self.session.scalar(
            select(ITEM.c.id).where(
                ITEM.c.variant_id == variant_id, ITEM.c.warehouse_id == DEFAULT_WAREHOUSE_ID
            )
        )
        if item_id is None:
            return False
        await self.update_item(item_id, StockUpdate(on_hand=on_hand, reason=reason))
        return True

    # -- product events --------------------------------------------------------------------------

    async def ensure_default_warehouse(self) -> uuid.UUID:
        await self.session.execute(
            insert_for(self.session, Warehouse.__table__)
            .values(
                id=DEFAULT_WAREHOUSE_ID,
                code=DEFAULT_WAREHOUSE_CODE,
                name=DEFAULT_WAREHOUSE_NAME,
                is_default=True,
                created_at=self.clock(),
                updated_at=self.clock(),
            )
            .on_conflict_do_nothing()
        )
        return DEFAULT_WAREHOUSE_ID

    async def ensure_variant(self, variant_id: uuid.UUID, sku: str) -> None:
        """A stock item in the default warehouse (on hand 0) for a variant; idempotent.
        A changed SKU is copied to every item of the variant."""
        warehouse_id = await self.ensure_default_warehouse()
        now = self.clock()
        created = (
            await self.session.execute(
                insert_for(self.session, ITEM)
                .values(
                    id=uuid.uuid4(),
                    variant_id=variant_id,
                    sku=sku,
                    warehouse_id=warehouse_id,
                    on_hand=0,
                    reserved=0,
                    low_stock_threshold=5,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["variant_id", "warehouse_id"])
                .returning(*ITEM_COLUMNS)
            )
        ).one_or_none()
        if created is not None:
            await self._new_item(created)
        await self.session.execute(
            update(ITEM)
            .where(ITEM.c.variant_id == variant_id, ITEM.c.sku != sku)
            .values(sku=sku, updated_at=now)
        )

    # -- reservations ----------------------------------------------------------------------------

    async def reserve_item(
        self, item_id: uuid.UUID, quantity: int, key: str, ttl_seconds: int
    ) -> tuple[ReservationRead, bool]:
        """Reserve ``quantity`` of one item. Returns the reservation and whether it is new."""
        fast = await self._one_statement([(item_id, quantity)], "item", key, ttl_seconds)
        if fast is not None:
            return fast, True
        variant_id = await self.session.scalar(
            select(ITEM.c.variant_id).where(ITEM.c.id == item_id)
        )
        if variant_id is None:
            raise ItemNotFound()
        return await self._reserve(key, ttl_seconds, [Wanted(item_id, variant_id, quantity)])

    async def _one_statement(
        self,
        lines: Sequence[tuple[uuid.UUID, int]],
        by: Literal["item", "variant"],
        key: str,
        ttl_seconds: int,
    ) -> ReservationRead | None:
        """The one-statement path on PostgreSQL (hot.py), taken before the session holds
        a connection (the statement needs its own); None: take the general one."""
        if self.database is None or self.publisher is None:
            return None
        return await reserve_in_one_statement(
            self.database,
            self.publisher,
            lines=lines,
            by=by,
            key=key,
            ttl_seconds=ttl_seconds,
            actor=self.actor,
            clock=self.clock,
        )

    async def reserve_lines(
        self, key: str, ttl_seconds: int, lines: Sequence[tuple[uuid.UUID, int]]
    ) -> tuple[ReservationRead, bool]:
        """Reserve several variants, all or nothing. Each line is taken from one warehouse:
        the default one when it has enough, else the one with the most available."""
        fast = await self._one_statement(lines, "variant", key, ttl_seconds)
        if fast is not None:
            return fast, True
        existing = await self._existing(key)
        if existing is not None:
            asked = [Wanted(None, v, q) for v, q in lines]
            return self._replay(existing, asked, ttl_seconds, by_item=False)
        variant_ids = [variant_id for variant_id, _ in lines]
        rows = (
            await self.session.execute(
                select(
                    ITEM.c.id,
                    ITEM.c.variant_id,
                    ITEM.c.warehouse_id,
                    ITEM.c.on_hand,
                    ITEM.c.reserved,
                ).where(ITEM.c.variant_id.in_(variant_ids))
            )
        ).all()
        wanted: list[Wanted] = []
        for variant_id, quantity in lines:
            candidates = [r for r in rows if r.variant_id == variant_id]
            if not candidates:
                wanted.append(Wanted(None, variant_id, quantity))
                continue
            # The same choice as hot.py's: the default warehouse when it has enough, else
            # the most available, then the default warehouse, then the smallest id.
            best = min(
                candidates,
                key=lambda r: (
                    not (
                        r.warehouse_id == DEFAULT_WAREHOUSE_ID
                        and r.on_hand - r.reserved >= quantity
                    ),
                    -(r.on_hand - r.reserved),
                    r.warehouse_id != DEFAULT_WAREHOUSE_ID,
                    str(r.id),
                ),
            )
            wanted.append(Wanted(best.id, variant_id, quantity))
        return await self._reserve(key, ttl_seconds, wanted, by_item=False)

    async def _existing(self, key: str) -> ReservationRead | None:
        reservation = await self.session.scalar(select(Reservation).where(Reservation.key == key))
        return None if reservation is None else await self._read(reservation)

    def _replay(
        self, existing: ReservationRead, wanted: list[Wanted], ttl_seconds: int, *, by_item: bool
    ) -> tuple[ReservationRead, bool]:
        """The reservation a key already names, for the same request (lines and TTL); a 409
        for another request, or when it holds nothing any more (released, expired). A
        committed one replays as committed: the sale stands, and the order's commit of it
        answers RESERVATION_ALREADY_COMMITTED, which the checkout takes as done."""

        def shape(lines: Any) -> list[tuple[Any, int]]:
            return sorted(
                ((line.item_id if by_item else line.variant_id), line.quantity) for line in lines
            )

        assert existing.created_at is not None
        ttl = round((existing.expires_at - existing.created_at).total_seconds())
        if shape(existing.lines) != shape(wanted) or ttl != ttl_seconds:
            raise ReservationKeyReused(
                details=[{"key": existing.key, "reservation_id": str(existing.id)}]
            )
        status = existing.status
        if status == "active" and existing.expires_at <= self.clock():
            status = "expired"  # not swept yet
        if status in ("released", "expired"):
            raise ReservationNotActive(
                f"The reservation is {status}: it holds nothing; reserve under a new key",
                details=[{"key": existing.key, "status": status}],
            )
        return existing, False

    async def _reserve(
        self, key: str, ttl_seconds: int, wanted: list[Wanted], *, by_item: bool = True
    ) -> tuple[ReservationRead, bool]:
        if self.session.get_bind().dialect.name != "postgresql":
            return await self._reserve_once(key, ttl_seconds, wanted, by_item=by_item)
        # A retry racing its first try on the one-statement path (hot.py), which locks
        # the item before the key where this path claims the key first, can deadlock.
        # Whichever side PostgreSQL picks gives way: that statement falls back to this
        # path; this path rolls back to its savepoint (letting the other finish) and
        # tries again, then finds the key taken and replays it. Several tries: with many
        # copies of the call in flight, the next try can meet another one-statement copy.
        for attempt in range(1, DEADLOCK_TRIES + 1):
            try:
                async with self.session.begin_nested():
                    return await self._reserve_once(key, ttl_seconds, wanted, by_item=by_item)
            except DBAPIError as error:
                deadlock = getattr(error.orig, "sqlstate", None) == DEADLOCK_DETECTED
                if attempt == DEADLOCK_TRIES or not deadlock:
                    raise
        raise AssertionError("unreachable")

    async def _reserve_once(
        self, key: str, ttl_seconds: int, wanted: list[Wanted], *, by_item: bool
    ) -> tuple[ReservationRead, bool]:
        now = self.clock()
        expires_at = now + timedelta(seconds=ttl_seconds)
        reservation_id = await self.session.scalar(
            insert_for(self.session, RES)
            .values(
                id=uuid.uuid4(),
                key=key,
                status="active",
                expires_at=expires_at,
                actor=self.actor,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(RES.c.id)
        )
        if reservation_id is None:
            # The key is taken (perhaps by a concurrent call that has just committed).
            existing = await self._existing(key)
            assert existing is not None
            return self._replay(existing, wanted, ttl_seconds, by_item=by_item)
        short: list[Wanted] = []
        reserved_lines: list[Wanted] = []
        # A fixed order (item ids) so two multi-line reservations never deadlock.
        for line in sorted(wanted, key=lambda w: str(w.item_id)):
            if line.item_id is None:
                short.append(line)
                continue
            if short:
                # Already failing: only find out whether this line would be short too.
                if not await self._has(line):
                    short.append(line)
                continue
            # The line and the movement go first: a short line raises and the unit of work
            # rolls them back, and the item's row lock is held for fewer statements.
            await self.session.execute(
                insert(LINE).values(
                    id=uuid.uuid4(),
                    reservation_id=reservation_id,
                    item_id=line.item_id,
                    variant_id=line.variant_id,
                    quantity=line.quantity,
                )
            )
            row = await self._change(
                line.item_id,
                reserved=line.quantity,
                guard=ITEM.c.on_hand - ITEM.c.reserved >= line.quantity,
                reason="reservation",
                reference=key,
                movement_first=True,
            )
            if row is None:
                short.append(line)
                continue
            reserved_lines.append(line)
        if short:
            details = []
            for line in short:
                available = 0
                if line.item_id is not None:
                    item = await self.get_item(line.item_id)
                    available = max(item.on_hand - item.reserved, 0)
                details.append(
                    {
                        "item_id": str(line.item_id) if line.item_id else None,
                        "variant_id": str(line.variant_id),
                        "requested": line.quantity,
                        "available": available,
                    }
                )
            # The unit of work rolls back every line reserved before this one.
            raise InsufficientStock(details=details)
        # What _read would read back, from what was just written (no more statements while
        # the item rows are locked).
        lines = sorted(reserved_lines, key=lambda w: cast(uuid.UUID, w.item_id))
        return (
            ReservationRead(
                id=reservation_id,
                key=key,
                quantity=sum(line.quantity for line in lines),
                status="active",
                expires_at=expires_at,
                created_at=now,
                lines=[
                    ReservationLineRead(
                        item_id=cast(uuid.UUID, line.item_id),
                        variant_id=line.variant_id,
                        quantity=line.quantity,
                    )
                    for line in lines
                ],
            ),
            True,
        )

    async def _has(self, line: Wanted) -> bool:
        item = await self.get_item(line.item_id) if line.item_id else None
        return item is not None and item.on_hand - item.reserved >= line.quantity

    async def _read(self, reservation: Reservation) -> ReservationRead:
        lines = (
            await self.session.execute(
                select(LINE.c.item_id, LINE.c.variant_id, LINE.c.quantity, LINE.c.returned)
                .where(LINE.c.reservation_id == reservation.id)
                .order_by(LINE.c.item_id)
            )
        ).all()
        return ReservationRead(
            id=reservation.id,
            key=reservation.key,
            quantity=sum(line.quantity for line in lines),
            status=reservation.status,  # type: ignore[arg-type]
            expires_at=reservation.expires_at,
            created_at=reservation.created_at,
            lines=[ReservationLineRead.model_validate(line) for line in lines],
        )

    async def get_reservation(self, key: str) -> ReservationRead:
        existing = await self._existing(key)
        if existing is None:
            raise ReservationNotFound()
        return existing

    async def commit(self, key: str, *, item_id: uuid.UUID | None = None) -> ReservationRead:
        """Turn an active reservation into a sale: on_hand and reserved both drop."""
        if self.database is not None and item_id is None:
            committed = await commit_in_one_statement(
                self.database, key=key, actor=self.actor, clock=self.clock
            )
            if committed is not None:
                return committed
        return await self._close(key, "committed", item_id=item_id)

    async def release(self, key: str, *, item_id: uuid.UUID | None = None) -> ReservationRead:
        """Give the reserved units back."""
        return await self._close(key, "released", item_id=item_id)

    async def _close(self, key: str, status: str, *, item_id: uuid.UUID | None) -> ReservationRead:
        now = self.clock()
        reservation = await self.session.scalar(select(Reservation).where(Reservation.key == key))
        if reservation is None:
            raise ReservationNotFound()
        if item_id is not None:
            on_item = await self.session.scalar(
                select(LINE.c.id).where(
                    LINE.c.reservation_id == reservation.id, LINE.c.item_id == item_id
                )
            )
            if on_item is None:
                raise ReservationNotFound("No reservation with this key on this item")
        closed = await self.session.scalar(
            update(RES)
            .where(RES.c.id == reservation.id, RES.c.status == "active", RES.c.expires_at > now)
            .values(status=status, closed_at=now, updated_at=now)
            .returning(RES.c.id)
        )
        if closed is None:
            await self.session.refresh(reservation)
            if reservation.status == "active":
                # Past its expiry but not swept yet: expire it now (kept despite the error).
                await self._expire(reservation.id, key, now)
                raise ReservationExpired(persist_changes=True)
            if reservation.status == "committed":
                raise ReservationCommitted()
            if reservation.status == "expired":
                raise ReservationExpired()
            raise ReservationNotActive(f"The reservation is {reservation.status}")
        lines = await self._unreserve(reservation.id, key, sale=status == "committed")
        # What _read would read back, from what is known (no statements under the locks).
        return ReservationRead(
            id=reservation.id,
            key=reservation.key,
            quantity=sum(line.quantity for line in lines),
            status=status,  # type: ignore[arg-type]
            expires_at=reservation.expires_at,
            created_at=reservation.created_at,
            lines=[ReservationLineRead.model_validate(line) for line in lines],
        )

    async def _unreserve(
        self, reservation_id: uuid.UUID, key: str, *, sale: bool, reason: str | None = None
    ) -> list[Row[Any]]:
        """Give back (or, for a sale, take out of on_hand) every line's reserved units;
        the lines."""
        lines = list(
            (
                await self.session.execute(
                    select(LINE.c.item_id, LINE.c.variant_id, LINE.c.quantity, LINE.c.returned)
                    .where(LINE.c.reservation_id == reservation_id)
                    .order_by(LINE.c.item_id)
                )
            ).all()
        )
        for line in lines:
            row = await self._change(
                line.item_id,
                on_hand=-line.quantity if sale else 0,
                reserved=-line.quantity,
                guard=ITEM.c.reserved >= line.quantity,
                reason=reason or ("sale" if sale else "release"),
                reference=key,
                # The guard cannot refuse (the check constraints hold it): the movement
                # first keeps the row lock for one statement fewer.
                movement_first=True,
            )
            if row is None:  # the check constraints make this unreachable
                raise Conflict(f"stock item {line.item_id} holds less reserved than reservation")
        return lines

    async def _expire(self, reservation_id: uuid.UUID, key: str, now: datetime) -> bool:
        expired = await self.session.scalar(
            update(RES)
            .where(RES.c.id == reservation_id, RES.c.status == "active")
            .values(status="expired", closed_at=now, updated_at=now)
            .returning(RES.c.id)
        )
        if expired is None:
            return False
        await self._unreserve(reservation_id, key, sale=False, reason="expiry")
        return True

    # -- restocks --------------------------------------------------------------------------------

    async def restock(
        self, key: str, reference: str, lines: Sequence[tuple[uuid.UUID, int]] | None = None
    ) -> ReservationRead:
        """Give sold units of a committed reservation back to on_hand (an order cancelled or
        refunded before shipping): ``lines`` per variant, None for every unit not yet returned.

        The same ``reference`` with the same lines restocks once (a replay changes nothing);
        with other lines it is a 409. Asking for more than a line has left to return is a 409
        and a variant not in the reservation a 422; either way nothing changes."""
        reservation = await self.session.scalar(select(Reservation).where(Reservation.key == key))
        if reservation is None:
            raise ReservationNotFound()
        if reservation.status != "committed":
            raise ReservationNotCommitted(
                f"The reservation is {reservation.status}; only a committed one can be restocked"
            )
        request = None if lines is None else sorted([str(v), q] for v, q in lines)
        # The reference is claimed first: a concurrent call with the same one waits on it
        # (the unique index on PostgreSQL, the write lock on SQLite), then replays.
        return_id = await self.session.scalar(
            insert_for(self.session, RETURNS)
            .values(
                id=uuid.uuid4(),
                reservation_id=reservation.id,
                reference=reference,
                lines=request,
                quantity=0,
                actor=self.actor,
                created_at=self.clock(),
            )
            .on_conflict_do_nothing(index_elements=["reservation_id", "reference"])
            .returning(RETURNS.c.id)
        )
        if return_id is None:
            first = await self.session.scalar(
                select(RETURNS.c.lines).where(
                    RETURNS.c.reservation_id == reservation.id, RETURNS.c.reference == reference
                )
            )
            if first != request:
                raise RestockReferenceReused(details=[{"key": key, "reference": reference}])
            return await self._read(reservation)
        # The lines are locked (in item order, like every other path to the items), so what
        # is left to return is read once and cannot change before it is written.
        held = (
            await self.session.execute(
                select(
                    LINE.c.id, LINE.c.item_id, LINE.c.variant_id, LINE.c.quantity, LINE.c.returned
                )
                .where(LINE.c.reservation_id == reservation.id)
                .order_by(LINE.c.item_id)
                .with_for_update()
            )
        ).all()
        total = 0
        for line, units in _units_to_return(held, lines):
            # THE rule, in the statement: never more back than was sold.
            done = await self.session.scalar(
                update(LINE)
                .where(LINE.c.id == line.id, LINE.c.returned + units <= LINE.c.quantity)
                .values(returned=LINE.c.returned + units)
                .returning(LINE.c.id)
            )
            if done is None:  # the row lock makes this unreachable
                raise RestockExceedsReturnable()
            row = await self._change(
                line.item_id,
                on_hand=units,
                guard=ITEM.c.on_hand <= MAX_STOCK - units,
                reason="restock",
                reference=key,
            )
            if row is None:  # (the unit of work rolls back every line before this one)
                raise _above_maximum(await self.get_item(line.item_id), units)
            total += units
        if total:
            await self.session.execute(
                update(RETURNS).where(RETURNS.c.id == return_id).values(quantity=total)
            )
        return await self._read(reservation)

    # -- alerts ----------------------------------------------------------------------------------

    async def alerts(
        self, *, offset: int, limit: int, include_resolved: bool = False
    ) -> tuple[list[StockAlert], int]:
        conditions = [] if include_resolved else [StockAlert.resolved_at.is_(None)]
        total = await self.session.scalar(
            select(func.count()).select_from(ALERT).where(*conditions)
        )
        rows = await self.session.scalars(
            select(StockAlert)
            .where(*conditions)
            .order_by(StockAlert.created_at.desc(), StockAlert.id)
            .offset(offset)
            .limit(limit)
        )
        return list(rows), int(total or 0)

    # -- warehouses ------------------------------------------------------------------------------

    async def list_warehouses(self) -> list[Warehouse]:
        rows = await self.session.scalars(
            select(Warehouse).order_by(Warehouse.is_default.desc(), Warehouse.code)
        )
        return list(rows)

    async def get_warehouse(self, warehouse_id: uuid.UUID, *, lock: bool = False) -> Warehouse:
        """The warehouse; with ``lock``, its row locked for this transaction and read fresh."""
        warehouse = await self.session.get(
            Warehouse, warehouse_id, with_for_update=lock, populate_existing=lock
        )
        if warehouse is None:
            raise WarehouseNotFound()
        return warehouse

    async def create_warehouse(self, body: WarehouseCreate) -> Warehouse:
        if await self.session.scalar(select(Warehouse.id).where(Warehouse.code == body.code)):
            raise DuplicateWarehouse()
        warehouse = Warehouse(code=body.code, name=body.name, address=body.address)
        self.session.add(warehouse)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise DuplicateWarehouse() from exc
        return warehouse

    async def update_warehouse(self, warehouse_id: uuid.UUID, body: WarehouseUpdate) -> Warehouse:
        warehouse = await self.get_warehouse(warehouse_id)
        changes = body.model_dump(exclude_unset=True)
        if changes.get("code") and changes["code"] != warehouse.code:
            taken = await self.session.scalar(
                select(Warehouse.id).where(Warehouse.code == changes["code"])
            )
            if taken is not None:
                raise DuplicateWarehouse()
        for name, value in changes.items():
            if value is not None or name == "address":
                setattr(warehouse, name, value)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise DuplicateWarehouse() from exc
        return warehouse

    async def delete_warehouse(self, warehouse_id: uuid.UUID) -> None:
        # Locked first: an item being created in it (FOR KEY SHARE) commits before the
        # check below, which then finds it; one created after finds the warehouse gone.
        warehouse = await self.get_warehouse(warehouse_id, lock=True)
        if warehouse.is_default:
            raise Conflict("The default warehouse cannot be deleted", code="DEFAULT_WAREHOUSE")
        used = await self.session.scalar(
            select(ITEM.c.id).where(ITEM.c.warehouse_id == warehouse_id).limit(1)
        )
        if used is not None:
            raise WarehouseInUse()
        await self.session.execute(delete(Warehouse).where(Warehouse.id == warehouse_id))


def _above_maximum(item: Row[Any], delta: int) -> StockLimitExceeded:
    return StockLimitExceeded(
        details=[{"on_hand": item.on_hand, "requested_delta": delta, "maximum": MAX_STOCK}]
    )


def _units_to_return(
    held: Sequence[Row[Any]], lines: Sequence[tuple[uuid.UUID, int]] | None
) -> list[tuple[Row[Any], int]]:
    """The units each reservation line gives back (in the lines' order): what is left on
    every line when ``lines`` is None, else what is asked per variant, all of it checked."""
    if lines is None:
        return [
            (line, line.quantity - line.returned) for line in held if line.returned < line.quantity
        ]
    asked = dict(lines)
    known = {line.variant_id for line in held}
    unknown = [variant_id for variant_id in asked if variant_id not in known]
    if unknown:
        raise ValidationFailed(
            "Some variants are not in the reservation",
            details=[
                {"loc": ["body", "lines"], "variant_id": str(v), "msg": "not in the reservation"}
                for v in unknown
            ],
        )
    over = [
        {
            "variant_id": str(line.variant_id),
            "requested": asked[line.variant_id],
            "returnable": line.quantity - line.returned,
        }
        for line in held
        if line.variant_id in asked and asked[line.variant_id] > line.quantity - line.returned
    ]
    if over:
        raise RestockExceedsReturnable(details=over)
    return [(line, asked[line.variant_id]) for line in held if line.variant_id in asked]


# -- the sweeper -----------------------------------------------------------------------------------


async def release_expired(
    database: Database,
    publisher: EventPublisher | None,
    *,
    now: datetime | None = None,
    limit: int = 500,
) -> int:
    """Expire every active reservation past its expiry (status ``expired``, reserved units
    back, movement rows). Each in its own short transaction. Returns how many it expired."""
    now = now or utcnow()
    async with database.read_session() as session:
        due = (
            await session.execute(
                select(RES.c.id, RES.c.key)
                .where(RES.c.status == "active", RES.c.expires_at <= now)
                .order_by(RES.c.expires_at)
                .limit(limit)
            )
        ).all()
    expired = 0
    for reservation_id, key in due:
        async with database.session() as session:
            service = InventoryService(session, publisher, actor="sweeper")
            if await service._expire(reservation_id, key, now):
                expired += 1
    if expired:
        log.info("expired reservations released", extra={"count": expired})
    return expired


async def sweep(container: Any) -> None:
    """The periodic job: release expired reservations."""
    await release_expired(container.db("inventory"), container.publisher("inventory"))
