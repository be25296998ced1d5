"""The cart client's in-process twin (all-in-one mode): a checkout's quote and the
removal of what it bought run the routes' own code without going through the app."""

from __future__ import annotations

import uuid
from typing import Any

from ultramarket.core.clients import InProcessClient
from ultramarket.services.cart import schemas as s
from ultramarket.services.cart.api import quote_checkout, take_ordered
from ultramarket.services.cart.client import CartClient


class InProcessCartClient(CartClient, InProcessClient):
    async def _quote(self, body: dict[str, Any]) -> s.CartRead:
        request = self.parse(s.CheckoutQuote, body)

        async def run() -> s.CartRead:
            return await quote_checkout(self.services, self.principal, request)

        return await self.call("checkout_quote", run, idempotent=True)

    async def _remove_ordered(self, user_id: uuid.UUID, body: dict[str, Any]) -> bool:
        request = self.parse(s.RemoveOrdered, body)

        async def run() -> s.ClearResult:
            return await take_ordered(self.services, self.principal, user_id, request)

        # Not retried (a repeat would take the units twice), as over the wire.
        return (await self.call("remove_ordered", run, idempotent=False)).cleared
