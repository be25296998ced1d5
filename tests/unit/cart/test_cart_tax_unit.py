"""The tax rate of a free-text address region (no database)."""

from __future__ import annotations

import pytest

from ultramarket.services.cart.config import CartSettings


@pytest.mark.parametrize(
    ("country", "region", "rate"),
    [
        ("US", "CA", 725),
        ("us", "ca", 725),
        ("US", "US-CA", 725),
        ("US", "California", 725),
        ("US", " new   YORK ", 400),
        ("US", "Texas", 0),  # a known name without a rate of its own: the country's
        ("US", "Atlantis", 0),
        ("US", "", 0),
        ("US", None, 0),
        ("DE", "Bayern", 1500),  # a configured name
        ("DE", "by", 1500),
        ("DE", "California", 1900),  # a name of another country's region
        ("FR", "Paris", 50),  # no rate anywhere: the default
        (None, "CA", 50),
    ],
)
def test_tax_rate_of_a_region_code_or_name(country, region, rate):
    settings = CartSettings(
        tax_rates_bp={"us": 0, "us-ca": 725, "US-NY": 400, "DE": 1900, "de-by ": 1500},
        region_names={"US-CA": "California", "US-NY": "New York", "US-TX": "Texas",
                      "de-by": "Bayern"},
        default_tax_rate_bp=50,
    )  # fmt: skip
    assert settings.tax_rate_bp(country, region) == rate


def test_the_default_names_cover_the_default_rates():
    settings = CartSettings()
    for code in settings.tax_rates_bp:
        if "-" in code:
            assert code in settings.region_names
    assert settings.region_code("US", "District of Columbia") == "US-DC"
