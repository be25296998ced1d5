"""CPU per in-process service call of a checkout, one kind of call at a time.

    .venv/bin/python bench/run.py --suite checkout --only app --keep-db   # leaves um_bench
    .venv/bin/python bench/hop_cpu.py [quote lookup reserve commit charge] [--calls 1600]

Serves the whole platform in this process (as ``bench/checkout_cpu.py`` does) on the
database a bench run left behind and makes, through the services' own clients, the calls
a checkout makes to other services: the cart's quote (which itself asks the product
service), the product lookup alone, the inventory reservation and its commit, the
payment's charge. Each kind runs ``--concurrency`` at a time, once to warm up and once
measured, and prints this process's CPU time a call: what a checkout pays for that call,
the call's share of the outbox relay and of the event handlers it sets off included.

Where ``checkout_cpu.py`` says how much a checkout costs, this says which call: a change
to one service's path shows here at once. ``--profile F`` writes a cProfile of each
measured run to ``F.<call>``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from checkout_cpu import DEFAULT_DSN, run_loop, seeded, server_env  # noqa: E402 (the bench's own helpers)

CALLS = ("quote", "lookup", "reserve", "commit", "charge")


async def main(args: argparse.Namespace) -> None:
    skus, _ = await seeded(args.dsn, 1)
    variants = [uuid.UUID(v) for v in skus]
    from ultramarket.app import create
    from ultramarket.services.cart.client import CartClient
    from ultramarket.services.inventory.client import InventoryClient
    from ultramarket.services.payment.client import PaymentClient
    from ultramarket.services.product.client import ProductClient

    app = create()
    async with app.router.lifespan_context(app):
        container = app.state.container
        cart = container.clients.get(CartClient, "order")
        products = container.clients.get(ProductClient, "cart")
        inventory = container.clients.get(InventoryClient, "order")
        payments = container.clients.get(PaymentClient, "order")
        user = uuid.uuid4()
        reserved: list[str] = []

        def lines() -> list[tuple[uuid.UUID, int]]:
            return [(v, 1) for v in random.sample(variants, random.randint(1, args.lines))]

        async def quote() -> None:
            await cart.checkout_quote(user, items=lines(), coupon="", country="US", region="CA")

        async def lookup() -> None:
            await products.get_variants([v for v, _ in lines()])

        async def reserve() -> None:
            key = f"order:{uuid.uuid4()}"
            await inventory.reserve(key, lines())
            reserved.append(key)

        async def commit() -> None:
            await inventory.commit(reserved.pop())

        async def charge() -> None:
            order = str(uuid.uuid4())
            await payments.charge(order, user, "10.00", "USD", "card", "tok_4242", order)

        calls: dict[str, Callable[[], Awaitable[None]]] = {
            "quote": quote,
            "lookup": lookup,
            "reserve": reserve,
            "commit": commit,
            "charge": charge,
        }

        async def run(call: Callable[[], Awaitable[None]], n: int) -> None:
            async def worker() -> None:
                for _ in range(n // args.concurrency):
                    await call()

            await asyncio.gather(*(worker() for _ in range(args.concurrency)))

        warm = max(args.calls // 4, args.concurrency)
        for name in args.call or CALLS:
            if name == "commit":  # commits need reservations: made first, not measured
                await run(reserve, warm + args.calls + 2 * args.concurrency)
            await run(calls[name], warm)
            profile = cProfile.Profile() if args.profile else None
            cpu = time.process_time()
            if profile is not None:
                profile.enable()
            await run(calls[name], args.calls)
            if profile is not None:
                profile.disable()
                profile.dump_stats(f"{args.profile}.{name}")
            cpu = time.process_time() - cpu
            print(f"{name:8} {cpu / args.calls * 1e6:7.0f} µs CPU a call")
            reserved.clear()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("call", nargs="*", help=f"calls to measure: {', '.join(CALLS)} (all)")
    parser.add_argument("--dsn", default=os.environ.get("BENCH_PG_DSN", DEFAULT_DSN))
    parser.add_argument("--calls", type=int, default=1600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--lines", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=None, help="cProfile files' prefix")
    args = parser.parse_args()
    unknown = set(args.call) - set(CALLS)
    if unknown:
        parser.error(f"unknown call(s) {sorted(unknown)}: choose from {', '.join(CALLS)}")
    os.environ.update(server_env(args.dsn, "um-hop-cpu-"))
    return args


if __name__ == "__main__":
    run_loop(main(parse()))
