"""Tables owned by the product service: the category tree, products, variants, old slugs.

``product.min_price_amount``, ``product.currency`` and ``product.in_stock`` are
denormalised from the variants so a filtered, sorted listing page is served by one
index range scan at 100,000 products; ``product_variant.available`` is a mirror of
the inventory service's stock (kept by handling its events; ``stock_event_at`` is the
time of the event it came from, so an older event never overwrites a newer figure).
SKUs are unique case-insensitively, across every product: a unique index on
``lower(sku)``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from ultramarket.core.db import IdMixin, JSONType, TimestampMixin, service_base, utcnow
from ultramarket.core.events import event_tables

Base = service_base("product")
EVENTS = event_tables(Base.metadata, "product")


class Category(IdMixin, TimestampMixin, Base):
    __tablename__ = "category"
    __table_args__ = (
        Index(None, "slug", unique=True),
        Index(None, "parent_id", "position"),
        Index(None, "path"),
    )

    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(140))
    description: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("product.category.id", ondelete="RESTRICT")
    )
    # Materialised path of ids, "/<root id>/<child id>/": renames never touch it,
    # a move rewrites the moved subtree's prefix in one UPDATE.
    path: Mapped[str] = mapped_column(String(1000))
    depth: Mapped[int] = mapped_column(Integer, default=0)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Product(IdMixin, TimestampMixin, Base):
    __tablename__ = "product"
    __table_args__ = (
        Index(None, "slug", unique=True),
        Index(None, "vendor_id"),
        # Listing: "status + (category) + sort" served straight from an index.
        Index(None, "status", "category_id", "min_price_amount"),
        Index(None, "status", "category_id", "created_at"),
        Index(None, "status", "min_price_amount"),
        Index(None, "status", "created_at"),
        Index(None, "status", "rating"),
        Index(None, "status", "sales_count"),
        Index(None, "status", "name"),
        Index(None, "status", "featured", "created_at"),
        Index(None, "status", "brand"),
    )

    slug: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    brand: Mapped[str | None] = mapped_column(String(120))
    category_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("product.category.id", ondelete="RESTRICT")
    )
    vendor_id: Mapped[uuid.UUID | None]
    status: Mapped[str] = mapped_column(String(16), default="draft")
    featured: Mapped[bool] = mapped_column(default=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    images: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    seo_title: Mapped[str | None] = mapped_column(String(200))
    seo_description: Mapped[str | None] = mapped_column(String(500))
    # Fed later by the review and order services.
    rating: Mapped[float] = mapped_column(Float, default=0)
    review_count: Mapped[int] = mapped_column(Integer, default=0)
    sales_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # Denormalised from the variants (cheapest variant), for price sort and filters.
    min_price_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    in_stock: Mapped[bool] = mapped_column(default=False)


class ProductVariant(IdMixin, TimestampMixin, Base):
    __tablename__ = "product_variant"
    __table_args__ = (Index(None, "product_id", "position"),)

    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("product.product.id", ondelete="CASCADE")
    )
    sku: Mapped[str] = mapped_column(String(64))
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    price_amount: Mapped[int] = mapped_column(BigInteger)
    compare_at_amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    weight_grams: Mapped[int | None]
    barcode: Mapped[str | None] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Mirror of inventory's variant_available (summed over warehouses), and when the
    # stock event that set it occurred: only a newer event moves it.
    available: Mapped[int] = mapped_column(Integer, default=0)
    stock_event_at: Mapped[datetime | None]


# "case-1" and "CASE-1" are one SKU (within a product as across products); lookups
# compare lower(sku), served by this index.
Index("ix_product_variant_sku_lower", func.lower(ProductVariant.sku), unique=True)


class ProductSlug(Base):
    """A slug a product used to have: it still resolves to the product."""

    __tablename__ = "product_slug"
    __table_args__ = (Index(None, "product_id"),)

    slug: Mapped[str] = mapped_column(String(200), primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("product.product.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
