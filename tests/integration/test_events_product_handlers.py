"""The product service's event handlers in a batch: the stock mirror and the sales
counters keep their results with fewer statements, one unit of work per handler."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
from sqlalchemy import select
from test_events_outbox import statements
from tests.support import ok

from ultramarket.core.container import Container
from ultramarket.core.db import utcnow
from ultramarket.core.events import Delivery, Event, EventEnvelope
from ultramarket.services.inventory.events import OutOfStock, StockChanged
from ultramarket.services.order.events import OrderCancelled, OrderConfirmed, OrderLine
from ultramarket.services.product.models import Product, ProductVariant
from ultramarket.services.product.service import ProductService, StockChange

# A variant's UPDATE: one a variant on SQLite, the batch's in one statement on PostgreSQL.
VARIANT_UPDATE = re.compile(r"UPDATE (\w+\.)?product_variant (v )?SET")
PRODUCT_UPDATE = re.compile(r"^UPDATE (\w+\.)?product SET")
# A product's in_stock followed from its variants (one product, or the batch's products).
PRODUCT_FOLLOW = re.compile(r"UPDATE (\w+\.)?product (p )?SET in_stock")


async def two_variant_product(client: httpx.AsyncClient, make_user: Any, drain: Any) -> Any:
    manager = await make_user("MANAGER")
    body = {
        "name": "Trail Runner Shoe",
        "status": "active",
        "variants": [
            {"sku": f"SKU-{uuid.uuid4().hex[:8]}", "price": "19.99", "currency": "USD"}
            for _ in range(2)
        ],
    }
    product = ok(await client.post("/api/v1/products", headers=manager.headers, json=body), 201)
    await drain()
    return uuid.UUID(product["id"]), [uuid.UUID(v["id"]) for v in product["variants"]]


def stock(kind: type[StockChanged] | type[OutOfStock], variant_id: uuid.UUID, n: int) -> Event:
    values: dict[str, Any] = {
        "item_id": uuid.uuid4(), "variant_id": variant_id, "sku": "X",
        "warehouse_id": uuid.uuid4(), "on_hand": n, "reserved": 0, "available": n,
        "variant_available": n,
    }  # fmt: skip
    return StockChanged(**values, reason="test") if kind is StockChanged else OutOfStock(**values)


def line(product_id: uuid.UUID, variant_id: uuid.UUID, quantity: int) -> OrderLine:
    return OrderLine(
        item_id=uuid.uuid4(), variant_id=variant_id, product_id=product_id, sku="X",
        name="X", quantity=quantity, unit_price_amount=100, total_amount=100 * quantity,
    )  # fmt: skip


def order_fields() -> dict[str, Any]:
    return {
        "order_id": uuid.uuid4(),
        "number": "UM-1",
        "user_id": uuid.uuid4(),
        "currency": "USD",
    }


def delivery(event: Event, source: str) -> Delivery:
    return Delivery(
        EventEnvelope(
            id=uuid.uuid4(),
            type=event.type,
            source=source,
            occurred_at=utcnow(),
            data=event.model_dump(mode="json"),
        )
    )


async def test_a_batch_of_stock_and_order_events_keeps_the_product_mirror(
    client: httpx.AsyncClient, container: Container, make_user: Any, drain: Any
) -> None:
    product_id, (v1, v2) = await two_variant_product(client, make_user, drain)
    confirmed = OrderConfirmed(
        **order_fields(), email=None, items=[line(product_id, v1, 2), line(product_id, v2, 1)],
        subtotal_amount=300, discount_amount=0, shipping_amount=0, tax_amount=0,
        total_amount=300, coupon_code=None, payment_method="card", shipping_country=None,
        confirmed_at=utcnow(),
    )  # fmt: skip
    cancelled = OrderCancelled(
        **order_fields(), previous_status="confirmed", reason=None,
        items=[line(product_id, v2, 1)], was_confirmed=True, refund_amount=100,
    )  # fmt: skip
    batch = [
        delivery(stock(StockChanged, v1, 5), "inventory"),  # in stock: the product flips
        delivery(stock(StockChanged, v1, 4), "inventory"),  # a count
        delivery(stock(StockChanged, v2, 3), "inventory"),  # a count
        delivery(confirmed, "order"),
        delivery(stock(OutOfStock, v1, 0), "inventory"),  # v2 still in stock: no flip
        delivery(cancelled, "order"),
        delivery(stock(OutOfStock, v2, 0), "inventory"),  # the last one: the product flips
    ]

    with statements(container) as seen:
        outcomes = await container.dispatcher.dispatch_batch(batch)

    assert outcomes == [None] * len(batch)
    async with container.db("product").read_session() as session:
        product = await session.get_one(Product, product_id)
        available = dict(
            (await session.execute(select(ProductVariant.id, ProductVariant.available))).all()
        )
    assert (available[v1], available[v2]) == (0, 0)
    assert product.in_stock is False
    assert product.sales_count == 2
    # The stock mirror: its five events in one unit of work, each variant's last figure
    # written (one UPDATE a variant, or the batch's one statement on PostgreSQL), and
    # the product's in_stock untouched (it ends where it began). The sales counters: the
    # batch's sums in one UPDATE (v2's sale and cancellation cancel out). One inbox
    # claim and one commit per handler.
    one_statement = container.db("product").dialect == "postgresql"
    assert not [s for s in seen if s.startswith("SELECT")]
    assert sum(1 for s in seen if VARIANT_UPDATE.search(s)) == (1 if one_statement else 2)
    assert sum(1 for s in seen if PRODUCT_UPDATE.match(s)) == 1
    assert sum(1 for s in seen if "product_inbox" in s) == 2
    assert seen.count("COMMIT") == 2

    # A batch that ends in stock flips the product; only each variant's last figure counts.
    again = [
        delivery(stock(StockChanged, v2, 2), "inventory"),
        delivery(stock(StockChanged, v2, 1), "inventory"),
    ]
    with statements(container) as seen:
        assert await container.dispatcher.dispatch_batch(again) == [None, None]
    async with container.db("product").read_session() as session:
        product = await session.get_one(Product, product_id)
        variant = await session.get_one(ProductVariant, v2)
    assert (product.in_stock, variant.available) == (True, 1)
    assert sum(1 for s in seen if VARIANT_UPDATE.search(s)) == 1
    assert sum(1 for s in seen if PRODUCT_FOLLOW.search(s)) == 1  # the flip


def now_for(levels: dict[uuid.UUID, int]) -> dict[uuid.UUID, Any]:
    """Each variant's figure as of an event that occurred now."""
    at = utcnow()
    return dict.fromkeys(levels, at)


async def test_the_stock_mirror_tells_counts_from_flips_across_variants(
    client: httpx.AsyncClient, container: Container, make_user: Any, drain: Any
) -> None:
    # Another product, in stock, first: each figure is weighed against its own product.
    _, (other, _) = await two_variant_product(client, make_user, drain)
    product_id, (v1, v2) = await two_variant_product(client, make_user, drain)

    async def record(variant_id: uuid.UUID, available: int) -> tuple[StockChange, bool]:
        async with container.db("product").session() as session:
            change = await ProductService(session).record_stock(variant_id, available, utcnow())
            product = await session.get_one(Product, product_id)
            return change, product.in_stock

    await record(other, 1)
    assert await record(v1, 5) == (StockChange.FLIPPED, True)
    assert await record(v2, 3) == (StockChange.FIGURE, True)
    assert await record(v1, 0) == (StockChange.FIGURE, True)  # v2 still sells
    assert await record(v1, 0) == (StockChange.NONE, True)
    assert await record(v2, -1) == (StockChange.FLIPPED, False)  # clamped to 0: sold out
    assert await record(v1, 0) == (StockChange.NONE, False)
    assert await record(v2, 2) == (StockChange.FLIPPED, True)


async def test_sales_counters_sum_per_product_and_never_go_below_zero(
    client: httpx.AsyncClient, container: Container, make_user: Any, drain: Any
) -> None:
    first, (a1, a2) = await two_variant_product(client, make_user, drain)
    second, (b1, _) = await two_variant_product(client, make_user, drain)

    async def record(quantities: dict[uuid.UUID, int]) -> tuple[int, int, int]:
        async with container.db("product").session() as session:
            changed = await ProductService(session).record_sales(quantities)
            counts = dict((await session.execute(select(Product.id, Product.sales_count))).all())
            return changed, counts[first], counts[second]

    assert await record({a1: 2, a2: 3, b1: 1, uuid.uuid4(): 9}) == (2, 5, 1)
    assert await record({a1: -1, b1: -4}) == (2, 4, 0)
    assert await record({uuid.uuid4(): 1}) == (0, 4, 0)
    assert await record({}) == (0, 4, 0)


async def test_racing_stock_batches_leave_each_product_as_its_variants_say(
    client: httpx.AsyncClient, container: Container, make_user: Any, drain: Any
) -> None:
    # P has a (in stock) and b (out); Q has c. Batch X empties a and fills c; batch Y,
    # started while X holds its locks, fills b and c again. Y waits for X on c; X has
    # meanwhile flipped P out of stock, so Y must bring P back in (b now sells).
    product_p, (a, b) = await two_variant_product(client, make_user, drain)
    product_q, (c, _) = await two_variant_product(client, make_user, drain)
    database = container.db("product")

    async def record(levels: dict[uuid.UUID, int]) -> bool:
        async with database.session() as session:
            return await ProductService(session).record_stock_levels(levels, now_for(levels))

    assert await record({a: 5}) is True  # P comes in stock

    async with database.session() as first:
        first_levels = {a: 0, c: 1}
        assert (
            await ProductService(first).record_stock_levels(first_levels, now_for(first_levels))
            is True
        )
        second = asyncio.create_task(record({b: 3, c: 7}))
        await asyncio.sleep(0.3)
        assert not second.done()  # waiting for the first batch's locks
    assert await second is True  # P flipped back in

    async with database.read_session() as session:
        shown = dict((await session.execute(select(Product.id, Product.in_stock))).all())
        available = dict(
            (await session.execute(select(ProductVariant.id, ProductVariant.available))).all()
        )
    assert (available[a], available[b], available[c]) == (0, 3, 7)
    assert (shown[product_p], shown[product_q]) == (True, True)
