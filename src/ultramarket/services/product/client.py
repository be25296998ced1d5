"""The typed client other services (cart, order) use to call the product service."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from ultramarket.core.clients import ServiceClient
from ultramarket.services.product.schemas import VariantInfo


class ProductClient(ServiceClient):
    service = "product"

    async def get_variants(self, variant_ids: Iterable[uuid.UUID]) -> list[VariantInfo]:
        """The variants that exist among ``variant_ids`` (unknown ids are left out):
        sku, product, name, current price in minor units, currency, status, weight."""
        ids = [str(v) for v in dict.fromkeys(variant_ids)]
        if not ids:
            return []
        return await self._lookup({"variant_ids": ids})

    async def _lookup(self, body: dict[str, Any]) -> list[VariantInfo]:
        data = await self.request("POST", "/api/v1/products/variants/lookup", json=body)
        return [VariantInfo.model_validate(item) for item in data]
