"""The service descriptor each ``services/<name>/__init__.py`` exports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter
from sqlalchemy import MetaData
from starlette.routing import Match
from starlette.types import Scope

from ultramarket.core.events import EventTables, Subscription

if TYPE_CHECKING:
    from ultramarket.core.clients import InProcessClient, ServiceClient
    from ultramarket.core.container import Container


class ServiceRouter(APIRouter):
    """A service's router (``prefix`` required). The platform app includes every
    service's routers as they are, and FastAPI tries each route of each router in turn:
    about 200 µs a request for the services included last. This router declines a path
    outside its prefix at once. Include it with no further prefix."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if not path.startswith(self.prefix):
            return Match.NONE, {}
        return super().matches(scope)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int
    routers: Callable[[], list[APIRouter]]
    metadata: MetaData
    events: EventTables
    subscriptions: Callable[[], list[Subscription]] = list
    migrations: Path | None = None
    # Runs once at start-up with the container (keys, caches, warm-ups).
    on_startup: Callable[[Container], Awaitable[None]] | None = None
    # Background jobs run every ``seconds`` beside the outbox relay (sweepers, expiries):
    # started and stopped with it by the container, each run's failure logged, not fatal.
    periodic: tuple[tuple[float, Callable[[Container], Awaitable[None]]], ...] = ()
    prefixes: tuple[str, ...] = field(default_factory=tuple)
    # The in-process twins of this service's clients (all-in-one mode), by client class.
    twins: Callable[[], Mapping[type[ServiceClient], type[InProcessClient]]] = dict
