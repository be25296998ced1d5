"""Demo data and operator account creation (used by the CLI)."""

from __future__ import annotations

import os

from ultramarket.core.container import Container
from ultramarket.core.security import Role
from ultramarket.services.auth.keys import KeyStore
from ultramarket.services.auth.models import Account
from ultramarket.services.auth.service import AuthService

# Development-only credentials, printed by `make run`; production never seeds them.
DEMO_ACCOUNTS = (
    ("admin@example.com", "Admin-Demo-2026!", Role.ADMIN, "Ada", "Admin"),
    ("manager@example.com", "Manager-Demo-2026!", Role.MANAGER, "Max", "Manager"),
    ("customer@example.com", "Customer-Demo-2026!", Role.CUSTOMER, "Cleo", "Customer"),
)


async def create_account(
    container: Container,
    *,
    email: str,
    password: str,
    role: str,
    first_name: str = "",
    last_name: str = "",
) -> Account:
    keys: KeyStore = container.extras["auth.keys"]
    async with container.db("auth").session() as session:
        service = AuthService(
            session,
            settings=container.settings,
            keys=keys,
            publisher=container.publisher("auth"),
            limiter=container.limiter,
        )
        return await service.create_account(
            email=email,
            password=password,
            role=Role(role),
            first_name=first_name,
            last_name=last_name,
            verified=True,
        )


async def seed_demo(container: Container) -> list[str]:
    if container.settings.is_production and not os.environ.get("ULTRAMARKET_ALLOW_DEMO_SEED"):
        raise RuntimeError("refusing to seed demo accounts in production")
    from ultramarket.core.errors import Conflict

    lines = ["Demo accounts (development only):"]
    for email, password, role, first, last in DEMO_ACCOUNTS:
        try:
            await create_account(
                container,
                email=email,
                password=password,
                role=role,
                first_name=first,
                last_name=last,
            )
            state = "created"
        except Conflict:
            state = "exists"
        lines.append(f"  {role.value:<8} {email:<28} {password}  ({state})")
    if "product" in container.specs:
        from ultramarket.services.product.demo import catalog_size, seed_catalog

        existing = await catalog_size(container)
        if existing:
            lines.append(f"Demo catalog: {existing} products exist; skipped")
        else:
            lines.append(f"Demo catalog: {len(await seed_catalog(container))} products created")
    # Deliver the events (profiles in the user service, stock items for new variants).
    await _drain(container)
    if "product" in container.specs and "inventory" in container.specs:
        lines.append(f"Demo stock: {await _stock_demo_catalog(container)} variants stocked")
        await _drain(container)
    return lines


async def _drain(container: Container) -> None:
    while await container.relay.run_once():
        pass


async def _stock_demo_catalog(container: Container) -> int:
    """Give every demo variant without stock a plausible on-hand quantity (a few are
    left at zero, so out-of-stock shows too)."""
    import random

    from sqlalchemy import select

    from ultramarket.services.inventory.demo import stock_demo
    from ultramarket.services.inventory.models import StockItem
    from ultramarket.services.product.models import ProductVariant

    async with container.db("product").read_session() as session:
        variant_ids = list(
            await session.scalars(select(ProductVariant.id).order_by(ProductVariant.sku))
        )
    async with container.db("inventory").read_session() as session:
        stocked = set(
            await session.scalars(select(StockItem.variant_id).where(StockItem.on_hand > 0))
        )
    rng = random.Random(42)  # noqa: S311 - demo data
    quantities = {
        variant_id: rng.choice([0, 3, 8, 15, 25, 40, 60, 120])
        for variant_id in variant_ids
        if variant_id not in stocked
    }
    await stock_demo(container, {v: q for v, q in quantities.items() if q})
    return sum(1 for q in quantities.values() if q)
