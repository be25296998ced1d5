# ruff: noqa: F811 - the fixtures imported from file_helpers
"""Uploads, on local disk and on S3 (moto): type from the bytes, size limit, names,
thumbnails; a refused upload changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import uuid

import pytest
from file_helpers import (  # noqa: F401 - fixtures
    API,
    TEST_MAX_BYTES,
    app,
    assert_error,
    backend,
    moto_endpoint,
    png_bytes,
    png_claiming_size,
    row_counts,
    stored_objects,
    upload,
)
from PIL import Image

from ultramarket.services.file.api import IMAGE_JOBS

KEY = re.compile(r"^(public|private)/[0-9a-f]{2}/[0-9a-f]{32}(_[0-9]+)?$")


async def test_file_upload_png_makes_thumbnails(client, make_user, app) -> None:
    user = await make_user()
    content = png_bytes(1000, 500)

    response = await upload(client, user, content, "holiday.png", purpose="avatar")

    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["name"] == "holiday.png"
    assert data["content_type"] == "image/png"
    assert data["size"] == len(content)
    assert data["sha256"] == hashlib.sha256(content).hexdigest()
    assert data["visibility"] == "private"
    assert data["purpose"] == "avatar"
    assert data["owner_id"] == user.id
    assert (data["width"], data["height"]) == (1000, 500)
    assert data["url"].endswith(f"{API}/download/{data['id']}")
    assert [t["size"] for t in data["thumbnails"]] == [150, 400, 800]
    for thumb in data["thumbnails"]:
        got = await client.get(
            f"{API}/download/{data['id']}?size={thumb['size']}", headers=user.headers
        )
        assert got.status_code == 200
        assert got.headers["content-type"] == "image/webp"
        image = Image.open(io.BytesIO(got.content))
        assert image.format == "WEBP"
        assert max(image.size) == thumb["size"]
        assert image.size == (thumb["size"], thumb["size"] // 2)
        assert (thumb["width"], thumb["height"]) == image.size
    # The original and three thumbnails, under generated keys only: a private file's
    # under private/, random rather than derived from its id.
    objects = stored_objects(app)
    assert len(objects) == 4
    assert all(KEY.match(key) for key in objects), objects
    assert all(key.startswith("private/") for key in objects), objects
    assert not any(uuid.UUID(data["id"]).hex in key for key in objects), objects
    assert await row_counts(app) == (1, 3)


async def test_file_upload_small_image_is_not_upscaled(client, make_user) -> None:
    user = await make_user()
    response = await upload(client, user, png_bytes(120, 60))
    assert response.status_code == 201, response.text
    sizes = {t["size"]: (t["width"], t["height"]) for t in response.json()["data"]["thumbnails"]}
    assert sizes == {150: (120, 60), 400: (120, 60), 800: (120, 60)}


async def test_file_image_uploads_beyond_the_queue_are_503(client, make_user, app) -> None:
    user = await make_user()
    jobs = app.state.container.extras[IMAGE_JOBS]
    # Every worker busy: each image upload admitted now waits for one.
    holders = [object() for _ in range(int(jobs.limiter.total_tokens))]
    for holder in holders:
        await jobs.limiter.acquire_on_behalf_of(holder)
    try:
        waiting = [
            asyncio.create_task(upload(client, user, png_bytes(40, 40)))
            for _ in range(jobs.capacity)
        ]
        for _ in range(3000):  # up to 30 s
            if jobs.limiter.statistics().tasks_waiting == jobs.capacity:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the image uploads never queued for a worker")

        async with asyncio.timeout(30):  # an unbounded queue would wait here for good
            refused = await upload(client, user, png_bytes(40, 40))
        pdf = await upload(client, user, b"%PDF-1.4\n" + b"0" * 100, "a.pdf", "application/pdf")
    finally:
        for holder in holders:
            jobs.limiter.release_on_behalf_of(holder)
    done = await asyncio.gather(*waiting)

    assert_error(refused, 503, "UNAVAILABLE")
    assert refused.headers["retry-after"] == str(jobs.retry_after)
    assert pdf.status_code == 201, pdf.text  # only images queue for a worker
    assert [r.status_code for r in done] == [201] * jobs.capacity
    assert jobs.admitted == 0
    # The refused upload stored nothing.
    assert len(stored_objects(app)) == jobs.capacity * 4 + 1
    assert await row_counts(app) == (jobs.capacity + 1, jobs.capacity * 3)


async def test_file_upload_over_the_limit_is_413_and_stores_nothing(client, make_user, app) -> None:
    user = await make_user()
    content = b"%PDF-1.4\n" + b"0" * TEST_MAX_BYTES

    response = await upload(client, user, content, "big.pdf", "application/pdf")

    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert stored_objects(app) == []
    assert await row_counts(app) == (0, 0)


async def test_file_upload_at_the_limit_is_accepted(client, make_user) -> None:
    user = await make_user()
    content = b"%PDF-1.4\n" + b"0" * (TEST_MAX_BYTES - 9)
    response = await upload(client, user, content, "edge.pdf", "application/pdf")
    assert response.status_code == 201, response.text
    assert response.json()["data"]["content_type"] == "application/pdf"
    assert response.json()["data"]["thumbnails"] == []


@pytest.mark.parametrize(
    "content",
    [
        b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 200,  # Windows PE
        b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 200,  # Linux ELF
        b"PK\x03\x04\x14\x00\x00\x00" + b"\x00" * 200,  # zip
        b"\x00\x01\x02garbage that is no image" * 10,
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    ],
    ids=["exe", "elf", "zip", "garbage", "svg"],
)
async def test_file_upload_disguised_type_is_415(client, make_user, app, content) -> None:
    user = await make_user()

    response = await upload(client, user, content, "innocent.png", "image/png")

    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert stored_objects(app) == []
    assert await row_counts(app) == (0, 0)


async def test_file_upload_text_needs_text_bytes(client, make_user, app) -> None:
    user = await make_user()
    csv = "sku,name\nA-1,Teapot ☕\n".encode()
    good = await upload(client, user, csv, "products.csv", "application/octet-stream")
    assert good.status_code == 201, good.text
    assert good.json()["data"]["content_type"] == "text/csv"

    binary = await upload(client, user, b"col\n" + b"\x00\x01\x02" * 50, "data.txt", "text/plain")
    assert_error(binary, 415, "UNSUPPORTED_MEDIA_TYPE")
    not_utf8 = await upload(client, user, b"caf\xe9\n" * 20, "latin.csv", "text/csv")
    assert_error(not_utf8, 415, "UNSUPPORTED_MEDIA_TYPE")
    # Text with another extension has no type we can vouch for.
    script = await upload(client, user, b"#!/bin/sh\nrm -rf /\n", "run.png", "image/png")
    assert_error(script, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert len(stored_objects(app)) == 1


@pytest.mark.parametrize(
    ("name", "content", "content_type"),
    [
        ("parts.csv", b"BMW,320i\nBMW,520d\n", "text/csv"),  # BM: a bitmap's signature
        ("notes.txt", b"MZ-3 and MZ-5 notes\n", "text/plain"),  # MZ: a Windows program's
        ("tags.csv", b"ID3,title\n1,Intro\n", "text/csv"),  # ID3: an MP3's
    ],
    ids=["bm", "mz", "id3"],
)
async def test_file_upload_text_opening_like_a_signature_is_text(
    client, make_user, name, content, content_type
) -> None:
    user = await make_user()
    response = await upload(client, user, content, name, "text/plain")
    assert response.status_code == 201, response.text
    assert response.json()["data"]["content_type"] == content_type


async def test_file_upload_binary_with_a_text_name_is_still_415(client, make_user, app) -> None:
    user = await make_user()
    bitmap = io.BytesIO()
    Image.new("RGB", (4, 4), "teal").save(bitmap, "BMP")
    program = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 200

    for content, name in ((bitmap.getvalue(), "parts.csv"), (program, "notes.txt")):
        response = await upload(client, user, content, name, "text/csv")
        assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert stored_objects(app) == []
    assert await row_counts(app) == (0, 0)


@pytest.mark.parametrize(
    ("size", "code"),
    [((8000, 8000), "UNSUPPORTED_MEDIA_TYPE"), ((20000, 20000), "UNSUPPORTED_MEDIA_TYPE")],
    ids=["over-our-limit", "pillow-bomb-guard"],
)
async def test_file_upload_decompression_bomb_is_refused(
    client, make_user, app, size, code
) -> None:
    user = await make_user()
    response = await upload(client, user, png_claiming_size(*size), "bomb.png")
    assert_error(response, 415, code)
    assert stored_objects(app) == []
    assert await row_counts(app) == (0, 0)


async def test_file_upload_empty_file_is_422(client, make_user, app) -> None:
    user = await make_user()
    response = await upload(client, user, b"", "empty.png")
    assert_error(response, 422, "EMPTY_FILE")
    assert stored_objects(app) == []


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\evil.png", "evil.png"),
        ("/absolute/path/x.png", "x.png"),
        ("....//..//hidden.png", "hidden.png"),
        ("..", "file"),
        ("re\x1bport\u202e.png", "report.png"),
    ],
)
async def test_file_upload_path_traversal_names_are_neutralised(
    client, make_user, app, raw, shown
) -> None:
    user = await make_user()

    response = await upload(client, user, png_bytes(20, 20), raw)

    assert response.status_code == 201, response.text
    name = response.json()["data"]["name"]
    assert name == shown
    assert "/" not in name
    assert "\\" not in name
    for key in stored_objects(app):
        assert KEY.match(key), key
    settings = app.state.settings
    if settings.files.backend == "local":
        root = (settings.data_dir / "files").resolve()
        assert all(p.resolve().is_relative_to(root) for p in root.rglob("*"))
        assert not (settings.data_dir.parent / "etc").exists()


async def test_file_upload_needs_authentication(client, app) -> None:
    response = await upload(client, None, png_bytes(10, 10))
    assert_error(response, 401, "UNAUTHENTICATED")
    assert stored_objects(app) == []


async def test_file_upload_rejects_bad_form_fields(client, make_user) -> None:
    user = await make_user()
    response = await upload(client, user, png_bytes(10, 10), visibility="everyone")
    assert_error(response, 422, "VALIDATION_ERROR")
    missing = await client.post(
        f"{API}/upload", data={"visibility": "public"}, headers=user.headers
    )
    assert_error(missing, 422, "VALIDATION_ERROR")


async def test_file_vendor_and_manager_may_upload(client, make_user) -> None:
    for role in ("VENDOR", "MANAGER", "ADMIN"):
        user = await make_user(role)
        response = await upload(client, user, png_bytes(10, 10), visibility="public")
        assert response.status_code == 201, (role, response.text)
        assert response.json()["data"]["visibility"] == "public"
