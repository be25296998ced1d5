"""What the order flows share: the clients, short transactions, and the idempotent
steps that give things back (stock, the coupon use).

A flow never holds a database transaction open while it calls another service: each
step commits on its own, and the order row records how far it got, so a crash leaves
a state the sweeper can finish.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from ultramarket.core.db import Database, utcnow
from ultramarket.core.errors import Conflict, DomainError, NotFound, RateLimited, Unavailable
from ultramarket.core.events import EventPublisher
from ultramarket.services.cart.client import CartClient
from ultramarket.services.inventory.client import InventoryClient
from ultramarket.services.order.config import OrderSettings
from ultramarket.services.order.models import Order
from ultramarket.services.order.service import OrderService
from ultramarket.services.payment.client import PaymentClient
from ultramarket.services.user.client import UserClient

log = logging.getLogger("ultramarket.order")

FAULTS_KEY = "order.faults"
# Failures that say nothing about what happened remotely: compensate nothing.
UNKNOWN_OUTCOME = (Unavailable, RateLimited)


class SimulatedCrash(RuntimeError):
    """Raised by a fault hook a test armed: the request dies where a real crash would,
    with no compensation, and the sweepers must put things right."""


def reservation_key(order_id: uuid.UUID) -> str:
    return f"order:{order_id}"


@dataclass
class Parts:
    """The collaborators of the order flows (built per request by the API layer)."""

    db: Database
    publisher: EventPublisher | None
    cart: CartClient
    inventory: InventoryClient
    payments: PaymentClient
    users: UserClient
    settings: OrderSettings
    faults: set[str]
    clock: Callable[[], datetime] = utcnow


class Flow:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.clock = parts.clock

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[OrderService]:
        """One short unit of work on the order database."""
        async with self.parts.db.session() as session:
            yield OrderService(session, self.parts.publisher, clock=self.clock)

    @asynccontextmanager
    async def rx(self) -> AsyncIterator[OrderService]:
        """A read-only session (no write lock on SQLite)."""
        async with self.parts.db.read_session() as session:
            yield OrderService(session, self.parts.publisher, clock=self.clock)

    def fault(self, point: str) -> None:
        if point in self.parts.faults:
            raise SimulatedCrash(f"simulated crash at {point}")

    # -- giving things back (each step safe to repeat) ------------------------------------------

    async def return_stock(self, order: Order, *, restock: bool) -> None:
        """Free the order's stock: release an active reservation; when it was already
        turned into a sale and ``restock``, put the units back on the shelf."""
        key = reservation_key(order.id)
        try:
            reservation = await self.parts.inventory.get_reservation(key)
        except NotFound:
            return  # never reserved
        if reservation.status == "active":
            try:
                await self.parts.inventory.release(key)
            except Conflict:
                # Expired or committed since we looked: look again.
                await self.return_stock(order, restock=restock)
        elif reservation.status == "committed" and restock:
            units = await self._unrefunded_units(order)
            if units:
                await self.parts.inventory.restock(key, reference=f"cancel:{order.id}", lines=units)

    async def _unrefunded_units(self, order: Order) -> list[tuple[uuid.UUID, int]]:
        """The units of the order no refund covers, by variant: what its end puts back.
        Refunded units are a refund's to restock (``Refunds._restock``) or to keep off the
        shelf (a refund with ``restock: false``: damaged goods stay out)."""
        async with self.rx() as orders:
            items = await orders.items(order.id)
        units: dict[uuid.UUID, int] = {}
        for item in items:
            if left := item.quantity - item.refunded_quantity:
                units[item.variant_id] = units.get(item.variant_id, 0) + left
        return sorted(units.items())

    async def release_coupon(self, order: Order) -> None:
        if order.coupon_code:
            await self.parts.cart.release_coupon(order.id)

    async def settle(self, order: Order, *, restock: bool) -> bool:
        """Give back what a failed or cancelled order holds; mark it settled when all
        went through (the sweeper retries otherwise). True when settled."""
        try:
            await self.return_stock(order, restock=restock)
            await self.release_coupon(order)
        except DomainError as exc:
            log.warning(
                "order not settled yet; the sweeper will retry",
                extra={"order_id": str(order.id), "error": exc.code},
            )
            return False
        async with self.tx() as orders:
            fresh = await orders.get(order.id)
            fresh.settled = True
        order.settled = True
        return True


def body_hash(body: BaseModel) -> str:
    """What an Idempotency-Key is checked against: the request body, canonically."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def failure_of(error: DomainError) -> dict[str, Any]:
    """An error as stored on the order, to replay it to a retried checkout."""
    return {
        "status": error.status_code,
        "code": error.code,
        "message": error.message,
        "details": error.details,
    }
