"""The typed client other services use to call the auth service."""

from __future__ import annotations

import uuid

from ultramarket.core.clients import ServiceClient
from ultramarket.services.auth.schemas import AccountRead


class AuthClient(ServiceClient):
    service = "auth"

    async def get_account(self, account_id: uuid.UUID) -> AccountRead:
        data = await self.request("GET", f"/api/v1/auth/accounts/{account_id}")
        return AccountRead.model_validate(data)

    async def change_role(self, account_id: uuid.UUID, role: str) -> AccountRead:
        data = await self.request(
            "PUT", f"/api/v1/auth/accounts/{account_id}/role", json={"role": role}
        )
        return AccountRead.model_validate(data)

    async def change_status(self, account_id: uuid.UUID, status: str) -> AccountRead:
        data = await self.request(
            "PUT", f"/api/v1/auth/accounts/{account_id}/status", json={"status": status}
        )
        return AccountRead.model_validate(data)
