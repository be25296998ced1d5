"""Use cases of the file service: upload, read, download and delete.

Bytes are written to storage before the row is committed and removed again if the
row cannot be written; on delete the row goes first and the bytes after the commit
(a crash in between leaves unreachable bytes, never a row without bytes).
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import delete, select

from ultramarket.core.config import FileSettings
from ultramarket.core.db import Database
from ultramarket.core.errors import Forbidden, ValidationFailed
from ultramarket.core.events import EventPublisher
from ultramarket.core.security import Principal
from ultramarket.services.file.content import (
    HEAD_BYTES,
    IMAGE_TYPES,
    TEXT_TYPES,
    ImageInfo,
    TextCheck,
    detect_type,
    make_thumbnails,
    safe_name,
)
from ultramarket.services.file.errors import FileNotFound, FileTooLarge, ImageQueueFull
from ultramarket.services.file.events import FileDeleted, FileUploaded
from ultramarket.services.file.models import FileVariant, StoredFile
from ultramarket.services.file.schemas import FileRead, ThumbnailRead
from ultramarket.services.file.storage import CHUNK, Storage, is_public_key, new_key, variant_key

log = logging.getLogger("ultramarket.file")
T = TypeVar("T")


class Upload(Protocol):
    """What the service needs of an upload (Starlette's ``UploadFile`` fits)."""

    filename: str | None

    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class Target:
    """What a download serves: the original or one thumbnail."""

    file: StoredFile
    key: str
    content_type: str
    size: int
    sha256: str
    name: str


class ImageJobs:
    """Decoding and resizing images is CPU and memory work: ``workers`` images at a
    time, in worker threads. An image upload is admitted before its bytes are read
    and holds them until its thumbnails are made, so at most ``workers + waiting``
    uploads hold image bytes; one more is refused (503 with Retry-After)."""

    def __init__(self, workers: int = 2, waiting: int = 8, retry_after: int = 5) -> None:
        self.limiter = anyio.CapacityLimiter(workers)
        self.capacity = workers + waiting
        self.retry_after = retry_after
        self.admitted = 0

    @contextmanager
    def admit(self) -> Iterator[None]:
        # One event loop: nothing runs between the check and the count.
        if self.admitted >= self.capacity:
            raise ImageQueueFull(self.retry_after)
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def run(self, func: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(func, limiter=self.limiter)


def can_read(principal: Principal | None, file: StoredFile) -> bool:
    if file.visibility == "public":
        return True
    if principal is None:
        return False
    return principal.owns(file.owner_id) or principal.is_staff() or principal.can("file:read:any")


class FileService:
    def __init__(
        self,
        db: Database,
        storage: Storage,
        config: FileSettings,
        *,
        publisher: EventPublisher,
        public_url: str,
        image_jobs: ImageJobs | None = None,
    ) -> None:
        self.db = db
        self.storage = storage
        self.config = config
        self.publisher = publisher
        self.public_url = public_url.rstrip("/")
        self.image_jobs = image_jobs or ImageJobs()

    # -- upload -------------------------------------------------------------------------

    async def upload(
        self,
        principal: Principal,
        upload: Upload,
        *,
        visibility: str = "private",
        purpose: str | None = None,
    ) -> tuple[StoredFile, list[FileVariant]]:
        owner_id = principal.user_id if principal.kind == "user" else None
        name = safe_name(upload.filename)
        head = await _read_head(upload)
        if not head:
            raise ValidationFailed("The file is empty", code="EMPTY_FILE")
        content_type = detect_type(head, name, self.config.allowed_types)
        # A full image queue refuses the upload before its bytes are stored or kept.
        with self.image_jobs.admit() if content_type in IMAGE_TYPES else nullcontext():
            return await self._store(
                owner_id, upload, name, head, content_type, visibility, purpose
            )

    async def _store(
        self,
        owner_id: uuid.UUID | None,
        upload: Upload,
        name: str,
        head: bytes,
        content_type: str,
        visibility: str,
        purpose: str | None,
    ) -> tuple[StoredFile, list[FileVariant]]:
        file_id = uuid.uuid4()
        key = new_key(visibility)
        text = TextCheck() if content_type in TEXT_TYPES.values() else None
        # An image's bytes, kept for its thumbnails (and handed over without a copy).
        keep = io.BytesIO() if content_type in IMAGE_TYPES else None
        hasher = hashlib.sha256()
        limit = self.config.max_bytes
        size = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal size
            chunk = head
            while chunk:
                size += len(chunk)
                if size > limit:
                    raise FileTooLarge(
                        f"The file is larger than {limit} bytes", details=[{"max_bytes": limit}]
                    )
                hasher.update(chunk)
                if text is not None:
                    text.feed(chunk)
                if keep is not None:
                    keep.write(chunk)
                yield chunk
                chunk = await upload.read(CHUNK)
            if text is not None:
                text.feed(b"", final=True)

        await self.storage.put(key, chunks(), content_type)
        written = [key]
        try:
            info: ImageInfo | None = None
            if keep is not None:
                with keep:
                    info = await self.image_jobs.run(
                        partial(
                            make_thumbnails,
                            keep,
                            self.config.thumbnail_sizes,
                            self.config.thumbnail_format,
                            self.config.max_image_pixels,
                        )
                    )
            file = StoredFile(
                id=file_id,
                owner_id=owner_id,
                name=name,
                content_type=content_type,
                size=size,
                sha256=hasher.hexdigest(),
                visibility=visibility,
                purpose=purpose,
                backend=self.storage.name,
                storage_key=key,
                width=info.width if info else None,
                height=info.height if info else None,
            )
            variants = []
            for thumb in info.thumbnails if info else []:
                thumb_key = variant_key(key, thumb.size)
                await self.storage.put(thumb_key, _once(thumb.data), thumb.content_type)
                written.append(thumb_key)
                variants.append(
                    FileVariant(
                        file_id=file_id,
                        size=thumb.size,
                        content_type=thumb.content_type,
                        byte_size=len(thumb.data),
                        sha256=thumb.sha256,
                        storage_key=thumb_key,
                        width=thumb.width,
                        height=thumb.height,
                    )
                )
            async with self.db.session() as session:
                session.add(file)
                await session.flush()  # the file row before its variants (foreign key)
                session.add_all(variants)
                await self.publisher.publish(
                    session,
                    FileUploaded(
                        file_id=file_id,
                        owner_id=owner_id,
                        content_type=content_type,
                        size=size,
                        sha256=file.sha256,
                        visibility=visibility,
                        purpose=purpose,
                    ),
                )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._remove(written)
            raise
        return file, variants

    # -- read ---------------------------------------------------------------------------

    async def _load(
        self, principal: Principal | None, file_id: uuid.UUID
    ) -> tuple[StoredFile, list[FileVariant]]:
        async with self.db.read_session() as session:
            file = await session.get(StoredFile, file_id)
            # Someone else's private file answers exactly like a missing one.
            if file is None or not can_read(principal, file):
                raise FileNotFound()
            variants = (
                await session.scalars(
                    select(FileVariant)
                    .where(FileVariant.file_id == file_id)
                    .order_by(FileVariant.size)
                )
            ).all()
            # The read session rolls back on exit, which would expire what it loaded.
            session.expunge_all()
        return file, list(variants)

    async def get(self, principal: Principal | None, file_id: uuid.UUID) -> FileRead:
        file, variants = await self._load(principal, file_id)
        return self.read_model(file, variants)

    async def target(
        self, principal: Principal | None, file_id: uuid.UUID, size: int | None
    ) -> Target:
        file, variants = await self._load(principal, file_id)
        if size is None:
            return Target(
                file, file.storage_key, file.content_type, file.size, file.sha256, file.name
            )
        variant = next((v for v in variants if v.size == size), None)
        if variant is None:
            raise FileNotFound(f"No thumbnail of size {size}", code="THUMBNAIL_NOT_FOUND")
        stem = file.name.rsplit(".", 1)[0] or "file"
        ext = "webp" if variant.content_type == "image/webp" else "jpg"
        return Target(
            file,
            variant.storage_key,
            variant.content_type,
            variant.byte_size,
            variant.sha256,
            f"{stem}-{size}.{ext}",
        )

    # -- delete -------------------------------------------------------------------------

    async def delete(self, principal: Principal, file_id: uuid.UUID) -> None:
        async with self.db.session() as session:
            file = await session.get(StoredFile, file_id, with_for_update=True)
            if file is None or not can_read(principal, file):
                raise FileNotFound()
            if not (principal.owns(file.owner_id) or principal.can("file:delete:any")):
                raise Forbidden("Only the owner or a manager may delete this file")
            keys = [file.storage_key]
            keys += (
                await session.scalars(
                    select(FileVariant.storage_key).where(FileVariant.file_id == file_id)
                )
            ).all()
            await session.execute(delete(FileVariant).where(FileVariant.file_id == file_id))
            await session.delete(file)
            await self.publisher.publish(
                session, FileDeleted(file_id=file_id, owner_id=file.owner_id)
            )
        # Committed: now the bytes.
        await self._remove(keys)

    async def _remove(self, keys: Sequence[str]) -> None:
        for key in keys:
            try:
                await self.storage.delete(key)
            except Exception:
                log.exception("could not delete stored bytes", extra={"key": key})

    # -- shaping ------------------------------------------------------------------------

    def download_url(self, file: StoredFile, key: str, size: int | None = None) -> str:
        """The CDN URL of a public object when a CDN is configured, else the API's
        download route. Only keys under ``public/`` go to the CDN: it may serve no
        other prefix (rows stored before the split keep their old keys and go
        through the API)."""
        base = self.config.public_base_url
        if base and file.visibility == "public" and is_public_key(key):
            return f"{base.rstrip('/')}/{self.storage.object_key(key)}"
        url = f"{self.public_url}/api/v1/files/download/{file.id}"
        return url if size is None else f"{url}?size={size}"

    def read_model(self, file: StoredFile, variants: Sequence[FileVariant]) -> FileRead:
        return FileRead(
            id=file.id,
            name=file.name,
            content_type=file.content_type,
            size=file.size,
            sha256=file.sha256,
            visibility=file.visibility,  # type: ignore[arg-type]
            purpose=file.purpose,
            owner_id=file.owner_id,
            width=file.width,
            height=file.height,
            created_at=file.created_at,
            url=self.download_url(file, file.storage_key),
            thumbnails=[
                ThumbnailRead(
                    size=v.size,
                    url=self.download_url(file, v.storage_key, v.size),
                    width=v.width,
                    height=v.height,
                    content_type=v.content_type,
                )
                for v in variants
            ],
        )


async def _read_head(upload: Upload) -> bytes:
    """At least HEAD_BYTES (or the whole file when smaller): enough to detect the type."""
    head = b""
    while len(head) < HEAD_BYTES:
        chunk = await upload.read(CHUNK)
        if not chunk:
            break
        head += chunk
    return head


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
