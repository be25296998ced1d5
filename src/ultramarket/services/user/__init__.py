"""User service (port 3001): profiles, address books, preferences, user analytics."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from ultramarket.core.service import ServiceSpec
from ultramarket.services.user.models import EVENTS, Base


def _routers() -> list[APIRouter]:
    from ultramarket.services.user.api import router

    return [router]


def _subscriptions():  # type: ignore[no-untyped-def]
    from ultramarket.services.user.handlers import subscriptions

    return subscriptions()


SERVICE = ServiceSpec(
    name="user",
    port=3001,
    routers=_routers,
    metadata=Base.metadata,
    events=EVENTS,
    subscriptions=_subscriptions,
    migrations=Path(__file__).parent / "migrations",
    prefixes=("/api/v1/users",),
)
