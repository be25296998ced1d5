"""Events the inventory service publishes (versioned; fields are only ever added)."""

from __future__ import annotations

import uuid

from ultramarket.core.events import Event


class StockEvent(Event):
    """Shared shape: the item after the change, and the variant's total across warehouses."""

    item_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    warehouse_id: uuid.UUID
    on_hand: int
    reserved: int
    available: int
    variant_available: int  # summed over every warehouse


class StockChanged(StockEvent):
    type = "inventory.stock_changed.v1"
    reason: str


class LowStock(StockEvent):
    type = "inventory.low_stock.v1"
    threshold: int


class OutOfStock(StockEvent):
    type = "inventory.out_of_stock.v1"


class BackInStock(StockEvent):
    type = "inventory.back_in_stock.v1"
