"""The product client's in-process twin (all-in-one mode): the variant lookup every cart
view and checkout makes runs the route's own query without going through the app."""

from __future__ import annotations

from typing import Any

from ultramarket.core.clients import InProcessClient
from ultramarket.services.product import schemas as s
from ultramarket.services.product.api import variants_info
from ultramarket.services.product.client import ProductClient


class InProcessProductClient(ProductClient, InProcessClient):
    async def _lookup(self, body: dict[str, Any]) -> list[s.VariantInfo]:
        request = self.parse(s.VariantLookupRequest, body)

        async def run() -> list[s.VariantInfo]:
            return await variants_info(self.services, self.principal, request)

        # Not retried, as over the wire (a POST).
        return await self.call("get_variants", run, idempotent=False)
