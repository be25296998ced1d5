"""Cart service (port 3006): guest and user carts, totals, coupons and their redemption."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from ultramarket.core.service import ServiceSpec
from ultramarket.services.cart.models import EVENTS, Base

# How often the abandoned-cart job wakes up. It looks for idle carts (each reported
# abandoned once) every ``CartSettings.abandoned_sweep_seconds``, read on each wake-up
# from the container's cart settings (ULTRAMARKET_CART__ABANDONED_SWEEP_SECONDS).
ABANDONED_TICK_SECONDS = 10.0
LAST_SWEEP_KEY = "cart.abandoned_swept_at"


def _routers() -> list[APIRouter]:
    from ultramarket.services.cart.api import coupons, router

    return [router, coupons]


async def _abandoned(container: Any) -> None:
    from ultramarket.services.cart.config import cart_settings
    from ultramarket.services.cart.service import mark_abandoned

    settings = cart_settings(container)
    now = time.monotonic()
    last = container.extras.get(LAST_SWEEP_KEY)
    if last is not None and now - last < settings.abandoned_sweep_seconds:
        return
    container.extras[LAST_SWEEP_KEY] = now
    async with container.db("cart").session() as session:
        await mark_abandoned(session, container.publisher("cart"), settings)


def _twins():  # type: ignore[no-untyped-def]
    from ultramarket.services.cart.client import CartClient
    from ultramarket.services.cart.local import InProcessCartClient

    return {CartClient: InProcessCartClient}


SERVICE = ServiceSpec(
    name="cart",
    port=3006,
    routers=_routers,
    metadata=Base.metadata,
    events=EVENTS,
    migrations=Path(__file__).parent / "migrations",
    periodic=((ABANDONED_TICK_SECONDS, _abandoned),),
    prefixes=("/api/v1/cart", "/api/v1/coupons"),
    twins=_twins,
)
