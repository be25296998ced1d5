"""The typed client other services use to call the file service."""

from __future__ import annotations

import uuid

from ultramarket.core.clients import ServiceClient
from ultramarket.services.file.schemas import FileRead


class FileClient(ServiceClient):
    service = "file"

    async def get(self, file_id: uuid.UUID) -> FileRead:
        """A file's metadata (raises NotFound when there is no such file)."""
        data = await self.request("GET", f"/api/v1/files/{file_id}")
        return FileRead.model_validate(data)
