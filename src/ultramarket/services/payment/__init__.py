"""Payment service (port 3005): payments through providers, refunds, webhooks, the
wallet ledger and fraud checks."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from ultramarket.core.service import ServiceSpec
from ultramarket.services.payment.models import EVENTS, Base


def _routers() -> list[APIRouter]:
    from ultramarket.services.payment.api import router, wallet_router

    return [router, wallet_router]


SERVICE = ServiceSpec(
    name="payment",
    port=3005,
    routers=_routers,
    metadata=Base.metadata,
    events=EVENTS,
    migrations=Path(__file__).parent / "migrations",
    prefixes=("/api/v1/payments", "/api/v1/wallet"),
)
