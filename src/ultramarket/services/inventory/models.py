"""Tables owned by the inventory service.

Stock lives in ``stock_item`` (one row per variant and warehouse). ``available`` is
never stored: it is ``on_hand - reserved``. Every change to either count writes a
``stock_movement`` row, so each item's counts equal the sums of its movements.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ultramarket.core.db import IdMixin, JSONType, TimestampMixin, service_base, utcnow
from ultramarket.core.events import event_tables

Base = service_base("inventory")
EVENTS = event_tables(Base.metadata, "inventory")

# The warehouse every new variant is stocked in; inserted by the initial migration.
DEFAULT_WAREHOUSE_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
DEFAULT_WAREHOUSE_CODE = "MAIN"
DEFAULT_WAREHOUSE_NAME = "Main warehouse"


class Warehouse(TimestampMixin, IdMixin, Base):
    __tablename__ = "warehouse"
    __table_args__ = (UniqueConstraint("code"),)

    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(500))
    is_default: Mapped[bool] = mapped_column(default=False)


class StockItem(TimestampMixin, IdMixin, Base):
    __tablename__ = "stock_item"
    __table_args__ = (
        UniqueConstraint("variant_id", "warehouse_id"),
        Index(None, "sku"),
        Index(None, "warehouse_id"),
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_within_on_hand"),
    )

    variant_id: Mapped[uuid.UUID]
    sku: Mapped[str] = mapped_column(String(100))
    warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("inventory.warehouse.id"))
    on_hand: Mapped[int] = mapped_column(default=0)
    reserved: Mapped[int] = mapped_column(default=0)
    low_stock_threshold: Mapped[int] = mapped_column(default=5)


class StockMovement(IdMixin, Base):
    __tablename__ = "stock_movement"
    __table_args__ = (Index(None, "item_id", "created_at"), Index(None, "reference"))

    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("inventory.stock_item.id"))
    delta_on_hand: Mapped[int] = mapped_column(default=0)
    delta_reserved: Mapped[int] = mapped_column(default=0)
    # adjustment | count | reservation | release | expiry | sale | restock
    reason: Mapped[str] = mapped_column(String(200))
    actor: Mapped[str | None] = mapped_column(String(100))
    reference: Mapped[str | None] = mapped_column(String(200))  # e.g. the reservation key
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reservation(TimestampMixin, IdMixin, Base):
    __tablename__ = "reservation"
    __table_args__ = (UniqueConstraint("key"), Index(None, "status", "expires_at"))

    key: Mapped[str] = mapped_column(String(200))
    # active -> committed | released | expired (each change a conditional UPDATE)
    status: Mapped[str] = mapped_column(String(16), default="active")
    expires_at: Mapped[datetime]
    actor: Mapped[str | None] = mapped_column(String(100))
    closed_at: Mapped[datetime | None]


class ReservationLine(IdMixin, Base):
    __tablename__ = "reservation_line"
    __table_args__ = (
        UniqueConstraint("reservation_id", "item_id"),
        CheckConstraint("returned >= 0", name="returned_not_negative"),
        CheckConstraint("returned <= quantity", name="returned_within_quantity"),
    )

    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("inventory.reservation.id", ondelete="CASCADE")
    )
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("inventory.stock_item.id"))
    variant_id: Mapped[uuid.UUID]
    quantity: Mapped[int]
    # Units of a committed (sold) line given back to stock; never more than were sold.
    returned: Mapped[int] = mapped_column(default=0, server_default="0")


class ReservationReturn(IdMixin, Base):
    """One restock of a committed reservation, claimed first in its unit of work: the same
    ``reference`` twice restocks once."""

    __tablename__ = "reservation_return"
    __table_args__ = (UniqueConstraint("reservation_id", "reference"),)

    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("inventory.reservation.id", ondelete="CASCADE")
    )
    reference: Mapped[str] = mapped_column(String(200))
    # The request's lines ([[variant_id, quantity], ...] by variant), null for "all of it":
    # a replay must ask for the same.
    lines: Mapped[list[Any] | None] = mapped_column(JSONType)
    quantity: Mapped[int] = mapped_column(default=0)  # units given back
    actor: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


OPEN_ALERT = text("resolved_at IS NULL")


class StockAlert(IdMixin, Base):
    """An item at or under its threshold (``low_stock``) or at 0 (``out_of_stock``): at
    most one open alert of each kind per item (the partial unique index), opened by
    ``INSERT ... ON CONFLICT DO NOTHING`` whenever a write leaves the item so."""

    __tablename__ = "stock_alert"
    __table_args__ = (
        Index(None, "resolved_at", "created_at"),
        Index(None, "item_id"),
        Index(
            None,
            "item_id",
            "kind",
            unique=True,
            postgresql_where=OPEN_ALERT,
            sqlite_where=OPEN_ALERT,
        ),
    )

    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("inventory.stock_item.id"))
    variant_id: Mapped[uuid.UUID]
    sku: Mapped[str] = mapped_column(String(100))
    warehouse_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(16))  # low_stock | out_of_stock
    available: Mapped[int]
    threshold: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
