"""The typed client other services use to call the inventory service."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from ultramarket.core.clients import ServiceClient
from ultramarket.core.errors import Conflict
from ultramarket.services.inventory.schemas import DEFAULT_TTL, ReservationRead

PREFIX = "/api/v1/inventory"
MAX_IDS_PER_CALL = 100


def holding(reservation: ReservationRead) -> ReservationRead:
    """The reservation a reserve call answered, if it holds (or has sold) its units."""
    if reservation.status not in ("active", "committed"):
        # Whatever the service answered: the caller must not count on units it lacks.
        raise Conflict(
            f"The reservation is {reservation.status}",
            code="RESERVATION_NOT_ACTIVE",
            details=[{"key": reservation.key, "status": reservation.status}],
        )
    return reservation


class InventoryClient(ServiceClient):
    service = "inventory"

    async def availability(self, variant_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Units available per variant, summed over warehouses (unknown variants: 0)."""
        ids = list(dict.fromkeys(variant_ids))
        result: dict[uuid.UUID, int] = dict.fromkeys(ids, 0)
        for start in range(0, len(ids), MAX_IDS_PER_CALL):
            chunk = ids[start : start + MAX_IDS_PER_CALL]
            data = await self.request(
                "GET",
                f"{PREFIX}/availability",
                params={"variant_id": [str(i) for i in chunk]},
            )
            for row in data or []:
                result[uuid.UUID(row["variant_id"])] = int(row["available"])
        return result

    async def reserve(
        self,
        key: str,
        lines: Iterable[tuple[uuid.UUID, int]],
        ttl_seconds: int = DEFAULT_TTL,
    ) -> ReservationRead:
        """Reserve every line or none (409 INSUFFICIENT_STOCK naming each short line).
        Idempotent by ``key``: the same key, lines and TTL return the same reservation;
        other lines or another TTL are a 409 IDEMPOTENCY_KEY_REUSED. A reservation that
        holds nothing any more (released, expired) is never returned: 409
        RESERVATION_NOT_ACTIVE. A committed one is (the sale stands; committing it again
        answers RESERVATION_ALREADY_COMMITTED)."""
        body = {
            "key": key,
            "ttl_seconds": ttl_seconds,
            "lines": [{"variant_id": str(v), "quantity": q} for v, q in lines],
        }
        return holding(await self._reserve(body))

    async def _reserve(self, body: dict[str, Any]) -> ReservationRead:
        # Safe to retry: the key makes a repeated call return the first reservation.
        data = await self.request("POST", f"{PREFIX}/reservations", json=body, idempotent=True)
        return ReservationRead.model_validate(data)

    async def commit(self, key: str) -> ReservationRead:
        """Turn the reservation into a sale (409 when not active: committed, released, expired)."""
        data = await self.request("POST", f"{PREFIX}/reservations/{key}/commit")
        return ReservationRead.model_validate(data)

    async def release(self, key: str) -> ReservationRead:
        """Give the reserved units back (409 when not active)."""
        data = await self.request("POST", f"{PREFIX}/reservations/{key}/release")
        return ReservationRead.model_validate(data)

    async def restock(
        self,
        key: str,
        reference: str,
        lines: Iterable[tuple[uuid.UUID, int]] | None = None,
    ) -> ReservationRead:
        """Give sold units of a committed reservation back to stock: ``lines`` per variant, or
        every unit not yet returned when None. 409 when the reservation is not committed
        (RESERVATION_NOT_COMMITTED) or a line asks more than it has left to return
        (RESTOCK_EXCEEDS_RETURNABLE); 422 for a variant not in the reservation. Idempotent
        by ``reference``: the same reference and lines restock once (another lines: 409)."""
        body = {
            "reference": reference,
            "lines": (
                None if lines is None else [{"variant_id": str(v), "quantity": q} for v, q in lines]
            ),
        }
        # Safe to retry: the reference makes a repeated call change nothing.
        data = await self.request(
            "POST", f"{PREFIX}/reservations/{key}/restock", json=body, idempotent=True
        )
        return ReservationRead.model_validate(data)

    async def get_reservation(self, key: str) -> ReservationRead:
        data = await self.request("GET", f"{PREFIX}/reservations/{key}")
        return ReservationRead.model_validate(data)
