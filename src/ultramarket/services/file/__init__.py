"""File service (port 3015): uploads, metadata, downloads and thumbnails, on local
disk or an S3-compatible bucket."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from ultramarket.core.container import Container
from ultramarket.core.service import ServiceSpec
from ultramarket.services.file.models import EVENTS, Base


def _routers() -> list[APIRouter]:
    from ultramarket.services.file.api import router

    return [router]


async def _startup(container: Container) -> None:
    from PIL import Image

    from ultramarket.services.file.api import IMAGE_JOBS, STORAGE
    from ultramarket.services.file.service import ImageJobs
    from ultramarket.services.file.storage import make_storage

    config = container.settings.files
    # Pillow's own bomb guard (an error at twice this) stays on behind our check.
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, config.max_image_pixels)
    container.extras[STORAGE] = make_storage(container.settings)
    # Decoding and resizing images is CPU work: a few at a time, off the event loop,
    # and a bounded queue behind them (each waiting upload holds its bytes).
    container.extras[IMAGE_JOBS] = ImageJobs(workers=2, waiting=8)


SERVICE = ServiceSpec(
    name="file",
    port=3015,
    routers=_routers,
    metadata=Base.metadata,
    events=EVENTS,
    migrations=Path(__file__).parent / "migrations",
    on_startup=_startup,
    prefixes=("/api/v1/files",),
)
