"""The abandoned-cart sweep against a customer's write that commits between its SELECT
of idle carts and its UPDATE marking one: the UPDATE checks again that the cart is
still open and idle, so a cart just used (or merged away) is not reported abandoned.

PostgreSQL only: on SQLite the sweep's transaction holds the write lock from its first
read, so no write can land in between (the customer's write waits for the sweep)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from tests.shop import configure, make_variant
from tests.support import ok

from ultramarket.core.db import utcnow
from ultramarket.services.cart.models import Cart
from ultramarket.services.cart.service import mark_abandoned

API = "/api/v1/cart"
TOKEN = "X-Cart-Token"


class WriteAfterFirstStatement:
    """The sweep's session; once its first statement (the SELECT of idle carts) has
    run, ``write`` runs and commits in a transaction of its own."""

    def __init__(self, session: AsyncSession, write: Callable[[], Awaitable[Any]]) -> None:
        self.session = session
        self.write: Callable[[], Awaitable[Any]] | None = write

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        result = await self.session.execute(*args, **kwargs)
        if self.write is not None:
            write, self.write = self.write, None
            await write()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


async def idle_guest_cart(client: Any, container: Any, drain: Any, make_user: Any) -> dict:
    """A guest cart with one line, last touched 25 hours ago."""
    manager = await make_user(role="MANAGER")
    v = await make_variant(client, container, drain, manager, price="3.00")
    cart = ok(
        await client.post(f"{API}/items", json={"variant_id": v["variant_id"], "quantity": 1}),
        201,
    )
    async with container.db("cart").session() as session:
        await session.execute(
            update(Cart)
            .where(Cart.id == uuid.UUID(cart["id"]))
            .values(updated_at=utcnow() - timedelta(hours=25))
        )
    return {**cart, "variant": v}


def postgres_only(container: Any) -> None:
    if container.db("cart").dialect == "sqlite":
        pytest.skip("SQLite: the sweep holds the write lock from its first read")


async def sweep_with(container: Any, settings: Any, write: Callable[[], Awaitable[Any]]) -> int:
    async with container.db("cart").session() as session:
        return await mark_abandoned(
            WriteAfterFirstStatement(session, write),  # type: ignore[arg-type]
            container.publisher("cart"),
            settings,
        )


async def reported(container: Any, cart_id: str) -> tuple[bool, int]:
    """(marked abandoned, cart.abandoned.v1 events for it)"""
    outbox = container.events("cart").outbox
    async with container.db("cart").read_session() as session:
        marked = await session.scalar(
            select(Cart.abandoned_at).where(Cart.id == uuid.UUID(cart_id))
        )
        payloads = (
            await session.scalars(
                select(outbox.c.payload).where(outbox.c.event_type == "cart.abandoned.v1")
            )
        ).all()
    return marked is not None, sum(p["cart_id"] == cart_id for p in payloads)


async def test_a_cart_used_between_the_sweeps_select_and_update_is_not_abandoned(
    client, container, drain, make_user
):
    postgres_only(container)
    settings = configure(container, abandoned_after_hours=24)
    cart = await idle_guest_cart(client, container, drain, make_user)

    async def customer_adds() -> None:
        body = {"variant_id": cart["variant"]["variant_id"], "quantity": 1}
        ok(await client.post(f"{API}/items", json=body, headers={TOKEN: cart["token"]}), 201)

    assert await sweep_with(container, settings, customer_adds) == 0
    assert await reported(container, cart["id"]) == (False, 0)


async def test_a_cart_merged_between_the_sweeps_select_and_update_is_not_abandoned(
    client, container, drain, make_user
):
    postgres_only(container)
    settings = configure(container, abandoned_after_hours=24)
    cart = await idle_guest_cart(client, container, drain, make_user)
    user = await make_user()

    async def customer_logs_in() -> None:
        ok(await client.get(API, headers={**user.headers, TOKEN: cart["token"]}))

    assert await sweep_with(container, settings, customer_logs_in) == 0
    assert await reported(container, cart["id"]) == (False, 0)
