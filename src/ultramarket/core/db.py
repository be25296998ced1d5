"""Engine, sessions and the unit of work; one schema per service.

On PostgreSQL each service's tables live in a schema named after the service. On
SQLite (the embedded default) there are no schemas: one file holds every table and
the engine translates each service schema to "no schema", so table names are unique
across the platform.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import (
    JSON,
    DateTime,
    Insert,
    MetaData,
    Select,
    Table,
    TypeDecorator,
    Update,
    bindparam,
    event,
    exc,
    exists,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, make_transient_to_detached, mapped_column
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.compiler import SQLCompiler

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


def _python_default(default: Any) -> Any:
    """The value of a column's Python-side ``default`` or ``onupdate``, as SQLAlchemy
    computes it before it runs an INSERT or UPDATE itself."""
    return default.arg if default.is_scalar else default.arg(None)


def columns_of(obj: Any) -> dict[str, Any]:
    """A mapped object's values by column, as its INSERT writes them: the Python-side
    defaults of the columns left unset are filled in (on the object too), for writes
    that do not go through a session's flush (``write_together``, ``write_if``)."""
    values: dict[str, Any] = {}
    for column in obj.__table__.columns:
        value = getattr(obj, column.key, None)
        if value is None and column.default is not None:
            value = _python_default(column.default)
            setattr(obj, column.key, value)
        if value is not None:
            values[column.key] = value
    return values


def adopt(session: AsyncSession, obj: Any) -> None:
    """A mapped object whose row a statement has just inserted (``columns_of`` filled
    it) joins ``session`` as persistent: later changes flush as UPDATEs, and no second
    INSERT is made."""
    loaded = instance_state(obj).dict
    for column in obj.__table__.columns:  # every column loaded: nothing to lazy-load
        if column.key not in loaded:
            set_committed_value(obj, column.key, None)  # (a column left unset is NULL)
    make_transient_to_detached(obj)
    session.add(obj)


Rows = Sequence[tuple[Table, Mapping[str, Any]]]
# A statement that returns rows: a SELECT, or an INSERT/UPDATE ... RETURNING.
Returning = Select[Any] | Insert | Update
Shape = tuple[tuple[Table, tuple[str, ...]], ...]


def rows_of(*objects: Any) -> list[tuple[Table, dict[str, Any]]]:
    """Mapped objects as (table, values) rows for ``write_together``/``write_if``."""
    return [(obj.__table__, columns_of(obj)) for obj in objects]


def _shape(rows: Rows) -> Shape:
    return tuple((table, tuple(values)) for table, values in rows)


def _row_params(rows: Rows, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters of ``rows`` as the statements of ``_together``/``_guarded`` name
    them (``r<n>_<column>``), with ``params`` (the guard's and the updates')."""
    merged = dict(params or {})
    for n, (_table, values) in enumerate(rows):
        for key, value in values.items():
            merged[f"r{n}_{key}"] = value
    return merged


def _row_binds(n: int, table: Table, keys: tuple[str, ...]) -> dict[str, Any]:
    """The values of row ``n`` by column, bound as ``r<n>_<column>``."""
    return {key: bindparam(f"r{n}_{key}", type_=table.c[key].type) for key in keys}


@lru_cache(maxsize=256)
def _insert_of(n: int, table: Table, keys: tuple[str, ...]) -> Insert:
    """The INSERT of row ``n`` (its values bound as ``r<n>_<column>``), built once."""
    return insert(table).values(_row_binds(n, table, keys))


@lru_cache(maxsize=256)
def _together(shape: Shape) -> Select[Any]:
    """One PostgreSQL statement inserting rows of ``shape``: each INSERT a
    data-modifying CTE, its values bound by name."""
    return select(literal(1)).add_cte(
        *(_insert_of(n, table, keys).cte(f"write_{n}") for n, (table, keys) in enumerate(shape))
    )


@lru_cache(maxsize=256)
def _guarded(guard: Update | Insert, shape: Shape, updates: tuple[Update, ...] = ()) -> Select[Any]:
    """One PostgreSQL statement: the guard as a CTE, each row of ``shape`` inserted FROM
    it and each update conditioned on it (so only when it matched), the guard's rows
    selected. Built once a shape: the guard and updates are templates (their values are
    ``bindparam``s), the rows' values are bound as ``r<n>_<column>``."""
    matched = guard.cte("guard")
    when_matched = exists(select(literal(1)).select_from(matched))
    inserts = [
        insert(table).from_select(
            list(keys),
            select(
                *(bind.label(key) for key, bind in _row_binds(n, table, keys).items())
            ).select_from(matched),
        )
        for n, (table, keys) in enumerate(shape)
    ]
    writes = [*inserts, *(update.where(when_matched) for update in updates)]
    return select(matched).add_cte(
        *(statement.cte(f"write_{n}") for n, statement in enumerate(writes))
    )


def _guarded_with(
    guard: Update | Insert,
    params: Mapping[str, Any],
    rows: Rows,
    updates: Sequence[tuple[Update, Mapping[str, Any]]] = (),
) -> tuple[Select[Any], dict[str, Any]]:
    """``_guarded``'s statement for these rows and updates, and all its parameters."""
    merged = _row_params(rows, params)
    for _update, values in updates:
        merged.update(values)
    return _guarded(guard, _shape(rows), tuple(update for update, _ in updates)), merged


async def _insert_rows(session: AsyncSession, rows: Rows) -> None:
    """The rows inserted one statement each, in the caller's unit of work (SQLite)."""
    for table, values in rows:
        await session.execute(_insert_of(0, table, tuple(values)), _row_params([(table, values)]))


async def write_if_in(
    session: AsyncSession,
    guard: Update | Insert,
    params: Mapping[str, Any],
    *rows: tuple[Table, Mapping[str, Any]],
    updates: Sequence[tuple[Update, Mapping[str, Any]]] = (),
) -> Mapping[str, Any] | None:
    """``Database.write_if`` inside the caller's unit of work (and ``updates`` run too,
    only when the guard matched): on PostgreSQL one statement, elsewhere the guard and
    then (when it matched) the rest. ``guard`` and each update are templates built
    once, their values ``bindparam``s filled from their params (distinct names)."""
    if session.get_bind().dialect.name == "postgresql":
        statement, merged = _guarded_with(guard, params, rows, updates)
        matched = (await session.execute(statement, merged)).mappings().first()
        return None if matched is None else dict(matched)
    row = (await session.execute(guard, dict(params))).mappings().first()
    if row is not None:
        await _insert_rows(session, rows)
        for update, values in updates:
            await session.execute(update, dict(values))
    return None if row is None else dict(row)


def _result_processor(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    try:
        processor: Callable[[Any], Any] | None = type_.dialect_impl(dialect).result_processor(
            dialect, None
        )
    except (TypeError, exc.InvalidRequestError):
        # A number type asks what the column's own type is (unknown here): the driver
        # returns a column's own Python type (Decimal for numeric, float for float8).
        return None
    return processor


@dataclass(frozen=True, slots=True)
class _Expanded:
    """A statement with expanding parameters, expanded for given list lengths."""

    sql: str
    names: tuple[str, ...]
    expansion: dict[str, tuple[str, ...]]  # an expanding parameter -> its expanded names
    processors: dict[str, Callable[[Any], Any]]


@dataclass(frozen=True, slots=True)
class _DriverPlan:
    """A statement compiled once for the driver: its SQL, the order of its parameters
    with their types' bind processors, and its result columns' processors."""

    compiled: SQLCompiler
    sql: str
    names: tuple[str, ...]
    binds: tuple[Callable[[Any], Any] | None, ...]
    results: tuple[Callable[[Any], Any] | None, ...]
    # The Python-side defaults (INSERT) and onupdates (UPDATE) of the columns the
    # statement leaves out, by bind name: SQLAlchemy computes them when it runs a
    # statement itself, so the driver path must too.
    prefetch: tuple[tuple[str, Any], ...] = ()
    # Expanding parameters (``IN`` a list), and the statement expanded by their lengths.
    expanding: tuple[str, ...] = ()
    expansions: dict[tuple[int, ...], _Expanded] = field(default_factory=dict)

    @classmethod
    def of(cls, statement: Returning, dialect: Dialect) -> _DriverPlan:
        compiled = statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        return cls(
            compiled=compiled,
            sql=compiled.string,
            names=names,
            binds=tuple(
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                for name in names
            ),
            results=tuple(
                _result_processor(column.type, dialect) for column in statement.exported_columns
            ),
            prefetch=(
                *((column.key, column.default) for column in compiled.insert_prefetch),
                *((column.key, column.onupdate) for column in compiled.update_prefetch),
            ),
            expanding=tuple(sorted(bind.key for bind in compiled.post_compile_params)),
        )

    def _values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Every bound value: ``params``, the computed defaults, the template's own."""
        given = dict(params)
        for name, default in self.prefetch:
            if name not in given:
                given[name] = _python_default(default)
        return dict(self.compiled.construct_params(given) or {})

    def bound(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and its arguments for ``params``. A statement with expanding
        parameters (``IN`` a list) is expanded once for each set of list lengths."""
        if not self.expanding:
            return self.sql, self.args(params)
        lengths = tuple(len(params[name]) for name in self.expanding)
        expanded = self.expansions.get(lengths)
        if expanded is None:
            state = self.compiled.construct_expanded_state(dict(params))
            expanded = self.expansions[lengths] = _Expanded(
                sql=state.statement,
                names=tuple(state.positiontup or ()),
                expansion={k: tuple(v) for k, v in state.parameter_expansion.items()},
                processors=dict(state.processors),
            )
        values = self._values(params)
        for name, names in expanded.expansion.items():
            values.update(zip(names, values.pop(name), strict=True))
        processors = expanded.processors
        return expanded.sql, [
            processors[name](values[name]) if name in processors else values[name]
            for name in expanded.names
        ]

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = self._values(params)
        return [
            value if process is None else process(value)
            for process, value in zip(
                self.binds, (values[name] for name in self.names), strict=True
            )
        ]

    def row(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {
            key: value if process is None else process(value)
            for (key, value), process in zip(record.items(), self.results, strict=True)
        }


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """The driver pool's connections run single statements in autocommit, which leave
    no session state behind (settings, locks, cursors, listeners): nothing to reset,
    so a release costs no round trip (asyncpg's default sends ``RESET ALL`` and more)."""


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
        driver_pool_size: int = 10,
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
        self._plans: dict[Returning, _DriverPlan] = {}
        # PostgreSQL: the driver's own pool for single statements in autocommit (the hot
        # reads and writes): no SQLAlchemy connection to check out, wrap and reset for a
        # statement that needs none of it. Opened on first use.
        self._driver_size = driver_pool_size
        self._driver_pool: asyncpg.Pool | None = None
        self._driver_lock = asyncio.Lock()
        self._reader = async_sessionmaker(read_engine, expire_on_commit=False)
        # Called with the services whose outbox a commit wrote (wakes the relay).
        self.after_commit_hooks: list[Callable[[set[str]], None]] = []

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._writer() as session:
            try:
                yield session
                if session.in_transaction() or session.new or session.dirty or session.deleted:
                    await session.commit()  # (an untouched session has nothing to commit)
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
        pooled connection and no ORM session: the hot read path (see ``_driver``)."""
        rows = await self.fetch_all(statement, **params)
        return rows[0] if rows else None

    async def fetch_all(self, statement: Select[Any], **params: Any) -> list[dict[str, Any]]:
        """The rows of a Core ``select`` built once (``bindparam``s filled from
        ``params``, expanding ones too), as dicts, on a pooled connection and no ORM
        session: the hot read path (see ``_driver``)."""
        if self.dialect == "postgresql":
            return await self._driver(statement, params)
        async with self._read_engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(statement, params)).mappings()]

    async def _driver(
        self, statement: Returning, params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """PostgreSQL: ``statement`` compiled once (kept by statement) and run by the
        driver itself (asyncpg, its own pool, autocommit), with the bind and result
        processing of its types but none of SQLAlchemy's per-execution work: for
        statements built once (module constants, or cached by shape) on hot paths.
        Errors are SQLAlchemy's, as on its own path (a constraint violated is an
        ``IntegrityError``)."""
        plan = self._plans.get(statement)
        if plan is None:
            plan = self._plans[statement] = _DriverPlan.of(statement, self.engine.dialect)
        sql, args = plan.bound(params)
        pool = await self._driver_connections()
        try:
            records = await pool.fetch(sql, *args)
        except asyncpg.IntegrityConstraintViolationError as error:
            raise exc.IntegrityError(sql, None, error) from error
        except asyncpg.PostgresError as error:
            raise exc.DBAPIError(sql, None, error) from error
        return [plan.row(record) for record in records]

    async def _driver_connections(self) -> asyncpg.Pool:
        if self._driver_pool is None:
            async with self._driver_lock:
                if self._driver_pool is None:
                    dsn = self.engine.url.set(drivername="postgresql")
                    self._driver_pool = await asyncpg.create_pool(
                        dsn.render_as_string(hide_password=False),
                        min_size=0,
                        max_size=self._driver_size,
                        init=self._init_driver_connection,
                        reset=_nothing_to_reset,
                        server_settings={"plan_cache_mode": "force_generic_plan"},
                    )
        return self._driver_pool

    async def _init_driver_connection(self, conn: asyncpg.Connection) -> None:
        """The JSON codecs SQLAlchemy's asyncpg dialect installs on its connections, so
        its types' bind and result processing fit these connections too."""
        dialect = cast(PGDialect_asyncpg, self.engine.dialect)
        adapted = SimpleNamespace(_connection=conn)
        await dialect.setup_asyncpg_json_codec(adapted)  # type: ignore[no-untyped-call]
        await dialect.setup_asyncpg_jsonb_codec(adapted)  # type: ignore[no-untyped-call]

    async def write_together(self, *rows: tuple[Table, Mapping[str, Any]]) -> None:
        """Rows (table, values; ``rows_of`` for mapped objects) that land together or
        not at all: on PostgreSQL ONE statement (the inserts as data-modifying CTEs, in
        autocommit: one round trip, no BEGIN and COMMIT), built and compiled once a
        shape; elsewhere one transaction. A constraint violation undoes them all."""
        if self.dialect == "postgresql":
            await self._driver(_together(_shape(rows)), _row_params(rows))
            return
        async with self.session() as session:
            await _insert_rows(session, rows)

    async def write_if(
        self,
        guard: Update | Insert,
        params: Mapping[str, Any],
        *rows: tuple[Table, Mapping[str, Any]],
        updates: Sequence[tuple[Update, Mapping[str, Any]]] = (),
    ) -> Mapping[str, Any] | None:
        """``guard`` (a conditional UPDATE, or an INSERT ... ON CONFLICT DO NOTHING, with
        RETURNING, built once: its values are ``bindparam``s filled from ``params``) and,
        only when it matched, the ``rows`` (table, values) inserted and the ``updates``
        run: on PostgreSQL ONE statement in autocommit (each selects from the guard's
        CTE), elsewhere one transaction. The guard's row, or None when it matched nothing
        (and nothing was written)."""
        if self.dialect == "postgresql":
            found = await self._driver(*_guarded_with(guard, params, rows, updates))
            return found[0] if found else None
        async with self.session() as session:
            return await write_if_in(session, guard, params, *rows, updates=updates)

    async def write_all(self, statement: Returning, **params: Any) -> list[dict[str, Any]]:
        """One write statement built once (an UPDATE/INSERT ... RETURNING; ``bindparam``s
        filled from ``params``) as its own transaction: on PostgreSQL by the driver in
        autocommit (one round trip), elsewhere in a unit of work. The rows it returned."""
        if self.dialect == "postgresql":
            return await self._driver(statement, params)
        async with self.session() as session:
            return [dict(row) for row in (await session.execute(statement, params)).mappings()]

    async def run_statement(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        """PostgreSQL only: one SQL statement (``$1``-style parameters) run by the driver
        in autocommit, so it is its own transaction; its rows.

        For a hot write on a contended row: a single statement (data-modifying CTEs)
        holds the row lock only while the server runs it, not across round trips and
        event-loop turns. Call ``outbox_written()`` when it wrote outbox rows."""
        if self.dialect != "postgresql":
            raise RuntimeError("run_statement is for PostgreSQL")
        pool = await self._driver_connections()
        return [dict(record) for record in await pool.fetch(sql, *args)]

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
        if self._driver_pool is not None:
            pool, self._driver_pool = self._driver_pool, None
            await pool.close()
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
