"""Helpers shared by the order tests (imported by module name; not a test file)."""

from __future__ import annotations

from tests.shop import (  # noqa: F401 - re-exported for the tests
    ADDRESS,
    CARD,
    CART,
    DECLINED,
    PAYMENTS,
    checkout,
    checkout_body,
    configure,
    configure_orders,
    flaky_card_provider,
    make_variant,
    payments_of,
    reservation_status,
    set_stock,
    stock,
)
from tests.shop import ORDERS as API  # noqa: F401
from tests.support import assert_error, error_reason, ok  # noqa: F401
