"""The list of services: which exist, and how to load their descriptors."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from ultramarket.core.ports import SERVICE_PORTS
from ultramarket.core.service import ServiceSpec

# Services implemented so far, in start-up order (auth first: it holds the keys).
SERVICES: tuple[str, ...] = ("auth", "user")


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
