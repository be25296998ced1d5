"""Every service's migrations build exactly the schema its models declare, on SQLite
(one namespace for all services) and on PostgreSQL (a schema per service), and
downgrade cleanly to nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Connection, Integer, MetaData, Table, inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import BLANK_SCHEMA

from ultramarket import registry
from ultramarket.core.migrations import current_heads, downgrade, upgrade
from ultramarket.core.service import ServiceSpec

SPECS = registry.load_all()


async def run_sync(url: str, fn: Any) -> Any:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def sqlite_metadata(specs: list[ServiceSpec]) -> MetaData:
    """All services' tables in one schema-less namespace, as SQLite holds them."""
    combined = MetaData()
    for spec in specs:
        for table in spec.metadata.tables.values():
            # Foreign keys lose their schema too ("auth.account.id" -> "account.id").
            table.to_metadata(combined, schema=None, referred_schema_fn=lambda *_: BLANK_SCHEMA)
    return combined


def version_tables(specs: list[ServiceSpec]) -> set[str]:
    return {f"alembic_version_{spec.name}" for spec in specs}


def test_table_names_are_unique_across_services() -> None:
    seen: dict[str, str] = {}
    for spec in SPECS:
        for table in spec.metadata.tables.values():
            assert table.schema == spec.name, f"{table.fullname} is outside schema {spec.name}"
            assert table.name not in seen, f"{table.name} in {seen.get(table.name)} and {spec.name}"
            seen[table.name] = spec.name
    for spec in SPECS:
        assert f"alembic_version_{spec.name}" not in seen
        assert spec.migrations is not None
        assert spec.migrations.is_dir()
        assert len(current_heads(spec)) == 1, f"{spec.name} has several migration heads"


def test_every_service_has_its_own_event_tables() -> None:
    for spec in SPECS:
        names = set(spec.metadata.tables)
        for table in (spec.events.outbox, spec.events.inbox, spec.events.dead_letter):
            assert table.fullname in names
            assert table.name.startswith(f"{spec.name}_")


async def test_sqlite_migrations_match_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    for spec in SPECS:
        upgrade(spec, url)
    for spec in SPECS:
        upgrade(spec, url)  # a second upgrade is a no-op

    target = sqlite_metadata(SPECS)
    ignored = version_tables(SPECS)

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        return not (type_ == "table" and name in ignored)

    def diff(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": include_name}
        )
        return list(compare_metadata(context, target))

    assert await run_sync(url, diff) == []
    # The comparison is not vacuous: a model table the database lacks is reported.
    extra = sqlite_metadata(SPECS)
    Table("zz_not_migrated", extra, Column("id", Integer, primary_key=True))
    target, kept = extra, target
    assert [d[0] for d in await run_sync(url, diff)] == ["add_table"]
    target = kept

    def state(conn: Connection) -> tuple[set[str], dict[str, str | None]]:
        tables = set(inspect(conn).get_table_names())
        versions = {
            name: conn.exec_driver_sql(f"SELECT version_num FROM {name}").scalar()
            for name in tables & ignored
        }
        return tables, versions

    tables, versions = await run_sync(url, state)
    assert tables == set(target.tables) | ignored
    for spec in SPECS:
        assert {versions[f"alembic_version_{spec.name}"]} == current_heads(spec)

    for spec in reversed(SPECS):
        downgrade(spec, url)
    tables, versions = await run_sync(url, state)
    assert tables - ignored == set()
    assert all(v is None for v in versions.values())


async def test_postgres_migrations_match_the_models(pg_database: str) -> None:
    url = pg_database
    for spec in SPECS:
        upgrade(spec, url)
    for spec in SPECS:
        upgrade(spec, url)

    for spec in SPECS:

        def include_name(name: str | None, type_: str, parent_names: Any, spec=spec) -> bool:
            if type_ == "schema":
                return name == spec.name
            return True

        def diff(conn: Connection, spec: ServiceSpec = spec, include_name: Any = include_name):
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_schemas": True,
                    "include_name": include_name,
                    "version_table": "alembic_version",
                    "version_table_schema": spec.name,
                },
            )
            return list(compare_metadata(context, spec.metadata))

        assert await run_sync(url, diff) == [], spec.name

    def tables_by_schema(conn: Connection) -> dict[str, set[str]]:
        inspector = inspect(conn)
        return {spec.name: set(inspector.get_table_names(schema=spec.name)) for spec in SPECS}

    def public_tables(conn: Connection) -> set[str]:
        return set(inspect(conn).get_table_names(schema="public"))

    found = await run_sync(url, tables_by_schema)
    for spec in SPECS:
        expected = {t.name for t in spec.metadata.tables.values()} | {"alembic_version"}
        assert found[spec.name] == expected
    assert await run_sync(url, public_tables) == set()

    for spec in reversed(SPECS):
        downgrade(spec, url)
    found = await run_sync(url, tables_by_schema)
    for spec in SPECS:
        assert found[spec.name] <= {"alembic_version"}, found[spec.name]


async def test_postgres_pruning_indexes_are_built_online_and_replace_a_failed_build(
    pg_database: str,
) -> None:
    """The pruning indexes are built CONCURRENTLY (outside the revision's transaction);
    an INVALID index a failed build left behind is replaced, not taken as done."""
    url = pg_database
    order = next(spec for spec in SPECS if spec.name == "order")
    upgrade(order, url, "e1d1efa49a2a")  # the revision before the pruning indexes
    index = "ix_order_outbox_published_at"

    def leave_invalid(conn: Connection) -> None:
        # What an interrupted CREATE INDEX CONCURRENTLY leaves: the index, marked invalid.
        conn.exec_driver_sql(
            f'CREATE INDEX {index} ON "order".order_outbox (published_at)'
            " WHERE published_at IS NOT NULL"
        )
        conn.exec_driver_sql(
            "UPDATE pg_index SET indisvalid = false"
            f" WHERE indexrelid = '\"order\".{index}'::regclass"
        )
        conn.commit()

    def validity(conn: Connection) -> dict[str, bool]:
        rows = conn.exec_driver_sql(
            "SELECT c.relname, i.indisvalid FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'order'"
            " AND (c.relname LIKE '%published_at' OR c.relname LIKE '%processed_at')"
        )
        return dict(rows.all())

    await run_sync(url, leave_invalid)
    assert await run_sync(url, validity) == {index: False}

    upgrade(order, url)
    assert await run_sync(url, validity) == {index: True, "ix_order_inbox_processed_at": True}

    downgrade(order, url, "e1d1efa49a2a")
    assert await run_sync(url, validity) == {}
    downgrade(order, url)
