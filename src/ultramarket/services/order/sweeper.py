"""The order sweeper (a periodic job): checkouts stuck in ``pending`` after a crash
are confirmed or cancelled from what the payment service says happened; cancelled
and failed orders still holding stock or a coupon use give them back; refunds whose
outcome was unknown are finished. Every step is idempotent: two sweepers, or a
sweeper racing a late checkout, cannot move money or stock twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ultramarket.core.db import utcnow
from ultramarket.services.order.api import parts
from ultramarket.services.order.checkout import Checkout
from ultramarket.services.order.refunds import Refunds


async def sweep(container: Any, *, clock: Callable[[], datetime] = utcnow) -> dict[str, int]:
    """One pass; how many orders and refunds each step settled."""
    flows = parts(container)
    flows.clock = clock
    checkout = Checkout(flows)
    return {
        "reconciled": await checkout.reconcile_stale(),
        "settled": await checkout.settle_pending(),
        "refunds": await Refunds(flows).retry_pending(),
    }
