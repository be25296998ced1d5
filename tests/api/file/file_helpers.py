"""Shared pieces of the file service tests: an S3-compatible server (moto), an app
per storage backend, images made with Pillow, and what the storage holds."""

from __future__ import annotations

import io
import struct
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi import FastAPI
from moto.server import ThreadedMotoServer
from PIL import Image
from pydantic import SecretStr
from sqlalchemy import func, select
from tests.support import assert_error, ok  # noqa: F401 - re-exported for the tests

from ultramarket import registry
from ultramarket.core.config import FileSettings, Settings
from ultramarket.core.http import create_app
from ultramarket.services.file.models import FileVariant, StoredFile

API = "/api/v1/files"
# Lower than the platform's 10 MB body limit, so the service's own limit is what trips.
TEST_MAX_BYTES = 1_000_000


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server._server.server_port  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_files(endpoint: str, **overrides: Any) -> FileSettings:
    """File settings on a fresh bucket of the moto server."""
    bucket = f"um-test-{uuid.uuid4().hex[:16]}"
    values: dict[str, Any] = {
        "backend": "s3",
        "s3_endpoint_url": endpoint,
        "s3_bucket": bucket,
        "s3_region": "us-east-1",
        "s3_access_key_id": "testing",
        "s3_secret_access_key": SecretStr("testing"),
        "s3_path_style": True,
        "signed_downloads": False,
        "max_bytes": TEST_MAX_BYTES,
    }
    values.update(overrides)
    config = FileSettings(**values)
    s3_client(config).create_bucket(Bucket=bucket)
    return config


def s3_client(config: FileSettings) -> Any:
    assert config.s3_secret_access_key is not None
    return boto3.client(
        "s3",
        endpoint_url=config.s3_endpoint_url,
        region_name=config.s3_region,
        aws_access_key_id=config.s3_access_key_id,
        aws_secret_access_key=config.s3_secret_access_key.get_secret_value(),
    )


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def app(
    settings: Settings, backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[FastAPI]:
    """The whole platform with the file service on local disk or on S3 (moto)."""
    if backend == "s3":
        files = s3_files(request.getfixturevalue("moto_endpoint"))
    else:
        files = FileSettings(max_bytes=TEST_MAX_BYTES)
    application = create_app(
        registry.load_all(), settings.model_copy(update={"files": files}), run_relay=False
    )
    async with application.router.lifespan_context(application):
        yield application


def stored_objects(app: FastAPI) -> list[str]:
    """Every object the file storage holds (local paths relative to the root, or S3 keys)."""
    settings: Settings = app.state.settings
    config = settings.files
    if config.backend == "s3":
        listed = s3_client(config).list_objects_v2(Bucket=config.s3_bucket)
        return [item["Key"] for item in listed.get("Contents", [])]
    root: Path = config.local_root or settings.data_dir / "files"
    if not root.exists():
        return []
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]


async def storage_keys(app: FastAPI, file_id: str) -> list[str]:
    """The storage keys of a file and of its thumbnails, as their rows hold them."""
    async with app.state.container.db("file").read_session() as session:
        file = await session.get(StoredFile, uuid.UUID(file_id))
        assert file is not None
        variants = await session.scalars(
            select(FileVariant.storage_key).where(FileVariant.file_id == file.id)
        )
        return [file.storage_key, *variants]


async def row_counts(app: FastAPI) -> tuple[int, int]:
    async with app.state.container.db("file").read_session() as session:
        files = await session.scalar(select(func.count()).select_from(StoredFile))
        variants = await session.scalar(select(func.count()).select_from(FileVariant))
    return int(files or 0), int(variants or 0)


def png_bytes(width: int = 1000, height: int = 500, color: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's
    signature, without building the bomb)."""
    data = bytearray(png_bytes(1, 1))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


async def upload(
    client: Any,
    user: Any,
    content: bytes,
    name: str = "photo.png",
    content_type: str = "image/png",
    **form: str,
) -> Any:
    return await client.post(
        f"{API}/upload",
        files={"file": (name, content, content_type)},
        data=form,
        headers=user.headers if user is not None else {},
    )
