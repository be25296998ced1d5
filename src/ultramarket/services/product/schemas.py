"""The product service's HTTP contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from ultramarket.core.money import CurrencyCode, DecimalAmount, Money
from ultramarket.core.schemas import ReadSchema, Schema
from ultramarket.services.product.slugs import SLUG_PATTERN

Status = Literal["draft", "active", "archived"]
Slug = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=180, pattern=SLUG_PATTERN)
]
Text200 = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Sku = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$",
    ),
]
OptionValue = Annotated[str, StringConstraints(max_length=100)]


def parse_price(value: Any, currency: str) -> int:
    """Major units ("19.99", 19.99) to minor units; negative or too precise is a ValueError."""
    money = Money.of(value, currency)
    if money.amount < 0:
        raise ValueError("a price cannot be negative")
    return money.amount


# -- categories ------------------------------------------------------------------------


class CategoryCreate(Schema):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
    slug: Slug | None = None
    parent_id: uuid.UUID | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    position: int = Field(default=0, ge=0, le=1_000_000)


class CategoryUpdate(Schema):
    """Rename, re-slug, move (``parent_id``; null makes it a root) or reorder."""

    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
        | None
    ) = None
    slug: Slug | None = None
    parent_id: uuid.UUID | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    position: int | None = Field(default=None, ge=0, le=1_000_000)


class CategoryRead(ReadSchema):
    id: uuid.UUID
    name: str
    slug: str
    description: str | None
    parent_id: uuid.UUID | None
    path: str
    depth: int
    position: int


class CategoryNode(CategoryRead):
    children: list[CategoryNode] = []


# -- products ---------------------------------------------------------------------------


class VariantIn(Schema):
    id: uuid.UUID | None = None  # on update: keep this variant (else matched by sku)
    sku: Sku
    options: dict[Annotated[str, StringConstraints(max_length=50)], OptionValue] = {}
    price: DecimalAmount
    compare_at_price: DecimalAmount | None = None
    currency: CurrencyCode = "USD"
    weight_grams: int | None = Field(default=None, ge=0, le=10_000_000)
    barcode: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None

    @model_validator(mode="after")
    def _money(self) -> VariantIn:
        price = parse_price(self.price, self.currency)
        if self.compare_at_price is not None:
            compare_at = parse_price(self.compare_at_price, self.currency)
            if compare_at < price:
                raise ValueError("compare_at_price cannot be below price")
        return self

    @property
    def price_amount(self) -> int:
        return parse_price(self.price, self.currency)

    @property
    def compare_at_amount(self) -> int | None:
        if self.compare_at_price is None:
            return None
        return parse_price(self.compare_at_price, self.currency)


def _check_variants(variants: list[VariantIn]) -> None:
    skus = [v.sku.lower() for v in variants]
    if len(set(skus)) != len(skus):
        raise ValueError("variant SKUs must be unique within a product")
    ids = [v.id for v in variants if v.id is not None]
    if len(set(ids)) != len(ids):
        # Two entries cannot both be the one variant.
        raise ValueError("variant ids must be unique within a product")
    if len({v.currency for v in variants}) > 1:
        # Listing filters and sorts on the cheapest variant's price: one currency a product.
        raise ValueError("all variants of a product must share one currency")


class ProductFields(Schema):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    slug: Slug | None = None
    description: Annotated[str, StringConstraints(max_length=50_000)] = ""
    brand: Annotated[str, StringConstraints(strip_whitespace=True, max_length=120)] | None = None
    category_id: uuid.UUID | None = None
    attributes: dict[Annotated[str, StringConstraints(max_length=50)], Any] = {}
    status: Status = "draft"
    featured: bool = False
    seo_title: Text200 | None = None
    seo_description: Annotated[str, StringConstraints(max_length=500)] | None = None
    images: list[uuid.UUID] = Field(default=[], max_length=50)
    variants: list[VariantIn] = Field(min_length=1, max_length=100)
    vendor_id: uuid.UUID | None = None  # MANAGER+ only; a VENDOR always owns what they create

    @model_validator(mode="after")
    def _unique_skus(self) -> ProductFields:
        _check_variants(self.variants)
        return self


class ProductCreate(ProductFields):
    pass


class ProductReplace(ProductFields):
    """PUT: the whole product (variants not listed are removed)."""


class ProductPatch(Schema):
    """PATCH: only the fields given change; ``variants``, when given, is the full list."""

    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    slug: Slug | None = None
    description: Annotated[str, StringConstraints(max_length=50_000)] | None = None
    brand: Annotated[str, StringConstraints(strip_whitespace=True, max_length=120)] | None = None
    category_id: uuid.UUID | None = None
    attributes: dict[Annotated[str, StringConstraints(max_length=50)], Any] | None = None
    status: Status | None = None
    featured: bool | None = None
    seo_title: Text200 | None = None
    seo_description: Annotated[str, StringConstraints(max_length=500)] | None = None
    images: list[uuid.UUID] | None = Field(default=None, max_length=50)
    variants: list[VariantIn] | None = Field(default=None, min_length=1, max_length=100)
    vendor_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _unique_skus(self) -> ProductPatch:
        if self.variants:
            _check_variants(self.variants)
        return self


class VariantRead(ReadSchema):
    id: uuid.UUID
    sku: str
    options: dict[str, Any]
    price: str
    compare_at_price: str | None
    currency: str
    discount_percent: int | None
    price_formatted: str
    compare_at_price_formatted: str | None
    weight_grams: int | None
    barcode: str | None
    available: int
    in_stock: bool


class ProductRead(ReadSchema):
    id: uuid.UUID
    slug: str
    name: str
    description: str
    brand: str | None
    category_id: uuid.UUID | None
    vendor_id: uuid.UUID | None
    attributes: dict[str, Any]
    status: Status
    featured: bool
    seo_title: str | None
    seo_description: str | None
    images: list[uuid.UUID]
    rating: float
    review_count: int
    sales_count: int
    price: str  # the cheapest variant's
    currency: str
    price_formatted: str
    in_stock: bool
    variants: list[VariantRead]
    created_at: datetime
    updated_at: datetime


class VariantAvailability(ReadSchema):
    variant_id: uuid.UUID
    sku: str
    available: int
    in_stock: bool


class ProductAvailability(ReadSchema):
    product_id: uuid.UUID
    source: Literal["inventory", "mirror"]  # "mirror" when the inventory service is down
    in_stock: bool
    variants: list[VariantAvailability]


class VariantLookupRequest(Schema):
    variant_ids: list[uuid.UUID] = Field(min_length=1, max_length=500)


class VariantInfo(ReadSchema):
    """What carts and orders need to know about a variant."""

    id: uuid.UUID
    sku: str
    product_id: uuid.UUID
    name: str
    options: dict[str, Any]
    price_amount: int
    price: str
    currency: str
    status: Status
    weight_grams: int | None
    available: int


class SalesRecorded(ReadSchema):
    products: int
