"""Test fixtures: every test gets a fresh shop on the embedded stack and, where the
servers answer, again on PostgreSQL + Redis.

Databases are cloned from a template migrated once per session (a file copy on
SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL), so each test is isolated
and starts in milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ultramarket import registry
from ultramarket.core.config import MailSettings, RateLimits, Settings
from ultramarket.core.container import Container
from ultramarket.core.http import create_app
from ultramarket.core.migrations import upgrade

pytest_plugins = ["tests.factories"]

PG_URL = os.environ.get(
    "ULTRAMARKET_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("ULTRAMARKET_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _answers(url: str, default_port: int) -> bool:
    rest = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = rest.partition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or default_port)), timeout=1):
            return True
    except OSError:
        return False


HAVE_PG = _answers(PG_URL, 5432) and not os.environ.get("ULTRAMARKET_TEST_SKIP_POSTGRES")
HAVE_REDIS = _answers(REDIS_URL, 6379) and not os.environ.get("ULTRAMARKET_TEST_SKIP_REDIS")
STACKS = ["embedded", "postgres"]


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"PostgreSQL at {PG_URL}: {'yes' if HAVE_PG else 'NO - postgres runs skipped'}",
        f"Redis at {REDIS_URL}: {'yes' if HAVE_REDIS else 'NO - redis runs use memory'}",
    ]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not HAVE_PG:
        terminalreporter.write_line(
            "SKIPPED PART: PostgreSQL did not answer; tests ran on the embedded stack only."
        )
    if not HAVE_REDIS:
        terminalreporter.write_line(
            "SKIPPED PART: Redis did not answer; cache and rate-limit tests used memory only."
        )


def _pg_admin_dsn() -> str:
    return PG_URL.replace("postgresql+asyncpg://", "postgresql://")


def _pg_url(database: str) -> str:
    base = _pg_admin_dsn().rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{database}"


async def _pg_exec(*statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_admin_dsn())
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even under a running loop."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coro).result()


def migrate_all(url: str) -> None:
    for spec in registry.load_all():
        upgrade(spec, url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ultramarket.db"
    migrate_all(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"um_tpl_{os.getpid()}"
    _run_sync(
        _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    )
    migrate_all(_pg_url(name))
    yield name
    _run_sync(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@asynccontextmanager
async def empty_pg_database() -> AsyncIterator[str]:
    """An empty PostgreSQL database of its own (no migrations run), dropped after."""
    if not HAVE_PG:
        pytest.skip("PostgreSQL is not running")
    name = f"um_mig_{uuid.uuid4().hex[:12]}"
    await _pg_exec(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        await _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    async with empty_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of its own (no migrations run), on SQLite and on PostgreSQL:
    for tests of migrations on a database that already holds rows."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    async with empty_pg_database() as url:
        yield url


@dataclass
class Stack:
    name: str
    database_url: str
    cache_url: str


@pytest.fixture(params=STACKS)
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    if request.param == "embedded":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "ultramarket.db"
        shutil.copyfile(template, path)
        yield Stack("embedded", f"sqlite+aiosqlite:///{path}", "memory://")
        return
    if not HAVE_PG:
        pytest.skip("PostgreSQL is not running")
    template_name: str = request.getfixturevalue("pg_template")
    name = f"um_t_{uuid.uuid4().hex[:12]}"
    await _pg_exec(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    cache = REDIS_URL if HAVE_REDIS else "memory://"
    try:
        yield Stack("postgres", _pg_url(name), cache)
    finally:
        await _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(stack: Stack, tmp_path: Path) -> Settings:
    # A Redis namespace of its own per test: no test (or parallel run) sees another's keys.
    return Settings(
        redis_namespace=f"test-{uuid.uuid4().hex[:12]}",
        environment="test",
        data_dir=tmp_path / "data",
        database_url=stack.database_url,
        cache_url=stack.cache_url,
        access_log=False,
        gc_tuning=False,  # freezing each test app's objects would pin them for the session
        log_level="WARNING",
        rate_limits=RateLimits(),
        mail=MailSettings(backend="file"),
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(registry.load_all(), settings, run_relay=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def container(app: FastAPI) -> Container:
    result: Container = app.state.container
    return result


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def drain(container: Container) -> Any:
    """Deliver every pending event now (the relay does this in the background in prod)."""

    async def run() -> int:
        total = 0
        while handled := await container.relay.run_once():
            total += handled
        return total

    return run
