"""Demo stock for the seeded catalog (``make run``)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from ultramarket.services.inventory.service import InventoryService

log = logging.getLogger("ultramarket.inventory")


async def stock_demo(container: Any, quantities: dict[uuid.UUID, int]) -> None:
    """Set the default-warehouse on_hand of each variant (its item comes from the product
    events, so drain them first). Each change is a stock movement, as any other."""
    missing = 0
    async with container.db("inventory").session() as session:
        service = InventoryService(session, container.publisher("inventory"), actor="seed")
        for variant_id, quantity in quantities.items():
            if not await service.set_on_hand(variant_id, quantity, reason="demo stock"):
                missing += 1
    if missing:
        log.warning("demo stock: %d variants have no stock item yet", missing)
