"""Request and response models of the inventory service: its public HTTP contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, computed_field, model_validator

from ultramarket.core.schemas import ReadSchema, Schema

# The most units an item holds (on_hand; a 32-bit count on PostgreSQL holds it twice over,
# so a guard's arithmetic cannot overflow): a change past it is a 409, never stored.
MAX_STOCK = 1_000_000_000
Quantity = Annotated[int, Field(gt=0, le=1_000_000, description="Units; must be positive")]
Stock = Annotated[int, Field(ge=0, le=MAX_STOCK)]
Key = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@-]+$")]
TTL = Annotated[int, Field(ge=1, le=7 * 24 * 3600, description="Seconds before it expires")]
DEFAULT_TTL = 900

ReservationStatus = Literal["active", "committed", "released", "expired"]


# -- warehouses ------------------------------------------------------------------------------


class WarehouseCreate(Schema):
    code: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    address: Annotated[str | None, Field(max_length=500)] = None


class WarehouseUpdate(Schema):
    code: Annotated[str | None, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")] = (
        None
    )
    name: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    address: Annotated[str | None, Field(max_length=500)] = None


class WarehouseRead(ReadSchema):
    id: uuid.UUID
    code: str
    name: str
    address: str | None
    is_default: bool
    created_at: datetime


# -- stock items -----------------------------------------------------------------------------


class ItemRead(ReadSchema):
    """An inventory item: the stock of one variant in one warehouse."""

    id: uuid.UUID
    sku: str
    variant_id: uuid.UUID
    warehouse_id: uuid.UUID
    on_hand: int
    reserved: int
    low_stock_threshold: int
    updated_at: datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class ItemCreate(Schema):
    """Stock a variant in a warehouse (new variants get a default-warehouse item by themselves)."""

    variant_id: uuid.UUID
    warehouse_id: uuid.UUID | None = Field(None, description="Default warehouse when omitted")
    sku: Annotated[str | None, Field(min_length=1, max_length=100)] = Field(
        None, description="Taken from another item of the variant when omitted"
    )
    on_hand: Stock = 0
    low_stock_threshold: Stock | None = None


class StockUpdate(Schema):
    """`{on_hand}` sets the count, `{delta, reason}` adjusts it; either may also change
    `low_stock_threshold`. Every change is recorded as a stock movement."""

    on_hand: Stock | None = None
    delta: Annotated[int | None, Field(ge=-MAX_STOCK, le=MAX_STOCK)] = None
    reason: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    low_stock_threshold: Stock | None = None

    @model_validator(mode="after")
    def _one_change(self) -> StockUpdate:
        if self.on_hand is not None and self.delta is not None:
            raise ValueError("give either on_hand or delta, not both")
        if self.delta is not None and (self.delta == 0 or not self.reason):
            raise ValueError("delta must be non-zero and come with a reason")
        if self.on_hand is None and self.delta is None and self.low_stock_threshold is None:
            raise ValueError("give on_hand, delta (with reason) or low_stock_threshold")
        return self


class MovementRead(ReadSchema):
    id: uuid.UUID
    item_id: uuid.UUID
    delta_on_hand: int
    delta_reserved: int
    reason: str
    actor: str | None
    reference: str | None
    created_at: datetime


class VariantAvailability(ReadSchema):
    variant_id: uuid.UUID
    available: int
    in_stock: bool


# -- reservations ----------------------------------------------------------------------------


class ReserveItem(Schema):
    quantity: Quantity
    key: Key
    ttl_seconds: TTL = DEFAULT_TTL


class ReservationLineIn(Schema):
    variant_id: uuid.UUID
    quantity: Quantity


Lines = Annotated[list[ReservationLineIn], Field(min_length=1, max_length=200)]


def _one_line_per_variant(lines: list[ReservationLineIn] | None) -> None:
    ids = [line.variant_id for line in lines or ()]
    if len(set(ids)) != len(ids):
        raise ValueError("each variant may appear only once")


class ReservationCreate(Schema):
    """All or nothing: every line is reserved or none is."""

    key: Key
    ttl_seconds: TTL = DEFAULT_TTL
    lines: Lines

    @model_validator(mode="after")
    def _distinct_variants(self) -> ReservationCreate:
        _one_line_per_variant(self.lines)
        return self


class Restock(Schema):
    """Give units of a committed reservation back to stock (an order cancelled or refunded
    before shipping). Idempotent by ``reference``: the same reference and lines restock once."""

    reference: Annotated[str, Field(min_length=1, max_length=200)]
    lines: Lines | None = Field(
        None, description="Units per variant; null: every unit sold and not yet returned"
    )

    @model_validator(mode="after")
    def _distinct_variants(self) -> Restock:
        _one_line_per_variant(self.lines)
        return self


class ReservationLineRead(ReadSchema):
    item_id: uuid.UUID
    variant_id: uuid.UUID
    quantity: int
    returned: int = 0  # units given back to stock after the sale (restock)


class ReservationRead(ReadSchema):
    id: uuid.UUID
    key: str
    quantity: int
    status: ReservationStatus
    expires_at: datetime
    created_at: datetime | None = None
    lines: list[ReservationLineRead] = Field(default_factory=list)


# -- alerts ----------------------------------------------------------------------------------


class AlertRead(ReadSchema):
    id: uuid.UUID
    item_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    warehouse_id: uuid.UUID
    kind: Literal["low_stock", "out_of_stock"]
    available: int
    threshold: int
    created_at: datetime
    resolved_at: datetime | None
