"""Cart arithmetic, in integer minor units only: no I/O, no floats.

subtotal = sum of available lines at their current price; discount from the coupon
(percentage rounded half-even, fixed capped at the subtotal); shipping a flat rate per
currency, free at or over the threshold (measured after discount) or with a
free_shipping coupon; tax = rate(country/region) x (subtotal - discount), rounded
half-even; total = subtotal - discount + shipping + tax.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from ultramarket.services.cart.config import CartSettings

BASIS_POINTS = 10_000


def share(amount: int, basis_points: int) -> int:
    """``basis_points`` / 10000 of ``amount``, rounded half-even to a minor unit."""
    exact = Decimal(amount) * Decimal(basis_points) / BASIS_POINTS
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass(frozen=True)
class CouponTerms:
    code: str
    type: str  # percentage | fixed | free_shipping
    value: int  # basis points or minor units
    currency: str | None


@dataclass(frozen=True)
class Totals:
    subtotal: int
    discount: int
    shipping: int
    tax: int
    total: int
    free_shipping: bool = False


def discount_for(terms: CouponTerms, subtotal: int) -> int:
    if terms.type == "percentage":
        return min(subtotal, share(subtotal, terms.value))
    if terms.type == "fixed":
        return min(subtotal, terms.value)
    return 0


def compute_totals(
    subtotal: int,
    currency: str,
    settings: CartSettings,
    *,
    coupon: CouponTerms | None = None,
    country: str | None = None,
    region: str | None = None,
) -> Totals:
    discount = discount_for(coupon, subtotal) if coupon is not None else 0
    net = subtotal - discount
    free = coupon is not None and coupon.type == "free_shipping"
    if subtotal <= 0 or free:
        shipping = 0
    else:
        threshold = settings.free_shipping_threshold.get(currency)
        shipping = (
            0
            if threshold is not None and net >= threshold
            else settings.shipping_flat.get(currency, 0)
        )
    tax = share(net, settings.tax_rate_bp(country, region)) if net > 0 else 0
    return Totals(subtotal, discount, shipping, tax, net + shipping + tax, free)
