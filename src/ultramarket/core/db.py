"""Engine, sessions and the unit of work; one schema per service.

On PostgreSQL each service's tables live in a schema named after the service. On
SQLite (the embedded default) there are no schemas: one file holds every table and
the engine translates each service schema to "no schema", so table names are unique
across the platform.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Insert,
    MetaData,
    Row,
    Select,
    Table,
    TypeDecorator,
    Update,
    event,
    exists,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, make_transient_to_detached, mapped_column
from sqlalchemy.pool import NullPool

log = logging.getLogger("ultramarket.db")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class ModelBase(DeclarativeBase):
    """Root of all models; each service derives its own base with its own schema."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


def service_base(schema: str) -> type[ModelBase]:
    """A declarative base whose tables live in ``schema`` (the service's name)."""

    metadata = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
    base = type(f"{schema.title()}Base", (ModelBase,), {"__abstract__": True, "metadata": metadata})
    return base


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def after_commit(session: AsyncSession, callback: Callable[[], Awaitable[None]]) -> None:
    """Run ``callback`` once the unit of work of ``session`` has committed (never if it
    rolls back): cache invalidation and other follow-ups that must see the new state."""
    session.info.setdefault("after_commit", []).append(callback)


async def release_connection(session: AsyncSession) -> None:
    """Hand a read session's connection back to the pool before calling another service
    (what was loaded stays loaded; the next query takes a connection again).

    In all-in-one mode the services share one pool, and the called service needs a
    connection of its own: requests that each hold one while they wait for another can
    drain the pool. A write session keeps its transaction (and connection): no-op."""
    if session.info.get("read_only") and session.in_transaction():
        await session.commit()


def insert_for(session: AsyncSession, table: Any) -> Any:
    """The dialect's own INSERT for ``table`` (a model or Table), which can say
    ``ON CONFLICT DO NOTHING / DO UPDATE`` on PostgreSQL and SQLite alike."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


def columns_of(obj: Any) -> dict[str, Any]:
    """A mapped object's values by column, as its INSERT writes them: the Python-side
    defaults of the columns left unset are filled in (on the object too), for writes
    that do not go through a session's flush (``write_together``, ``write_if``)."""
    values: dict[str, Any] = {}
    for column in obj.__table__.columns:
        value = getattr(obj, column.key, None)
        default = column.default
        if value is None and default is not None:
            value = default.arg if default.is_scalar else default.arg(None)
            setattr(obj, column.key, value)
        if value is not None:
            values[column.key] = value
    return values


def adopt(session: AsyncSession, obj: Any) -> None:
    """A mapped object whose row a statement has just inserted (``columns_of`` filled
    it) joins ``session`` as persistent: later changes flush as UPDATEs, and no second
    INSERT is made."""
    for column in obj.__table__.columns:  # every column loaded: nothing to lazy-load
        setattr(obj, column.key, getattr(obj, column.key, None))
    make_transient_to_detached(obj)
    session.add(obj)


def inserts_of(*objects: Any) -> list[Insert]:
    """The INSERTs of mapped objects, one a row: SQLAlchemy caches the compiled form of
    a single-row INSERT, not of a multi-row one."""
    return [insert(obj.__table__).values(**columns_of(obj)) for obj in objects]


async def write_if_in(
    session: AsyncSession,
    guard: Update | Insert,
    *rows: tuple[Table, dict[str, Any]],
    updates: Sequence[Update] = (),
) -> Row[Any] | None:
    """``Database.write_if`` inside the caller's unit of work (and ``updates`` run too,
    only when the guard matched): on PostgreSQL one statement, elsewhere the guard and
    then (when it matched) the rest."""
    if session.get_bind().dialect.name == "postgresql":
        statement = _guarded(guard, rows, updates)
        matched: Row[Any] | None = (await session.execute(statement)).first()
        return matched
    row = (await session.execute(guard)).first()
    if row is not None:
        for table, values in rows:
            await session.execute(insert(table).values(**values))
        for update in updates:
            await session.execute(update)
    return row


def _guarded(
    guard: Update | Insert,
    rows: Iterable[tuple[Table, dict[str, Any]]],
    updates: Sequence[Update] = (),
) -> Select[Any]:
    """One PostgreSQL statement: the guard as a CTE, each row inserted FROM it and each
    update conditioned on it (so only when it matched), the guard's rows selected."""
    matched = guard.cte("guard")
    when_matched = exists(select(literal(1)).select_from(matched))
    inserts = [
        insert(table).from_select(
            list(values),
            select(*(literal(v, table.c[k].type).label(k) for k, v in values.items())).select_from(
                matched
            ),
        )
        for table, values in rows
    ]
    writes = [*inserts, *(update.where(when_matched) for update in updates)]
    return select(matched).add_cte(
        *(statement.cte(f"write_{n}") for n, statement in enumerate(writes))
    )


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


class Database:
    """One engine and its session factories.

    ``session()`` is the unit of work for writes: it commits when the block ends
    and rolls back on error. On SQLite it starts with ``BEGIN IMMEDIATE`` so
    concurrent writers queue on the lock instead of failing on upgrade.
    ``read_session()`` is for reads and never takes the write lock.
    """

    def __init__(
        self,
        url: str,
        *,
        schemas: Iterable[str] = (),
        pool_size: int = 10,
        max_overflow: int = 10,
        echo: bool = False,
    ) -> None:
        self.url = url
        self.schemas = tuple(schemas)
        self.dialect = "sqlite" if is_sqlite(url) else "postgresql"
        options: dict[str, Any] = {}
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            options["schema_translate_map"] = dict.fromkeys(self.schemas)
            kwargs["connect_args"] = {"timeout": 30}
            if path == ":memory:":
                kwargs["poolclass"] = NullPool
            else:
                # A file connection is cheap, and in-process calls nest (a request's
                # session open while the service it calls needs one): a bounded pool
                # could run dry with every holder waiting on it. Writers still queue
                # on SQLite's one write lock.
                kwargs.update(pool_size=pool_size, max_overflow=-1)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800)
        self.engine: AsyncEngine = create_async_engine(url, execution_options=options, **kwargs)
        if self.dialect == "sqlite":
            _install_sqlite_pragmas(self.engine)
        write_engine = self.engine.execution_options(ultramarket_write=True)
        self._writer = async_sessionmaker(write_engine, expire_on_commit=False)
        # Reads on PostgreSQL run in autocommit: one round trip per query instead of
        # BEGIN/SELECT/ROLLBACK. SQLite reads keep a (cheap, lock-free) transaction.
        read_engine = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.dialect == "postgresql"
            else self.engine
        )
        self._read_engine = read_engine
        # Single statements that write (write_together, write_if, run_statement) run in
        # autocommit on PostgreSQL: each is its own transaction, with no BEGIN/COMMIT
        # (the same engine as reads today; kept apart so reads may move to a replica).
        self._autocommit_engine = read_engine
        self._compiled: dict[Select[Any], tuple[str, tuple[str, ...]]] = {}
        self._reader = async_sessionmaker(read_engine, expire_on_commit=False)
        # Called with the services whose outbox a commit wrote (wakes the relay).
        self.after_commit_hooks: list[Callable[[set[str]], None]] = []

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._writer() as session:
            try:
                yield session
                await session.commit()
            except BaseException as exc:
                # An error may ask to keep what was written before it (an audit row,
                # a revoked token family); everything else is rolled back.
                if getattr(exc, "persist_changes", False):
                    await session.commit()
                else:
                    await session.rollback()
                raise
        if written := session.info.pop("outbox_written", None):
            self.outbox_written(*written)
        for callback in session.info.pop("after_commit", []):
            try:
                await callback()
            except Exception:
                # The write is committed; a failed follow-up (a cache invalidation with
                # Redis down) must not turn it into an error the client would retry.
                log.exception("after-commit callback failed")

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        async with self._reader() as session:
            session.info["read_only"] = True
            try:
                yield session
            finally:
                # Detach first: what was read stays readable after the block (the
                # rollback would otherwise expire it).
                session.expunge_all()
                await session.rollback()

    async def fetch_one(self, statement: Select[Any], **params: Any) -> Mapping[str, Any] | None:
        """One row of a Core ``select`` (with ``bindparam``s filled from ``params``) on a
        pooled connection and no ORM session: the hot read path.

        On PostgreSQL the statement is compiled once and run by the driver itself
        (asyncpg), which skips SQLAlchemy's per-execution work; columns must then be
        of types the driver returns as is (UUID, text, numbers, timestamptz, JSON).
        """
        async with self._read_engine.connect() as conn:
            if self.dialect != "postgresql":
                row = (await conn.execute(statement, params)).mappings().first()
                return None if row is None else dict(row)
            compiled = self._compiled.get(statement)
            if compiled is None:
                done = statement.compile(dialect=self.engine.dialect)
                compiled = self._compiled[statement] = (done.string, tuple(done.positiontup or ()))
            raw = await conn.get_raw_connection()
            record = await raw.driver_connection.fetchrow(  # type: ignore[union-attr]
                compiled[0], *(params[name] for name in compiled[1])
            )
            return None if record is None else dict(record)

    async def write_together(self, *statements: Insert) -> None:
        """INSERTs that land together or not at all: on PostgreSQL ONE statement (the
        inserts as data-modifying CTEs, in autocommit: one round trip, no BEGIN and
        COMMIT); elsewhere one transaction. A constraint violation undoes them all."""
        if self.dialect == "postgresql":
            combined = select(literal(1)).add_cte(
                *(statement.cte(f"write_{n}") for n, statement in enumerate(statements))
            )
            async with self._autocommit_engine.connect() as conn:
                await conn.execute(combined)
            return
        async with self.session() as session:
            for statement in statements:
                await session.execute(statement)

    async def write_if(self, guard: Update, *rows: tuple[Table, dict[str, Any]]) -> Row[Any] | None:
        """``guard`` (a conditional UPDATE ... RETURNING) and, only when it matched, the
        ``rows`` (table, values) inserted: on PostgreSQL ONE statement in autocommit
        (each insert selects from the guard's CTE), elsewhere one transaction. The
        guard's row, or None when it matched nothing (and nothing was written)."""
        if self.dialect == "postgresql":
            async with self._autocommit_engine.connect() as conn:
                matched: Row[Any] | None = (await conn.execute(_guarded(guard, rows))).first()
                return matched
        async with self.session() as session:
            return await write_if_in(session, guard, *rows)

    async def run_statement(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        """PostgreSQL only: one SQL statement (``$1``-style parameters) run by the driver
        in autocommit, so it is its own transaction; its rows.

        For a hot write on a contended row: a single statement (data-modifying CTEs)
        holds the row lock only while the server runs it, not across round trips and
        event-loop turns. Call ``outbox_written()`` when it wrote outbox rows."""
        if self.dialect != "postgresql":
            raise RuntimeError("run_statement is for PostgreSQL")
        async with self._autocommit_engine.connect() as conn:
            raw = await conn.get_raw_connection()
            records = await raw.driver_connection.fetch(sql, *args)  # type: ignore[union-attr]
            return [dict(record) for record in records]

    def outbox_written(self, *services: str) -> None:
        """Wake the outbox relay: the outboxes of ``services`` have new events (what a
        unit of work does when it wrote events)."""
        for hook in self.after_commit_hooks:
            hook(set(services))

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def create_schemas(self) -> None:
        if self.dialect != "postgresql":
            return
        async with self.engine.begin() as conn:
            for schema in self.schemas:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _install_sqlite_pragmas(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # The driver runs in autocommit mode; we open transactions ourselves so a
        # writer takes the lock up front (no SQLITE_BUSY on a read-to-write upgrade).
        if conn.get_execution_options().get("ultramarket_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
