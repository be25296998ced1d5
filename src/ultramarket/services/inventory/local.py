"""The inventory client's in-process twin (all-in-one mode): a checkout's reserve and
commit, and a release, run the routes' own unit of work without going through the app."""

from __future__ import annotations

from typing import Any

from ultramarket.core.clients import InProcessClient
from ultramarket.services.inventory import schemas as s
from ultramarket.services.inventory.api import inventory_unit
from ultramarket.services.inventory.client import InventoryClient


class InProcessInventoryClient(InventoryClient, InProcessClient):
    async def _reserve(self, body: dict[str, Any]) -> s.ReservationRead:
        request = self.parse(s.ReservationCreate, body)
        lines = [(line.variant_id, line.quantity) for line in request.lines]

        async def run() -> s.ReservationRead:
            async with inventory_unit(self.services, self.principal) as inventory:
                reservation, _ = await inventory.reserve_lines(
                    request.key, request.ttl_seconds, lines
                )
            return reservation

        return await self.call("reserve", run, idempotent=True)

    async def commit(self, key: str) -> s.ReservationRead:
        async def run() -> s.ReservationRead:
            async with inventory_unit(self.services, self.principal) as inventory:
                return await inventory.commit(key)

        return await self.call("commit", run, idempotent=False)

    async def release(self, key: str) -> s.ReservationRead:
        async def run() -> s.ReservationRead:
            async with inventory_unit(self.services, self.principal) as inventory:
                return await inventory.release(key)

        return await self.call("release", run, idempotent=False)
