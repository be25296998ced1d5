"""The cart service's settings (``ULTRAMARKET_CART__MAX_QUANTITY_PER_LINE=50``,
``ULTRAMARKET_CART__TAX_RATES_BP='{"US-CA": 725}'``). Money is in minor units, tax
rates in basis points (725 = 7.25%)."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SETTINGS_KEY = "cart.settings"


class CartSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ULTRAMARKET_CART__", env_nested_delimiter="__", extra="ignore"
    )

    max_quantity_per_line: int = 99
    max_lines: int = 100
    # The currency an empty cart shows its (zero) totals in.
    default_currency: str = "USD"
    # Flat shipping estimate per currency, free at or over the threshold (after discount).
    shipping_flat: dict[str, int] = Field(
        default_factory=lambda: {"USD": 599, "EUR": 599, "GBP": 499, "JPY": 800}
    )
    free_shipping_threshold: dict[str, int] = Field(
        default_factory=lambda: {"USD": 5000, "EUR": 5000, "GBP": 4000, "JPY": 6000}
    )
    # Tax on (subtotal - discount) by "CC-REGION" first, then "CC", then the default.
    tax_rates_bp: dict[str, int] = Field(
        default_factory=lambda: {
            "US": 0,
            "US-CA": 725,
            "US-NY": 400,
            "US-TX": 625,
            "DE": 1900,
            "FR": 2000,
            "GB": 2000,
            "NL": 2100,
        }
    )
    default_tax_rate_bp: int = 0
    # Used when neither the request nor the user's default address names a country.
    default_country: str | None = None
    # An open cart with lines untouched this long is reported once as abandoned.
    # How long a cart's priced view is served from the cache (any change of the cart
    # shows at once; a price or stock change elsewhere within this many seconds).
    cache_seconds: int = 15
    abandoned_after_hours: float = 24.0
    abandoned_sweep_seconds: float = 600.0

    def tax_rate_bp(self, country: str | None, region: str | None) -> int:
        if country:
            country = country.upper()
            if region:
                rate = self.tax_rates_bp.get(f"{country}-{region.upper()}")
                if rate is not None:
                    return rate
            rate = self.tax_rates_bp.get(country)
            if rate is not None:
                return rate
        return self.default_tax_rate_bp


def cart_settings(container: Any) -> CartSettings:
    """The cart settings held by the container (tests put their own in ``extras``)."""
    settings = container.extras.get(SETTINGS_KEY)
    if settings is None:
        settings = container.extras[SETTINGS_KEY] = CartSettings()
    assert isinstance(settings, CartSettings)
    return settings
