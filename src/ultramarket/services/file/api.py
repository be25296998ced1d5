"""HTTP routes of the file service: parse, authorise, call FileService, shape the reply."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, File, Form, Header, Query, UploadFile
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from ultramarket.core.deps import ContainerDep
from ultramarket.core.schemas import Envelope
from ultramarket.core.security import CurrentPrincipal, OptionalPrincipal, Principal, require
from ultramarket.core.service import ServiceRouter
from ultramarket.services.file.downloads import content_disposition, etag_matches, parse_range
from ultramarket.services.file.schemas import FileDeletedRead, FileRead, Visibility
from ultramarket.services.file.service import FileService
from ultramarket.services.file.storage import Storage

router = ServiceRouter(prefix="/api/v1/files", tags=["files"])

STORAGE = "file.storage"
IMAGE_JOBS = "file.image_jobs"


def storage_of(container: ContainerDep) -> Storage:
    storage: Storage = container.extras[STORAGE]
    return storage


async def file_service(container: ContainerDep) -> FileService:
    return FileService(
        container.db("file"),
        storage_of(container),
        container.settings.files,
        publisher=container.publisher("file"),
        public_url=container.settings.public_url,
        image_jobs=container.extras[IMAGE_JOBS],
    )


Files = Annotated[FileService, Depends(file_service)]
# Customers, vendors and MANAGER hold file:write; ADMIN and platform services hold "*".
Writer = Annotated[Principal, require("file:write")]

NOT_FOUND = {404: {"description": "No such file, or a private file that is not yours"}}
UPLOAD_ERRORS = {
    401: {"description": "Not authenticated"},
    403: {"description": "Missing permission file:write"},
    413: {"description": "Larger than the upload limit (PAYLOAD_TOO_LARGE)"},
    415: {"description": "Type not allowed, detected from the bytes (UNSUPPORTED_MEDIA_TYPE)"},
    422: {"description": "Invalid form fields, or an empty file"},
    503: {"description": "Too many images waiting for thumbnails (UNAVAILABLE, Retry-After)"},
}


@router.post(
    "/upload",
    status_code=201,
    response_model=Envelope[FileRead],
    responses=UPLOAD_ERRORS,
    summary="Upload a file (multipart field `file`); images get thumbnails",
)
async def upload(
    files: Files,
    principal: Writer,
    file: Annotated[UploadFile, File(description="The file")],
    visibility: Annotated[Visibility, Form()] = "private",
    purpose: Annotated[
        str | None, Form(max_length=50, pattern=r"^[a-z0-9_.-]+$", description="e.g. product")
    ] = None,
) -> Envelope[FileRead]:
    try:
        stored, variants = await files.upload(
            principal, file, visibility=visibility, purpose=purpose
        )
    finally:
        await file.close()
    return Envelope(data=files.read_model(stored, variants))


@router.get(
    "/download/{file_id}",
    responses={
        **NOT_FOUND,
        200: {"content": {"application/octet-stream": {}}, "description": "The bytes"},
        206: {"description": "Partial content (a single `Range: bytes=a-b`)"},
        302: {"description": "Redirect to a signed URL (S3 with signed downloads)"},
        304: {"description": "Not modified (`If-None-Match` matched the ETag)"},
        416: {"description": "Range not satisfiable"},
    },
    response_class=Response,
    summary="Download a file, or with `size` one of its thumbnails",
)
async def download(
    file_id: uuid.UUID,
    files: Files,
    principal: OptionalPrincipal,
    size: Annotated[int | None, Query(ge=1, le=10_000, description="Thumbnail size")] = None,
    range_: Annotated[str | None, Header(alias="range")] = None,
    if_none_match: Annotated[str | None, Header()] = None,
    if_range: Annotated[str | None, Header()] = None,
) -> Response:
    target = await files.target(principal, file_id, size)
    inline = target.content_type.startswith("image/") or target.content_type == "application/pdf"
    disposition = content_disposition(target.name, inline=inline)
    cache = "public, max-age=86400" if target.file.visibility == "public" else "private, no-cache"
    if files.config.signed_downloads:
        url = await files.storage.presigned_url(
            target.key, filename=target.name, content_type=target.content_type,
            disposition=disposition,
        )  # fmt: skip
        if url is not None:
            return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})

    etag = f'"{target.sha256}"'
    headers = {
        "ETag": etag,
        "Cache-Control": cache,
        "Accept-Ranges": "bytes",
        "Content-Disposition": disposition,
        # Keeps the platform's gzip off: Content-Length and ranges are of the stored bytes.
        "Content-Encoding": "identity",
    }
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    byte_range = None
    if if_range is None or if_range.strip() == etag:
        byte_range = parse_range(range_, target.size)
    if byte_range is None:
        start, end, status = 0, target.size - 1, 200
    else:
        (start, end), status = byte_range, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{target.size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(
        files.storage.open(target.key, start, end),
        status_code=status,
        media_type=target.content_type,
        headers=headers,
    )


@router.get(
    "/{file_id}",
    response_model=Envelope[FileRead],
    responses=NOT_FOUND,
    summary="A file's metadata (public files: anyone; private: the owner or staff)",
)
async def get_file(
    file_id: uuid.UUID, files: Files, principal: OptionalPrincipal
) -> Envelope[FileRead]:
    return Envelope(data=await files.get(principal, file_id))


@router.delete(
    "/{file_id}",
    response_model=Envelope[FileDeletedRead],
    responses={
        **NOT_FOUND,
        401: {"description": "Not authenticated"},
        403: {"description": "Not the owner and not MANAGER+"},
    },
    summary="Delete a file, its thumbnails and its bytes (owner or MANAGER+)",
)
async def delete_file(
    file_id: uuid.UUID, files: Files, principal: CurrentPrincipal
) -> Envelope[FileDeletedRead]:
    await files.delete(principal, file_id)
    return Envelope(data=FileDeletedRead(id=file_id))
