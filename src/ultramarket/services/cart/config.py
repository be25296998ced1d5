"""The cart service's settings (``ULTRAMARKET_CART__MAX_QUANTITY_PER_LINE=50``,
``ULTRAMARKET_CART__TAX_RATES_BP='{"US-CA": 725}'``). Money is in minor units, tax
rates in basis points (725 = 7.25%)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SETTINGS_KEY = "cart.settings"

# ISO 3166-2 subdivision names, so that an address's free-text region ("California")
# finds its code's rate ("US-CA") as "CA" and "US-CA" do.
US_STATE_NAMES = {
    "US-AL": "Alabama", "US-AK": "Alaska", "US-AZ": "Arizona", "US-AR": "Arkansas",
    "US-CA": "California", "US-CO": "Colorado", "US-CT": "Connecticut", "US-DE": "Delaware",
    "US-DC": "District of Columbia", "US-FL": "Florida", "US-GA": "Georgia", "US-HI": "Hawaii",
    "US-ID": "Idaho", "US-IL": "Illinois", "US-IN": "Indiana", "US-IA": "Iowa",
    "US-KS": "Kansas", "US-KY": "Kentucky", "US-LA": "Louisiana", "US-ME": "Maine",
    "US-MD": "Maryland", "US-MA": "Massachusetts", "US-MI": "Michigan", "US-MN": "Minnesota",
    "US-MS": "Mississippi", "US-MO": "Missouri", "US-MT": "Montana", "US-NE": "Nebraska",
    "US-NV": "Nevada", "US-NH": "New Hampshire", "US-NJ": "New Jersey", "US-NM": "New Mexico",
    "US-NY": "New York", "US-NC": "North Carolina", "US-ND": "North Dakota", "US-OH": "Ohio",
    "US-OK": "Oklahoma", "US-OR": "Oregon", "US-PA": "Pennsylvania", "US-RI": "Rhode Island",
    "US-SC": "South Carolina", "US-SD": "South Dakota", "US-TN": "Tennessee", "US-TX": "Texas",
    "US-UT": "Utah", "US-VT": "Vermont", "US-VA": "Virginia", "US-WA": "Washington",
    "US-WV": "West Virginia", "US-WI": "Wisconsin", "US-WY": "Wyoming",
}  # fmt: skip


def _fold(text: str) -> str:
    """``text`` compared loosely: case and runs of whitespace do not count."""
    return " ".join(text.split()).casefold()


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
    # Tax on (subtotal - discount) by the region's ISO 3166-2 code ("US-CA") first, then
    # the country ("US"), then the default. Keys match case-insensitively; the region
    # may be given as the code, its part after the dash ("CA") or a name in region_names.
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
    # Subdivision names by ISO 3166-2 code ("US-CA": "California"): an address region
    # naming one (any case) is taxed as its code.
    region_names: dict[str, str] = Field(default_factory=lambda: dict(US_STATE_NAMES))
    # Used when neither the request nor the user's default address names a country.
    default_country: str | None = None
    # How long a cart's priced view is served from the cache (any change of the cart
    # shows at once; a price or stock change elsewhere within this many seconds).
    cache_seconds: int = 15
    # An open cart with lines untouched this long is reported once as abandoned.
    abandoned_after_hours: float = 24.0
    # How often idle carts are looked for (checked every ABANDONED_TICK_SECONDS).
    abandoned_sweep_seconds: float = 600.0

    @field_validator("tax_rates_bp", "region_names")
    @classmethod
    def _codes_upper(cls, table: dict[str, Any]) -> dict[str, Any]:
        return {code.strip().upper(): value for code, value in table.items()}

    def region_code(self, country: str, region: str | None) -> str | None:
        """The ISO 3166-2 code ("US-CA") of a free-text ``region`` of ``country`` (an
        upper-case ISO 3166-1 code): given as the code ("us-ca"), its part after the
        dash ("CA") or its name ("California"). None when the region is not known."""
        if not region or not region.strip():
            return None
        prefix = f"{country}-"
        code = region.strip().upper()
        if not code.startswith(prefix):
            code = prefix + code
        if code in self.tax_rates_bp or code in self.region_names:
            return code
        wanted = _fold(region)
        for known, name in self.region_names.items():
            if known.startswith(prefix) and _fold(name) == wanted:
                return known
        return None

    def tax_rate_bp(self, country: str | None, region: str | None) -> int:
        if country:
            country = country.strip().upper()
            code = self.region_code(country, region)
            if code is not None:
                rate = self.tax_rates_bp.get(code)
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
