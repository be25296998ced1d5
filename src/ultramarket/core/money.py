"""Money: integer minor units plus an ISO 4217 currency. Never a float.

The API speaks decimal strings in major units ("99.99") and accepts JSON numbers on
input; storage is ``*_amount`` integer columns beside a ``currency`` column.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated, Any

from babel.core import UnknownLocaleError
from babel.numbers import format_currency, get_currency_precision, list_currencies
from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

MAX_MAJOR_DIGITS = 12  # up to 999,999,999,999.99 in major units


@lru_cache(maxsize=512)
def exponent(currency: str) -> int:
    """Digits after the decimal point for a currency (USD 2, JPY 0, KWD 3)."""
    return int(get_currency_precision(currency))


@lru_cache(maxsize=1)
def currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def check_currency(code: str) -> str:
    code = code.strip().upper()
    if code not in currencies():
        raise ValueError(f"unknown currency {code!r}")
    return code


def to_decimal(value: Any) -> Decimal:
    """A finite Decimal from a string, int or JSON number (floats go through str())."""
    if isinstance(value, bool):
        raise ValueError("a money amount must be a number or a decimal string")
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, str):
        value = value.strip()
    try:
        result = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError("a money amount must be a number or a decimal string") from None
    if not result.is_finite():
        raise ValueError("a money amount must be finite")
    return result


@dataclass(frozen=True, slots=True)
class Money:
    amount: int  # minor units
    currency: str

    @classmethod
    def of(cls, value: Any, currency: str) -> Money:
        """Parse major units ("19.99", 19.99, 20) exactly; more decimals than the
        currency has is an error, never a silent rounding."""
        currency = check_currency(currency)
        number = to_decimal(value)
        digits = exponent(currency)
        minor = number.scaleb(digits)
        if minor != minor.to_integral_value():
            raise ValueError(f"{currency} amounts have at most {digits} decimal places")
        if abs(number) >= Decimal(10) ** MAX_MAJOR_DIGITS:
            raise ValueError("amount too large")
        return cls(int(minor), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def to_decimal(self) -> Decimal:
        return Decimal(self.amount).scaleb(-exponent(self.currency))

    def __str__(self) -> str:
        """The contract's decimal string, e.g. "99.99" (always the currency's digits)."""
        digits = exponent(self.currency)
        return f"{self.to_decimal():.{digits}f}"

    def format(self, locale: str = "en_US") -> str:
        """Human formatting per currency and locale ("$1,234.50", "1.234,50 €")."""
        try:
            return str(format_currency(self.to_decimal(), self.currency, locale=locale))
        except (UnknownLocaleError, ValueError):
            return str(format_currency(self.to_decimal(), self.currency, locale="en_US"))

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __mul__(self, quantity: int) -> Money:
        if not isinstance(quantity, int) or isinstance(quantity, bool):
            raise TypeError("money multiplies by whole quantities only")
        return Money(self.amount * quantity, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def percent(self, rate: Decimal | int | str) -> Money:
        """``rate`` percent of this amount, rounded half-even to a minor unit."""
        share = (Decimal(self.amount) * Decimal(rate) / 100).quantize(
            Decimal(1), rounding=ROUND_HALF_EVEN
        )
        return Money(int(share), self.currency)

    def allocate(self, weights: list[int]) -> list[Money]:
        """Split into parts proportional to ``weights`` that add up exactly
        (largest-remainder), e.g. a discount spread over order lines."""
        total = sum(weights)
        if total <= 0:
            raise ValueError("weights must add up to more than zero")
        shares = [self.amount * w // total for w in weights]
        remainders = sorted(
            range(len(weights)), key=lambda i: (self.amount * weights[i]) % total, reverse=True
        )
        for i in remainders[: self.amount - sum(shares)]:
            shares[i] += 1
        return [Money(s, self.currency) for s in shares]


def discount_percent(price: int, compare_at: int | None) -> int | None:
    """Whole-percent saving when ``compare_at`` is above ``price`` (both minor units)."""
    if compare_at is None or compare_at <= price or compare_at <= 0:
        return None
    return int((Decimal(compare_at - price) * 100 / compare_at).to_integral_value(ROUND_HALF_EVEN))


def _decimal_input(value: Any) -> Decimal:
    result = to_decimal(value)
    if abs(result) >= Decimal(10) ** MAX_MAJOR_DIGITS:
        raise ValueError("amount too large")
    return result


# An amount in a request body: "99.99" or 99.99, parsed exactly (pair it with a
# currency and turn it into ``Money.of`` in the service or a model validator).
DecimalAmount = Annotated[
    Decimal,
    BeforeValidator(_decimal_input),
    PlainSerializer(lambda d: str(d), return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["99.99"]}),
]

CurrencyCode = Annotated[
    str,
    BeforeValidator(lambda v: check_currency(v) if isinstance(v, str) else v),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["USD"]}),
]
