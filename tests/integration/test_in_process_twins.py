"""The in-process twins of the clients (all-in-one mode) answer what the same call
through the service's app answers: the same results, replays and errors (class, code,
details), a decline that never commits the caller's work, and an unexpected failure
as the caller's 503 UPSTREAM_ERROR."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from tests.shop import configure, make_variant, no_fraud_checks

from ultramarket import registry
from ultramarket.core.clients import InProcessClient, ServiceClient
from ultramarket.core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    PaymentFailed,
    Unavailable,
    ValidationFailed,
)
from ultramarket.core.http import create_app
from ultramarket.services.cart import local as local_cart
from ultramarket.services.cart.api import quote_checkout, take_ordered
from ultramarket.services.cart.client import CartClient
from ultramarket.services.inventory.client import InventoryClient
from ultramarket.services.inventory.service import InventoryService
from ultramarket.services.payment.client import PaymentClient
from ultramarket.services.product.client import ProductClient


def both(container: Any, cls: type[ServiceClient], caller: str) -> tuple[Any, Any]:
    """(the twin the container hands out, the same client through the service's app)."""
    twin = container.client(cls, caller)
    assert isinstance(twin, InProcessClient)
    assert isinstance(twin, cls)
    return twin, cls(twin._transport, caller=caller, token=twin._token)


async def failure(call: Any) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call
    return caught.value


def same_error(direct: DomainError, over_app: DomainError) -> None:
    assert type(direct) is type(over_app)
    assert (direct.status_code, direct.code, direct.message, direct.details) == (
        over_app.status_code,
        over_app.code,
        over_app.message,
        over_app.details,
    )
    assert direct.persist_changes is False  # never commits the caller's unit of work


async def shop(client: Any, container: Any, drain: Any, make_user: Any) -> dict[str, Any]:
    configure(container)
    no_fraud_checks(container)
    manager = await make_user(role="MANAGER")
    return await make_variant(client, container, drain, manager, price="12.50", stock=5)


async def test_reservations_match_the_app(client, container, drain, make_user):
    v = await shop(client, container, drain, make_user)
    variant = uuid.UUID(v["variant_id"])
    twin, over_app = both(container, InventoryClient, "order")

    first = await twin.reserve("twin-1", [(variant, 2)])
    assert first.status == "active"
    assert first.quantity == 2
    assert await over_app.reserve("twin-1", [(variant, 2)]) == first  # the replay
    assert await twin.reserve("twin-1", [(variant, 2)]) == first

    reused = await failure(twin.reserve("twin-1", [(variant, 1)]))
    assert isinstance(reused, Conflict)
    assert reused.code == "IDEMPOTENCY_KEY_REUSED"
    same_error(reused, await failure(over_app.reserve("twin-1", [(variant, 1)])))

    short = await failure(twin.reserve("twin-2", [(variant, 4)]))
    assert short.code == "INSUFFICIENT_STOCK"
    [line] = short.details
    assert (line["variant_id"], line["requested"], line["available"]) == (v["variant_id"], 4, 3)
    same_error(short, await failure(over_app.reserve("twin-2", [(variant, 4)])))

    invalid = await failure(twin.reserve("twin-3", [(variant, 0)]))
    assert isinstance(invalid, ValidationFailed)
    assert [d["field"] for d in invalid.details] == ["body.lines.0.quantity"]
    same_error(invalid, await failure(over_app.reserve("twin-3", [(variant, 0)])))

    committed = await twin.commit("twin-1")
    assert committed.status == "committed"
    again = await failure(twin.commit("twin-1"))
    assert again.code == "RESERVATION_ALREADY_COMMITTED"
    same_error(again, await failure(over_app.commit("twin-1")))
    missing = await failure(twin.release("no-such-key"))
    assert isinstance(missing, NotFound)
    same_error(missing, await failure(over_app.release("no-such-key")))


async def test_an_unexpected_failure_is_the_callers_upstream_error(
    client, container, drain, make_user, monkeypatch
):
    v = await shop(client, container, drain, make_user)
    twin, over_app = both(container, InventoryClient, "order")
    await twin.reserve("twin-broken", [(uuid.UUID(v["variant_id"]), 1)])

    async def broken(self: InventoryService, key: str, **_: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(InventoryService, "commit", broken)
    direct = await failure(twin.commit("twin-broken"))
    assert isinstance(direct, Unavailable)
    assert direct.code == "UPSTREAM_ERROR"
    same_error(direct, await failure(over_app.commit("twin-broken")))


async def test_charges_match_the_app(client, container, drain, make_user):
    await shop(client, container, drain, make_user)
    buyer = await make_user()
    twin, over_app = both(container, PaymentClient, "order")
    order_id = str(uuid.uuid4())
    args = (order_id, buyer.id, "25.00", "USD", "card", "tok_4242")

    paid = await twin.charge(*args, idempotency_key=f"pay:{order_id}")
    assert (paid.status, paid.amount, paid.order_id) == ("succeeded", "25.00", order_id)
    assert await over_app.charge(*args, idempotency_key=f"pay:{order_id}") == paid  # replay

    declined_order = str(uuid.uuid4())
    card = (declined_order, buyer.id, "25.00", "USD", "card", "tok_chargeDeclined_0002")
    declined = await failure(twin.charge(*card, idempotency_key=f"pay:{declined_order}"))
    assert isinstance(declined, PaymentFailed)
    # The replay of the declined charge answers the same decline over the app.
    same_error(
        declined, await failure(over_app.charge(*card, idempotency_key=f"pay:{declined_order}"))
    )

    too_long = "k" * 201
    invalid = await failure(twin.charge(*args, idempotency_key=too_long))
    assert isinstance(invalid, ValidationFailed)
    same_error(invalid, await failure(over_app.charge(*args, idempotency_key=too_long)))
    # A bad key and a bad body: both told, the header's first, as the route tells them.
    bad_body = (order_id, buyer.id, "-5", "USD", "card", "tok_visa")
    both_wrong = await failure(twin.charge(*bad_body, idempotency_key=too_long))
    assert [d["field"] for d in both_wrong.details] == ["header.Idempotency-Key", "body.amount"]
    same_error(both_wrong, await failure(over_app.charge(*bad_body, idempotency_key=too_long)))


async def test_quotes_and_lookups_match_the_app(client, container, drain, make_user):
    v = await shop(client, container, drain, make_user)
    variant = uuid.UUID(v["variant_id"])
    buyer = await make_user()

    products, products_over_app = both(container, ProductClient, "cart")
    found = await products.get_variants([variant, uuid.uuid4(), variant])
    assert [(i.id, i.price_amount) for i in found] == [(variant, 1250)]
    assert await products_over_app.get_variants([variant, uuid.uuid4()]) == found

    carts, carts_over_app = both(container, CartClient, "order")
    quote = await carts.checkout_quote(buyer.id, items=[(variant, 2)], country="US", region="CA")
    assert (quote.subtotal_amount, quote.tax_amount) == (2500, 181)
    again = await carts_over_app.checkout_quote(
        buyer.id, items=[(variant, 2)], country="US", region="CA"
    )
    # Lines given with the call are priced as new lines: each quote draws their ids.
    lines_apart = {"items": {"__all__": {"id"}}}
    assert again.model_dump(exclude=lines_apart) == quote.model_dump(exclude=lines_apart)
    unknown = [(uuid.uuid4(), 1)]
    missing = await failure(carts.checkout_quote(buyer.id, items=unknown))
    assert missing.code == "VARIANT_NOT_FOUND"
    same_error(missing, await failure(carts_over_app.checkout_quote(buyer.id, items=unknown)))


async def test_only_calls_that_may_be_repeated_are_retried(
    client, container, drain, make_user, monkeypatch
):
    """A 503 from the service is retried for a quote (a read), never for removing the
    bought lines (a repeat would take the units twice); a 403 from it is the caller's
    503 UPSTREAM_ERROR, as over the wire."""
    v = await shop(client, container, drain, make_user)
    variant = uuid.UUID(v["variant_id"])
    buyer = await make_user()
    carts, _ = both(container, CartClient, "order")
    calls: list[str] = []

    def once_unavailable(name: str, real: Any) -> Any:
        async def flaky(*args: Any) -> Any:
            calls.append(name)
            if calls.count(name) == 1:
                raise Unavailable("busy for a moment")
            return await real(*args)

        return flaky

    monkeypatch.setattr(local_cart, "quote_checkout", once_unavailable("quote", quote_checkout))
    monkeypatch.setattr(local_cart, "take_ordered", once_unavailable("take", take_ordered))
    quote = await carts.checkout_quote(buyer.id, items=[(variant, 1)], country="US", region="CA")
    assert quote.subtotal_amount == 1250
    assert calls == ["quote", "quote"]
    refused = await failure(carts.remove_ordered(buyer.id, [(variant, 1)]))
    assert isinstance(refused, Unavailable)
    assert calls.count("take") == 1

    async def forbidden(*_: Any) -> Any:
        raise Forbidden("not for you")

    monkeypatch.setattr(local_cart, "quote_checkout", forbidden)
    upstream = await failure(carts.checkout_quote(buyer.id, items=[(variant, 1)]))
    assert (type(upstream), upstream.code) == (Unavailable, "UPSTREAM_ERROR")


async def test_direct_calls_can_be_switched_off(settings):
    # ULTRAMARKET_DIRECT_CALLS=false: every call goes through the service's app.
    app = create_app(
        registry.load_all(), settings.model_copy(update={"direct_calls": False}), run_relay=False
    )
    async with app.router.lifespan_context(app):
        container = app.state.container
        for cls in (InventoryClient, PaymentClient, CartClient, ProductClient):
            assert type(container.client(cls, "order")) is cls
