"""The order status machine: which moves are legal, and who may make them.

    pending ──> confirmed ──> processing ──> shipped ──> delivered
       │            │              │            │            │
       │            └──────────────┴─> cancelled             │
       ├──> payment_failed             (staff also from shipped)
       └──> cancelled      confirmed..delivered ──> partially_refunded ──> refunded

A partial refund does not stop fulfilment: a ``partially_refunded`` order still moves
on to processing, shipped and delivered. ``payment_failed``, ``cancelled`` and
``refunded`` are final.
"""

from __future__ import annotations

from typing import Literal

Status = Literal[
    "pending",
    "confirmed",
    "processing",
    "shipped",
    "delivered",
    "payment_failed",
    "cancelled",
    "refunded",
    "partially_refunded",
]
STATUSES: tuple[Status, ...] = (
    "pending",
    "confirmed",
    "processing",
    "shipped",
    "delivered",
    "payment_failed",
    "cancelled",
    "refunded",
    "partially_refunded",
)

REFUNDS: frozenset[Status] = frozenset({"refunded", "partially_refunded"})

TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"confirmed", "payment_failed", "cancelled"}),
    "confirmed": frozenset({"processing", "shipped", "cancelled", *REFUNDS}),
    "processing": frozenset({"shipped", "cancelled", *REFUNDS}),
    "shipped": frozenset({"delivered", "cancelled", *REFUNDS}),
    "delivered": REFUNDS,
    "partially_refunded": frozenset({"processing", "shipped", "delivered", "cancelled", *REFUNDS}),
    "payment_failed": frozenset(),
    "cancelled": frozenset(),
    "refunded": frozenset(),
}

# Where the money was taken and not all given back: a refund may follow.
PAID: frozenset[str] = frozenset(
    {"confirmed", "processing", "shipped", "delivered", "partially_refunded"}
)
# Sold: paid and kept, or given back only by refunds (what sales statistics count).
SOLD: frozenset[str] = PAID | {"refunded"}
# What an owner may cancel (nothing shipped yet); staff may also cancel a shipped order.
OWNER_CANCELLABLE: frozenset[str] = frozenset(
    {"pending", "confirmed", "processing", "partially_refunded"}
)
STAFF_CANCELLABLE: frozenset[str] = OWNER_CANCELLABLE | {"shipped"}
# What ``PUT /{id}/status`` may set; cancellation and refunds have their own routes (and
# side effects), and confirmation comes from the checkout or a review approval.
MANUAL: frozenset[str] = frozenset({"confirmed", "processing", "shipped", "delivered", "cancelled"})


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())
