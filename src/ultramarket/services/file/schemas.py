"""The HTTP contract of the file service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Visibility = Literal["public", "private"]


class ThumbnailRead(BaseModel):
    size: int = Field(description="Bounding box in pixels (the thumbnail fits size x size)")
    url: str
    width: int
    height: int
    content_type: str


class FileRead(BaseModel):
    id: uuid.UUID
    name: str = Field(description="Display name: the uploaded name without directories")
    content_type: str = Field(description="Detected from the bytes, never the client's claim")
    size: int
    sha256: str
    visibility: Visibility
    purpose: str | None = None
    owner_id: uuid.UUID | None
    width: int | None = None
    height: int | None = None
    created_at: datetime
    url: str = Field(description="Download URL (the CDN URL for public files when configured)")
    thumbnails: list[ThumbnailRead] = Field(default_factory=list)


class FileDeletedRead(BaseModel):
    id: uuid.UUID
    deleted: bool = True
