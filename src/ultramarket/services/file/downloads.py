"""HTTP details of a download: ranges, ETags and Content-Disposition."""

from __future__ import annotations

import re
from urllib.parse import quote

from ultramarket.services.file.errors import RangeNotSatisfiable

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a ``Range`` header asks for, or None for the whole
    file. Several ranges or a malformed header are ignored (the whole file is sent,
    as RFC 9110 allows); a range outside the file raises RangeNotSatisfiable."""

    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - length), size - 1
    start = int(first)
    if start >= size:
        raise _unsatisfiable(size)
    end = int(last) if last else size - 1
    if end < start:
        return None
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        details=[{"size": size}], headers={"Content-Range": f"bytes */{size}"}
    )


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header matches (weak comparison)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in header.split(","))


def content_disposition(name: str, *, inline: bool) -> str:
    """``inline``/``attachment`` with an ASCII fallback name and the UTF-8 one."""
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\;%' else "_" for ch in name)
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
