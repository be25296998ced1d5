"""The product service's read side: SQLAlchemy Core selects returning mappings (no ORM
objects on the hot path), the JSON shape of a product, and the response cache."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from babel import Locale, UnknownLocaleError
from sqlalchemy import Select, and_, bindparam, func, literal_column, or_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.errors import ValidationFailed
from ultramarket.core.money import Money, discount_percent, exponent
from ultramarket.services.product.models import Category, Product, ProductSlug, ProductVariant

P = Product.__table__
V = ProductVariant.__table__
C = Category.__table__
S = ProductSlug.__table__

CACHE_PREFIX = "product"
CATEGORY_CACHE_PREFIX = "category"
# Cached pages may show a stock count up to this old (in/out-of-stock flips and every
# product write invalidate at once).
CACHE_TTL = 60
DEFAULT_LOCALE = "en_US"

PRODUCT_COLUMNS = (
    P.c.id,
    P.c.slug,
    P.c.name,
    P.c.description,
    P.c.brand,
    P.c.category_id,
    P.c.vendor_id,
    P.c.attributes,
    P.c.status,
    P.c.featured,
    P.c.seo_title,
    P.c.seo_description,
    P.c.images,
    P.c.rating,
    P.c.review_count,
    P.c.sales_count,
    P.c.min_price_amount,
    P.c.currency,
    P.c.in_stock,
    P.c.created_at,
    P.c.updated_at,
)
VARIANT_COLUMNS = (
    V.c.id,
    V.c.product_id,
    V.c.sku,
    V.c.options,
    V.c.price_amount,
    V.c.compare_at_amount,
    V.c.currency,
    V.c.weight_grams,
    V.c.barcode,
    V.c.available,
)

SORTS: dict[str, Any] = {
    "price": P.c.min_price_amount.asc(),
    "-price": P.c.min_price_amount.desc(),
    "created_at": P.c.created_at.asc(),
    "-created_at": P.c.created_at.desc(),
    "rating": P.c.rating.asc(),
    "-rating": P.c.rating.desc(),
    "popularity": P.c.sales_count.asc(),
    "-popularity": P.c.sales_count.desc(),
    "name": P.c.name.asc(),
    "-name": P.c.name.desc(),
}
DEFAULT_SORT = "-created_at"


def normalise_locale(value: str | None) -> str:
    """A Babel locale id from ``?locale=`` or an Accept-Language header ("en-GB,en;q=0.8")."""
    if not value:
        return DEFAULT_LOCALE
    first = value.split(",", 1)[0].split(";", 1)[0].strip().replace("-", "_")
    if not first or first == "*" or len(first) > 20:
        return DEFAULT_LOCALE
    try:
        return str(Locale.parse(first))
    except (UnknownLocaleError, ValueError, TypeError):
        return DEFAULT_LOCALE


def like_pattern(term: str) -> str:
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class ProductFilters:
    """Listing filters, already validated; ``category_ids`` includes descendants.

    Price bounds are in one currency: ``currency``, else ``default_currency`` (the
    shop's); with a bound, only products priced in that currency match (a JPY 3000
    product is not "under 50")."""

    category_ids: tuple[uuid.UUID, ...] | None = None
    brand: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    currency: str | None = None
    default_currency: str = "USD"
    in_stock: bool | None = None
    min_rating: float | None = None
    featured: bool | None = None
    q: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    vendor_id: uuid.UUID | None = None
    statuses: tuple[str, ...] = ("active",)
    sort: str = DEFAULT_SORT
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def price_currency(self) -> str | None:
        """The currency the listing is restricted to: the one asked for, or the shop's
        when there is a price bound to read."""
        if self.currency is None and (self.min_price is not None or self.max_price is not None):
            return self.default_currency
        return self.currency

    def cache_key(self) -> str:
        return repr(
            (
                self.category_ids,
                self.brand,
                self.min_price,
                self.max_price,
                self.price_currency,
                self.in_stock,
                self.min_rating,
                self.featured,
                self.q,
                self.attributes,
                self.vendor_id,
                self.statuses,
                self.sort,
            )
        )


def _minor(value: Decimal, currency: str) -> int:
    digits = exponent(currency)
    return int(value.scaleb(digits).to_integral_value())


def where_clauses(f: ProductFilters) -> list[Any]:
    clauses: list[Any] = [
        P.c.status == f.statuses[0] if len(f.statuses) == 1 else P.c.status.in_(f.statuses)
    ]
    if f.category_ids is not None:
        ids = list(f.category_ids)
        clauses.append(P.c.category_id == ids[0] if len(ids) == 1 else P.c.category_id.in_(ids))
    if f.brand:
        clauses.append(P.c.brand == f.brand)
    currency = f.price_currency
    if currency:
        # The price indexes ((status[, category_id], min_price_amount)) still serve the
        # bounds; the currency is checked on the rows they find.
        clauses.append(P.c.currency == currency)
        if f.min_price is not None:
            clauses.append(P.c.min_price_amount >= _minor(f.min_price, currency))
        if f.max_price is not None:
            clauses.append(P.c.min_price_amount <= _minor(f.max_price, currency))
    if f.in_stock is not None:
        clauses.append(P.c.in_stock.is_(f.in_stock))
    if f.min_rating is not None:
        clauses.append(P.c.rating >= f.min_rating)
    if f.featured is not None:
        clauses.append(P.c.featured.is_(f.featured))
    if f.vendor_id is not None:
        clauses.append(P.c.vendor_id == f.vendor_id)
    if f.q:
        pattern = like_pattern(f.q)
        clauses.append(
            or_(
                func.lower(P.c.name).like(pattern, escape="\\"),
                func.lower(P.c.brand).like(pattern, escape="\\"),
            )
        )
    for key, value in f.attributes:
        clauses.append(P.c.attributes[key].as_string() == value)
    return clauses


def listing_select(f: ProductFilters, *, offset: int, limit: int) -> Select[Any]:
    order = SORTS.get(f.sort)
    if order is None:
        raise ValidationFailed(
            "Unknown sort",
            details=[{"field": "sort", "message": f"one of {', '.join(SORTS)}", "type": "enum"}],
        )
    return (
        select(*PRODUCT_COLUMNS)
        .where(and_(*where_clauses(f)))
        .order_by(order, P.c.id)
        .offset(offset)
        .limit(limit)
    )


def count_select(f: ProductFilters) -> Select[Any]:
    return select(func.count()).select_from(P).where(and_(*where_clauses(f)))


async def variants_of(
    session: AsyncSession, product_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Mapping[str, Any]]]:
    by_product: dict[uuid.UUID, list[Mapping[str, Any]]] = {pid: [] for pid in product_ids}
    if not product_ids:
        return by_product
    rows = await session.execute(
        select(*VARIANT_COLUMNS)
        .where(V.c.product_id.in_(list(product_ids)))
        .order_by(V.c.product_id, V.c.position, V.c.sku)
    )
    for row in rows.mappings():
        by_product[row["product_id"]].append(row)
    return by_product


async def find_product_row(session: AsyncSession, key: str) -> Mapping[str, Any] | None:
    """A product by id, slug or old slug."""
    try:
        product_id: uuid.UUID | None = uuid.UUID(key)
    except ValueError:
        product_id = None
    if product_id is not None:
        row = (await session.execute(select(*PRODUCT_COLUMNS).where(P.c.id == product_id))).first()
    else:
        row = (await session.execute(select(*PRODUCT_COLUMNS).where(P.c.slug == key))).first()
        if row is None:
            old = select(S.c.product_id).where(S.c.slug == key).scalar_subquery()
            row = (await session.execute(select(*PRODUCT_COLUMNS).where(P.c.id == old))).first()
    return None if row is None else row._mapping


# Detail by slug in one round trip (PostgreSQL): the product row and its variants as one
# JSON array (in ``variants_of`` order), run precompiled by ``Database.fetch_one``.
_VARIANTS_JSON = (
    select(
        func.coalesce(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_object(
                        # column names as SQL literals, not bound parameters
                        *(x for c in VARIANT_COLUMNS for x in (literal_column(f"'{c.key}'"), c))
                    ),
                    V.c.position,
                    V.c.sku,
                )
            ),
            func.json_build_array(),
        )
    )
    .where(V.c.product_id == P.c.id)
    .scalar_subquery()
    .label("variants_json")
)
DETAIL_BY_SLUG = select(*PRODUCT_COLUMNS, _VARIANTS_JSON).where(P.c.slug == bindparam("slug"))


def split_detail(record: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A ``DETAIL_BY_SLUG`` row as (product row, variant rows) for ``product_json``."""
    row = dict(record)
    variants = row.pop("variants_json") or []
    return row, variants


async def list_products(
    session: AsyncSession, f: ProductFilters, *, offset: int, limit: int, with_total: bool = True
) -> tuple[list[Mapping[str, Any]], dict[uuid.UUID, list[Mapping[str, Any]]], int]:
    rows = list((await session.execute(listing_select(f, offset=offset, limit=limit))).mappings())
    if with_total:
        if offset == 0 and len(rows) < limit:
            total = len(rows)
        else:
            total = int((await session.execute(count_select(f))).scalar_one())
    else:
        total = len(rows)
    variants = await variants_of(session, [r["id"] for r in rows])
    return rows, variants, total


# -- the JSON shape ---------------------------------------------------------------------


def variant_json(v: Mapping[str, Any], locale: str) -> dict[str, Any]:
    price = Money(v["price_amount"], v["currency"])
    compare_at = (
        None if v["compare_at_amount"] is None else Money(v["compare_at_amount"], v["currency"])
    )
    return {
        "id": str(v["id"]),
        "sku": v["sku"],
        "options": v["options"] or {},
        "price": str(price),
        "compare_at_price": None if compare_at is None else str(compare_at),
        "currency": v["currency"],
        "discount_percent": discount_percent(v["price_amount"], v["compare_at_amount"]),
        "price_formatted": price.format(locale),
        "compare_at_price_formatted": None if compare_at is None else compare_at.format(locale),
        "weight_grams": v["weight_grams"],
        "barcode": v["barcode"],
        "available": v["available"],
        "in_stock": v["available"] > 0,
    }


def product_json(
    row: Mapping[str, Any], variants: Sequence[Mapping[str, Any]], locale: str
) -> dict[str, Any]:
    price = Money(row["min_price_amount"], row["currency"])
    return {
        "id": str(row["id"]),
        "slug": row["slug"],
        "name": row["name"],
        "description": row["description"],
        "brand": row["brand"],
        "category_id": None if row["category_id"] is None else str(row["category_id"]),
        "vendor_id": None if row["vendor_id"] is None else str(row["vendor_id"]),
        "attributes": row["attributes"] or {},
        "status": row["status"],
        "featured": row["featured"],
        "seo_title": row["seo_title"],
        "seo_description": row["seo_description"],
        "images": [str(i) for i in row["images"] or []],
        "rating": float(row["rating"] or 0),
        "review_count": row["review_count"],
        "sales_count": row["sales_count"],
        "price": str(price),
        "currency": row["currency"],
        "price_formatted": price.format(locale),
        "in_stock": row["in_stock"],
        "variants": [variant_json(v, locale) for v in variants],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


# Variants by id with their product's name and status (carts and orders price from it):
# built once, so a lookup only binds the ids.
VARIANTS_BY_ID = (
    select(*VARIANT_COLUMNS, P.c.name, P.c.status)
    .join(P, P.c.id == V.c.product_id)
    .where(V.c.id.in_(bindparam("ids", expanding=True)))
)
