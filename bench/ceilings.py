"""The two ceilings the UltraMarket figures are compared against (see bench/README.md).

Served by ``bench/run.py`` with uvicorn, two workers, same flags as the app:

* ``ceilings:ping_app``  - bare FastAPI, ``GET /ping`` returning a small model through
  ``response_model`` (the cheapest a FastAPI route can be on this machine);
* ``ceilings:row_app``   - bare FastAPI, ``GET /row`` reading one ``auth.account`` row by
  primary key with raw asyncpg from a pool and returning orjson (the cheapest
  "one row" can be: what ``GET /users/me`` is compared against).

Environment: ``BENCH_PG_DSN`` (plain ``postgresql://`` DSN), ``BENCH_ROW_ID`` (uuid of the
row), ``BENCH_POOL_MIN`` / ``BENCH_POOL_MAX`` (per worker; default 10 / 20, the app's
``db_pool_size`` + ``db_max_overflow``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
from fastapi import FastAPI, Response
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
    app.state.row_id = uuid.UUID(os.environ["BENCH_ROW_ID"])
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
