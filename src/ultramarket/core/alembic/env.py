"""Alembic environment shared by every service (see ultramarket.core.migrations)."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

config = context.config
spec = config.attributes["spec"]
url = config.attributes["url"]


def include_name(name, type_, parent_names):  # type: ignore[no-untyped-def]
    if type_ == "schema":
        return name == spec.name
    return True


def run(connection: Connection) -> None:
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{spec.name}"'))
        # Committed here, so that the migrations' transactions are alembic's own: a
        # migration's ``autocommit_block`` (CREATE INDEX CONCURRENTLY) can end them.
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=spec.metadata,
        version_table="alembic_version" if postgres else f"alembic_version_{spec.name}",
        version_table_schema=spec.name if postgres else None,
        include_schemas=postgres,
        include_name=include_name,
        render_as_batch=not postgres,
        compare_type=True,
        # One transaction per revision: an autocommit block in one commits only its own
        # revision's earlier steps, never those of the revisions before it.
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def main() -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run)
            await connection.commit()
    finally:
        await engine.dispose()


# Run on a loop of our own, in a thread, so callers inside an event loop can migrate too.
with ThreadPoolExecutor(max_workers=1) as executor:
    executor.submit(asyncio.run, main()).result()
