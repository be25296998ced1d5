# ruff: noqa: F811 - the fixtures imported from file_helpers
"""Metadata, downloads (ETag, ranges), visibility and deletes, on local disk and S3."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from file_helpers import (  # noqa: F401 - fixtures
    API,
    app,
    assert_error,
    backend,
    moto_endpoint,
    png_bytes,
    row_counts,
    stored_objects,
    upload,
)

from ultramarket.core.errors import NotFound
from ultramarket.services.file.client import FileClient

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40


async def _uploaded(client, user, content=PDF, name="report.pdf", **form) -> dict:
    response = await upload(client, user, content, name, "application/pdf", **form)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def test_file_download_streams_the_bytes_with_etag(client, make_user) -> None:
    user = await make_user()
    data = await _uploaded(client, user, name="Q3 report é.pdf")
    url = f"{API}/download/{data['id']}"

    response = await client.get(url, headers=user.headers)

    assert response.status_code == 200
    assert response.content == PDF
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-length"] == str(len(PDF))
    assert response.headers["etag"] == f'"{hashlib.sha256(PDF).hexdigest()}"'
    assert response.headers["accept-ranges"] == "bytes"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('inline; filename="Q3 report _.pdf"')
    assert "filename*=UTF-8''Q3%20report%20%C3%A9.pdf" in disposition

    again = await client.get(
        url, headers={**user.headers, "If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    other = await client.get(url, headers={**user.headers, "If-None-Match": '"nope"'})
    assert other.status_code == 200


async def test_file_download_ranges(client, make_user) -> None:
    user = await make_user()
    data = await _uploaded(client, user)
    url = f"{API}/download/{data['id']}"
    size = len(PDF)

    part = await client.get(url, headers={**user.headers, "Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == PDF[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{size}"
    assert part.headers["content-length"] == "10"

    tail = await client.get(url, headers={**user.headers, "Range": "bytes=-5"})
    assert tail.status_code == 206
    assert tail.content == PDF[-5:]
    open_end = await client.get(url, headers={**user.headers, "Range": f"bytes={size - 3}-"})
    assert open_end.content == PDF[-3:]
    clipped = await client.get(url, headers={**user.headers, "Range": f"bytes=0-{size + 100}"})
    assert clipped.status_code == 206
    assert clipped.content == PDF

    beyond = await client.get(url, headers={**user.headers, "Range": f"bytes={size}-"})
    assert_error(beyond, 416, "RANGE_NOT_SATISFIABLE")
    assert beyond.headers["content-range"] == f"bytes */{size}"

    # Several ranges or nonsense: the whole file, as RFC 9110 allows.
    multi = await client.get(url, headers={**user.headers, "Range": "bytes=0-1,5-6"})
    assert multi.status_code == 200
    assert multi.content == PDF
    stale = await client.get(
        url, headers={**user.headers, "Range": "bytes=0-1", "If-Range": '"old"'}
    )
    assert stale.status_code == 200


async def test_file_private_is_hidden_from_others(client, make_user) -> None:
    owner = await make_user()
    other = await make_user()
    manager = await make_user("MANAGER")
    data = await _uploaded(client, owner)

    for path in (f"{API}/{data['id']}", f"{API}/download/{data['id']}"):
        assert_error(await client.get(path, headers=other.headers), 404, "NOT_FOUND")
        assert_error(await client.get(path), 404, "NOT_FOUND")
        assert (await client.get(path, headers=owner.headers)).status_code == 200
        assert (await client.get(path, headers=manager.headers)).status_code == 200
    # Exactly like a file that does not exist.
    missing = await client.get(f"{API}/{uuid.uuid4()}", headers=other.headers)
    assert_error(missing, 404, "NOT_FOUND")
    assert (
        missing.json()["error"]["message"]
        == (await client.get(f"{API}/{data['id']}", headers=other.headers)).json()["error"][
            "message"
        ]
    )


async def test_file_public_is_readable_by_anyone(client, make_user, app) -> None:
    owner = await make_user()
    data = await _uploaded(
        client, owner, content=png_bytes(300, 300), name="a.png", visibility="public"
    )
    # (sent as application/pdf by the client: the bytes decide)
    assert data["content_type"] == "image/png"
    # Under public/, the only prefix a CDN may serve.
    objects = stored_objects(app)
    assert len(objects) == 4
    assert all(key.startswith("public/") for key in objects), objects

    meta = await client.get(f"{API}/{data['id']}")
    assert meta.status_code == 200
    assert meta.json()["data"]["visibility"] == "public"
    thumb = await client.get(f"{API}/download/{data['id']}", params={"size": 150})
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/webp"
    assert "public" in thumb.headers["cache-control"]
    no_such_size = await client.get(f"{API}/download/{data['id']}", params={"size": 123})
    assert_error(no_such_size, 404, "THUMBNAIL_NOT_FOUND")


async def test_file_delete_by_owner_removes_bytes_and_thumbnails(client, make_user, app) -> None:
    owner = await make_user()
    data = await _uploaded(client, owner, content=png_bytes(500, 400), name="p.png")
    assert len(stored_objects(app)) == 4

    response = await client.delete(f"{API}/{data['id']}", headers=owner.headers)

    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"id": data["id"], "deleted": True}
    assert stored_objects(app) == []
    assert await row_counts(app) == (0, 0)
    assert_error(await client.get(f"{API}/{data['id']}", headers=owner.headers), 404, "NOT_FOUND")
    again = await client.delete(f"{API}/{data['id']}", headers=owner.headers)
    assert_error(again, 404, "NOT_FOUND")


async def test_file_delete_by_others(client, make_user, app) -> None:
    owner = await make_user()
    other = await make_user()
    vendor = await make_user("VENDOR")
    manager = await make_user("MANAGER")
    private = await _uploaded(client, owner)
    public = await _uploaded(client, owner, visibility="public")

    assert_error(await client.delete(f"{API}/{private['id']}"), 401, "UNAUTHENTICATED")
    assert_error(
        await client.delete(f"{API}/{private['id']}", headers=other.headers), 404, "NOT_FOUND"
    )
    for user in (other, vendor):
        assert_error(
            await client.delete(f"{API}/{public['id']}", headers=user.headers), 403, "FORBIDDEN"
        )
    assert len(stored_objects(app)) == 2

    for data in (private, public):
        response = await client.delete(f"{API}/{data['id']}", headers=manager.headers)
        assert response.status_code == 200, response.text
    assert stored_objects(app) == []


async def test_file_client_reads_metadata_as_a_service(client, make_user, container) -> None:
    owner = await make_user()
    data = await _uploaded(client, owner)  # private: a service still sees it
    files = container.client(FileClient, "product")

    found = await files.get(uuid.UUID(data["id"]))

    assert str(found.id) == data["id"]
    assert found.sha256 == data["sha256"]
    with pytest.raises(NotFound) as caught:
        await files.get(uuid.uuid4())
    assert caught.value.code == "NOT_FOUND"


async def test_file_upload_publishes_events(client, make_user, container) -> None:
    from sqlalchemy import select

    owner = await make_user()
    data = await _uploaded(client, owner)
    await client.delete(f"{API}/{data['id']}", headers=owner.headers)

    outbox = container.events("file").outbox
    async with container.db("file").read_session() as session:
        rows = (await session.execute(select(outbox.c.event_type, outbox.c.payload))).all()
    assert [r.event_type for r in rows] == ["file.uploaded.v1", "file.deleted.v1"]
    assert all(r.payload["file_id"] == data["id"] for r in rows)
