"""Domain errors of the file service."""

from __future__ import annotations

from ultramarket.core.errors import (
    DomainError,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
)


class FileNotFound(NotFound):
    code = "NOT_FOUND"
    message = "No such file"


class FileTooLarge(PayloadTooLarge):
    message = "The file is larger than the upload limit"


class FileTypeNotAllowed(UnsupportedMediaType):
    message = "This type of file is not accepted"


class RangeNotSatisfiable(DomainError):
    status_code = 416
    code = "RANGE_NOT_SATISFIABLE"
    message = "The requested range is outside the file"


class ImageQueueFull(Unavailable):
    """Too many image uploads are already waiting for a thumbnail worker (503)."""

    message = "Too many images are being processed; try again shortly"

    def __init__(self, retry_after: int) -> None:
        super().__init__(headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = retry_after
