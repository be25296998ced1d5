"""Cart service (port 3006): guest and user carts, totals, coupons and their redemption."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter

from ultramarket.core.service import ServiceSpec
from ultramarket.services.cart.models import EVENTS, Base

# How often idle carts are looked for (each is reported abandoned once).
ABANDONED_SWEEP_SECONDS = 600.0


def _routers() -> list[APIRouter]:
    from ultramarket.services.cart.api import coupons, router

    return [router, coupons]


async def _abandoned(container: Any) -> None:
    from ultramarket.services.cart.config import cart_settings
    from ultramarket.services.cart.service import mark_abandoned

    async with container.db("cart").session() as session:
        await mark_abandoned(session, container.publisher("cart"), cart_settings(container))


SERVICE = ServiceSpec(
    name="cart",
    port=3006,
    routers=_routers,
    metadata=Base.metadata,
    events=EVENTS,
    migrations=Path(__file__).parent / "migrations",
    periodic=((ABANDONED_SWEEP_SECONDS, _abandoned),),
    prefixes=("/api/v1/cart", "/api/v1/coupons"),
)
