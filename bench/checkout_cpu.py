"""CPU per checkout, measured in one process with no load generator.

    .venv/bin/python bench/run.py --suite checkout --only app --keep-db   # leaves um_bench
    .venv/bin/python bench/checkout_cpu.py [--checkouts 2000] [--concurrency 16] [--profile F]

Serves the whole platform in this process (the all-in-one app, its outbox relay and event
handlers included) on the database a bench run left behind, logs in some of its seeded
customers, then runs full checkouts (``POST /api/v1/orders``, 1-3 lines over the bench's
10^9-unit SKUs) through the app's ASGI interface, ``--concurrency`` at a time: once to
warm up, once measured. Both runs end when the relay has delivered every event they
wrote, so event handling is counted too. Prints, per checkout: wall time, this process's
CPU time, and the CPU the rest of the machine used meanwhile (on a machine doing nothing
else: PostgreSQL). ``--profile F`` writes a cProfile of the measured run to F.

The figures are steadier than wrk's orders/s and move with every change to a checkout's
code path, so they say quickly whether a change helps; wrk's run stays the judge.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import random
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import httpx

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from run import ADDRESS, BENCH_PASSWORD  # noqa: E402 (the bench's own constants)

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/um_bench"
HUGE_STOCK = 900_000_000  # the bench's 10^9, less what earlier runs sold


def machine_busy() -> int:
    """Jiffies the machine spent busy (every CPU), from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    return sum(values) - values[3] - values[4]  # less idle and iowait


def server_env(dsn: str, prefix: str) -> dict[str, str]:
    """The platform's settings for a run in this process on the bench's database (the
    bench server's: no rate limits, no fraud rules, no access log)."""
    return {
        "ULTRAMARKET_DATABASE_URL": dsn.replace("postgresql://", "postgresql+asyncpg://"),
        "ULTRAMARKET_DATA_DIR": tempfile.mkdtemp(prefix=prefix),
        "ULTRAMARKET_RATE_LIMITS__ENABLED": "false",
        "ULTRAMARKET_PAYMENTS__FRAUD_ENABLED": "false",
        "ULTRAMARKET_ACCESS_LOG": "false",
        "ULTRAMARKET_LOG_LEVEL": "WARNING",
    }


async def seeded(dsn: str, customers: int) -> tuple[list[str], list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        skus = await conn.fetch(
            "SELECT variant_id FROM inventory.stock_item WHERE on_hand >= $1 LIMIT 1000",
            HUGE_STOCK,
        )
        emails = await conn.fetch(
            "SELECT email FROM auth.account WHERE role = 'CUSTOMER' LIMIT $1", customers
        )
    finally:
        await conn.close()
    if not skus or not emails:
        raise SystemExit(f"no bench catalogue or customers in {dsn}: run bench/run.py --keep-db")
    return [str(r[0]) for r in skus], [r[0] for r in emails]


async def drained(app: Any) -> None:
    """Until the relay has delivered every event (it is polled: it signals nothing)."""
    while sum((await app.state.container.relay.lag()).values()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def main(args: argparse.Namespace) -> None:
    skus, emails = await seeded(args.dsn, args.customers)
    from ultramarket.app import create

    app = create()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            tokens = []
            for email in emails:
                reply = await client.post(
                    "/api/v1/auth/login", json={"email": email, "password": BENCH_PASSWORD}
                )
                reply.raise_for_status()
                tokens.append(reply.json()["data"]["tokens"]["access_token"])

            async def checkout(n: int) -> None:
                lines = random.sample(skus, random.randint(1, min(args.lines, len(skus))))
                reply = await client.post(
                    "/api/v1/orders",
                    json={
                        "shipping_address": ADDRESS,
                        "items": [{"variant_id": v, "quantity": 1} for v in lines],
                        "payment": {"method": "card", "token": "tok_4242"},
                    },
                    headers={"authorization": f"Bearer {tokens[n % len(tokens)]}"},
                )
                if reply.status_code != 201:
                    raise SystemExit(f"checkout failed: {reply.status_code} {reply.text}")

            async def run() -> None:
                async def worker(first: int) -> None:
                    for n in range(first, args.checkouts, args.concurrency):
                        await checkout(n)

                await asyncio.gather(*(worker(k) for k in range(args.concurrency)))
                await drained(app)

            await run()  # warm-up: plans, caches, pools
            profile = cProfile.Profile() if args.profile else None
            wall, cpu, busy = time.perf_counter(), time.process_time(), machine_busy()
            if profile is not None:
                profile.enable()
            await run()
            if profile is not None:
                profile.disable()
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            rest = (machine_busy() - busy) / os.sysconf("SC_CLK_TCK") - cpu
            if profile is not None:
                profile.dump_stats(args.profile)
    per = 1000 / args.checkouts
    print(
        f"{args.checkouts} checkouts, {args.concurrency} at a time: "
        f"wall {wall * per:.2f} ms, this process {cpu * per:.2f} ms CPU, "
        f"rest of the machine {rest * per:.2f} ms CPU a checkout"
    )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("BENCH_PG_DSN", DEFAULT_DSN))
    parser.add_argument("--checkouts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--lines", type=int, default=3)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--profile", type=Path, default=None, help="cProfile output file")
    args = parser.parse_args()
    os.environ.update(server_env(args.dsn, "um-checkout-cpu-"))
    return args


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """On uvloop when it is installed, as granian and uvicorn serve the app (the pure
    Python event loop would show up in a profile where the servers spend nothing)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


if __name__ == "__main__":
    run_loop(main(parse()))
