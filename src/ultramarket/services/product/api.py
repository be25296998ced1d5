"""HTTP routes of the product service: parse, authorise, call the service, shape the reply.

Public reads (listing, detail, featured...) run SQLAlchemy Core selects and are cached
as finished JSON bytes in ``container.cache`` under the "product" prefix, which every
product or category change invalidates. Old slugs keep resolving: ``GET
/products/{old-slug}`` answers 200 with the product (its ``slug`` is the current one),
so links never break and clients can update theirs.
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.container import Container
from ultramarket.core.db import after_commit
from ultramarket.core.deps import ContainerDep, container_of, read_session, unit_of_work
from ultramarket.core.errors import Forbidden, ValidationFailed
from ultramarket.core.money import Money
from ultramarket.core.schemas import Envelope, Page, PageParams, page_params
from ultramarket.core.security import CurrentPrincipal, OptionalPrincipal, Principal, require
from ultramarket.core.service import ServiceRouter
from ultramarket.services.product import repository as repo
from ultramarket.services.product import schemas as s
from ultramarket.services.product.errors import ProductNotFound
from ultramarket.services.product.models import Category
from ultramarket.services.product.service import CategoryService, ProductService, can_manage

log = logging.getLogger("ultramarket.product")

products = ServiceRouter(prefix="/api/v1/products", tags=["products"])
categories = ServiceRouter(prefix="/api/v1/categories", tags=["categories"])

Session = Annotated[AsyncSession, unit_of_work("product")]
ReadSession = Annotated[AsyncSession, read_session("product")]
Writer = Annotated[Principal, require("product:write")]
CategoryWriter = Annotated[Principal, require("category:write")]
Paging = Annotated[PageParams, Depends(page_params)]

ERRORS: dict[int | str, dict[str, Any]] = {422: {"description": "Invalid input"}}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: {"description": "Not authenticated"},
    403: {"description": "Not your product, or not allowed"},
    404: {"description": "No such product"},
    409: {"description": "SKU_TAKEN or SLUG_TAKEN"},
}
CATEGORY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: {"description": "Not authenticated"},
    403: {"description": "Needs MANAGER or higher"},
    404: {"description": "No such category"},
    409: {"description": "CATEGORY_NOT_EMPTY, CATEGORY_CYCLE or SLUG_TAKEN"},
}


def json_response(body: bytes, status_code: int = 200) -> Response:
    return Response(content=body, status_code=status_code, media_type="application/json")


def envelope(data: Any) -> bytes:
    return orjson.dumps({"success": True, "data": data})


async def locale_of(
    locale: Annotated[
        str | None, Query(max_length=35, description="e.g. de_DE; else Accept-Language")
    ] = None,
    accept_language: Annotated[str | None, Header(max_length=200)] = None,
) -> str:
    return repo.normalise_locale(locale or accept_language)


LocaleDep = Annotated[str, Depends(locale_of)]


async def invalidate(container: Container) -> None:
    await container.cache.invalidate_prefix(repo.CACHE_PREFIX)
    await container.cache.invalidate_prefix(repo.CATEGORY_CACHE_PREFIX)


# -- filters ---------------------------------------------------------------------------


class ListingQuery:
    """The listing filters of ``/products`` and ``/categories/{id}/products``.

    Free attribute filters: ``attr.<key>=<value>`` (repeatable over keys; exact match
    on the attribute's string value), e.g. ``?attr.color=red&attr.size=M``.
    """

    def __init__(
        self,
        request: Request,
        category: str | None = None,
        brand: str | None = None,
        min_price: Decimal | None = None,
        max_price: Decimal | None = None,
        currency: str | None = None,
        in_stock: bool | None = None,
        min_rating: float | None = None,
        featured: bool | None = None,
        q: str | None = None,
    ) -> None:
        self.category = category
        attributes: list[tuple[str, str]] = []
        for key, value in request.query_params.multi_items():
            if key.startswith("attr."):
                name = key[5:]
                if not name or len(name) > 50 or not name.replace("_", "").isalnum():
                    raise ValidationFailed(
                        "Bad attribute filter",
                        details=[{"field": key, "message": "attr.<name> with letters/digits/_"}],
                    )
                attributes.append((name, value[:100]))
        self.filters = repo.ProductFilters(
            brand=brand,
            min_price=min_price,
            max_price=max_price,
            currency=currency,
            # Price bounds without ?currency= are in the shop's currency.
            default_currency=container_of(request).settings.payments.default_currency,
            in_stock=in_stock,
            min_rating=min_rating,
            featured=featured,
            q=q,
            attributes=tuple(sorted(attributes)),
        )
        self.cache_key = "&".join(f"{k}={v}" for k, v in sorted(request.query_params.multi_items()))


async def listing_query(
    request: Request,
    category: Annotated[str | None, Query(max_length=140, description="id or slug")] = None,
    brand: Annotated[str | None, Query(max_length=120)] = None,
    min_price: Annotated[Decimal | None, Query(ge=0, le=10**12)] = None,
    max_price: Annotated[Decimal | None, Query(ge=0, le=10**12)] = None,
    currency: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Z]{3}$",
            description="only products priced in it; min_price/max_price are in it "
            "(default: the shop's currency)",
        ),
    ] = None,
    in_stock: bool | None = None,
    min_rating: Annotated[float | None, Query(ge=0, le=5)] = None,
    featured: bool | None = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
) -> ListingQuery:
    # An async dependency: a class dependency (sync __init__) would be run in the thread
    # pool on every request, a thread hop on the listing's hot path.
    return ListingQuery(
        request, category, brand, min_price, max_price, currency, in_stock, min_rating,
        featured, q,
    )  # fmt: skip


Listing = Annotated[ListingQuery, Depends(listing_query)]


async def _listing(
    container: Container,
    listing: ListingQuery,
    paging: PageParams,
    locale: str,
    *,
    category: str | None = None,
    sort: str | None = None,
    scope: str = "list",
) -> Response:
    page = f"{paging.page}:{paging.limit}:{paging.sort}"
    cache_key = f"{scope}:{category}:{locale}:{page}:{listing.cache_key}"
    slot = await container.cache.lookup(repo.CACHE_PREFIX, cache_key)
    if slot.value is not None:
        return json_response(slot.value)
    category = category or listing.category
    async with container.db("product").read_session() as session:
        filters = listing.filters
        if category is not None:
            ids = await CategoryService(session).subtree_ids(category)
            filters = _replace(filters, category_ids=ids)
        filters = _replace(filters, sort=sort or paging.sort or repo.DEFAULT_SORT)
        rows, variants, total = await repo.list_products(
            session, filters, offset=paging.offset, limit=paging.limit
        )
    page = Page[dict[str, Any]].of(
        [repo.product_json(r, variants[r["id"]], locale) for r in rows],
        page=paging.page,
        limit=paging.limit,
        total=total,
    )
    body = orjson.dumps(page.model_dump())
    await slot.store(body, ttl=repo.CACHE_TTL)
    return json_response(body)


def _replace(filters: repo.ProductFilters, **changes: Any) -> repo.ProductFilters:
    from dataclasses import replace

    return replace(filters, **changes)


# -- products: reads ---------------------------------------------------------------------


# The carts' and orders' lookup first: routes match in order, and every checkout calls it.
@products.post(
    "/variants/lookup",
    response_model=Envelope[list[s.VariantInfo]],
    responses={401: {"description": "Not authenticated"}, 403: {"description": "Staff only"}},
    summary="Variants by id, for carts and orders (services and MANAGER+)",
)
async def lookup_variants(
    body: s.VariantLookupRequest, request: Request, principal: CurrentPrincipal
) -> Envelope[list[s.VariantInfo]]:
    return Envelope(data=await variants_info(container_of(request), principal, body))


async def variants_info(
    container: Container, principal: Principal, body: s.VariantLookupRequest
) -> list[s.VariantInfo]:
    """The variants among ``body.variant_ids`` that exist: the route's answer, and the
    in-process client's."""
    if not principal.is_staff():
        raise Forbidden("Services and staff only")
    rows = await container.db("product").fetch_all(repo.VARIANTS_BY_ID, ids=body.variant_ids)
    return [
        s.VariantInfo(
            id=r["id"],
            sku=r["sku"],
            product_id=r["product_id"],
            name=r["name"],
            options=r["options"] or {},
            price_amount=r["price_amount"],
            price=str(Money(r["price_amount"], r["currency"])),
            currency=r["currency"],
            status=r["status"],
            weight_grams=r["weight_grams"],
            available=r["available"],
        )
        for r in rows
    ]


async def _visible_row(
    container: Container, key: str, principal: Principal | None
) -> tuple[Any, list[Any]]:
    db = container.db("product")
    if db.dialect == "postgresql" and not _is_uuid(key):
        # The hot path: a current slug, product and variants in one precompiled query.
        record = await db.fetch_one(repo.DETAIL_BY_SLUG, slug=key)
        if record is not None:
            row, variants = repo.split_detail(record)
            if row["status"] != "active" and not can_manage(principal, row["vendor_id"]):
                raise ProductNotFound()
            return row, variants
    async with db.read_session() as session:
        row = await repo.find_product_row(session, key)
        if row is None:
            raise ProductNotFound()
        if row["status"] != "active" and not can_manage(principal, row["vendor_id"]):
            raise ProductNotFound()
        variants = (await repo.variants_of(session, [row["id"]]))[row["id"]]
    return row, variants


def _is_uuid(key: str) -> bool:
    try:
        uuid.UUID(key)
    except ValueError:
        return False
    return True


@products.get("", response_model=Page[s.ProductRead], responses=ERRORS)
async def list_products(
    container: ContainerDep, listing: Listing, paging: Paging, locale: LocaleDep
) -> Response:
    """Active products; filters as documented, sort `price`, `-price`, `-created_at`
    (default), `-rating`, `-popularity`, `name`."""
    return await _listing(container, listing, paging, locale)


@products.get("/featured", response_model=Page[s.ProductRead], responses=ERRORS)
async def featured_products(
    container: ContainerDep, listing: Listing, paging: Paging, locale: LocaleDep
) -> Response:
    listing.filters = _replace(listing.filters, featured=True)
    return await _listing(container, listing, paging, locale, scope="featured")


@products.get("/best-sellers", response_model=Page[s.ProductRead], responses=ERRORS)
async def best_sellers(
    container: ContainerDep, listing: Listing, paging: Paging, locale: LocaleDep
) -> Response:
    """By units sold (``sales_count``, fed by confirmed order lines)."""
    return await _listing(
        container, listing, paging, locale, sort="-popularity", scope="best-sellers"
    )


@products.get("/new-arrivals", response_model=Page[s.ProductRead], responses=ERRORS)
async def new_arrivals(
    container: ContainerDep, listing: Listing, paging: Paging, locale: LocaleDep
) -> Response:
    return await _listing(
        container, listing, paging, locale, sort="-created_at", scope="new-arrivals"
    )


@products.get(
    "/{key}",
    response_model=Envelope[s.ProductRead],
    responses={404: {"description": "No such product (or not public)"}},
    summary="A product by id, slug or old slug",
)
async def get_product(
    key: str,
    container: ContainerDep,
    principal: OptionalPrincipal,
    locale: LocaleDep,
) -> Response:
    slot = await container.cache.lookup(repo.CACHE_PREFIX, f"detail:{key}:{locale}")
    if slot.value is not None:
        return json_response(slot.value)
    row, variants = await _visible_row(container, key, principal)
    body = envelope(repo.product_json(row, variants, locale))
    if row["status"] == "active":
        await slot.store(body, ttl=repo.CACHE_TTL)
    return json_response(body)


@products.get(
    "/{key}/availability",
    response_model=Envelope[s.ProductAvailability],
    responses={404: {"description": "No such product"}},
)
async def product_availability(
    key: str, container: ContainerDep, principal: OptionalPrincipal
) -> Envelope[s.ProductAvailability]:
    """Stock per variant, asked of the inventory service (its client); when it cannot
    answer, the mirror kept from its events (``source: "mirror"``)."""
    from ultramarket.services.inventory.client import InventoryClient

    row, variants = await _visible_row(container, key, principal)
    ids = [v["id"] for v in variants]
    source = "inventory"
    try:
        stock = await container.client(InventoryClient, "product").availability(ids)
    except Exception as exc:  # the inventory service is down or not deployed
        log.warning("inventory availability failed, using the mirror: %s", exc)
        stock = {v["id"]: v["available"] for v in variants}
        source = "mirror"
    items = [
        s.VariantAvailability(
            variant_id=v["id"],
            sku=v["sku"],
            available=int(stock.get(v["id"], 0)),
            in_stock=int(stock.get(v["id"], 0)) > 0,
        )
        for v in variants
    ]
    return Envelope(
        data=s.ProductAvailability(
            product_id=row["id"],
            source=source,  # type: ignore[arg-type]
            in_stock=any(i.in_stock for i in items),
            variants=items,
        )
    )


# -- products: writes --------------------------------------------------------------------


async def product_service(container: ContainerDep, session: Session) -> ProductService:
    return ProductService(session, publisher=container.publisher("product"))


Products = Annotated[ProductService, Depends(product_service)]


async def _written(
    service: ProductService, container: Container, product_id: uuid.UUID, locale: str
) -> bytes:
    from ultramarket.services.product.models import Product

    await service.session.flush()
    product = await service.session.get(Product, product_id)
    assert product is not None
    row = {c.key: getattr(product, c.key) for c in repo.PRODUCT_COLUMNS}
    variants = [
        {c.key: getattr(v, c.key) for c in repo.VARIANT_COLUMNS}
        for v in await service.variants(product_id)
    ]
    return envelope(repo.product_json(row, variants, locale))


def _product_data(body: s.ProductFields | s.ProductPatch, *, partial: bool) -> dict[str, Any]:
    data = body.model_dump(exclude_unset=partial, exclude={"variants"})
    if "vendor_id" not in body.model_fields_set:
        data.pop("vendor_id", None)  # not given: keep the owner (also on PUT)
    if body.variants is not None and (not partial or "variants" in body.model_fields_set):
        data["variants"] = list(body.variants)
    return data


@products.post("", status_code=201, response_model=Envelope[s.ProductRead], responses=WRITE_ERRORS)
async def create_product(
    body: s.ProductCreate,
    service: Products,
    container: ContainerDep,
    principal: Writer,
    locale: LocaleDep,
) -> Response:
    product = await service.create(_product_data(body, partial=False), principal)
    result = await _written(service, container, product.id, locale)
    after_commit(service.session, lambda: invalidate(container))
    return json_response(result, 201)


@products.put("/{key}", response_model=Envelope[s.ProductRead], responses=WRITE_ERRORS)
async def replace_product(
    key: str,
    body: s.ProductReplace,
    service: Products,
    container: ContainerDep,
    principal: Writer,
    locale: LocaleDep,
) -> Response:
    product = await service.update(key, _product_data(body, partial=False), principal, replace=True)
    result = await _written(service, container, product.id, locale)
    after_commit(service.session, lambda: invalidate(container))
    return json_response(result)


@products.patch("/{key}", response_model=Envelope[s.ProductRead], responses=WRITE_ERRORS)
async def update_product(
    key: str,
    body: s.ProductPatch,
    service: Products,
    container: ContainerDep,
    principal: Writer,
    locale: LocaleDep,
) -> Response:
    product = await service.update(key, _product_data(body, partial=True), principal, replace=False)
    result = await _written(service, container, product.id, locale)
    after_commit(service.session, lambda: invalidate(container))
    return json_response(result)


@products.delete(
    "/{key}",
    response_model=Envelope[s.ProductRead],
    responses=WRITE_ERRORS,
    summary="Archive a product (gone from listings; still visible to its owner and staff)",
)
async def archive_product(
    key: str, service: Products, container: ContainerDep, principal: Writer, locale: LocaleDep
) -> Response:
    product = await service.archive(key, principal)
    result = await _written(service, container, product.id, locale)
    after_commit(service.session, lambda: invalidate(container))
    return json_response(result)


# -- categories ---------------------------------------------------------------------------


def _tree(rows: list[Category]) -> list[s.CategoryNode]:
    nodes = {c.id: s.CategoryNode.model_validate(c) for c in rows}
    roots: list[s.CategoryNode] = []
    for c in rows:
        node = nodes[c.id]
        parent = nodes.get(c.parent_id) if c.parent_id else None
        (parent.children if parent is not None else roots).append(node)
    return roots


@categories.get("", response_model=Envelope[list[s.CategoryNode]])
async def category_tree(container: ContainerDep) -> Response:
    """Every category as a tree (roots, each with ``children``), ordered by position."""
    slot = await container.cache.lookup(repo.CATEGORY_CACHE_PREFIX, "tree")
    if slot.value is not None:
        return json_response(slot.value)
    async with container.db("product").read_session() as session:
        rows = await CategoryService(session).all()
        body = envelope([n.model_dump(mode="json") for n in _tree(rows)])
    await slot.store(body, ttl=repo.CACHE_TTL)
    return json_response(body)


@categories.get(
    "/{key}", response_model=Envelope[s.CategoryRead], responses={404: {"description": "None"}}
)
async def get_category(key: str, session: ReadSession) -> Envelope[s.CategoryRead]:
    category = await CategoryService(session).get(key)
    return Envelope(data=s.CategoryRead.model_validate(category))


@categories.get(
    "/{key}/products",
    response_model=Page[s.ProductRead],
    responses={**ERRORS, 404: {"description": "No such category"}},
)
async def category_products(
    key: str, container: ContainerDep, listing: Listing, paging: Paging, locale: LocaleDep
) -> Response:
    """Active products of the category and its descendants; the same filters as
    ``/products``."""
    return await _listing(container, listing, paging, locale, category=key, scope="category")


@categories.post(
    "", status_code=201, response_model=Envelope[s.CategoryRead], responses=CATEGORY_ERRORS
)
async def create_category(
    body: s.CategoryCreate, session: Session, container: ContainerDep, _: CategoryWriter
) -> Envelope[s.CategoryRead]:
    category = await CategoryService(session).create(body.model_dump())
    result = s.CategoryRead.model_validate(category)
    after_commit(session, lambda: invalidate(container))
    return Envelope(data=result)


@categories.put("/{key}", response_model=Envelope[s.CategoryRead], responses=CATEGORY_ERRORS)
@categories.patch("/{key}", response_model=Envelope[s.CategoryRead], responses=CATEGORY_ERRORS)
async def update_category(
    key: str,
    body: s.CategoryUpdate,
    session: Session,
    container: ContainerDep,
    _: CategoryWriter,
) -> Envelope[s.CategoryRead]:
    """Rename, re-slug, reorder or move (``parent_id``; null for a root). Products keep
    their category; the subtree's paths follow a move."""
    category = await CategoryService(session).update(key, body.model_dump(exclude_unset=True))
    result = s.CategoryRead.model_validate(category)
    after_commit(session, lambda: invalidate(container))
    return Envelope(data=result)


@categories.delete("/{key}", status_code=204, responses=CATEGORY_ERRORS)
async def delete_category(
    key: str,
    session: Session,
    container: ContainerDep,
    _: CategoryWriter,
    move_to: Annotated[
        uuid.UUID | None, Query(description="Where its products and subcategories go")
    ] = None,
) -> Response:
    """Refused with 409 CATEGORY_NOT_EMPTY when it has products or subcategories,
    unless ``move_to`` names the category that takes them."""
    await CategoryService(session).delete(key, move_to)
    after_commit(session, lambda: invalidate(container))
    return Response(status_code=204)
