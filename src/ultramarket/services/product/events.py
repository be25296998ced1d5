"""Events the product service publishes (versioned; fields are only ever added).

The search service indexes from these, inventory creates stock items for new
variants, carts and orders read prices from the snapshots.
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict

from ultramarket.core.events import Event


class VariantSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True)

    variant_id: uuid.UUID
    sku: str
    options: dict[str, str]
    price_amount: int  # minor units
    compare_at_amount: int | None = None
    currency: str
    weight_grams: int | None = None


class ProductSnapshot(Event):
    """Shared shape of product.created / product.updated."""

    product_id: uuid.UUID
    slug: str
    name: str
    description: str
    brand: str | None
    category_id: uuid.UUID | None
    vendor_id: uuid.UUID | None
    status: str  # draft | active | archived
    featured: bool
    attributes: dict[str, object]
    variants: list[VariantSnapshot]


class ProductCreated(ProductSnapshot):
    type = "product.created.v1"


class ProductUpdated(ProductSnapshot):
    type = "product.updated.v1"


class ProductArchived(Event):
    type = "product.archived.v1"
    product_id: uuid.UUID
    variant_ids: list[uuid.UUID]


class ProductPriceChanged(Event):
    type = "product.price_changed.v1"
    product_id: uuid.UUID
    variant_id: uuid.UUID
    sku: str
    old_amount: int
    new_amount: int
    currency: str
