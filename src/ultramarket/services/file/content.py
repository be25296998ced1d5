"""What an upload really is: a safe display name, the type from its bytes, and
thumbnails of images. Pure functions; the blocking ones run in a worker thread."""

from __future__ import annotations

import codecs
import hashlib
import io
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import BinaryIO

import filetype
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

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
    .txt/.csv name, confirmed later by :class:`TextCheck` over the whole file.

    Some signatures are two or three letters (``BM`` bitmap, ``MZ`` program, ``ID3``
    audio) that ordinary text can start with ("BMW,320i"): for a .txt/.csv name a
    type that is not accepted falls back to text, and the text check decides (the
    real thing is binary and refused there)."""

    kind = filetype.guess(head)
    mime: str | None = None if kind is None else kind.mime
    if mime == "image/jpg":
        mime = "image/jpeg"
    if mime is not None and mime in allowed:
        return mime
    text_type = TEXT_TYPES.get(extension(name))
    if text_type is not None and text_type in allowed:
        return text_type
    if mime is not None:
        raise FileTypeNotAllowed(f"Files of type {mime} are not accepted")
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


def make_thumbnails(data: BinaryIO, sizes: list[int], fmt: str, max_pixels: int) -> ImageInfo:
    """Decode the image (refusing decompression bombs) and fit it into each box.
    Blocking: call it in a worker thread.

    Memory: about one decoded image at a time. A JPEG is decoded already reduced when
    the largest box allows (``draft``), the EXIF rotation happens in place, an image
    with alpha is reduced a band at a time, and the largest thumbnail is made first,
    each smaller one from the one before it."""

    boxes = sorted(set(sizes), reverse=True)
    try:
        data.seek(0)
        # Not ``with``: the caller owns ``data``, and dropping the last reference to
        # the full-size image is what frees its pixels.
        image: Image.Image = Image.open(data)
        width, height = image.size
        # Checked from the header, before any pixel is decoded (Pillow's own
        # MAX_IMAGE_PIXELS guard stays on as a second line).
        if width * height > max_pixels:
            raise FileTypeNotAllowed(
                f"Image too large: {width}x{height} exceeds {max_pixels} pixels"
            )
        # Thumbnail sizes come from the upright full size, not from a reduced decode.
        turned = image.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8)
        upright = (height, width) if turned else (width, height)
        thumbs = []
        if boxes:
            image.draft(None, _draft_size(width, height, boxes[0]))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        if boxes:
            image = _reduced(image, boxes[0])
        for size in boxes:
            fitted = _fit(*upright, size)
            if image.size != fitted:
                image = image.resize(fitted, Image.Resampling.LANCZOS, reducing_gap=2.0)
            thumbs.append(_encode(image, size, fmt))
    except FileTypeNotAllowed:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FileTypeNotAllowed("Image too large (decompression bomb)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise FileTypeNotAllowed("The image could not be decoded") from None
    return ImageInfo(width=width, height=height, thumbnails=thumbs[::-1])


def _fit(width: int, height: int, box: int) -> tuple[int, int]:
    """The size ``Image.thumbnail((box, box))`` gives a ``width`` x ``height`` image:
    never enlarged, the other side rounded to keep the aspect ratio closest."""
    if width <= box and height <= box:
        return width, height
    aspect = width / height
    if aspect <= 1:
        near = box * aspect
        side = min(math.floor(near), math.ceil(near), key=lambda n: abs(aspect - n / box))
        return max(1, side), box
    near = box / aspect
    side = min(math.floor(near), math.ceil(near), key=lambda n: abs(aspect - box / n) if n else 0)
    return box, max(1, side)


def _draft_size(width: int, height: int, box: int) -> tuple[int, int]:
    """What a JPEG decoder may reduce the image to: twice the largest thumbnail (the
    ``reducing_gap`` of the resize). A square box fits either orientation."""
    scale = 2 * box / max(width, height)
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def _reduced(image: Image.Image, box: int) -> Image.Image:
    """An RGBA or LA image reduced by the whole factor the resize would first reduce
    it by (box averages), a band of rows at a time: Pillow premultiplies the alpha of
    what it reduces or resizes into a copy, full-size for the whole image, small for a
    band. Other images come back as they are (their resize makes no full-size copy)."""
    factor = int(max(image.size) / box / 2)  # the resize's reducing_gap of 2
    if factor < 2 or image.mode not in ("RGBA", "LA"):
        return image
    width, height = image.size
    reduced = Image.new(image.mode, (-(-width // factor), -(-height // factor)))
    rows = 64 * factor  # a multiple of the factor: the same blocks as one reduce()
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(top + rows, height)))
        reduced.paste(band.reduce(factor), (0, top // factor))
    return reduced


def _encode(image: Image.Image, size: int, fmt: str) -> Thumbnail:
    """The thumbnail's bytes; ``image`` itself is left as it is."""
    out = io.BytesIO()
    if fmt == "jpeg":
        if image.mode not in ("RGB", "L"):
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, (255, 255, 255))
            image.paste(rgba, mask=rgba.getchannel("A"))
        image.save(out, "JPEG", quality=85, optimize=True)
        content_type = "image/jpeg"
    else:
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA")
        image.save(out, "WEBP", quality=82, method=4)
        content_type = "image/webp"
    return Thumbnail(
        size=size,
        data=out.getvalue(),
        content_type=content_type,
        width=image.width,
        height=image.height,
    )
