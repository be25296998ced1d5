"""The two ceilings the UltraMarket figures are compared against (see bench/README.md).

Served by ``bench/run.py`` with uvicorn, two workers, same flags as the app:

* ``ceilings:ping_app``  - bare FastAPI, ``GET /ping`` returning a small model through
  ``response_model`` (the cheapest a FastAPI route can be on this machine);
* ``ceilings:row_app``   - bare FastAPI, ``GET /row`` reading one ``auth.account`` row by
  primary key with raw asyncpg from a pool and returning orjson (the cheapest
  "one row" can be: what ``GET /users/me`` is compared against);
* ``ceilings:page_app``  - bare FastAPI, ``GET /page``: the product listing's filtered page
  of 20 rows (``status = 'active' AND category_id = ANY(<the category and its
  descendants>) ORDER BY min_price_amount DESC, id LIMIT 20``, the product columns the
  app reads) in one raw asyncpg query, orjson response. The category ids are resolved
  once at start-up from ``BENCH_CATEGORY`` (a slug), as the app would per cache miss;
  what listing and detail are compared against;
* ``ceilings:reserve_app`` - bare FastAPI, ``POST /reserve/{item_id}`` with the app's body
  ``{quantity, key, ttl_seconds}``: one transaction of the conditional UPDATE
  (``reserved = reserved + q WHERE id = $2 AND on_hand - reserved >= q``) and one
  ``inventory.reservation`` row; 201, or 409 when short. What ``POST
  /inventory/{id}/reserve`` is compared against;
* ``ceilings:checkout_app`` - bare FastAPI, ``POST /checkout`` with the app's checkout body
  (``shipping_address``, ``items`` of 1-3 distinct variants, ``payment``; the
  Authorization header is ignored): one raw asyncpg transaction of the ``order.orders``
  row (``confirmed``), its ``order.order_item`` rows, the ``inventory.reservation`` row,
  one ``order.order_outbox`` row, then per line (in variant id order) the conditional
  ``UPDATE inventory.stock_item SET reserved = reserved + q WHERE variant_id = v AND
  on_hand - reserved >= q RETURNING id`` and last the ``inventory.reservation_line`` rows;
  201 with the order, or 409 and a rollback when a line is short. Prices, SKUs and names
  are read once at start-up for the variants in ``BENCH_VARIANTS_FILE``. What ``POST
  /api/v1/orders`` is compared against.

Environment: ``BENCH_PG_DSN`` (plain ``postgresql://`` DSN), ``BENCH_ROW_ID`` (uuid of the
row, row_app), ``BENCH_CATEGORY`` (category slug, page_app), ``BENCH_VARIANTS_FILE`` (variant
ids, one a line, checkout_app), ``BENCH_POOL_MIN`` /
``BENCH_POOL_MAX`` (per worker; default 10 / 20, the app's ``db_pool_size`` +
``db_max_overflow``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel


class Pong(BaseModel):
    ok: bool
    message: str


ping_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

_PONG = Pong(ok=True, message="pong")


@ping_app.get("/ping", response_model=Pong)
async def ping() -> Pong:
    return _PONG


ROW_SQL = "SELECT id, email, first_name FROM auth.account WHERE id = $1"


def _variant_ids() -> list[uuid.UUID]:
    """The checkout's variants (``BENCH_VARIANTS_FILE``), read once at start-up."""
    file = os.environ.get("BENCH_VARIANTS_FILE")
    return [uuid.UUID(line) for line in Path(file).read_text().split()] if file else []


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(
        os.environ["BENCH_PG_DSN"],
        min_size=int(os.environ.get("BENCH_POOL_MIN", "10")),
        max_size=int(os.environ.get("BENCH_POOL_MAX", "20")),
    )
    row_id = os.environ.get("BENCH_ROW_ID")
    app.state.row_id = uuid.UUID(row_id) if row_id else None
    category = os.environ.get("BENCH_CATEGORY")
    if category:
        async with app.state.pool.acquire() as conn:
            app.state.category_ids = [r["id"] for r in await conn.fetch(CATEGORY_IDS_SQL, category)]
    ids = _variant_ids()
    if ids:
        async with app.state.pool.acquire() as conn:
            app.state.variants = {r["id"]: r for r in await conn.fetch(VARIANTS_SQL, ids)}
    try:
        yield
    finally:
        await app.state.pool.close()


row_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=_lifespan)


@row_app.get("/row")
async def row() -> Response:
    app = row_app
    async with app.state.pool.acquire() as conn:
        record = await conn.fetchrow(ROW_SQL, app.state.row_id)
    if record is None:
        return Response(b'{"success":false}', status_code=404, media_type="application/json")
    body = {
        "success": True,
        "data": {
            "id": str(record["id"]),
            "email": record["email"],
            "first_name": record["first_name"],
        },
    }
    return Response(orjson.dumps(body), media_type="application/json")


# -- the listing page ---------------------------------------------------------------------

CATEGORY_IDS_SQL = """
SELECT id FROM product.category
WHERE path LIKE (SELECT path FROM product.category WHERE slug = $1) || '%'
"""
PAGE_SQL = """
SELECT id, slug, name, description, brand, category_id, vendor_id, attributes, status,
       featured, seo_title, seo_description, images, rating, review_count, sales_count,
       min_price_amount, currency, in_stock, created_at, updated_at
FROM product.product
WHERE status = 'active' AND category_id = ANY($1::uuid[])
ORDER BY min_price_amount DESC, id
LIMIT 20 OFFSET 0
"""

page_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=_lifespan)


@page_app.get("/page")
async def page() -> Response:
    async with page_app.state.pool.acquire() as conn:
        records = await conn.fetch(PAGE_SQL, page_app.state.category_ids)
    body = {"success": True, "data": [dict(r) for r in records]}
    # default=str: asyncpg's own UUID type (orjson does datetimes natively)
    return Response(orjson.dumps(body, default=str), media_type="application/json")


# -- the reservation ----------------------------------------------------------------------

RESERVE_SQL = """
UPDATE inventory.stock_item SET reserved = reserved + $1, updated_at = $3
WHERE id = $2 AND on_hand - reserved >= $1
RETURNING variant_id
"""
RESERVATION_SQL = """
INSERT INTO inventory.reservation (id, key, status, expires_at, actor, created_at, updated_at)
VALUES ($1, $2, 'active', $3, 'ceiling', $4, $4)
"""

reserve_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=_lifespan)


@reserve_app.post("/reserve/{item_id}", status_code=201)
async def reserve(item_id: uuid.UUID, request: Request) -> Response:
    body = orjson.loads(await request.body())
    quantity, key = int(body["quantity"]), str(body["key"])
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=int(body.get("ttl_seconds", 900)))
    reservation_id = uuid.uuid4()
    async with reserve_app.state.pool.acquire() as conn, conn.transaction():
        variant_id = await conn.fetchval(RESERVE_SQL, quantity, item_id, now)
        if variant_id is None:
            return Response(
                b'{"success":false,"error":{"code":"INSUFFICIENT_STOCK"}}',
                status_code=409,
                media_type="application/json",
            )
        await conn.execute(RESERVATION_SQL, reservation_id, key, expires, now)
    reply = {
        "success": True,
        "data": {"id": reservation_id, "key": key, "quantity": quantity, "status": "active",
                 "expires_at": expires, "created_at": now,
                 "lines": [{"item_id": item_id, "variant_id": variant_id, "quantity": quantity}]},
    }  # fmt: skip
    body = orjson.dumps(reply, default=str)
    return Response(body, status_code=201, media_type="application/json")


# -- the checkout -------------------------------------------------------------------------

VARIANTS_SQL = """
SELECT v.id, v.product_id, v.sku, v.price_amount, v.currency, p.name
FROM product.product_variant v JOIN product.product p ON p.id = v.product_id
WHERE v.id = ANY($1::uuid[])
"""
ORDER_SQL = """
INSERT INTO "order".orders (id, number, user_id, status, payment_status, on_hold, currency,
  subtotal_amount, discount_amount, shipping_amount, tax_amount, total_amount, paid_amount,
  refunded_amount, shipping_address, payment_method, from_cart, settled, confirmed_at,
  created_at, updated_at)
VALUES ($1, $2, $3, 'confirmed', 'paid', false, $4, $5, 0, 0, 0, $5, $5, 0, $6::jsonb, $7,
  false, true, $8, $8, $8)
"""
ORDER_ITEMS_SQL = """
INSERT INTO "order".order_item (id, order_id, position, variant_id, product_id, sku, name,
  quantity, unit_price_amount, subtotal_amount, discount_amount, tax_amount, total_amount,
  refunded_quantity)
SELECT gen_random_uuid(), $1, l.position, l.variant_id, l.product_id, l.sku, l.name,
  l.quantity, l.price, l.price * l.quantity, 0, 0, l.price * l.quantity, 0
FROM unnest($2::int[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::int[],
  $8::int[]) AS l(position, variant_id, product_id, sku, name, quantity, price)
"""
CHECKOUT_RESERVATION_SQL = """
INSERT INTO inventory.reservation (id, key, status, expires_at, actor, created_at, updated_at)
VALUES ($1, $2, 'active', $3, 'ceiling', $4, $4)
"""
OUTBOX_SQL = """
INSERT INTO "order".order_outbox (id, event_type, payload, occurred_at, available_at, attempts)
VALUES ($1, 'order.confirmed.v1', $2::jsonb, $3, $3, 0)
"""
LINE_RESERVE_SQL = """
UPDATE inventory.stock_item SET reserved = reserved + $1, updated_at = $3
WHERE variant_id = $2 AND on_hand - reserved >= $1
RETURNING id
"""
RESERVATION_LINES_SQL = """
INSERT INTO inventory.reservation_line (id, reservation_id, item_id, variant_id, quantity,
  returned)
SELECT gen_random_uuid(), $1, l.item_id, l.variant_id, l.quantity, 0
FROM unnest($2::uuid[], $3::uuid[], $4::int[]) AS l(item_id, variant_id, quantity)
"""
# In the ceiling's event payloads: no consumer reads them (bench/run.py retires them).
CEILING_MARK = "bench_ceiling"
_USER_ID = uuid.uuid4()  # no token check here: one buyer per worker


class _Short(Exception):
    pass


def _json_error(status: int, code: str) -> Response:
    body = orjson.dumps({"success": False, "error": {"code": code}})
    return Response(body, status_code=status, media_type="application/json")


checkout_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=_lifespan)


@checkout_app.post("/checkout", status_code=201)
async def checkout(request: Request) -> Response:
    body = orjson.loads(await request.body())
    known = checkout_app.state.variants
    wanted = [(uuid.UUID(i["variant_id"]), int(i["quantity"])) for i in body["items"]]
    if not 1 <= len(wanted) <= 3 or len({v for v, _ in wanted}) != len(wanted):
        return _json_error(422, "VALIDATION_ERROR")
    if any(v not in known or q <= 0 for v, q in wanted):
        return _json_error(404, "VARIANT_NOT_FOUND")
    lines = [known[v] for v, _ in wanted]
    quantities = [q for _, q in wanted]
    total = sum(v["price_amount"] * q for v, q in zip(lines, quantities, strict=True))
    currency = lines[0]["currency"]
    now = datetime.now(UTC)
    order_id, reservation_id = uuid.uuid4(), uuid.uuid4()
    number = f"CL-{uuid.uuid4().hex[:12].upper()}"
    payload = {
        "order_id": order_id, "number": number, "user_id": _USER_ID, "currency": currency,
        "items": [{"variant_id": v["id"], "product_id": v["product_id"], "sku": v["sku"],
                   "name": v["name"], "quantity": q, "unit_price_amount": v["price_amount"]}
                  for v, q in zip(lines, quantities, strict=True)],
        "total_amount": total, "payment_method": body["payment"]["method"], "confirmed_at": now,
        CEILING_MARK: True,
    }  # fmt: skip
    try:
        async with checkout_app.state.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                ORDER_SQL, order_id, number, _USER_ID, currency, total,
                orjson.dumps(body["shipping_address"]).decode(), body["payment"]["method"], now,
            )  # fmt: skip
            await conn.execute(
                ORDER_ITEMS_SQL, order_id, list(range(len(lines))), [v["id"] for v in lines],
                [v["product_id"] for v in lines], [v["sku"] for v in lines],
                [v["name"] for v in lines], quantities, [v["price_amount"] for v in lines],
            )  # fmt: skip
            await conn.execute(
                CHECKOUT_RESERVATION_SQL, reservation_id, f"order:{order_id}",
                now + timedelta(seconds=900), now,
            )  # fmt: skip
            await conn.execute(
                OUTBOX_SQL, uuid.uuid4(), orjson.dumps(payload, default=str).decode(), now
            )
            # The row locks last (a fixed order: two checkouts never deadlock), so they are
            # held for one more statement and the commit.
            ordered = sorted(wanted)
            item_ids = []
            for variant_id, quantity in ordered:
                item_id = await conn.fetchval(LINE_RESERVE_SQL, quantity, variant_id, now)
                if item_id is None:
                    raise _Short
                item_ids.append(item_id)
            await conn.execute(
                RESERVATION_LINES_SQL, reservation_id, item_ids, [v for v, _ in ordered],
                [q for _, q in ordered],
            )  # fmt: skip
    except _Short:
        return _json_error(409, "INSUFFICIENT_STOCK")
    reply = {"success": True, "data": {**payload, "id": order_id, "status": "confirmed"}}
    body = orjson.dumps(reply, default=str)
    return Response(body, status_code=201, media_type="application/json")
