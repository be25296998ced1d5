"""Product use cases: the category tree, products with variants, stock and sales mirrors.

The only code that changes product state. Writes use the ORM; every change publishes
its event in the same transaction and invalidates the response cache after it.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, case, delete, exists, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.db import utcnow
from ultramarket.core.errors import Forbidden
from ultramarket.core.events import EventPublisher
from ultramarket.core.security import Principal
from ultramarket.services.product import events
from ultramarket.services.product.errors import (
    CategoryCycle,
    CategoryNotEmpty,
    CategoryNotFound,
    ProductNotFound,
    SkuTaken,
    SlugTaken,
    unknown_category,
)
from ultramarket.services.product.models import Category, Product, ProductSlug, ProductVariant
from ultramarket.services.product.schemas import VariantIn
from ultramarket.services.product.slugs import slugify, with_suffix

NULLABLE_FIELDS = frozenset({"brand", "category_id", "seo_title", "seo_description"})
PRODUCT_FIELDS = (
    "name",
    "description",
    "brand",
    "category_id",
    "attributes",
    "status",
    "featured",
    "seo_title",
    "seo_description",
)


def _uuid(key: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(key)
    except ValueError:
        return None


_VARIANT = ProductVariant.__table__
_PRODUCT = Product.__table__
# The stock mirror's statements for one variant (``record_stock``; a batch goes one
# variant at a time except on PostgreSQL), built once: a variant's figure, returning its
# product's in_stock...
_MIRROR_STOCK = (
    update(_VARIANT)
    .where(_VARIANT.c.id == bindparam("variant_id"), _VARIANT.c.available != bindparam("figure"))
    .values(available=bindparam("figure"))
    .returning(
        _VARIANT.c.product_id,
        # SQLite renders RETURNING unqualified ("WHERE id = product_id"): correct only
        # because product has no product_id column of its own.
        select(_PRODUCT.c.in_stock).where(_PRODUCT.c.id == _VARIANT.c.product_id).scalar_subquery(),
    )
)
# ... and the product's in_stock from every variant, when it may have flipped.
_IN_STOCK = select(
    exists().where(_VARIANT.c.product_id == bindparam("product_id"), _VARIANT.c.available > 0)
).scalar_subquery()
_FOLLOW_STOCK = (
    update(_PRODUCT)
    .where(
        _PRODUCT.c.id == bindparam("product_id"),
        _PRODUCT.c.in_stock.is_distinct_from(_IN_STOCK),
    )
    .values(in_stock=_IN_STOCK)
    .returning(_PRODUCT.c.id)
)


# A batch of stock events on PostgreSQL: ONE statement sets the variants whose figure
# moved (locked in id order: two batches never wait on each other crosswise) and returns
# their products; only our own table names are interpolated. Their products are then
# locked (id order) and followed in a second statement: its snapshot, taken under the
# locks, sees every variant a concurrent batch committed. (The first statement's own
# snapshot may predate a batch it waited for, which may have flipped the product.)
_MIRROR_STOCK_LEVELS = text(
    f"""
WITH levels AS (
    SELECT * FROM unnest(CAST(:variant_ids AS uuid[]), CAST(:figures AS int[])) AS l(id, figure)
), moved AS MATERIALIZED (
    SELECT v.id, l.figure FROM {_VARIANT.fullname} v JOIN levels l ON l.id = v.id
     WHERE v.available <> l.figure
     ORDER BY v.id FOR UPDATE OF v
)
UPDATE {_VARIANT.fullname} v SET available = m.figure, updated_at = :now
  FROM moved m WHERE v.id = m.id
RETURNING v.product_id
"""  # noqa: S608
)
_LOCK_PRODUCTS = text(
    f"""
SELECT id FROM {_PRODUCT.fullname} WHERE id = ANY(CAST(:product_ids AS uuid[]))
 ORDER BY id FOR UPDATE
"""  # noqa: S608
)
_FOLLOW_PRODUCTS = text(
    f"""
WITH shown AS (
    SELECT p.id, EXISTS (
               SELECT 1 FROM {_VARIANT.fullname} v WHERE v.product_id = p.id AND v.available > 0
           ) AS in_stock
      FROM {_PRODUCT.fullname} p WHERE p.id = ANY(CAST(:product_ids AS uuid[]))
)
UPDATE {_PRODUCT.fullname} p SET in_stock = s.in_stock, updated_at = :now
  FROM shown s WHERE p.id = s.id AND p.in_stock IS DISTINCT FROM s.in_stock
RETURNING p.id
"""  # noqa: S608
)


class StockChange(enum.Enum):
    NONE = "none"  # the mirror already had this figure
    FIGURE = "figure"  # a variant's available count changed
    FLIPPED = "flipped"  # ...and the product went in or out of stock


def can_manage(principal: Principal | None, vendor_id: uuid.UUID | None) -> bool:
    """MANAGER+ (or a service) manage every product; a VENDOR only their own."""
    if principal is None:
        return False
    if principal.can("product:write:any") or principal.is_service:
        return True
    return principal.can("product:write") and principal.owns(vendor_id)


class CategoryService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(self, key: str) -> Category | None:
        category_id = _uuid(key)
        if category_id is not None:
            return await self.session.get(Category, category_id)
        return await self.session.scalar(select(Category).where(Category.slug == key))

    async def get(self, key: str) -> Category:
        category = await self.find(key)
        if category is None:
            raise CategoryNotFound()
        return category

    async def all(self) -> list[Category]:
        rows = await self.session.scalars(
            select(Category).order_by(Category.depth, Category.position, Category.name)
        )
        return list(rows)

    async def subtree_ids(self, key: str) -> tuple[uuid.UUID, ...]:
        """The category (by id or slug) and all its descendants."""
        category = await self.get(key)
        ids = await self.session.scalars(
            select(Category.id).where(Category.path.startswith(category.path))
        )
        return tuple(ids)

    async def _unique_slug(self, slug: str, explicit: bool, own: uuid.UUID | None) -> str:
        n = 1
        while True:
            candidate = with_suffix(slug, n)
            taken = await self.session.scalar(
                select(Category.id).where(Category.slug == candidate, Category.id != own)
                if own
                else select(Category.id).where(Category.slug == candidate)
            )
            if taken is None:
                return candidate
            if explicit:
                raise SlugTaken("A category with this slug already exists")
            n += 1

    async def _parent(self, parent_id: uuid.UUID | None) -> Category | None:
        if parent_id is None:
            return None
        parent = await self.session.get(Category, parent_id)
        if parent is None:
            raise unknown_category("parent_id")
        return parent

    async def create(self, data: Mapping[str, Any]) -> Category:
        parent = await self._parent(data.get("parent_id"))
        explicit = bool(data.get("slug"))
        slug = await self._unique_slug(data.get("slug") or slugify(data["name"]), explicit, None)
        category = Category(
            id=uuid.uuid4(),
            name=data["name"],
            slug=slug,
            description=data.get("description"),
            parent_id=parent.id if parent else None,
            position=data.get("position") or 0,
        )
        category.path = f"{parent.path if parent else '/'}{category.id}/"
        category.depth = category.path.count("/") - 2
        self.session.add(category)
        await self.session.flush()
        return category

    async def update(self, key: str, data: Mapping[str, Any]) -> Category:
        category = await self.get(key)
        if data.get("name"):
            category.name = data["name"]
        if data.get("slug") and data["slug"] != category.slug:
            category.slug = await self._unique_slug(data["slug"], True, category.id)
        if "description" in data:
            category.description = data["description"]
        if data.get("position") is not None:
            category.position = data["position"]
        if "parent_id" in data and data["parent_id"] != category.parent_id:
            await self._move(category, data["parent_id"])
        await self.session.flush()
        return category

    async def _move(self, category: Category, parent_id: uuid.UUID | None) -> None:
        parent = await self._parent(parent_id)
        if parent is not None and parent.path.startswith(category.path):
            raise CategoryCycle()
        old_prefix = category.path
        new_prefix = f"{parent.path if parent else '/'}{category.id}/"
        shift = new_prefix.count("/") - old_prefix.count("/")
        await self.session.flush()
        # The whole subtree (the category included) gets the new prefix in one UPDATE.
        await self.session.execute(
            update(Category)
            .where(Category.path.startswith(old_prefix))
            .values(
                path=new_prefix + func.substr(Category.path, len(old_prefix) + 1),
                depth=Category.depth + shift,
            )
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(
            update(Category)
            .where(Category.id == category.id)
            .values(parent_id=parent.id if parent else None)
            .execution_options(synchronize_session=False)
        )
        await self.session.refresh(category)

    async def delete(self, key: str, move_to: uuid.UUID | None) -> None:
        category = await self.get(key)
        has_children = await self.session.scalar(
            select(exists().where(Category.parent_id == category.id))
        )
        has_products = await self.session.scalar(
            select(exists().where(Product.category_id == category.id))
        )
        if has_children or has_products:
            if move_to is None:
                raise CategoryNotEmpty()
            target = await self.session.get(Category, move_to)
            if target is None:
                raise unknown_category("move_to")
            if target.path.startswith(category.path):
                raise CategoryCycle("Cannot move the contents into the category or its subtree")
            children = await self.session.scalars(
                select(Category).where(Category.parent_id == category.id)
            )
            for child in list(children):
                await self._move(child, target.id)
            await self.session.execute(
                update(Product)
                .where(Product.category_id == category.id)
                .values(category_id=target.id, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        await self.session.delete(category)
        await self.session.flush()


class ProductService:
    def __init__(self, session: AsyncSession, *, publisher: EventPublisher | None = None) -> None:
        self.session = session
        self.publisher = publisher

    # -- reads --------------------------------------------------------------------------

    async def find(self, key: str) -> Product | None:
        product_id = _uuid(key)
        if product_id is not None:
            return await self.session.get(Product, product_id)
        product = await self.session.scalar(select(Product).where(Product.slug == key))
        if product is None:
            old = await self.session.scalar(
                select(ProductSlug.product_id).where(ProductSlug.slug == key)
            )
            if old is not None:
                product = await self.session.get(Product, old)
        return product

    async def get_for_update(self, key: str, principal: Principal) -> Product:
        product = await self.find(key)
        if product is None:
            raise ProductNotFound()
        if not can_manage(principal, product.vendor_id):
            if product.status != "active":
                raise ProductNotFound()
            raise Forbidden("You can only manage your own products", code="NOT_PRODUCT_OWNER")
        return product

    async def variants(self, product_id: uuid.UUID) -> list[ProductVariant]:
        rows = await self.session.scalars(
            select(ProductVariant)
            .where(ProductVariant.product_id == product_id)
            .order_by(ProductVariant.position, ProductVariant.sku)
        )
        return list(rows)

    # -- checks -------------------------------------------------------------------------

    async def _check_category(self, category_id: uuid.UUID | None) -> None:
        if category_id is not None and await self.session.get(Category, category_id) is None:
            raise unknown_category()

    async def _slug_free(self, slug: str, own: uuid.UUID | None) -> bool:
        product = await self.session.scalar(select(Product.id).where(Product.slug == slug))
        if product is not None and product != own:
            return False
        old = await self.session.scalar(
            select(ProductSlug.product_id).where(ProductSlug.slug == slug)
        )
        return old is None or old == own

    async def _unique_slug(self, name: str, slug: str | None, own: uuid.UUID | None) -> str:
        if slug:
            if not await self._slug_free(slug, own):
                raise SlugTaken(details=[{"field": "slug", "message": f"{slug!r} is taken"}])
            return slug
        base = slugify(name)
        n = 1
        while not await self._slug_free(with_suffix(base, n), own):
            n += 1
        return with_suffix(base, n)

    async def _check_skus(self, variants: list[VariantIn], own: uuid.UUID | None) -> None:
        skus = [v.sku for v in variants]
        query = select(ProductVariant.sku).where(ProductVariant.sku.in_(skus))
        if own is not None:
            query = query.where(ProductVariant.product_id != own)
        taken = list(await self.session.scalars(query))
        if taken:
            raise SkuTaken(
                details=[{"field": "variants.sku", "message": f"{sku!r} is taken"} for sku in taken]
            )

    @staticmethod
    def _check_merchandising(principal: Principal) -> None:
        """Featuring a product is the shop's decision, not the vendor's."""
        if not (principal.can("product:write:any") or principal.is_service):
            raise Forbidden("Only MANAGER+ may feature a product", code="NOT_ALLOWED_TO_FEATURE")

    def _vendor(self, principal: Principal, requested: uuid.UUID | None) -> uuid.UUID | None:
        if principal.can("product:write:any") or principal.is_service:
            return requested
        own = principal.user_id
        if requested is not None and requested != own:
            raise Forbidden("A vendor can only create their own products")
        return own

    # -- writes -------------------------------------------------------------------------

    async def create(self, data: Mapping[str, Any], principal: Principal | None = None) -> Product:
        """``data`` is a validated ``ProductCreate`` dump (variants as ``VariantIn``)."""
        variants: list[VariantIn] = data["variants"]
        vendor_id = (
            self._vendor(principal, data.get("vendor_id"))
            if principal is not None
            else data.get("vendor_id")
        )
        if data.get("featured") and principal is not None:
            self._check_merchandising(principal)
        await self._check_category(data.get("category_id"))
        await self._check_skus(variants, None)
        product = Product(
            id=uuid.uuid4(),
            slug=await self._unique_slug(data["name"], data.get("slug"), None),
            vendor_id=vendor_id,
            images=[str(i) for i in data.get("images") or []],
            rating=0,
            review_count=0,
            sales_count=0,
            in_stock=False,
            **{k: data[k] for k in PRODUCT_FIELDS if k in data},
        )
        product.attributes = dict(data.get("attributes") or {})
        self.session.add(product)
        # Variant ids are the server's to choose on create (a client-chosen id could
        # collide or take over a deleted variant's stock).
        rows = [
            self._new_variant(product.id, v.model_copy(update={"id": None}), i)
            for i, v in enumerate(variants)
        ]
        self.session.add_all(rows)
        self._denormalise(product, rows)
        await self._flush()
        await self._publish(events.ProductCreated, product, rows)
        return product

    async def update(
        self, key: str, data: Mapping[str, Any], principal: Principal, *, replace: bool
    ) -> Product:
        product = await self.get_for_update(key, principal)
        if "vendor_id" in data and data["vendor_id"] != product.vendor_id:
            if not principal.can("product:write:any"):
                raise Forbidden("Only MANAGER+ may change a product's vendor")
            product.vendor_id = data["vendor_id"]
        if data.get("featured") and not product.featured:
            self._check_merchandising(principal)
        if "category_id" in data and data["category_id"] != product.category_id:
            await self._check_category(data["category_id"])
        new_slug = data.get("slug")
        if new_slug and new_slug != product.slug:
            await self._rename_slug(
                product, await self._unique_slug(product.name, new_slug, product.id)
            )
        for name in PRODUCT_FIELDS:
            if name in data and (data[name] is not None or name in NULLABLE_FIELDS):
                setattr(product, name, data[name])
        if "images" in data and data["images"] is not None:
            product.images = [str(i) for i in data["images"]]
        if "attributes" in data and data["attributes"] is not None:
            product.attributes = dict(data["attributes"])
        current = await self.variants(product.id)
        changed: list[tuple[ProductVariant, int]] = []
        if data.get("variants") is not None:
            current = await self._sync_variants(product, current, data["variants"], changed)
        self._denormalise(product, current)
        product.updated_at = utcnow()
        await self._flush()
        await self._publish(events.ProductUpdated, product, current)
        if self.publisher is not None:
            for variant, old_amount in changed:
                await self.publisher.publish(
                    self.session,
                    events.ProductPriceChanged(
                        product_id=product.id,
                        variant_id=variant.id,
                        sku=variant.sku,
                        old_amount=old_amount,
                        new_amount=variant.price_amount,
                        currency=variant.currency,
                    ),
                )
        return product

    async def archive(self, key: str, principal: Principal) -> Product:
        product = await self.get_for_update(key, principal)
        if product.status != "archived":
            product.status = "archived"
            product.updated_at = utcnow()
            variants = await self.variants(product.id)
            await self._flush()
            if self.publisher is not None:
                await self.publisher.publish(
                    self.session,
                    events.ProductArchived(
                        product_id=product.id, variant_ids=[v.id for v in variants]
                    ),
                )
        return product

    async def record_stock(self, variant_id: uuid.UUID, available: int) -> StockChange:
        """Mirror inventory's per-variant availability (absolute, so replays are harmless).

        Says whether the figure changed and whether the product's ``in_stock`` flipped
        (only a flip changes which products a listing shows). The variant's UPDATE also
        returns the product's ``in_stock``: when it already agrees with this variant's
        figure (in stock, or out and staying out) that one statement is all."""
        figure = max(0, available)
        row = (
            await self.session.execute(_MIRROR_STOCK, {"variant_id": variant_id, "figure": figure})
        ).first()
        if row is None:
            return StockChange.NONE
        product_id, shown_in_stock = row
        if shown_in_stock == (figure > 0):
            return StockChange.FIGURE
        # In stock now but shown out, or out now and maybe the last: ask every variant.
        flipped = await self.session.execute(_FOLLOW_STOCK, {"product_id": product_id})
        return StockChange.FLIPPED if flipped.first() is not None else StockChange.FIGURE

    async def record_stock_levels(self, levels: Mapping[uuid.UUID, int]) -> bool:
        """Mirror a batch of variants' availability (absolute figures); says whether any
        product's ``in_stock`` flipped. On PostgreSQL in three statements however many
        variants moved (a batch of spread-out reservations touches as many variants as
        events): the figures, then their products locked and followed."""
        if self.session.get_bind().dialect.name != "postgresql":
            changes = [await self.record_stock(v, levels[v]) for v in sorted(levels)]
            return StockChange.FLIPPED in changes
        ids = sorted(levels)
        now = utcnow()
        moved = await self.session.execute(
            _MIRROR_STOCK_LEVELS,
            {"variant_ids": ids, "figures": [max(0, levels[v]) for v in ids], "now": now},
        )
        products = sorted({product_id for (product_id,) in moved})
        if not products:
            return False
        await self.session.execute(_LOCK_PRODUCTS, {"product_ids": products})
        flipped = await self.session.execute(
            _FOLLOW_PRODUCTS, {"product_ids": products, "now": now}
        )
        return flipped.first() is not None

    async def record_sales(self, quantities: Mapping[uuid.UUID, int]) -> int:
        """Add sold quantities per variant to their products' ``sales_count`` (the order
        service's confirmed lines feed this), in one statement; returns how many
        products changed."""
        if not quantities:
            return 0
        sold = case(
            *((ProductVariant.id == variant, int(units)) for variant, units in quantities.items())
        )
        per_product = (
            select(ProductVariant.product_id, func.sum(sold).label("sold"))
            .where(ProductVariant.id.in_(list(quantities)))
            .group_by(ProductVariant.product_id)
            .subquery()
        )
        total = Product.sales_count + per_product.c.sold
        result = await self.session.execute(
            update(Product)
            .where(Product.id == per_product.c.product_id)
            # A late cancellation never takes the counter below zero.
            .values(sales_count=case((total < 0, 0), else_=total))
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    # -- helpers ------------------------------------------------------------------------

    def _new_variant(self, product_id: uuid.UUID, v: VariantIn, position: int) -> ProductVariant:
        return ProductVariant(
            id=v.id if v.id is not None else uuid.uuid4(),
            product_id=product_id,
            sku=v.sku,
            options=dict(v.options),
            price_amount=v.price_amount,
            compare_at_amount=v.compare_at_amount,
            currency=v.currency,
            weight_grams=v.weight_grams,
            barcode=v.barcode,
            position=position,
            available=0,
        )

    async def _sync_variants(
        self,
        product: Product,
        current: list[ProductVariant],
        wanted: list[VariantIn],
        changed: list[tuple[ProductVariant, int]],
    ) -> list[ProductVariant]:
        await self._check_skus(wanted, product.id)
        by_id = {v.id: v for v in current}
        by_sku = {v.sku.lower(): v for v in current}
        kept: list[ProductVariant] = []
        for position, w in enumerate(wanted):
            existing = by_id.get(w.id) if w.id is not None else by_sku.get(w.sku.lower())
            if existing is None:
                new = self._new_variant(product.id, w.model_copy(update={"id": None}), position)
                self.session.add(new)
                kept.append(new)
                continue
            if existing.price_amount != w.price_amount or existing.currency != w.currency:
                changed.append((existing, existing.price_amount))
            existing.sku = w.sku
            existing.options = dict(w.options)
            existing.price_amount = w.price_amount
            existing.compare_at_amount = w.compare_at_amount
            existing.currency = w.currency
            existing.weight_grams = w.weight_grams
            existing.barcode = w.barcode
            existing.position = position
            kept.append(existing)
        kept_ids = {v.id for v in kept}
        for old in current:
            if old.id not in kept_ids:
                await self.session.delete(old)
        return kept

    def _denormalise(self, product: Product, variants: list[ProductVariant]) -> None:
        cheapest = min(variants, key=lambda v: v.price_amount)
        product.min_price_amount = cheapest.price_amount
        product.currency = cheapest.currency
        product.in_stock = any((v.available or 0) > 0 for v in variants)

    async def _rename_slug(self, product: Product, new_slug: str) -> None:
        # The product's own old slug may come back: it is no longer "old".
        await self.session.execute(delete(ProductSlug).where(ProductSlug.slug == new_slug))
        self.session.add(ProductSlug(slug=product.slug, product_id=product.id))
        product.slug = new_slug

    async def _flush(self) -> None:
        try:
            await self.session.flush()
        except IntegrityError as exc:  # a concurrent writer won the race
            text = str(exc.orig).lower()
            if "sku" in text:
                raise SkuTaken() from None
            if "slug" in text:
                raise SlugTaken() from None
            raise

    async def _publish(
        self,
        kind: type[events.ProductCreated] | type[events.ProductUpdated],
        product: Product,
        variants: list[ProductVariant],
    ) -> None:
        if self.publisher is None:
            return
        await self.publisher.publish(self.session, snapshot(kind, product, variants))


def snapshot(
    kind: type[events.ProductCreated] | type[events.ProductUpdated],
    product: Product,
    variants: list[ProductVariant],
) -> events.ProductSnapshot:
    return kind(
        product_id=product.id,
        slug=product.slug,
        name=product.name,
        description=product.description or "",
        brand=product.brand,
        category_id=product.category_id,
        vendor_id=product.vendor_id,
        status=product.status,
        featured=product.featured,
        attributes=dict(product.attributes or {}),
        variants=[
            events.VariantSnapshot(
                variant_id=v.id,
                sku=v.sku,
                options={str(k): str(val) for k, val in (v.options or {}).items()},
                price_amount=v.price_amount,
                compare_at_amount=v.compare_at_amount,
                currency=v.currency,
                weight_grams=v.weight_grams,
            )
            for v in variants
        ],
    )


__all__ = ["CategoryService", "ProductService", "can_manage", "snapshot"]
