# ruff: noqa: F811 - the fixtures imported from file_helpers
"""The storage backends themselves: local disk confinement and S3 against a real
S3-compatible server (moto), including multipart uploads, presigned redirects and
CDN URLs."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.api.file.file_helpers import (  # noqa: F401 - fixtures
    API,
    assert_error,
    moto_endpoint,
    png_bytes,
    s3_client,
    s3_files,
    storage_keys,
    stored_objects,
    upload,
)

from ultramarket import registry
from ultramarket.core.config import FileSettings, Settings
from ultramarket.core.http import create_app
from ultramarket.services.file.api import STORAGE
from ultramarket.services.file.models import StoredFile
from ultramarket.services.file.storage import LocalStorage, S3Storage, new_key


async def _chunks(*parts: bytes, fail: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if fail:
        raise RuntimeError("client went away")


async def _read(storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in storage.open(key, start, end)])


async def test_file_local_storage_keeps_keys_inside_the_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "files")
    key = new_key("private")

    assert await storage.put(key, _chunks(b"abc", b"def"), "text/plain") == 6
    assert await _read(storage, key) == b"abcdef"
    assert await _read(storage, key, 2, 3) == b"cd"
    assert storage.path_of(key).is_relative_to(tmp_path / "files" / "private")
    bad_keys = ("../../etc/passwd", "ab/../../x", "/etc/passwd", "ab\\cd", "")
    for bad in (*bad_keys, "public/../private/ab/" + "0" * 32, "other/ab/" + "0" * 32):
        with pytest.raises(ValueError, match="invalid storage key"):
            storage.path_of(bad)
    await storage.delete(key)
    assert not await storage.exists(key)


async def test_file_local_storage_leaves_nothing_when_the_stream_fails(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "files")
    key = new_key("private")
    with pytest.raises(RuntimeError):
        await storage.put(key, _chunks(b"x" * 1000, fail=True), "text/plain")
    assert [p for p in (tmp_path / "files").rglob("*") if p.is_file()] == []


async def test_file_s3_storage_multipart_range_and_delete(moto_endpoint: str) -> None:
    config = s3_files(moto_endpoint, s3_prefix="shop-1")
    storage = S3Storage(config)
    key = new_key("public")
    big = bytes(range(256)) * (9 * 4096)  # 9 MiB: more than one 8 MiB part

    assert await storage.put(
        key, _chunks(*(big[i : i + 65536] for i in range(0, len(big), 65536))), "application/pdf"
    ) == len(big)

    head = s3_client(config).head_object(Bucket=config.s3_bucket, Key=f"shop-1/{key}")
    assert head["ContentLength"] == len(big)
    assert head["ContentType"] == "application/pdf"
    assert await _read(storage, key, 100, 199) == big[100:200]
    assert await _read(storage, key, len(big) - 10) == big[-10:]
    await storage.delete(key)
    assert not await storage.exists(key)


async def test_file_s3_storage_aborts_a_failed_multipart_upload(moto_endpoint: str) -> None:
    config = s3_files(moto_endpoint)
    storage = S3Storage(config)
    with pytest.raises(RuntimeError):
        await storage.put(new_key("private"), _chunks(b"x" * (9 * 2**20), fail=True), "text/plain")
    s3 = s3_client(config)
    assert s3.list_objects_v2(Bucket=config.s3_bucket).get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket=config.s3_bucket).get("Uploads", []) == []


@pytest.fixture
async def s3_app(settings: Settings, moto_endpoint: str, request: pytest.FixtureRequest):
    files: FileSettings = s3_files(
        moto_endpoint, signed_downloads=True, public_base_url="https://cdn.example.com/media"
    )
    application = create_app(
        registry.load_all(), settings.model_copy(update={"files": files}), run_relay=False
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def app(s3_app):
    return s3_app


async def test_file_s3_downloads_redirect_to_presigned_urls(client, make_user, s3_app) -> None:
    owner = await make_user()
    other = await make_user()
    content = png_bytes(400, 300)
    data = (await upload(client, owner, content, "secret plan.png")).json()["data"]
    assert data["url"].endswith(f"{API}/download/{data['id']}")  # private: never the CDN

    response = await client.get(f"{API}/download/{data['id']}", headers=owner.headers)

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(s3_app.state.settings.files.s3_endpoint_url)
    assert "X-Amz-Signature=" in location
    async with httpx.AsyncClient() as outside:
        fetched = await outside.get(location)
    assert fetched.status_code == 200
    assert fetched.content == content
    assert fetched.headers["content-type"] == "image/png"
    assert "secret%20plan.png" in fetched.headers["content-disposition"]
    # Authorisation comes first: no signed URL for someone else's private file.
    denied = await client.get(f"{API}/download/{data['id']}", headers=other.headers)
    assert_error(denied, 404, "NOT_FOUND")
    thumb = await client.get(f"{API}/download/{data['id']}?size=150", headers=owner.headers)
    assert thumb.status_code == 302


async def test_file_s3_public_files_point_at_the_cdn(client, make_user, s3_app) -> None:
    owner = await make_user()
    data = (await upload(client, owner, png_bytes(200, 200), visibility="public")).json()["data"]
    keys = set(stored_objects(s3_app))

    assert data["url"].startswith("https://cdn.example.com/media/")
    assert data["url"].removeprefix("https://cdn.example.com/media/") in keys
    assert all(t["url"].startswith("https://cdn.example.com/media/") for t in data["thumbnails"])


async def test_file_s3_private_objects_stay_outside_the_cdn_prefix(
    client, make_user, s3_app
) -> None:
    owner = await make_user()
    content = png_bytes(300, 200)
    private = (await upload(client, owner, content, "private.png")).json()["data"]
    public = (await upload(client, owner, content, "public.png", visibility="public")).json()
    public = public["data"]
    private_keys = await storage_keys(s3_app, private["id"])
    public_keys = await storage_keys(s3_app, public["id"])

    # The CDN is scoped to public/: a private object is never under it, and its key
    # cannot be worked out from the file id.
    assert set(stored_objects(s3_app)) == {*private_keys, *public_keys}
    assert len(private_keys) == len(public_keys) == 4
    assert all(key.startswith("private/") for key in private_keys), private_keys
    assert not any(uuid.UUID(private["id"]).hex in key for key in private_keys)
    assert all(key.startswith("public/") for key in public_keys), public_keys
    public_urls = [public["url"], *(t["url"] for t in public["thumbnails"])]
    assert public_urls == [f"https://cdn.example.com/media/{key}" for key in public_keys]
    private_urls = [private["url"], *(t["url"] for t in private["thumbnails"])]
    api_url = f"{s3_app.state.settings.public_url}{API}/download/{private['id']}"
    assert all(url.startswith(api_url) for url in private_urls), private_urls

    # Both still download through the API.
    async with httpx.AsyncClient() as outside:
        for data, headers in ((private, owner.headers), (public, {})):
            response = await client.get(f"{API}/download/{data['id']}", headers=headers)
            assert response.status_code == 302
            assert (await outside.get(response.headers["location"])).content == content
    assert_error(await client.get(f"{API}/download/{private['id']}"), 404, "NOT_FOUND")


async def test_file_s3_rows_stored_before_the_prefix_split_still_read(
    client, make_user, s3_app
) -> None:
    owner = await make_user()
    container = s3_app.state.container
    content = b"%PDF-1.4\n" + b"old" * 100
    rows = {}
    for visibility in ("public", "private"):
        file_id = uuid.uuid4()
        key = f"{file_id.hex[:2]}/{file_id.hex}"  # the old key: no prefix, from the id
        await container.extras[STORAGE].put(key, _chunks(content), "application/pdf")
        rows[visibility] = StoredFile(
            id=file_id,
            owner_id=uuid.UUID(owner.id),
            name="old.pdf",
            content_type="application/pdf",
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            visibility=visibility,
            backend="s3",
            storage_key=key,
        )
    async with container.db("file").session() as session:
        session.add_all(rows.values())

    for visibility, row in rows.items():
        headers = owner.headers if visibility == "private" else {}
        meta = (await client.get(f"{API}/{row.id}", headers=headers)).json()["data"]
        # Outside public/, so never a CDN URL, even for a public file.
        assert meta["url"].endswith(f"{API}/download/{row.id}"), meta["url"]
        response = await client.get(f"{API}/download/{row.id}", headers=headers)
        assert response.status_code == 302
        async with httpx.AsyncClient() as outside:
            assert (await outside.get(response.headers["location"])).content == content
        deleted = await client.delete(f"{API}/{row.id}", headers=owner.headers)
        assert deleted.status_code == 200, deleted.text
    assert stored_objects(s3_app) == []
