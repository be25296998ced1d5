"""Order service (port 3004): checkout (the saga), order lifecycle, cancellations,
refunds, notes, tracking and statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter

from ultramarket.core.service import ServiceSpec
from ultramarket.services.order.models import EVENTS, Base

SWEEP_SECONDS = 30.0


def _routers() -> list[APIRouter]:
    from ultramarket.services.order.api import router

    return [router]


def _subscriptions():  # type: ignore[no-untyped-def]
    from ultramarket.services.order.handlers import subscriptions

    return subscriptions()


async def _sweep(container: Any) -> None:
    from ultramarket.services.order.sweeper import sweep

    await sweep(container)


SERVICE = ServiceSpec(
    name="order",
    port=3004,
    routers=_routers,
    metadata=Base.metadata,
    events=EVENTS,
    subscriptions=_subscriptions,
    migrations=Path(__file__).parent / "migrations",
    periodic=((SWEEP_SECONDS, _sweep),),
    prefixes=("/api/v1/orders",),
)
