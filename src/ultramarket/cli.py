"""The ``ultramarket`` command: serve, migrate, seed, create-user, worker, gateway-config."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import typer

from ultramarket import registry
from ultramarket.app import SERVICE_ENV
from ultramarket.core.config import get_settings
from ultramarket.core.container import Container
from ultramarket.core.logging import configure_logging
from ultramarket.core.migrations import make_revision, upgrade
from ultramarket.core.ports import ALL_SCHEMAS, SERVICE_PORTS

app = typer.Typer(help="UltraMarket e-commerce backend.", no_args_is_help=True)

ServiceOpt = Annotated[
    str | None, typer.Option("--service", "-s", help="One service (default: all of them)")
]


def _names(service: str | None) -> list[str]:
    if service is None:
        return list(registry.SERVICES)
    if service not in registry.SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; known: {registry.SERVICES}")
    return [service]


@asynccontextmanager
async def _container(names: list[str]) -> AsyncIterator[Container]:
    settings = get_settings()
    container = Container.build(
        settings, registry.load_all(names), local_app=lambda _: None, all_schemas=ALL_SCHEMAS
    )
    await container.start(run_relay=False)
    try:
        yield container
    finally:
        await container.stop()


@app.command()
def serve(
    service: ServiceOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 3000, or the service's)")] = None,
    reload: Annotated[bool, typer.Option(help="Reload on code changes")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes")] = 1,
    server: Annotated[str, typer.Option(help="uvicorn or granian")] = "uvicorn",
) -> None:
    """Serve every service on one port (all-in-one), or one service alone."""
    settings = get_settings()
    names = _names(service)
    if service:
        os.environ[SERVICE_ENV] = service
    else:
        os.environ.pop(SERVICE_ENV, None)
    bind_host = host or settings.host
    if port is None:
        port = (
            SERVICE_PORTS[service]
            if service and "ULTRAMARKET_PORT" not in os.environ
            else settings.port
        )
    typer.echo(f"UltraMarket ({', '.join(names)}) on http://{bind_host}:{port}", err=True)
    if server == "granian":
        from granian import Granian
        from granian.constants import Interfaces

        Granian(
            "ultramarket.app:create_behind_proxy",
            address=bind_host,
            port=port,
            interface=Interfaces.ASGI,
            workers=workers,
            factory=True,
            reload=reload,
        ).serve()
        return
    import uvicorn

    uvicorn.run(
        "ultramarket.app:create",
        factory=True,
        host=bind_host,
        port=port,
        reload=reload,
        workers=None if reload else workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        server_header=False,
    )


@app.command()
def migrate(service: ServiceOpt = None) -> None:
    """Bring the database schema of one or every service up to date."""
    settings = get_settings()
    configure_logging("WARNING")
    for spec in registry.load_all(_names(service)):
        upgrade(spec, settings.database_url_for(spec.name))
        typer.echo(f"migrated {spec.name}")


@app.command()
def makemigrations(
    service: Annotated[str, typer.Option("--service", "-s")],
    message: Annotated[str, typer.Option("--message", "-m")],
) -> None:
    """Autogenerate a migration for one service (run against PostgreSQL)."""
    settings = get_settings()
    spec = registry.load(service)
    path = make_revision(spec, settings.database_url_for(service), message)
    typer.echo(f"wrote {path}" if path else "no changes")


def _run(coro: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro())  # type: ignore[arg-type]


@app.command()
def seed(demo: Annotated[bool, typer.Option("--demo", help="Load the demo shop")] = False) -> None:
    """Create the demo accounts (and later, the demo catalog)."""
    if not demo:
        raise typer.BadParameter("nothing to seed; pass --demo")
    from ultramarket.seed import seed_demo

    configure_logging("WARNING")

    async def go() -> None:
        async with _container(list(registry.SERVICES)) as container:
            for line in await seed_demo(container):
                typer.echo(line)

    _run(go)


@app.command("create-user")
def create_user(
    email: Annotated[str, typer.Option()],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    role: Annotated[str, typer.Option(help="ADMIN, MANAGER, VENDOR or CUSTOMER")] = "CUSTOMER",
    first_name: Annotated[str, typer.Option()] = "",
    last_name: Annotated[str, typer.Option()] = "",
) -> None:
    """Create a verified account (how an operator makes the first admin)."""
    from ultramarket.core.errors import DomainError
    from ultramarket.seed import create_account

    configure_logging("WARNING")

    async def go() -> None:
        async with _container(list(registry.SERVICES)) as container:
            account = await create_account(
                container,
                email=email,
                password=password,
                role=role.upper(),
                first_name=first_name,
                last_name=last_name,
            )
            await container.relay.run_once()
            typer.echo(f"created {account.role} {account.email} ({account.id})")

    try:
        _run(go)
    except DomainError as exc:
        details = "; ".join(str(d.get("message", d)) for d in exc.details if isinstance(d, dict))
        typer.echo(f"error: {exc.message}{': ' + details if details else ''}", err=True)
        raise typer.Exit(1) from None


@app.command()
def worker(service: ServiceOpt = None) -> None:
    """Run the outbox relay and event handlers as their own process."""
    settings = get_settings()
    configure_logging(settings.log_level)
    if service and settings.broker_url.startswith("memory"):
        # With the in-process bus this worker IS the bus: an event its service's outbox
        # holds for another service's handlers would be marked delivered, unhandled.
        typer.echo(
            "error: --service needs a broker (ULTRAMARKET_BROKER_URL); with the in-process "
            "bus run one worker for all services",
            err=True,
        )
        raise typer.Exit(2)

    async def go() -> None:
        async with _container(_names(service)) as container:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            typer.echo("worker running; Ctrl-C stops it", err=True)
            await container.relay.run_forever(stop)

    _run(go)


import_app = typer.Typer(help="Bulk imports.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("products")
def import_products_command(
    file: Annotated[str, typer.Argument(help="A .csv or .jsonl file")],
) -> None:
    """Import products (all or nothing): a report per bad row, else a progress bar."""
    from pathlib import Path

    from rich.progress import Progress

    from ultramarket.services.product.importer import import_products

    configure_logging("WARNING")

    async def go() -> int:
        async with _container(list(registry.SERVICES)) as container:
            with Progress(transient=True) as progress:
                task = progress.add_task("importing products", total=None)
                report = await import_products(
                    container,
                    Path(file),
                    on_validated=lambda n: progress.update(task, total=n),
                    on_progress=lambda n: progress.advance(task, n),
                )
            if report.errors:
                for error in report.errors:
                    typer.echo(str(error), err=True)
                typer.echo(
                    f"{len(report.errors)} error(s) in {report.rows} row(s); nothing imported",
                    err=True,
                )
                return 1
            while await container.relay.run_once():
                pass
            typer.echo(f"imported {report.created} product(s) from {report.rows} row(s)")
            return 0

    if _run(go):
        raise typer.Exit(1)


@app.command("rotate-keys")
def rotate_keys() -> None:
    """Development: make a new signing key; the old one keeps verifying until removed."""
    from ultramarket.services.auth.keys import rotate_dev_key

    kid = rotate_dev_key(get_settings().data_dir / "keys")
    typer.echo(f"new signing key {kid}")


@app.command("gateway-config")
def gateway_config(
    upstream_host: Annotated[str, typer.Option(help="Host the services run on")] = "127.0.0.1",
) -> None:
    """Print an NGINX config that routes the public API to the split services."""
    from ultramarket.gateway import nginx_config

    sys.stdout.write(nginx_config(upstream_host))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
