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
  /inventory/{id}/reserve`` is compared against.

Environment: ``BENCH_PG_DSN`` (plain ``postgresql://`` DSN), ``BENCH_ROW_ID`` (uuid of the
row, row_app), ``BENCH_CATEGORY`` (category slug, page_app), ``BENCH_POOL_MIN`` /
``BENCH_POOL_MAX`` (per worker; default 10 / 20, the app's ``db_pool_size`` +
``db_max_overflow``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

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
