"""The list of services: which exist, and how to load their descriptors."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable

from ultramarket.core.ports import SERVICE_PORTS
from ultramarket.core.service import ServiceSpec

# Every service of the platform, in start-up order (auth first: it holds the keys).
PLATFORM: tuple[str, ...] = (
    "auth", "user", "file", "product", "inventory", "cart", "order", "payment",
    "search", "notification", "shipping", "review", "analytics", "recommendation", "admin",
)  # fmt: skip


def _exists(name: str) -> bool:
    """A service exists once its package has an ``__init__.py`` (exporting SERVICE)."""
    spec = importlib.util.find_spec(f"ultramarket.services.{name}")
    return spec is not None and spec.origin is not None


SERVICES: tuple[str, ...] = tuple(name for name in PLATFORM if _exists(name))


def load(name: str) -> ServiceSpec:
    if name not in SERVICES:
        known = ", ".join(SERVICES)
        raise KeyError(f"unknown service {name!r} (known: {known})")
    module = importlib.import_module(f"ultramarket.services.{name}")
    spec: ServiceSpec = module.SERVICE
    return spec


def load_all(names: Iterable[str] | None = None) -> list[ServiceSpec]:
    return [load(name) for name in (names or SERVICES)]


def port_of(name: str) -> int:
    return SERVICE_PORTS[name]
