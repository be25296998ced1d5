"""Business counters of the order service, on ``/metrics`` beside the HTTP ones.
Counted once the change has committed (a rolled-back order never counts)."""

from __future__ import annotations

from prometheus_client import Counter

ORDERS = Counter(
    "orders_total", "Checkouts by how they ended", ["outcome"]
)  # confirmed | payment_failed | cancelled
REVENUE = Counter(
    "order_revenue_minor_total", "Confirmed order totals, in minor units", ["currency"]
)
REFUNDED = Counter(
    "order_refunds_minor_total", "Money refunded on orders, in minor units", ["currency"]
)
