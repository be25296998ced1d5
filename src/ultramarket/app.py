"""ASGI entry points (for uvicorn/granian workers, which import by name)."""

from __future__ import annotations

import os

from fastapi import FastAPI
from starlette.types import ASGIApp

from ultramarket import registry
from ultramarket.core.config import get_settings
from ultramarket.core.http import create_app

SERVICE_ENV = "ULTRAMARKET_SERVE_SERVICE"


def create() -> FastAPI:
    """The whole platform, or one service when ``ULTRAMARKET_SERVE_SERVICE`` names it."""
    settings = get_settings()
    only = os.environ.get(SERVICE_ENV)
    specs = registry.load_all([only] if only else None)
    title = f"UltraMarket {only} service" if only else "UltraMarket API"
    # A lone service with the in-process bus would deliver its events only to its own
    # handlers; there, `ultramarket worker` (all services) relays them instead.
    run_relay = settings.embedded_worker and not (only and settings.broker_url.startswith("memory"))
    return create_app(specs, settings, title=title, run_relay=run_relay)


def create_behind_proxy() -> ASGIApp:
    """``create()`` for granian, which does not read ``X-Forwarded-For`` itself (uvicorn
    does, with ``proxy_headers``): the client address is taken from it when the request
    comes from one of ``forwarded_allow_ips`` (the gateway), as uvicorn takes it."""
    from granian.utils.proxies import wrap_asgi_with_proxy_headers

    trusted = [host.strip() for host in get_settings().forwarded_allow_ips.split(",")]
    return wrap_asgi_with_proxy_headers(create(), trusted_hosts=trusted)  # type: ignore[no-any-return]
