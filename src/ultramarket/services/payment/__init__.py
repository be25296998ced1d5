"""Payment service (port 3005): payments through providers, refunds, webhooks, the
wallet ledger and fraud checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter

from ultramarket.core.service import ServiceSpec
from ultramarket.services.payment.models import EVENTS, Base


def _routers() -> list[APIRouter]:
    from ultramarket.services.payment.api import router, wallet_router

    return [router, wallet_router]


# How often payments and wallet deposits left ``processing`` by an unanswered provider
# call are asked again.
RESUME_SECONDS = 60.0


async def _resume(container: Any) -> None:
    from ultramarket.services.payment.providers import providers_of
    from ultramarket.services.payment.service import resume_deposits, resume_processing

    providers, settings = providers_of(container), container.settings.payments
    await resume_processing(
        container.db("payment"), container.publisher("payment"), providers, settings
    )
    await resume_deposits(container.db("payment"), providers, settings)


def _twins():  # type: ignore[no-untyped-def]
    from ultramarket.services.payment.client import PaymentClient
    from ultramarket.services.payment.local import InProcessPaymentClient

    return {PaymentClient: InProcessPaymentClient}


SERVICE = ServiceSpec(
    name="payment",
    port=3005,
    routers=_routers,
    metadata=Base.metadata,
    events=EVENTS,
    migrations=Path(__file__).parent / "migrations",
    periodic=((RESUME_SECONDS, _resume),),
    prefixes=("/api/v1/payments", "/api/v1/wallet"),
    twins=_twins,
)
