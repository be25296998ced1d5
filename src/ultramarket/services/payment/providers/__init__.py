"""Payment providers behind one interface (``base.PaymentProvider``).

``Providers`` builds each outside gateway once per process from the settings and
keeps it in the container (``container.extras["payment.providers"]``), where a test
may put one of its own (PayPal on an ``httpx.MockTransport``, Stripe on localstripe).
The wallet provider is built per unit of work, since it writes the ledger.
"""

from __future__ import annotations

from typing import Any

from ultramarket.core.config import PaymentSettings
from ultramarket.core.errors import Unavailable
from ultramarket.services.payment.providers.base import PaymentProvider

EXTRAS_KEY = "payment.providers"


def build(slug: str, settings: PaymentSettings) -> PaymentProvider:
    if slug == "test":
        from ultramarket.services.payment.providers.test import TestProvider

        return TestProvider()
    if slug == "stripe":
        from ultramarket.services.payment.providers.stripe import StripeProvider

        if settings.stripe_api_key is None:
            raise Unavailable("Stripe is not configured", code="PROVIDER_UNAVAILABLE")
        secret = settings.stripe_webhook_secret
        return StripeProvider(
            settings.stripe_api_key.get_secret_value(),
            api_base=settings.stripe_api_base,
            webhook_secret=secret.get_secret_value() if secret else None,
            tolerance=settings.stripe_webhook_tolerance_seconds,
            timeout=settings.provider_timeout_seconds,
        )
    if slug == "paypal":
        from ultramarket.services.payment.providers.paypal import PayPalProvider

        if not settings.paypal_client_id or settings.paypal_client_secret is None:
            raise Unavailable("PayPal is not configured", code="PROVIDER_UNAVAILABLE")
        return PayPalProvider(
            settings.paypal_base_url,
            settings.paypal_client_id,
            settings.paypal_client_secret.get_secret_value(),
            webhook_id=settings.paypal_webhook_id,
            timeout=settings.provider_timeout_seconds,
        )
    raise Unavailable(f"unknown payment provider {slug!r}", code="PROVIDER_UNAVAILABLE")


class Providers:
    """The outside gateways of one process, built on first use."""

    def __init__(self, settings: PaymentSettings) -> None:
        self.settings = settings
        self._built: dict[str, PaymentProvider] = {}

    def get(self, slug: str) -> PaymentProvider:
        provider = self._built.get(slug)
        if provider is None:
            provider = self._built[slug] = build(slug, self.settings)
        return provider

    def set(self, provider: PaymentProvider) -> None:
        self._built[provider.slug] = provider

    def card(self) -> PaymentProvider:
        return self.get(self.settings.card_provider)

    async def close(self) -> None:
        for provider in self._built.values():
            await provider.close()
        self._built.clear()


def providers_of(container: Any) -> Providers:
    found = container.extras.get(EXTRAS_KEY)
    if found is None:
        found = container.extras[EXTRAS_KEY] = Providers(container.settings.payments)
    assert isinstance(found, Providers)
    return found
