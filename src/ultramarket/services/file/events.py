"""Events the file service publishes (versioned; fields are only ever added)."""

from __future__ import annotations

import uuid

from ultramarket.core.events import Event


class FileUploaded(Event):
    type = "file.uploaded.v1"
    file_id: uuid.UUID
    owner_id: uuid.UUID | None
    content_type: str
    size: int
    sha256: str
    visibility: str
    purpose: str | None


class FileDeleted(Event):
    """A file and its thumbnails are gone; holders of its id (product images,
    avatars) may drop the reference."""

    type = "file.deleted.v1"
    file_id: uuid.UUID
    owner_id: uuid.UUID | None
