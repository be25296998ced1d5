"""Alembic, per service: each service has its own versions folder and version table.

Migration scripts name their schema through ``schema()`` and their foreign-key
targets through ``qualified()``, so one script runs on PostgreSQL (a schema per
service) and on SQLite (one namespace).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, op
from alembic.config import Config

from ultramarket.core.service import ServiceSpec

SCRIPT_LOCATION = Path(__file__).parent / "alembic"


def schema(name: str) -> str | None:
    """The schema a migration should use: the service's on PostgreSQL, none on SQLite."""
    return None if op.get_bind().dialect.name == "sqlite" else name


def qualified(name: str, target: str) -> str:
    """A foreign-key target ("account.id") in the service's schema."""
    prefix = schema(name)
    return f"{prefix}.{target}" if prefix else target


def alembic_config(spec: ServiceSpec, url: str) -> Config:
    if spec.migrations is None:
        raise ValueError(f"service {spec.name} has no migrations")
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("version_locations", str(spec.migrations))
    config.set_main_option("path_separator", "os")
    config.attributes["spec"] = spec
    config.attributes["url"] = url
    return config


def upgrade(spec: ServiceSpec, url: str, revision: str = "head") -> None:
    if url.startswith("sqlite") and "///" in url:
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(spec, url), revision)


def downgrade(spec: ServiceSpec, url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(spec, url), revision)


def current_heads(spec: ServiceSpec) -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config(spec, "")).get_heads())


def make_revision(spec: ServiceSpec, url: str, message: str) -> Path | None:
    """Autogenerate a revision against a PostgreSQL database, made dialect-neutral."""
    assert spec.migrations is not None
    spec.migrations.mkdir(parents=True, exist_ok=True)
    result = command.revision(alembic_config(spec, url), message=message, autogenerate=True)
    scripts = result if isinstance(result, list) else [result]
    path = Path(scripts[0].path) if scripts and scripts[0] is not None else None
    if path is not None:
        text = path.read_text()
        name = re.escape(spec.name)
        text = re.sub(rf"schema='{name}'", "schema=SCHEMA", text)
        text = re.sub(rf"'{name}\.([a-z_]+\.[a-z_]+)'", rf"qualified('{spec.name}', '\1')", text)
        path.write_text(text)
    return path


# -- shared steps ---------------------------------------------------------------------


def retype_columns(
    service: str,
    columns: Iterable[tuple[str, str, bool]],
    old: type[sa.Integer],
    new: type[sa.Integer],
) -> None:
    """Change ``(table, column, nullable)`` columns from ``old`` to ``new`` (money from
    INTEGER to BIGINT), a table at a time in batch mode. SQLite's INTEGER is 64-bit
    already: there each table is rebuilt with its constraints and indexes so the
    declared types match the models. Back to a narrower type fails on PostgreSQL while
    a stored value does not fit (nothing is cut)."""
    columns = tuple(columns)
    for table in dict.fromkeys(name for name, _column, _nullable in columns):
        with op.batch_alter_table(table, schema=schema(service)) as batch:
            for name, column, nullable in columns:
                if name == table:
                    batch.alter_column(
                        column, existing_type=old(), type_=new(), existing_nullable=nullable
                    )


def index_outbox_by_age(service: str) -> None:
    """The outbox's claim index: ``occurred_at`` over the unpublished rows only, in
    place of ``(published_at, available_at)``."""
    table = f"{service}_outbox"
    op.drop_index(
        op.f(f"ix_{table}_published_at_available_at"), table_name=table, schema=schema(service)
    )
    unpublished = sa.text("published_at IS NULL")
    op.create_index(
        op.f(f"ix_{table}_occurred_at"),
        table,
        ["occurred_at"],
        schema=schema(service),
        postgresql_where=unpublished,
        sqlite_where=unpublished,
    )


def index_outbox_by_state(service: str) -> None:
    """``index_outbox_by_age`` undone."""
    table = f"{service}_outbox"
    op.drop_index(op.f(f"ix_{table}_occurred_at"), table_name=table, schema=schema(service))
    op.create_index(
        op.f(f"ix_{table}_published_at_available_at"),
        table,
        ["published_at", "available_at"],
        schema=schema(service),
    )


def create_index_online(
    name: str, table: str, columns: list[str], service: str, **kwargs: Any
) -> None:
    """``op.create_index``, but on PostgreSQL ``CONCURRENTLY``, outside the revision's
    transaction: building an index on a table that already holds millions of rows (an
    outbox, an inbox) does not block its writers meanwhile. A build that failed before
    leaves an INVALID index of that name behind; it is dropped first, so the migration
    can simply be run again."""
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(name, table, columns, schema=schema(service), **kwargs)
        return
    with op.get_context().autocommit_block():
        invalid = op.get_bind().scalar(
            sa.text(
                "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relname = :name AND n.nspname = :schema AND NOT i.indisvalid"
            ),
            {"name": name, "schema": service},
        )
        if invalid:
            op.drop_index(
                name, table_name=table, schema=schema(service), postgresql_concurrently=True
            )
        op.create_index(
            name, table, columns, schema=schema(service), postgresql_concurrently=True, **kwargs
        )


def drop_index_online(name: str, table: str, service: str) -> None:
    """``create_index_online`` undone (``DROP INDEX CONCURRENTLY`` on PostgreSQL)."""
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index(name, table_name=table, schema=schema(service))
        return
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, schema=schema(service), postgresql_concurrently=True)


def index_events_for_pruning(service: str) -> None:
    """Pruning's indexes: published outbox rows by ``published_at`` (the unpublished
    stay out of it), inbox rows by ``processed_at``; without them every prune read
    whole tables that hold days of events. Built online: a shop upgrading has days of
    events in these tables, and its checkouts write to them all the time."""
    published = sa.text("published_at IS NOT NULL")
    create_index_online(
        op.f(f"ix_{service}_outbox_published_at"),
        f"{service}_outbox",
        ["published_at"],
        service,
        postgresql_where=published,
        sqlite_where=published,
    )
    create_index_online(
        op.f(f"ix_{service}_inbox_processed_at"), f"{service}_inbox", ["processed_at"], service
    )


def drop_event_pruning_indexes(service: str) -> None:
    """``index_events_for_pruning`` undone."""
    for table, column in (
        (f"{service}_inbox", "processed_at"),
        (f"{service}_outbox", "published_at"),
    ):
        drop_index_online(op.f(f"ix_{table}_{column}"), table, service)
