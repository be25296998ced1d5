"""Auth service (port 3002): accounts, tokens, MFA, API keys, audit log."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from ultramarket.core.container import Container
from ultramarket.core.service import ServiceSpec
from ultramarket.services.auth.models import EVENTS, Base


def _routers() -> list[APIRouter]:
    from ultramarket.services.auth.api import router

    return [router]


def _subscriptions():  # type: ignore[no-untyped-def]
    from ultramarket.services.auth.handlers import subscriptions

    return subscriptions()


async def _startup(container: Container) -> None:
    """Load (or in development create) the signing key; publish it to the verifier."""
    from ultramarket.services.auth.keys import KeyStore, TokenIssuer

    settings = container.settings
    keys = KeyStore.from_settings(settings.auth, settings.data_dir, settings.is_production)
    container.extras["auth.keys"] = keys
    container.verifier.add_jwks(keys.jwks())

    issuer = TokenIssuer(keys, settings.auth)

    def mint(service: str) -> str:
        return issuer.service_token(subject=f"service:{service}", service=service, scopes=["*"])

    container.service_token_minter = mint


SERVICE = ServiceSpec(
    name="auth",
    port=3002,
    routers=_routers,
    metadata=Base.metadata,
    events=EVENTS,
    subscriptions=_subscriptions,
    migrations=Path(__file__).parent / "migrations",
    on_startup=_startup,
    prefixes=("/api/v1/auth",),
)
