"""Product use cases: the category tree, products with variants, stock and sales mirrors.

The only code that changes product state. Writes use the ORM; every change publishes
its event in the same transaction and invalidates the response cache after it.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, delete, exists, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.db import UTCDateTime, utcnow
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
# variant at a time except on PostgreSQL), built once: a variant's figure from a stock
# event that occurred at ``at``, applied only when it is newer than the event the
# figure came from (a retried or late older event changes nothing), returning its
# product's in_stock... A newer event with the same figure still moves
# ``stock_event_at`` on (else an older event between the two would be taken as newer),
# so ``updated_at`` (set only when the figure moves) tells a moved figure from a newer
# time alone.
_AT = bindparam("at", type_=UTCDateTime())
_NOW = bindparam("now", type_=UTCDateTime())
_MIRROR_STOCK = (
    update(_VARIANT)
    .where(
        _VARIANT.c.id == bindparam("variant_id"),
        or_(_VARIANT.c.stock_event_at.is_(None), _VARIANT.c.stock_event_at < _AT),
    )
    .values(
        available=bindparam("figure"),
        stock_event_at=_AT,
        updated_at=case(
            (_VARIANT.c.available != bindparam("figure"), _NOW), else_=_VARIANT.c.updated_at
        ),
    )
    .returning(
        _VARIANT.c.product_id,
        # SQLite renders RETURNING unqualified ("WHERE id = product_id"): correct only
        # because product has no product_id column of its own.
        select(_PRODUCT.c.in_stock).where(_PRODUCT.c.id == _VARIANT.c.product_id).scalar_subquery(),
        _VARIANT.c.updated_at,
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


# A batch of stock events on PostgreSQL: ONE statement sets the variants whose event is
# newer than the one their figure came from, locked in id order (two batches never wait
# on each other crosswise), and returns their products and whether each figure moved;
# only our own table names are interpolated.
# The products of moved figures are then locked (id order) and followed in a second
# statement: its snapshot, taken under the locks, sees every variant a concurrent batch
# committed. (The first statement's own snapshot may predate a batch it waited for,
# which may have flipped the product.) A product edit locks in the same order.
_MIRROR_STOCK_LEVELS = text(
    f"""
WITH levels AS (
    SELECT * FROM unnest(
        CAST(:variant_ids AS uuid[]), CAST(:figures AS int[]), CAST(:times AS timestamptz[])
    ) AS l(id, figure, at)
), moved AS MATERIALIZED (
    SELECT v.id, l.figure, l.at, v.available <> l.figure AS changed
      FROM {_VARIANT.fullname} v JOIN levels l ON l.id = v.id
     WHERE v.stock_event_at IS NULL OR v.stock_event_at < l.at
     ORDER BY v.id FOR UPDATE OF v
)
UPDATE {_VARIANT.fullname} v
   SET available = m.figure, stock_event_at = m.at,
       updated_at = CASE WHEN m.changed THEN :now ELSE v.updated_at END
  FROM moved m WHERE v.id = m.id
RETURNING v.product_id, m.changed
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


def _violated(exc: IntegrityError) -> str:
    """What a unique violation names: the index on PostgreSQL ("ix_product_slug"), the
    message on SQLite ("unique constraint failed: product.slug"); never the values."""
    name = getattr(getattr(exc.orig, "__cause__", None), "constraint_name", None)
    return str(name if name else exc.orig).split("\n", 1)[0].lower()


def _sku_violation(exc: IntegrityError) -> bool:
    return "sku" in _violated(exc)


def _slug_violation(exc: IntegrityError) -> bool:
    return not _sku_violation(exc) and "slug" in _violated(exc)


def _conflict(exc: IntegrityError) -> Exception:
    """A unique violation a concurrent writer caused, as the domain's 409."""
    if _sku_violation(exc):
        return SkuTaken()
    if _slug_violation(exc):
        return SlugTaken()
    return exc


# A generated slug taken by a concurrent writer between the check and the INSERT is
# retried with the next free one this many times.
SLUG_ATTEMPTS = 5


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
        """``slug`` if free; a generated one's first free ``-n`` form; a client's that is
        taken is a 409."""
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
        for attempt in range(1, SLUG_ATTEMPTS + 1):
            try:
                async with self.session.begin_nested():
                    self.session.add(category)
                    await self.session.flush()
                return category
            except IntegrityError as exc:
                # A concurrent create took the slug since it was checked: a client's
                # slug is a 409, a generated one moves on to the next free one.
                if not _slug_violation(exc):
                    raise
                if explicit or attempt == SLUG_ATTEMPTS:
                    raise SlugTaken("A category with this slug already exists") from None
                category.slug = await self._unique_slug(slugify(data["name"]), False, None)
        raise AssertionError("unreachable")

    async def update(self, key: str, data: Mapping[str, Any]) -> Category:
        category = await self.get(key)
        try:
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
        except IntegrityError as exc:  # a concurrent writer took the slug meanwhile
            if _slug_violation(exc):
                raise SlugTaken("A category with this slug already exists") from None
            raise
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

    async def get_for_update(
        self, key: str, principal: Principal, *, with_variants: bool = False
    ) -> Product:
        """The product (by id, slug or old slug), locked until the transaction ends and
        read again under the lock, so two edits never both compute its denormalised
        price and stock from the same variants.

        ``with_variants``: its variants are locked first (in id order): the stock mirror
        locks variants and then their products, so an edit that changes variants takes
        them in the same order (the other way round, each would wait for the other)."""
        found = await self.find(key)
        if found is None:
            raise ProductNotFound()
        if with_variants:
            await self.session.execute(
                select(ProductVariant.id)
                .where(ProductVariant.product_id == found.id)
                .order_by(ProductVariant.id)
                .with_for_update()
            )
        product = await self.session.get(
            Product, found.id, with_for_update=True, populate_existing=True
        )
        if product is None:  # deleted meanwhile
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
            .execution_options(populate_existing=True)
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
        """The client's ``slug`` (a 409 when taken), else the first free one from
        ``name``."""
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
        """SKUs are unique case-insensitively across products ("case-1" is "CASE-1")."""
        skus = [v.sku.lower() for v in variants]
        query = select(ProductVariant.sku).where(func.lower(ProductVariant.sku).in_(skus))
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
        # Variant ids are the server's to choose on create (a client-chosen id could
        # collide or take over a deleted variant's stock).
        rows = [
            self._new_variant(product.id, v.model_copy(update={"id": None}), i)
            for i, v in enumerate(variants)
        ]
        self._denormalise(product, rows)
        await self._insert(product, rows, generated_slug=not data.get("slug"))
        await self._publish(events.ProductCreated, product, rows)
        return product

    async def _insert(
        self, product: Product, rows: list[ProductVariant], *, generated_slug: bool
    ) -> None:
        """INSERT the product and its variants. A concurrent create may take the slug
        between its check and this INSERT: a slug the server generated then moves on to
        the next free one (in a savepoint, so the transaction goes on); a client's is a
        409, as is a SKU taken meanwhile."""
        for attempt in range(1, SLUG_ATTEMPTS + 1):
            try:
                async with self.session.begin_nested():
                    self.session.add(product)
                    self.session.add_all(rows)
                    await self.session.flush()
                return
            except IntegrityError as exc:
                if not (generated_slug and _slug_violation(exc)) or attempt == SLUG_ATTEMPTS:
                    raise _conflict(exc) from None
                product.slug = await self._unique_slug(product.name, None, None)

    async def update(
        self, key: str, data: Mapping[str, Any], principal: Principal, *, replace: bool
    ) -> Product:
        product = await self.get_for_update(
            key, principal, with_variants=data.get("variants") is not None
        )
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

    async def record_stock(
        self, variant_id: uuid.UUID, available: int, occurred_at: datetime
    ) -> StockChange:
        """Mirror inventory's per-variant availability (absolute, so replays are harmless).

        ``occurred_at``: when the stock event occurred; an event no newer than the one
        the figure came from is ignored (delivery is at-least-once and not in order
        across batches).

        Says whether the figure changed and whether the product's ``in_stock`` flipped
        (only a flip changes which products a listing shows). The variant's UPDATE also
        returns the product's ``in_stock``: when it already agrees with this variant's
        figure (in stock, or out and staying out) that one statement is all."""
        figure, now = max(0, available), utcnow()
        params = {"variant_id": variant_id, "figure": figure, "at": occurred_at, "now": now}
        row = (await self.session.execute(_MIRROR_STOCK, params)).first()
        if row is None:  # an event no newer than the figure's
            return StockChange.NONE
        product_id, shown_in_stock, updated_at = row
        if updated_at != now:  # a newer event, the same figure
            return StockChange.NONE
        if shown_in_stock == (figure > 0):
            return StockChange.FIGURE
        # In stock now but shown out, or out now and maybe the last: ask every variant.
        flipped = await self.session.execute(_FOLLOW_STOCK, {"product_id": product_id})
        return StockChange.FLIPPED if flipped.first() is not None else StockChange.FIGURE

    async def record_stock_levels(
        self,
        levels: Mapping[uuid.UUID, int],
        times: Mapping[uuid.UUID, datetime],
    ) -> bool:
        """Mirror a batch of variants' availability (absolute figures; ``times``:
        when each variant's event occurred, as ``record_stock`` takes it); says whether
        any product's ``in_stock`` flipped. On PostgreSQL in three statements however
        many variants moved (a batch of spread-out reservations touches as many variants
        as events): the figures, then their products locked and followed."""
        if self.session.get_bind().dialect.name != "postgresql":
            changes = [await self.record_stock(v, levels[v], times[v]) for v in sorted(levels)]
            return StockChange.FLIPPED in changes
        ids = sorted(levels)
        now = utcnow()
        params = {
            "variant_ids": ids,
            "figures": [max(0, levels[v]) for v in ids],
            "times": [times[v] for v in ids],
            "now": now,
        }
        moved = await self.session.execute(_MIRROR_STOCK_LEVELS, params)
        products = sorted({product_id for product_id, changed in moved if changed})
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
        """Make the product's variants ``wanted`` (in that order). An entry keeps the
        variant its ``id`` names; an entry without one keeps the variant of its SKU
        unless another entry claimed that variant by id (``[{id: A, sku: "NEW"},
        {sku: "OLD"}]`` with A "OLD" renames A and adds a variant "OLD"); the rest are
        new. Variants no entry keeps are deleted."""
        await self._check_skus(wanted, product.id)
        by_id = {v.id: v for v in current}
        kept: dict[int, ProductVariant] = {
            i: by_id[w.id] for i, w in enumerate(wanted) if w.id is not None and w.id in by_id
        }
        claimed = {v.id for v in kept.values()}
        by_sku = {v.sku.lower(): v for v in current if v.id not in claimed}
        for i, w in enumerate(wanted):
            if w.id is None and (match := by_sku.pop(w.sku.lower(), None)) is not None:
                kept[i] = match
        kept_ids = {v.id for v in kept.values()}
        dropped = [v for v in current if v.id not in kept_ids]
        await self._free_skus(current, dropped, kept, wanted)
        result: list[ProductVariant] = []
        for position, w in enumerate(wanted):
            existing = kept.get(position)
            if existing is None:
                new = self._new_variant(product.id, w.model_copy(update={"id": None}), position)
                self.session.add(new)
                result.append(new)
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
            result.append(existing)
        return result

    async def _free_skus(
        self,
        current: list[ProductVariant],
        dropped: list[ProductVariant],
        kept: Mapping[int, ProductVariant],
        wanted: list[VariantIn],
    ) -> None:
        """Delete the dropped variants and, when a SKU moves to another of the product's
        variants (two swap theirs, a new variant takes a renamed or deleted one's), park
        the renamed variants on placeholder SKUs first: the unique index is checked row
        by row, so the final SKUs are written only once no old row holds them."""
        holder = {v.sku.lower(): v.id for v in current}
        moves = any(
            holder.get(w.sku.lower()) not in (None, getattr(kept.get(i), "id", None))
            for i, w in enumerate(wanted)
        )
        for old in dropped:
            await self.session.delete(old)
        if not moves:
            return
        for i, variant in kept.items():
            if variant.sku != wanted[i].sku:
                # Never a real SKU: those start with a letter or digit.
                variant.sku = f"~{variant.id.hex}"
        await self._flush()

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
            raise _conflict(exc) from None

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
