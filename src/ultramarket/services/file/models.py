"""Tables owned by the file service: stored files and their thumbnails.

Bytes live in the storage backend under generated keys; the original file name is
kept only as display metadata.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ultramarket.core.db import IdMixin, service_base, utcnow
from ultramarket.core.events import event_tables

Base = service_base("file")
EVENTS = event_tables(Base.metadata, "file")


class StoredFile(IdMixin, Base):
    __tablename__ = "stored_file"
    __table_args__ = (
        Index(None, "owner_id", "created_at"),
        Index(None, "sha256"),
    )

    owner_id: Mapped[uuid.UUID | None]
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    visibility: Mapped[str] = mapped_column(String(8), default="private")
    purpose: Mapped[str | None] = mapped_column(String(50))
    backend: Mapped[str] = mapped_column(String(8))
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    width: Mapped[int | None]
    height: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FileVariant(IdMixin, Base):
    """A thumbnail of an image: fits a ``size`` x ``size`` box."""

    __tablename__ = "file_variant"
    __table_args__ = (UniqueConstraint("file_id", "size"),)

    file_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("file.stored_file.id", ondelete="CASCADE")
    )
    size: Mapped[int]
    content_type: Mapped[str] = mapped_column(String(100))
    byte_size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    width: Mapped[int]
    height: Mapped[int]
