"""Inventory service (port 3010): warehouses, stock per variant, reservations, alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter

from ultramarket.core.service import ServiceSpec
from ultramarket.services.inventory.models import EVENTS, Base

# How often expired reservations are released (the sweeper runs beside the relay).
SWEEP_INTERVAL_SECONDS = 15.0


def _routers() -> list[APIRouter]:
    from ultramarket.services.inventory.api import router

    return [router]


def _subscriptions():  # type: ignore[no-untyped-def]
    from ultramarket.services.inventory.handlers import subscriptions

    return subscriptions()


def _twins():  # type: ignore[no-untyped-def]
    from ultramarket.services.inventory.client import InventoryClient
    from ultramarket.services.inventory.local import InProcessInventoryClient

    return {InventoryClient: InProcessInventoryClient}


async def _sweep(container: Any) -> None:
    from ultramarket.services.inventory.service import sweep

    await sweep(container)


SERVICE = ServiceSpec(
    name="inventory",
    port=3010,
    routers=_routers,
    metadata=Base.metadata,
    events=EVENTS,
    subscriptions=_subscriptions,
    migrations=Path(__file__).parent / "migrations",
    periodic=((SWEEP_INTERVAL_SECONDS, _sweep),),
    prefixes=("/api/v1/inventory",),
    twins=_twins,
)
