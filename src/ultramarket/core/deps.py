"""FastAPI dependencies shared by every service.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a worker
thread, which costs more than the work these do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.config import Settings
from ultramarket.core.container import Container


def container_of(request: Request) -> Container:
    """The container, for a route or dependency that has the request anyway (each
    dependency FastAPI resolves costs more than this lookup)."""
    container: Container = request.app.state.container
    return container


async def get_container(request: Request) -> Container:
    return container_of(request)


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ContainerDep = Annotated[Container, Depends(get_container)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def unit_of_work(service: str) -> Any:
    """The write session of ``service`` for one request: commits before the response
    is sent, rolls back on error."""

    async def dependency(request: Request) -> AsyncIterator[AsyncSession]:
        async with request.app.state.container.db(service).session() as session:
            yield session

    return Depends(dependency, scope="function")


def read_session(service: str) -> Any:
    """A read-only session of ``service`` (never takes SQLite's write lock)."""

    async def dependency(request: Request) -> AsyncIterator[AsyncSession]:
        async with request.app.state.container.db(service).read_session() as session:
            yield session

    return Depends(dependency, scope="function")


def ip_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def client_ip(request: Request) -> str:
    return ip_of(request)


ClientIP = Annotated[str, Depends(client_ip)]
