"""What an upload really is: a safe display name, the type from its bytes, and
thumbnails of images. Pure functions; the blocking ones run in a worker thread."""

from __future__ import annotations

import codecs
import hashlib
import io
import re
import unicodedata
from dataclasses import dataclass

import filetype
from PIL import Image, ImageOps, UnidentifiedImageError

from ultramarket.services.file.errors import FileTypeNotAllowed

# Enough bytes for every signature ``filetype`` knows.
HEAD_BYTES = 8192
TEXT_TYPES = {".txt": "text/plain", ".csv": "text/csv"}
IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}
MAX_NAME = 255
_SEPARATORS = re.compile(r"[\\/]")


def safe_name(raw: str | None) -> str:
    """The display name: the last path component, without control or format
    characters, leading dots or surrounding blanks, at most 255 characters."""

    name = unicodedata.normalize("NFC", raw or "")
    name = _SEPARATORS.split(name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    name = name.strip().lstrip(".").strip()
    if not name:
        return "file"
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16 and stem:
            name = stem[: MAX_NAME - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_NAME]
    return name


def extension(name: str) -> str:
    _, dot, ext = name.rpartition(".")
    return f".{ext.lower()}" if dot else ""


def detect_type(head: bytes, name: str, allowed: list[str]) -> str:
    """The content type from the first bytes; text (no magic number) only for a
    .txt/.csv name, confirmed later by :class:`TextCheck` over the whole file."""

    kind = filetype.guess(head)
    if kind is not None:
        mime = "image/jpeg" if kind.mime == "image/jpg" else kind.mime
        if mime in allowed:
            return mime
        raise FileTypeNotAllowed(f"Files of type {mime} are not accepted")
    text_type = TEXT_TYPES.get(extension(name))
    if text_type is not None and text_type in allowed:
        return text_type
    raise FileTypeNotAllowed("Unrecognised file type")


class TextCheck:
    """Streaming check that a text upload is UTF-8 with no control characters but
    tab, CR and LF (binary data named ``.txt`` is refused)."""

    _BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")

    def feed(self, chunk: bytes, *, final: bool = False) -> None:
        try:
            text = self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError:
            raise FileTypeNotAllowed("Text files must be UTF-8") from None
        if self._BAD.search(text):
            raise FileTypeNotAllowed("Binary data is not accepted as text")


@dataclass(frozen=True)
class Thumbnail:
    size: int
    data: bytes
    content_type: str
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    thumbnails: list[Thumbnail]


def make_thumbnails(data: bytes, sizes: list[int], fmt: str, max_pixels: int) -> ImageInfo:
    """Decode the image (refusing decompression bombs) and fit it into each box.
    Blocking: call it in a worker thread."""

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            # Checked from the header, before any pixel is decoded (Pillow's own
            # MAX_IMAGE_PIXELS guard stays on as a second line).
            if width * height > max_pixels:
                raise FileTypeNotAllowed(
                    f"Image too large: {width}x{height} exceeds {max_pixels} pixels"
                )
            image.load()
            upright = ImageOps.exif_transpose(image)
            thumbs = [_fit(upright, size, fmt) for size in sorted(set(sizes))]
    except FileTypeNotAllowed:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FileTypeNotAllowed("Image too large (decompression bomb)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise FileTypeNotAllowed("The image could not be decoded") from None
    return ImageInfo(width=width, height=height, thumbnails=thumbs)


def _fit(image: Image.Image, size: int, fmt: str) -> Thumbnail:
    copy = image.copy()
    copy.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if fmt == "jpeg":
        if copy.mode not in ("RGB", "L"):
            copy = copy.convert("RGBA")
            background = Image.new("RGB", copy.size, (255, 255, 255))
            background.paste(copy, mask=copy.getchannel("A"))
            copy = background
        copy.save(out, "JPEG", quality=85, optimize=True)
        content_type = "image/jpeg"
    else:
        if copy.mode not in ("RGB", "RGBA"):
            copy = copy.convert("RGBA")
        copy.save(out, "WEBP", quality=82, method=4)
        content_type = "image/webp"
    return Thumbnail(
        size=size,
        data=out.getvalue(),
        content_type=content_type,
        width=copy.width,
        height=copy.height,
    )
