"""The typed client other services use to call the user service."""

from __future__ import annotations

import uuid
from typing import Literal

from ultramarket.core.clients import ServiceClient
from ultramarket.services.user.schemas import AddressRead, UserDetail


class UserClient(ServiceClient):
    service = "user"

    async def get_profile(self, user_id: uuid.UUID) -> UserDetail:
        """The profile (raises NotFound with code PROFILE_NOT_FOUND)."""
        data = await self.request("GET", f"/api/v1/users/{user_id}")
        return UserDetail.model_validate(data)

    async def get_default_address(
        self, user_id: uuid.UUID, kind: Literal["shipping", "billing"] = "shipping"
    ) -> AddressRead | None:
        """The user's default address of ``kind``, or None when they have none."""
        data = await self.request(
            "GET", f"/api/v1/users/{user_id}/addresses/default", params={"kind": kind}
        )
        return None if data is None else AddressRead.model_validate(data)
