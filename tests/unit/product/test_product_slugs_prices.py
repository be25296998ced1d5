import pytest
from pydantic import ValidationError

from ultramarket.services.product.schemas import VariantIn, parse_price
from ultramarket.services.product.slugs import slugify, with_suffix


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Trail Runner Shoe", "trail-runner-shoe"),
        ("Café Crème 2.0!", "cafe-creme-2-0"),
        ("  --Hello__World--  ", "hello-world"),
        ("日本", "item"),
        ("", "item"),
    ],
)
def test_slugify(name, slug):
    assert slugify(name) == slug


def test_slug_suffixes_and_length():
    assert with_suffix("shoe", 1) == "shoe"
    assert with_suffix("shoe", 3) == "shoe-3"
    long = slugify("a" * 500)
    assert len(long) == 180
    assert len(with_suffix(long, 12)) == 180
    assert with_suffix(long, 12).endswith("-12")


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [("19.99", "USD", 1999), (19.99, "USD", 1999), (20, "USD", 2000), ("500", "JPY", 500),
     ("1.234", "KWD", 1234), ("0", "EUR", 0)],
)  # fmt: skip
def test_parse_price(value, currency, minor):
    assert parse_price(value, currency) == minor


@pytest.mark.parametrize(
    ("value", "currency"),
    [("-1", "USD"), ("abc", "USD"), ("1.001", "USD"), ("1.5", "JPY"), (True, "USD"),
     ("NaN", "USD"), ("1", "XXY")],
)  # fmt: skip
def test_parse_price_refuses(value, currency):
    with pytest.raises(ValueError):
        parse_price(value, currency)


def test_variant_compare_at_must_not_be_below_price():
    assert VariantIn(sku="A", price="10", compare_at_price="10").compare_at_amount == 1000
    with pytest.raises(ValidationError, match="compare_at_price"):
        VariantIn(sku="A", price="10", compare_at_price="9.99")
