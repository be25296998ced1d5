"""Product catalog service (port 3003): categories, products with variants, prices."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from ultramarket.core.service import ServiceSpec
from ultramarket.services.product.models import EVENTS, Base


def _routers() -> list[APIRouter]:
    from ultramarket.services.product.api import categories, products

    return [products, categories]


def _subscriptions():  # type: ignore[no-untyped-def]
    from ultramarket.services.product.handlers import subscriptions

    return subscriptions()


def _twins():  # type: ignore[no-untyped-def]
    from ultramarket.services.product.client import ProductClient
    from ultramarket.services.product.local import InProcessProductClient

    return {ProductClient: InProcessProductClient}


SERVICE = ServiceSpec(
    name="product",
    port=3003,
    routers=_routers,
    metadata=Base.metadata,
    events=EVENTS,
    subscriptions=_subscriptions,
    migrations=Path(__file__).parent / "migrations",
    prefixes=("/api/v1/products", "/api/v1/categories"),
    twins=_twins,
)
