"""The typed client other services (shipping, reviews) use to call the order service."""

from __future__ import annotations

import uuid
from typing import Any

from ultramarket.core.clients import ServiceClient
from ultramarket.services.order.schemas import OrderRead, TrackingRead

PREFIX = "/api/v1/orders"


class OrderClient(ServiceClient):
    service = "order"

    async def get(self, order_id: uuid.UUID) -> OrderRead:
        data = await self.request("GET", f"{PREFIX}/{order_id}")
        return OrderRead.model_validate(data)

    async def set_tracking(self, order_id: uuid.UUID, **fields: Any) -> TrackingRead:
        """Fill carrier, tracking_number, tracking_url, estimated_delivery (ISO string)."""
        data = await self.request("PUT", f"{PREFIX}/{order_id}/tracking", json=fields)
        return TrackingRead.model_validate(data)
