"""UltraMarket HTTP benchmark: the app next to its ceilings, measured in the same run.

    .venv/bin/python bench/run.py [--duration 10] [--connections 64] [--threads 2]

What it does (see bench/README.md for the figures and knobs):

1. makes sure ``wrk`` is installed (``apt-get install -y wrk`` if not);
2. creates a fresh PostgreSQL database (``um_bench``), migrates it, creates the bench
   account with the CLI and bulk-inserts ~10,000 more customers with asyncpg;
3. serves the platform (``ultramarket serve --workers 2 --server granian``) on a free
   loopback port with rate limits OFF, logs in once, and loads it with wrk for each
   scenario;
4. serves the ceilings from ``bench/ceilings.py`` (the same server and workers as the app:
   granian by default, ``--server uvicorn``) and loads them;
5. prints one table and writes ``bench/results/latest.json``.

``--suite catalog`` adds a bulk-loaded catalogue (listing, detail, reservations) and
``--suite checkout`` full checkouts (``POST /api/v1/orders``, 1-3 lines over 1,000 SKUs and
one hot SKU, fraud rules off) beside a raw-asyncpg checkout ceiling, with an oversell
check after each run; ``--suite all`` (the default) runs the three.

Every child runs in its own process group, every wait is bounded, and every child is
killed at the end, including on Ctrl-C or an exception. Load only ever targets 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"  # the load only ever targets loopback

BENCH_EMAIL = "bench-user@example.com"
BENCH_PASSWORD = "Bench-run-Pass-8841"

USERS_ME = "/api/v1/users/me"
AUTH_ME = "/api/v1/auth/me"
LOGIN = "/api/v1/auth/login"

# Targets from the issue: GET /users/me at >= 50 % of the raw one-row ceiling, p99 < 50 ms.
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0

# Catalogue targets (issue 3): listing and detail at >= 50 % of the raw page ceiling with
# p99 < 100 ms; reservations on one hot SKU at >= 40 % of the raw reserve ceiling (hot).
CATALOG_READ_RATIO, CATALOG_READ_P99_MS = 0.5, 100.0
RESERVE_HOT_RATIO = 0.4
# Checkout targets (issue 4): full checkouts over 1,000 SKUs at >= 200 orders/s and >= 15 %
# of the raw checkout ceiling (spread), p99 < 250 ms; the hot SKU's ratio is shown.
CHECKOUT_MIN_RPS, CHECKOUT_RATIO, CHECKOUT_P99_MS = 200.0, 0.15, 250.0
CHECKOUT_SETTLE_S = 15.0  # at most, for checkouts in flight at wrk's stop to leave pending
ORDERS = "/api/v1/orders"
MANAGER_EMAIL = "bench-manager@example.com"
PRODUCTS = "/api/v1/products"
RESERVE_TEMPLATE = "/api/v1/inventory/%s/reserve"
HUGE_STOCK = 1_000_000_000


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- child processes ----------------------------------------------------------------------

_children: list[subprocess.Popen[bytes]] = []


def spawn(cmd: list[str], env: dict[str, str], logfile: Path) -> subprocess.Popen[bytes]:
    out = logfile.open("wb")
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    out.close()
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the child's process group (it is a session leader), then SIGKILL."""
    if proc in _children:
        _children.remove(proc)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # Workers of a server may outlive a master killed hard; the group id is ours.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def stop_all() -> None:
    for proc in list(_children):
        stop(proc, grace=5.0)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def run_checked(cmd: list[str], env: dict[str, str], timeout: float, what: str) -> str:
    try:
        done = subprocess.run(
            cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{what} took longer than {timeout:.0f}s; aborted") from None
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def login(base: str, email: str) -> str:
    """An access token for ``email`` (every bench account has BENCH_PASSWORD)."""
    status, body = http("POST", f"{base}{LOGIN}", {"email": email, "password": BENCH_PASSWORD})
    if status != 200:
        raise SystemExit(f"login of {email} failed: HTTP {status} {body}")
    return str(body["data"]["tokens"]["access_token"])


def wait_ready(proc: subprocess.Popen[bytes], url: str, logfile: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); log:\n{logfile.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout:.0f}s; log:\n{logfile.read_text()}")


# -- wrk ----------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk not found; installing it with apt-get (Debian package 'wrk')")
    apt = shutil.which("apt-get")
    if apt:
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [apt, "install", "-y", "wrk"],
                timeout=300,
                check=False,
                stdout=subprocess.DEVNULL,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
    found = shutil.which("wrk")
    if not found:
        raise SystemExit(
            "wrk is required and could not be installed automatically.\n"
            "Install it yourself (Debian/Ubuntu: `sudo apt-get install -y wrk`, "
            "macOS: `brew install wrk`) and run again."
        )
    return found


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unparseable wrk time {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


@dataclass
class Result:
    scenario: str
    method: str
    url_path: str
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def parse_wrk(output: str, result: Result) -> Result:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not rps:
        raise SystemExit(f"could not parse wrk output:\n{output}")
    result.rps = float(rps.group(1))
    dist = output.split("Latency Distribution", 1)
    if len(dist) != 2:
        raise SystemExit(f"wrk printed no latency distribution (--latency):\n{output}")
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)", dist[1], re.M))
    result.p50_ms = _ms(pct["50"])
    result.p99_ms = _ms(pct["99"])
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    result.requests = int(total.group(1)) if total else 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result.non_2xx = int(non2xx.group(1)) if non2xx else 0
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        result.socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True)
        )
    return result


@dataclass
class Load:
    wrk: str
    duration: int
    connections: int
    threads: int
    warmup: int
    timeout_s: int
    raw_dir: Path


def load(
    cfg: Load,
    scenario: str,
    base: str,
    path: str,
    method: str = "GET",
    script: str | None = None,
    env: dict[str, str] | None = None,
    settle: Callable[[], object] | None = None,
) -> Result:
    """wrk on ``path``: the warm-up, then (once ``settle`` returns: what the warm-up left in
    flight is done) the recorded run."""
    url = f"{base}{path}"
    assert url.startswith(f"http://{HOST}:"), url  # loopback only
    cmd = [cfg.wrk, f"-t{cfg.threads}", f"-c{cfg.connections}", "--latency"]
    cmd += [f"--timeout={cfg.timeout_s}s"]
    if script:
        cmd += ["-s", str(BENCH_DIR / "wrk" / script)]
    wrk_env = {**os.environ, **(env or {})}
    if cfg.warmup:
        log(f"{scenario}: warm-up {cfg.warmup}s")
        subprocess.run(
            [*cmd, f"-d{cfg.warmup}s", url],
            env=wrk_env,
            capture_output=True,
            timeout=cfg.warmup + cfg.timeout_s + 30,
            check=False,
        )
        if settle is not None:
            settle()
    log(f"{scenario}: wrk -t{cfg.threads} -c{cfg.connections} -d{cfg.duration}s {method} {url}")
    done = subprocess.run(
        [*cmd, f"-d{cfg.duration}s", url],
        env=wrk_env,
        capture_output=True,
        text=True,
        timeout=cfg.duration + cfg.timeout_s + 30,
        check=False,
    )
    (cfg.raw_dir / f"{scenario.replace(' ', '_').replace('/', '_')}.txt").write_text(
        done.stdout + done.stderr
    )
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = parse_wrk(done.stdout, Result(scenario, method, path))
    if result.errors:
        result.notes.append(
            f"{result.non_2xx} non-2xx responses, socket errors {result.socket_errors}"
        )
    return result


# -- database -----------------------------------------------------------------------------


async def recreate_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _columns(conn: asyncpg.Connection, schema: str, table: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT c.column_name, c.data_type, c.udt_name, c.is_nullable = 'YES' AS nullable,
               c.column_default IS NOT NULL AS has_default, c.character_maximum_length AS maxlen,
               EXISTS (
                 SELECT 1 FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 WHERE i.indrelid = format('%I.%I', c.table_schema, c.table_name)::regclass
                   AND i.indisunique AND a.attname = c.column_name
               ) AS is_unique
        FROM information_schema.columns c
        WHERE c.table_schema = $1 AND c.table_name = $2
        ORDER BY c.ordinal_position
        """,
        schema,
        table,
    )


def _filler(col: asyncpg.Record, i: int, account: dict[str, Any], now: datetime) -> Any:
    """A plausible value for a column we have no explicit rule for."""
    name, udt = col["column_name"], col["udt_name"]
    if name in account:
        return account[name]
    if col["nullable"] and not col["is_unique"]:
        return None
    if col["has_default"]:
        return _DEFAULT
    if udt == "uuid":
        return uuid.uuid4()
    if udt in ("varchar", "text", "bpchar"):
        value = f"bench-{i}-{name}" if col["is_unique"] else ""
        return value[: col["maxlen"]] if col["maxlen"] else value
    if udt in ("timestamptz", "timestamp"):
        return now if udt == "timestamptz" else now.replace(tzinfo=None)
    if udt == "date":
        return date.today()
    if udt == "bool":
        return False
    if udt in ("int2", "int4", "int8", "numeric", "float4", "float8"):
        return 0
    if udt in ("json", "jsonb"):
        return "{}"
    raise ValueError(f"no filler for {name} ({udt})")


_DEFAULT = object()


async def _bulk_insert(
    conn: asyncpg.Connection, schema: str, table: str, rows: list[dict[str, Any]], now: datetime
) -> int:
    cols = await _columns(conn, schema, table)
    if not cols:
        return -1
    sample = [_filler(c, 0, rows[0], now) for c in cols]
    names = [c["column_name"] for c, v in zip(cols, sample, strict=True) if v is not _DEFAULT]
    by_name = {c["column_name"]: c for c in cols}
    records = [tuple(_filler(by_name[n], i, row, now) for n in names) for i, row in enumerate(rows)]
    await conn.copy_records_to_table(table, schema_name=schema, columns=names, records=records)
    await conn.execute(f'ANALYZE "{schema}"."{table}"')
    return len(records)


def customer_email(n: int) -> str:
    """The n-th seeded customer (also spelled out in wrk/login.lua)."""
    return f"customer{n:06d}@bench.example.com"


async def seed(dsn: str, count: int) -> dict[str, Any]:
    """Bulk-insert ``count`` verified customers (auth.account, and user.profile if present)."""
    from ultramarket.services.auth.passwords import hash_password

    # One hash, made with the app's own parameters (no rehash on login), for every row:
    # the seeded customers share BENCH_PASSWORD so the login scenario can rotate over them.
    password_hash = hash_password(BENCH_PASSWORD)
    now = datetime.now(UTC)
    accounts = []
    for i in range(count):
        accounts.append(
            {
                "id": uuid.uuid4(),
                "email": customer_email(i),
                "password_hash": password_hash,
                "role": "CUSTOMER",
                "status": "active",
                "first_name": f"First{i}",
                "last_name": f"Last{i}",
                "email_verified_at": now,
                "password_changed_at": now,
                "created_at": now,
                "updated_at": now,
            }
        )
    conn = await asyncpg.connect(dsn, timeout=10)
    info: dict[str, Any] = {}
    try:
        async with conn.transaction():
            info["auth.account"] = await _bulk_insert(conn, "auth", "account", accounts, now)
        profile_rows = []
        for a in accounts:
            profile_rows.append(
                {
                    "id": a["id"],
                    "account_id": a["id"],
                    "user_id": a["id"],
                    "email": a["email"],
                    "first_name": a["first_name"],
                    "last_name": a["last_name"],
                    "display_name": f"{a['first_name']} {a['last_name']}",
                    "role": "CUSTOMER",
                    "status": "active",
                    "verified": True,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        cols = {c["column_name"] for c in await _columns(conn, "user", "profile")}
        if cols and ("account_id" in cols or "user_id" in cols):
            for row in profile_rows:  # the account id goes in the link column, not the pk
                row["id"] = uuid.uuid4()
        try:
            async with conn.transaction():
                n = await _bulk_insert(conn, "user", "profile", profile_rows, now)
            info["user.profile"] = n if n >= 0 else "table absent"
        except Exception as exc:
            info["user.profile"] = f"not seeded: {exc}"
        info["bench_account_id"] = str(
            await conn.fetchval("SELECT id FROM auth.account WHERE email = $1", BENCH_EMAIL)
        )
    finally:
        await conn.close()
    return info


# -- the run ------------------------------------------------------------------------------


def server_env(base: dict[str, str], db_url: str, data_dir: Path) -> dict[str, str]:
    env = dict(base)
    env.update(
        {
            "ULTRAMARKET_DATABASE_URL": db_url,
            "ULTRAMARKET_DATA_DIR": str(data_dir),
            "ULTRAMARKET_RATE_LIMITS__ENABLED": "false",
            # Fraud rules would hold or refuse the bench's bursts of payments by few users.
            "ULTRAMARKET_PAYMENTS__FRAUD_ENABLED": "false",
            "ULTRAMARKET_ACCESS_LOG": "false",
            "ULTRAMARKET_LOG_LEVEL": "WARNING",
            "ULTRAMARKET_HOST": HOST,
        }
    )
    return env


@dataclass(frozen=True)
class Serving:
    """How the app and its ceilings are served: the same server and workers for both, so
    the ratios compare the app with what that server can do at all."""

    server: str  # uvicorn or granian
    workers: int


def server_cmd(serving: Serving, app: str, port: int) -> list[str]:
    """The command serving ``ceilings:<app>`` (from bench/) on ``port``."""
    common = ["--host", HOST, "--port", str(port), "--workers", str(serving.workers)]
    quiet = ["--no-access-log", "--log-level", "warning"]
    if serving.server == "granian":
        where = ["--interface", "asgi", "--working-dir", str(BENCH_DIR)]
        return [str(VENV_BIN / "granian"), *where, *common, *quiet, app]
    where = ["--app-dir", str(BENCH_DIR)]
    return [str(VENV_BIN / "uvicorn"), app, *where, *common, *quiet, "--no-server-header"]


@contextlib.contextmanager
def ceiling_server(
    app_name: str,
    serving: Serving,
    env: dict[str, str],
    tmp: Path,
    ready_path: str,
    probe: dict[str, Any] | None = None,
) -> Iterator[str]:
    """Serve ``ceilings:<app>`` until the block ends; yields its base URL. Ready
    once GET ``ready_path`` answers 200 (or, with ``probe``, a POST of it answers 201)."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    logfile = tmp / f"{app_name.split(':')[1]}.log"
    proc = spawn(server_cmd(serving, app_name, port), env, logfile)
    try:
        if probe is None:
            wait_ready(proc, f"{base}{ready_path}", logfile)
        else:
            wait_ready_post(proc, f"{base}{ready_path}", logfile, probe)
        yield base
    finally:
        stop(proc)


@dataclass
class Target:
    """``app`` judged against ``ceiling`` (same run): req/s ratio and p99."""

    name: str
    app: Result
    ceiling: Result
    ratio: float
    p99_ms: float | None = None
    judged: bool = True  # False: the ratio is shown, without PASS/FAIL
    min_rps: float | None = None  # an absolute floor too (req/s)

    def verdict(self) -> dict[str, Any]:
        ratio = self.app.rps / self.ceiling.rps if self.ceiling.rps else 0.0
        out: dict[str, Any] = {
            "path": self.app.url_path,
            "scenario": self.app.scenario,
            "ceiling": self.ceiling.scenario,
            "ratio_to_ceiling": round(ratio, 4),
            "ratio_target": self.ratio,
            "p99_ms": self.app.p99_ms,
            "p99_target_ms": self.p99_ms,
            "judged": self.judged,
            "ratio_pass": ratio >= self.ratio,
            "p99_pass": self.p99_ms is None or self.app.p99_ms < self.p99_ms,
            "rps": self.app.rps,
            "rps_target": self.min_rps,
            "rps_pass": self.min_rps is None or self.app.rps >= self.min_rps,
            "no_errors": self.app.errors == 0,
        }
        out["pass"] = all(out[k] for k in ("ratio_pass", "p99_pass", "rps_pass", "no_errors"))
        return out

    def note(self) -> str:
        v = self.verdict()
        text = f"{v['ratio_to_ceiling']:.0%} of {self.ceiling.scenario.removeprefix('ceiling: ')}"
        if not self.judged:
            return text
        text += f" (target >= {self.ratio:.0%}: {'PASS' if v['ratio_pass'] else 'FAIL'})"
        if self.p99_ms is not None:
            text += f"; p99 < {self.p99_ms:.0f} ms: {'PASS' if v['p99_pass'] else 'FAIL'}"
        if self.min_rps is not None:
            text += f"; >= {self.min_rps:,.0f}/s: {'PASS' if v['rps_pass'] else 'FAIL'}"
        return text


def fmt_table(results: list[Result], targets: list[Target]) -> str:
    head = f"{'scenario':<40} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}  {'errors':>6}  notes"
    lines = [head, "-" * len(head)]
    by_app = {id(t.app): t for t in targets}
    for r in results:
        target = by_app.get(id(r))
        note = target.note() if target else ""
        if r.notes:
            note = "; ".join(filter(None, [note, *r.notes]))
        lines.append(
            f"{r.scenario:<40} {r.rps:>10,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}  "
            f"{r.errors:>6}  {note}"
        )
    return "\n".join(lines)


# -- the catalogue suite ------------------------------------------------------------------


@dataclass
class CatalogPlan:
    listing_path: str
    hot_slug_path: str
    slugs_file: Path
    spread_file: Path
    hot_file: Path
    runout_file: Path
    hot_item: str
    runout_item: str
    summary: dict[str, Any]
    item_ids: list[uuid.UUID] = field(default_factory=list)  # every stock item, in order
    used_items: set[uuid.UUID] = field(default_factory=set)  # the reserve scenarios' items


async def prepare_catalog(dsn: str, args: argparse.Namespace, tmp: Path) -> CatalogPlan:
    """Load the catalogue, then give the reserve scenarios their items: ``--spread-items``
    items and one hot item with a stock that never runs out, one item with
    ``--runout-stock`` units (runs out)."""
    from catalog import load_catalog, product_slug

    cat = await load_catalog(dsn, args.products, args.variants)
    ids = cat.item_ids
    step = max(len(ids) // max(args.spread_items, 1), 1)
    spread = ids[::step][: args.spread_items]
    hot, runout = ids[1], ids[2]  # not in ``spread`` (step > 2 at any useful size)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(
            "UPDATE inventory.stock_item SET on_hand = $1 WHERE id = ANY($2::uuid[])",
            HUGE_STOCK, [*spread, hot],
        )  # fmt: skip
        await conn.execute(
            "UPDATE inventory.stock_item SET on_hand = $1, reserved = 0 WHERE id = $2",
            args.runout_stock, runout,
        )  # fmt: skip
        await conn.execute("ANALYZE inventory.stock_item")
    finally:
        await conn.close()
    rnd = random.Random(7)
    slugs = rnd.sample(range(cat.products), min(args.detail_slugs, cat.products))
    slugs_file = tmp / "slugs.txt"
    slugs_file.write_text("".join(f"{PRODUCTS}/{product_slug(n)}\n" for n in slugs))
    files = {}
    for name, rows in (("spread", spread), ("hot", [hot]), ("runout", [runout])):
        files[name] = tmp / f"items-{name}.txt"
        files[name].write_text("".join(f"{i}\n" for i in rows))
    summary = {
        **cat.summary(),
        "detail_slugs": len(slugs),
        "spread_items": len(spread),
        "hot_item": str(hot),
        "runout_item": str(runout),
        "runout_stock": args.runout_stock,
    }
    category = cat.mid_category if args.listing_category == "mid" else cat.leaf_category
    summary["listing_category"] = category
    summary["listing_category_products"] = (
        cat.mid_category_products if args.listing_category == "mid" else cat.leaf_category_products
    )
    return CatalogPlan(
        listing_path=f"{PRODUCTS}?category={category}&sort=-price&limit=20",
        hot_slug_path=f"{PRODUCTS}/{product_slug(slugs[0])}",
        slugs_file=slugs_file,
        spread_file=files["spread"],
        hot_file=files["hot"],
        runout_file=files["runout"],
        hot_item=str(hot),
        runout_item=str(runout),
        summary=summary,
        item_ids=ids,
        used_items={*spread, hot, runout},
    )


# Every service with an outbox (core.events.event_tables).
EVENT_SERVICES = ("auth", "user", "file", "product", "inventory", "cart", "order", "payment")


async def outbox_backlog(dsn: str, services: tuple[str, ...]) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        total = 0
        for service in services:
            total += await conn.fetchval(
                f'SELECT count(*) FROM "{service}"."{service}_outbox" WHERE published_at IS NULL'
            )
        return total
    finally:
        await conn.close()


def drain_outbox(
    dsn: str, services: tuple[str, ...] = ("inventory",), limit_s: float = 90.0
) -> int:
    """Wait (bounded) for the relay to deliver the previous scenario's events (of
    ``services``), so their handling does not load the next scenario. Returns what is left."""
    deadline = time.monotonic() + limit_s
    left = asyncio.run(outbox_backlog(dsn, services))
    if left:
        log(f"waiting for the outbox relay: {left:,} events undelivered")
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        left = asyncio.run(outbox_backlog(dsn, services))
    return left


def active_lines_ok(check: dict[str, Any], reservations: int) -> bool:
    """Every reservation of the run is one unit: count x 1 == reserved."""
    check["reservations_times_quantity_match"] = reservations == check["reserved"]
    return bool(check["reservations_times_quantity_match"])


async def oversell_check(
    dsn: str, item_id: str, result: Result, connections: int
) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        item = await conn.fetchrow(
            "SELECT on_hand, reserved FROM inventory.stock_item WHERE id = $1", uuid.UUID(item_id)
        )
        lines = await conn.fetchrow(
            """
            SELECT count(*) AS reservations, coalesce(sum(l.quantity), 0) AS units
            FROM inventory.reservation_line l
            JOIN inventory.reservation r ON r.id = l.reservation_id
            WHERE l.item_id = $1 AND r.status = 'active'
            """,
            uuid.UUID(item_id),
        )
    finally:
        await conn.close()
    ok_2xx = result.requests - result.non_2xx
    check = {
        "item_id": item_id,
        "on_hand": item["on_hand"],
        "reserved": item["reserved"],
        "active_reservations": lines["reservations"],
        "active_reserved_units": int(lines["units"]),
        "wrk_2xx": ok_2xx,
        "wrk_non_2xx": result.non_2xx,
        "socket_errors": sum(result.socket_errors.values()),
        "reserved_within_on_hand": item["reserved"] <= item["on_hand"],
        "lines_match_reserved": int(lines["units"]) == item["reserved"],
        "wrk_2xx_match_reserved": ok_2xx == item["reserved"],
        "sold_out": item["reserved"] == item["on_hand"],
    }
    # Not sold out: requests in flight when wrk stopped may have reserved unseen by wrk.
    in_flight = item["reserved"] - ok_2xx
    check["pass"] = (
        check["reserved_within_on_hand"]
        and check["lines_match_reserved"]
        and active_lines_ok(check, int(lines["reservations"]))
        and (
            check["wrk_2xx_match_reserved"] if check["sold_out"] else 0 <= in_flight <= connections
        )
    )
    return check


def run_catalog_app(
    cfg: Load, base: str, plan: CatalogPlan, token: str, dsn: str, meta: dict[str, Any]
) -> dict[str, Result]:
    """The app's catalogue scenarios (reads first: stock events invalidate the cache)."""
    for path in (plan.listing_path, plan.hot_slug_path):
        status, body = http("GET", f"{base}{path}")
        if status != 200:
            raise SystemExit(f"GET {path} answered HTTP {status}: {body}")
        if path == plan.listing_path:
            meta["listing_total"] = body["meta"]["total"]
            meta["listing_items"] = len(body["data"])
    probe_item = plan.spread_file.read_text().split()[0]
    status, body = http("POST", f"{base}{RESERVE_TEMPLATE % probe_item}",
                        {"quantity": 1, "key": f"bench-probe-{uuid.uuid4()}", "ttl_seconds": 60},
                        token=token)  # fmt: skip
    if status != 201:
        raise SystemExit(f"POST reserve answered HTTP {status}: {body}")
    out: dict[str, Result] = {}
    out["listing"] = load(cfg, "GET /products?category&sort=-price", base, plan.listing_path)
    paths_env = {"BENCH_PATHS_FILE": str(plan.slugs_file)}
    out["detail"] = load(cfg, "GET /products/{slug} (rotating)", base, f"{PRODUCTS}/{{slug}}",
                         script="paths.lua", env=paths_env)  # fmt: skip
    out["detail"].notes.insert(0, f"random over {plan.summary['detail_slugs']:,} slugs")
    out["detail_hot"] = load(cfg, "GET /products/{slug} (one hot)", base, plan.hot_slug_path)
    reserve_env = {"BENCH_PATH_TEMPLATE": RESERVE_TEMPLATE, "BENCH_TOKEN": token}
    for key, label, file in (("reserve_spread", "spread", plan.spread_file),
                             ("reserve_hot", "one hot", plan.hot_file)):  # fmt: skip
        left = drain_outbox(dsn)
        out[key] = load(cfg, f"POST /inventory/{{id}}/reserve ({label})", base,
                        RESERVE_TEMPLATE % "{id}", method="POST", script="reserve.lua",
                        env={**reserve_env, "BENCH_IDS_FILE": str(file),
                             "BENCH_KEY_PREFIX": f"app-{key}"})  # fmt: skip
        if key == "reserve_spread":
            out[key].notes.insert(0, f"random over {plan.summary['spread_items']:,} items")
        if left:
            out[key].notes.append(f"{left:,} earlier stock events still undelivered")
    # Runs out: no warm-up (it would take stock), the 409s once sold out are expected. Long
    # enough to sell out at the hot rate just measured (then every request in flight when
    # wrk stops is a 409, and wrk's 2xx count must equal the units reserved).
    left = drain_outbox(dsn)
    hot_rps = max(out["reserve_hot"].rps, 1.0)
    sell_out_s = math.ceil(plan.summary["runout_stock"] / hot_rps * 1.5) + 3
    runout_cfg = Load(
        **{**asdict(cfg), "warmup": 0, "duration": min(max(cfg.duration, sell_out_s), 180)}
    )
    runout = load(runout_cfg, "POST reserve (hot, runs out)", base, RESERVE_TEMPLATE % "{id}",
                  method="POST", script="reserve.lua",
                  env={**reserve_env, "BENCH_IDS_FILE": str(plan.runout_file),
                       "BENCH_KEY_PREFIX": "app-runout"})  # fmt: skip
    runout.notes = [f"{plan.summary['runout_stock']:,} on hand, {runout_cfg.duration}s; "
                    f"{runout.non_2xx:,} x 409 once sold out (expected)"]  # fmt: skip
    if left:
        runout.notes.append(f"{left:,} earlier stock events still undelivered")
    out["reserve_runout"] = runout
    return out


def run_catalog_ceilings(
    cfg: Load, plan: CatalogPlan, dsn: str, serving: Serving, tmp: Path
) -> dict[str, Result]:
    out: dict[str, Result] = {}
    env = {**os.environ, "BENCH_PG_DSN": dsn, "BENCH_CATEGORY": plan.summary["listing_category"]}
    with ceiling_server("ceilings:page_app", serving, env, tmp, "/page") as base:
        out["page"] = load(cfg, "ceiling: raw asyncpg page of 20", base, "/page")
    probe = {"quantity": 1, "key": f"probe-{uuid.uuid4()}", "ttl_seconds": 60}
    with ceiling_server(
        "ceilings:reserve_app", serving, env, tmp, f"/reserve/{plan.hot_item}", probe
    ) as base:
        for key, label, file in (("reserve_spread", "spread", plan.spread_file),
                                 ("reserve_hot", "one hot", plan.hot_file)):  # fmt: skip
            out[key] = load(cfg, f"ceiling: raw reserve ({label})", base, "/reserve/{id}",
                            method="POST", script="reserve.lua",
                            env={"BENCH_PATH_TEMPLATE": "/reserve/%s", "BENCH_IDS_FILE": str(file),
                                 "BENCH_KEY_PREFIX": f"ceiling-{key}"})  # fmt: skip
    return out


# -- the checkout suite -------------------------------------------------------------------

ADDRESS = {"first_name": "Ada", "last_name": "L", "line1": "1 Main St", "city": "Austin",
           "region": "TX", "postal_code": "73301", "country": "US"}  # fmt: skip


def checkout_body(variant_ids: list[str]) -> dict[str, Any]:
    """The body wrk/checkout.lua sends: one unit of each variant, a test card."""
    return {
        "shipping_address": ADDRESS,
        "items": [{"variant_id": v, "quantity": 1} for v in variant_ids],
        "payment": {"method": "card", "token": "tok_4242"},
    }


@dataclass
class CheckoutPlan:
    spread_file: Path  # --checkout-skus variant ids
    hot_file: Path  # the hot variant
    variants_file: Path  # both (the ceiling's price list)
    tokens_file: Path  # customers' access tokens, written once the app is up
    hot_variant: str
    variants: list[uuid.UUID]
    max_lines: int
    summary: dict[str, Any]


async def prepare_checkout(
    dsn: str, args: argparse.Namespace, tmp: Path, catalog: CatalogPlan | None
) -> CheckoutPlan:
    """``--checkout-skus`` variants and one hot variant, each with a stock that never runs
    out: from the catalogue the catalog suite loaded (items its scenarios do not use), else
    from one loaded here (``--products`` x ``--variants``)."""
    from catalog import load_catalog

    summary: dict[str, Any] = {}
    if catalog is None:
        cat = await load_catalog(dsn, args.products, args.variants)
        summary["catalog"] = cat.summary()
        free = cat.item_ids
    else:
        free = [i for i in catalog.item_ids if i not in catalog.used_items]
    wanted = args.checkout_skus + 1
    picked = free[:: max(len(free) // wanted, 1)][:wanted]
    if len(picked) < wanted:
        raise SystemExit(f"--checkout-skus {args.checkout_skus}: only {len(free)} stock items")
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "UPDATE inventory.stock_item SET on_hand = $1, reserved = 0 WHERE id = ANY($2::uuid[])"
            " RETURNING id, variant_id",
            HUGE_STOCK, picked,
        )  # fmt: skip
        await conn.execute("ANALYZE inventory.stock_item")
    finally:
        await conn.close()
    variant_of = {r["id"]: r["variant_id"] for r in rows}
    hot, spread = variant_of[picked[0]], [variant_of[i] for i in picked[1:]]
    files = {}
    for name, ids in (("spread", spread), ("hot", [hot]), ("all", [*spread, hot])):
        files[name] = tmp / f"variants-{name}.txt"
        files[name].write_text("".join(f"{v}\n" for v in ids))
    tokens_file = tmp / "tokens.txt"
    tokens_file.write_text("no-token\n")  # --only ceilings: the ceiling ignores it
    summary.update(skus=len(spread), hot_variant=str(hot), stock=HUGE_STOCK,
                   customers=args.checkout_customers, max_lines=args.checkout_lines)  # fmt: skip
    return CheckoutPlan(
        spread_file=files["spread"],
        hot_file=files["hot"],
        variants_file=files["all"],
        tokens_file=tokens_file,
        hot_variant=str(hot),
        variants=[*spread, hot],
        max_lines=args.checkout_lines,
        summary=summary,
    )


# Per variant of the checkout: its stock, the units of its order lines by order status, the
# units of its reservation lines by reservation status.
CHECKOUT_UNITS_SQL = """
WITH s AS (
  SELECT variant_id, sum(on_hand) AS on_hand, sum(reserved) AS reserved
  FROM inventory.stock_item WHERE variant_id = ANY($1::uuid[]) GROUP BY variant_id
), o AS (
  SELECT i.variant_id,
         coalesce(sum(i.quantity) FILTER (WHERE o.status = 'confirmed'), 0) AS confirmed,
         coalesce(sum(i.quantity) FILTER (WHERE o.status = 'pending'), 0) AS pending
  FROM "order".order_item i JOIN "order".orders o ON o.id = i.order_id
  WHERE i.variant_id = ANY($1::uuid[]) GROUP BY i.variant_id
), r AS (
  SELECT l.variant_id,
         coalesce(sum(l.quantity) FILTER (WHERE r.status = 'active'), 0) AS active,
         coalesce(sum(l.quantity - l.returned) FILTER (WHERE r.status = 'committed'), 0)
           AS committed
  FROM inventory.reservation_line l JOIN inventory.reservation r ON r.id = l.reservation_id
  WHERE l.variant_id = ANY($1::uuid[]) GROUP BY l.variant_id
)
SELECT s.variant_id, $2::bigint - s.on_hand AS sold, s.reserved,
       coalesce(o.confirmed, 0) AS confirmed_units, coalesce(o.pending, 0) AS pending_units,
       coalesce(r.active, 0) AS active_units, coalesce(r.committed, 0) AS committed_units
FROM s LEFT JOIN o USING (variant_id) LEFT JOIN r USING (variant_id)
"""
PENDING_ORDERS_SQL = (
    """SELECT count(*) FROM "order".orders WHERE status = 'pending' AND NOT on_hold"""
)


def _units_consistent(row: asyncpg.Record) -> bool:
    """Sold units were committed, reserved ones are held by active reservations, and both
    together are what the orders holding stock (confirmed, pending) bought."""
    return (
        row["sold"] == row["committed_units"]
        and row["reserved"] == row["active_units"]
        and row["sold"] + row["reserved"] == row["confirmed_units"] + row["pending_units"]
    )


async def settle_orders(dsn: str, limit_s: float = CHECKOUT_SETTLE_S) -> int:
    """Wait (at most ``limit_s``) until no order has been ``pending`` for two looks 0.5 s
    apart: the checkouts still in flight when wrk stopped are done. Returns those left."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        deadline = time.monotonic() + limit_s
        quiet = 0
        while True:
            pending = int(await conn.fetchval(PENDING_ORDERS_SQL))
            quiet = 0 if pending else quiet + 1
            if quiet == 2 or time.monotonic() >= deadline:
                return pending
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def checkout_check(dsn: str, plan: CheckoutPlan) -> dict[str, Any]:
    """The oversell check after a checkout run, cumulative over the run so far, once the
    checkouts still in flight are done."""
    pending = await settle_orders(dsn)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        oversold = await conn.fetchval(
            "SELECT count(*) FROM inventory.stock_item"
            " WHERE reserved > on_hand OR on_hand < 0 OR reserved < 0"
        )
        rows = await conn.fetch(CHECKOUT_UNITS_SQL, plan.variants, HUGE_STOCK)
        by_status = await conn.fetch('SELECT status, count(*) FROM "order".orders GROUP BY 1')
    finally:
        await conn.close()
    wrong = [r for r in rows if not _units_consistent(r)]
    hot = next(dict(r) for r in rows if str(r["variant_id"]) == plan.hot_variant)
    check = {
        "orders_by_status": {r["status"]: r["count"] for r in by_status},
        "pending_orders": pending,
        "oversold_items": oversold,
        "variants_checked": len(rows),
        "variants_inconsistent": len(wrong),
        "inconsistent_sample": [dict(r) for r in wrong[:5]],
        "hot": hot,
    }
    check["pass"] = not (oversold or wrong or pending) and len(rows) == len(plan.variants)
    return check


def checkout_runs(
    cfg: Load, plan: CheckoutPlan, dsn: str, base: str, path: str, label: str,
    checks: dict[str, Any], drain: bool, light: int = 0,
) -> dict[str, Result]:  # fmt: skip
    """Spread then hot checkouts against ``base``; the oversell check after each. With
    ``light``, spread checkouts again at ``light`` connections: a closed loop of
    ``-c64`` saturates the server, so its latency is 64 / throughput by Little's law
    whatever the code does; the lighter run says what one checkout takes short of that."""
    out: dict[str, Result] = {}
    runs = [("spread", "spread", plan.spread_file, plan.max_lines, cfg),
            ("hot", "one hot", plan.hot_file, 1, cfg)]  # fmt: skip
    if light:
        runs.append(("light", f"spread, {light} connections", plan.spread_file, plan.max_lines,
                     replace(cfg, connections=light)))  # fmt: skip
    for key, what, file, lines, run_cfg in runs:
        left = drain_outbox(dsn, EVENT_SERVICES) if drain else 0
        scenario = f"{label} ({what})"
        result = load(run_cfg, scenario, base, path, method="POST", script="checkout.lua",
                      env={"BENCH_IDS_FILE": str(file), "BENCH_TOKENS_FILE": str(plan.tokens_file),
                           "BENCH_MAX_LINES": str(lines)},
                      settle=lambda: asyncio.run(settle_orders(dsn)))  # fmt: skip
        result.notes.insert(
            0, "1 line, one hot SKU" if key == "hot" else
            f"1-{lines} lines over {plan.summary['skus']:,} SKUs",
        )  # fmt: skip
        if key == "light":
            result.notes.append("short of saturation, not judged")
        if left:
            result.notes.append(f"{left:,} earlier events still undelivered")
        checks[scenario] = check = asyncio.run(checkout_check(dsn, plan))
        if not check["pass"]:
            result.notes.append("oversell check FAILED")
        out[key] = result
    return out


def run_checkout_app(
    cfg: Load, base: str, plan: CheckoutPlan, dsn: str, checks: dict[str, Any], light: int
) -> dict[str, Result]:
    customers = plan.summary["customers"]
    log(f"logging in {customers} customers")
    tokens = [login(base, customer_email(n)) for n in range(customers)]
    plan.tokens_file.write_text("".join(f"{token}\n" for token in tokens))
    first = plan.spread_file.read_text().split()[0]
    status, body = http("POST", f"{base}{ORDERS}", checkout_body([first]), token=tokens[0])
    if status != 201 or body["data"]["status"] != "confirmed":
        raise SystemExit(f"POST {ORDERS} answered HTTP {status}: {body}")
    return checkout_runs(
        cfg, plan, dsn, base, ORDERS, "POST /orders", checks, drain=True, light=light
    )


def run_checkout_ceiling(
    cfg: Load, plan: CheckoutPlan, dsn: str, serving: Serving, tmp: Path, checks: dict[str, Any]
) -> dict[str, Result]:
    env = {**os.environ, "BENCH_PG_DSN": dsn, "BENCH_VARIANTS_FILE": str(plan.variants_file)}
    probe = checkout_body([plan.hot_variant])
    with ceiling_server("ceilings:checkout_app", serving, env, tmp, "/checkout", probe) as base:
        results = checkout_runs(cfg, plan, dsn, base, "/checkout", "ceiling: raw checkout",
                                checks, drain=False)  # fmt: skip
    asyncio.run(retire_ceiling_events(dsn))
    return results


async def retire_ceiling_events(dsn: str) -> None:
    """Mark the ceiling's ``order.confirmed`` rows delivered. They were part of its cost,
    but they are not the app's events (their payloads hold only what the ceiling writes):
    an app served later on a ``--keep-db`` database (``checkout_cpu.py``, ``hop_cpu.py``)
    would otherwise relay them to handlers that refuse them, and measure their retries."""
    from ceilings import CEILING_MARK

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(
            'UPDATE "order".order_outbox SET published_at = now() '
            "WHERE published_at IS NULL AND payload ? $1",
            CEILING_MARK,
        )
    finally:
        await conn.close()


def wait_ready_post(
    proc: subprocess.Popen[bytes],
    url: str,
    logfile: Path,
    body: dict[str, Any],
    timeout: float = 60,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); log:\n{logfile.read_text()}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
            status, _ = http("POST", url, body)
            if status == 201:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout:.0f}s; log:\n{logfile.read_text()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2, help="unrecorded seconds before each")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument(
        "--server",
        choices=("uvicorn", "granian"),
        default="granian",
        help="server for the app and its ceilings alike",
    )
    parser.add_argument(
        "--suite",
        choices=("all", "auth", "catalog", "checkout"),
        default="all",
        help="auth: health, users/me, login; catalog: listing, detail, reserve; "
        "checkout: full checkouts; all: all three",
    )
    parser.add_argument("--users", type=int, default=10_000, help="extra seeded customers")
    for flag, default, text in (
        ("--products", None, "catalogue size (100,000; 2,000 for --suite checkout)"),
        ("--variants", None, "variants per product (3; 1 for --suite checkout)"),
        ("--checkout-skus", 1000, "variants the spread checkout buys from"),
        ("--checkout-lines", 3, "most lines of a spread checkout (1-3)"),
        ("--checkout-customers", 50, "customers the checkouts rotate over"),
        ("--checkout-light", 16, "connections of the lighter spread checkout run (0: none)"),
    ):
        parser.add_argument(flag, type=int, default=default, help=text)
    parser.add_argument(
        "--detail-slugs", type=int, default=10_000, help="slugs the detail load picks from"
    )
    parser.add_argument(
        "--spread-items", type=int, default=2_000, help="stock items the spread reserve uses"
    )
    parser.add_argument(
        "--runout-stock", type=int, default=5_000, help="on hand of the item that runs out"
    )
    parser.add_argument(
        "--listing-category",
        choices=("mid", "leaf"),
        default="mid",
        help="mid: a mid-level category (4,000 products over 9 ids); leaf: 500 products",
    )
    parser.add_argument(
        "--login-users",
        type=int,
        default=1000,
        help="seeded accounts the login load rotates over (0: one hot account)",
    )
    parser.add_argument(
        "--me-path", default=None, help=f"profile path to load (default {USERS_ME}, else {AUTH_ME})"
    )
    parser.add_argument("--db-name", default=os.environ.get("BENCH_DB_NAME", "um_bench"))
    parser.add_argument(
        "--pg-admin-dsn",
        default=os.environ.get(
            "BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="maintenance DSN used to drop/create the bench database",
    )
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database")
    parser.add_argument("--only", choices=("app", "ceilings"), default=None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a judged target is missed"
    )
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "latest.json")
    args = parser.parse_args()
    serving = Serving(args.server, args.workers)
    auth_suite = args.suite in ("all", "auth")
    catalog_suite = args.suite in ("all", "catalog")
    checkout_suite = args.suite in ("all", "checkout")
    # The checkout suite alone needs a small catalogue; with the catalog suite it shares its.
    args.products = args.products or (100_000 if catalog_suite else 2_000)
    args.variants = args.variants or (3 if catalog_suite else 1)
    if not 1 <= args.checkout_lines <= 3:
        parser.error("--checkout-lines must be 1 to 3")
    customers = args.users if auth_suite else 0
    if checkout_suite:
        customers = max(customers, args.checkout_customers)

    signal.signal(signal.SIGTERM, _on_sigterm)
    wrk = ensure_wrk()
    admin = args.pg_admin_dsn
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", args.db_name):
        raise SystemExit("--db-name must be a plain identifier")
    dsn = admin.rsplit("/", 1)[0] + f"/{args.db_name}"
    sa_url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    host = re.sub(r"^.*@", "", dsn.split("//", 1)[1]).split("/")[0].split(":")[0]
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(f"warning: PostgreSQL on {host}, not loopback; figures will include the network")

    tmp = Path(tempfile.mkdtemp(prefix="um-bench-"))
    raw_dir = args.output.parent / "wrk"  # raw wrk output of the last run, for reading
    shutil.rmtree(raw_dir, ignore_errors=True)
    raw_dir.mkdir(parents=True)
    cfg = Load(wrk, args.duration, args.connections, args.threads, args.warmup, 10, raw_dir)
    env = server_env(dict(os.environ), sa_url, tmp / "data")
    results: list[Result] = []
    me_result: Result | None = None
    row_result: Result | None = None
    app_runs: dict[str, Result] = {}
    ceiling_runs: dict[str, Result] = {}
    checkout_app: dict[str, Result] = {}
    checkout_ceiling: dict[str, Result] = {}
    checkout_checks: dict[str, Any] = {}  # the oversell check after each checkout run
    meta: dict[str, Any] = {}
    try:
        log(f"fresh database {args.db_name}")
        asyncio.run(recreate_database(admin, args.db_name))
        cli = str(VENV_BIN / "ultramarket")
        run_checked([cli, "migrate"], env, 120, "ultramarket migrate")
        run_checked(
            [cli, "create-user", "--email", BENCH_EMAIL, "--password", BENCH_PASSWORD,
             "--role", "CUSTOMER", "--first-name", "Bench", "--last-name", "User"],
            env, 120, "ultramarket create-user",
        )  # fmt: skip
        account_id = ""
        if customers:
            log(f"seeding {customers:,} customers")
            seeded = asyncio.run(seed(dsn, customers))
            log(f"seeded: {seeded}")
            account_id = seeded["bench_account_id"]
        plan: CatalogPlan | None = None
        if catalog_suite:
            run_checked(
                [cli, "create-user", "--email", MANAGER_EMAIL, "--password", BENCH_PASSWORD,
                 "--role", "MANAGER", "--first-name", "Bench", "--last-name", "Manager"],
                env, 120, "ultramarket create-user (MANAGER)",
            )  # fmt: skip
            log(f"loading the catalogue: {args.products:,} products x {args.variants} variants")
            plan = asyncio.run(prepare_catalog(dsn, args, tmp))
            log(f"catalogue: {plan.summary}")
            meta["catalog"] = plan.summary
        checkout: CheckoutPlan | None = None
        if checkout_suite:
            if plan is None:
                log(f"loading the catalogue: {args.products:,} products x {args.variants} variants")
            checkout = asyncio.run(prepare_checkout(dsn, args, tmp, plan))
            log(f"checkout: {checkout.summary}")
            meta["checkout"] = checkout.summary

        if args.only != "ceilings":
            port = free_port()
            base = f"http://{HOST}:{port}"
            logfile = tmp / "app.log"
            cmd = [cli, "serve", "--host", HOST, "--port", str(port),
                   "--workers", str(args.workers), "--server", args.server]  # fmt: skip
            log(f"starting UltraMarket: {' '.join(cmd[1:])}")
            app = spawn(cmd, env, logfile)
            wait_ready(app, f"{base}/health", logfile)
            token = login(base, BENCH_EMAIL)
        if args.only != "ceilings" and auth_suite:
            me_path = args.me_path
            if me_path is None:
                status, body = http("GET", f"{base}{USERS_ME}", token=token)
                if status == 200:
                    me_path = USERS_ME
                else:
                    log(f"{USERS_ME} answers HTTP {status}; loading {AUTH_ME} instead")
                    meta["users_me_fallback"] = f"{USERS_ME} answered HTTP {status}"
                    me_path = AUTH_ME
            status, body = http("GET", f"{base}{me_path}", token=token)
            if status != 200:
                raise SystemExit(f"GET {me_path} answered HTTP {status}: {body}")
            meta["me_path"] = me_path
            meta["me_sample"] = body

            results.append(load(cfg, "GET /health", base, "/health"))
            me_result = load(cfg, f"GET {me_path}", base, me_path,
                             script="bearer.lua", env={"BENCH_TOKEN": token})  # fmt: skip
            results.append(me_result)
            login_users = min(args.login_users, args.users)
            login_env = {"BENCH_EMAIL": BENCH_EMAIL, "BENCH_PASSWORD": BENCH_PASSWORD,
                         "BENCH_LOGIN_USERS": str(login_users)}  # fmt: skip
            login_result = load(cfg, f"POST {LOGIN}", base, LOGIN, method="POST",
                                script="login.lua", env=login_env)  # fmt: skip
            login_result.notes.insert(
                0, f"rotating over {login_users:,} accounts" if login_users else "one hot account"
            )
            results.append(login_result)
        if args.only != "ceilings" and plan is not None:
            manager_token = login(base, MANAGER_EMAIL)
            app_runs = run_catalog_app(cfg, base, plan, manager_token, dsn, meta)
            results.extend(app_runs.values())
            meta["runout_check"] = asyncio.run(
                oversell_check(dsn, plan.runout_item, app_runs["reserve_runout"], args.connections)
            )
        if args.only != "ceilings" and checkout is not None:
            checkout_app = run_checkout_app(
                cfg, base, checkout, dsn, checkout_checks, args.checkout_light
            )
            results.extend(checkout_app.values())
        if args.only != "ceilings":
            stop(app)
            errors_in_log = [ln for ln in logfile.read_text().splitlines() if "Traceback" in ln]
            if errors_in_log:
                log(f"the server logged {len(errors_in_log)} tracebacks; see {logfile}")
                meta["server_tracebacks"] = len(errors_in_log)

        if args.only != "app" and auth_suite:
            ceiling_env = {**os.environ, "BENCH_PG_DSN": dsn, "BENCH_ROW_ID": account_id}
            for scenario, app_name, path in (
                ("ceiling: FastAPI /ping", "ceilings:ping_app", "/ping"),
                ("ceiling: raw asyncpg one row", "ceilings:row_app", "/row"),
            ):
                with ceiling_server(app_name, serving, ceiling_env, tmp, path) as base:
                    result = load(cfg, scenario, base, path)
                results.append(result)
                if path == "/row":
                    row_result = result
        if args.only != "app" and plan is not None:
            ceiling_runs = run_catalog_ceilings(cfg, plan, dsn, serving, tmp)
            results.extend(ceiling_runs.values())
        if args.only != "app" and checkout is not None:
            checkout_ceiling = run_checkout_ceiling(
                cfg, checkout, dsn, serving, tmp, checkout_checks
            )
            results.extend(checkout_ceiling.values())
    except BaseException:
        log(f"aborted; server logs and raw wrk output kept in {tmp}")
        raise
    finally:
        stop_all()
        if not args.keep_db:
            with contextlib.suppress(Exception):
                asyncio.run(drop_database(admin, args.db_name))

    targets: list[Target] = []
    if me_result and row_result:
        targets.append(Target("users_me", me_result, row_result, TARGET_RATIO, TARGET_P99_MS))
    if app_runs and ceiling_runs:
        page = ceiling_runs["page"]
        targets += [
            Target("listing", app_runs["listing"], page, CATALOG_READ_RATIO, CATALOG_READ_P99_MS),
            Target("detail", app_runs["detail"], page, CATALOG_READ_RATIO, CATALOG_READ_P99_MS),
            Target("detail_hot", app_runs["detail_hot"], page, CATALOG_READ_RATIO,
                   CATALOG_READ_P99_MS),
            Target("reserve_spread", app_runs["reserve_spread"], ceiling_runs["reserve_spread"],
                   RESERVE_HOT_RATIO, judged=False),
            Target("reserve_hot", app_runs["reserve_hot"], ceiling_runs["reserve_hot"],
                   RESERVE_HOT_RATIO),
        ]  # fmt: skip
    if checkout_app and checkout_ceiling:
        targets += [
            Target("checkout_spread", checkout_app["spread"], checkout_ceiling["spread"],
                   CHECKOUT_RATIO, CHECKOUT_P99_MS, min_rps=CHECKOUT_MIN_RPS),
            Target("checkout_hot", checkout_app["hot"], checkout_ceiling["hot"], CHECKOUT_RATIO,
                   judged=False),
        ]  # fmt: skip

    print()
    print(
        f"UltraMarket benchmark ({args.suite}) - wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s (+{args.warmup}s warm-up), app and ceilings on {args.server} "
        f"x{args.workers} workers, PostgreSQL db {args.db_name}"
        + (f", {customers:,} seeded customers" if customers else "")
    )
    if "catalog" in meta:
        c = meta["catalog"]
        print(
            f"catalogue: {c['products']:,} products x {args.variants} variants "
            f"({c['stock_items']:,} stock items), loaded in {c['seconds']}s; listing category "
            f"{c['listing_category']} ({c['listing_category_products']:,} products)"
        )
    if "checkout" in meta:
        c = meta["checkout"]
        loaded = c.get("catalog")
        print(
            f"checkout: 1-{c['max_lines']} lines over {c['skus']:,} SKUs (spread) or 1 line of one "
            f"hot SKU, {c['stock']:,} on hand each, {c['customers']} customers; catalogue "
            + (
                f"{loaded['products']:,} products x {args.variants} variants loaded in "
                f"{loaded['seconds']}s"
                if loaded
                else "of the catalog suite (items it does not use)"
            )
        )
    print("NOTE: rate limits are DISABLED for this run (ULTRAMARKET_RATE_LIMITS__ENABLED=false).")
    if checkout_suite:
        print("NOTE: fraud rules are DISABLED (ULTRAMARKET_PAYMENTS__FRAUD_ENABLED=false).")
    if "users_me_fallback" in meta:
        print(f"NOTE: {meta['users_me_fallback']}; measured {meta['me_path']} instead.")
    print()
    print(fmt_table(results, targets))
    print()

    verdicts = {t.name: t.verdict() for t in targets}
    for t in targets:
        if t.judged:
            print(f"{t.name} target: {'PASS' if verdicts[t.name]['pass'] else 'FAIL'}")
    check = meta.get("runout_check")
    if check:
        print(
            f"oversell check (hot item, {check['on_hand']:,} on hand): reserved "
            f"{check['reserved']:,} <= on_hand: {check['reserved_within_on_hand']}; active "
            f"reservation units {check['active_reserved_units']:,} == reserved: "
            f"{check['lines_match_reserved']}; wrk 2xx {check['wrk_2xx']:,} == reserved: "
            f"{check['wrk_2xx_match_reserved']}; sold out: {check['sold_out']} -> "
            f"{'PASS' if check['pass'] else 'FAIL'}"
        )
    for scenario, c in checkout_checks.items():
        hot = c["hot"]
        ordered = hot["confirmed_units"] + hot["pending_units"]
        same = "==" if hot["sold"] + hot["reserved"] == ordered else "!="
        print(
            f"oversell check after {scenario}: items with reserved > on_hand or on_hand < 0: "
            f"{c['oversold_items']}; orders left pending: {c['pending_orders']}; "
            f"{c['variants_checked']:,} SKUs where sold != committed units, reserved != active "
            f"reservation units or sold + reserved != units of confirmed/pending orders: "
            f"{c['variants_inconsistent']}; hot SKU sold {hot['sold']:,} + reserved "
            f"{hot['reserved']:,} {same} ordered {ordered:,} -> "
            f"{'PASS' if c['pass'] else 'FAIL'}"
        )
    verdict = verdicts.get("users_me", {})

    args.output.parent.mkdir(parents=True, exist_ok=True)
    git_rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT, capture_output=True, text=True, timeout=10, check=False,
    ).stdout.strip()  # fmt: skip
    report = {
        "at": datetime.now(UTC).isoformat(),
        "git": git_rev,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "config": {
            "duration_s": args.duration,
            "connections": args.connections,
            "threads": args.threads,
            "warmup_s": args.warmup,
            "workers": args.workers,
            "server": args.server,
            "suite": args.suite,
            "seeded_users": customers,
            "products": args.products if args.suite != "auth" else 0,
            "variants": args.variants if args.suite != "auth" else 0,
            "rate_limits": "disabled",
            "fraud_rules": "disabled",
        },
        "meta": {k: v for k, v in meta.items() if k not in ("me_sample", "runout_check")},
        "results": [{**asdict(r), "errors": r.errors} for r in results],
        "users_me_target": verdict,
        "targets": verdicts,
        "oversell_check": meta.get("runout_check"),
        "checkout_oversell_checks": checkout_checks,
    }
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    log(f"wrote {args.output}")
    shutil.rmtree(tmp, ignore_errors=True)
    failed = [n for n, v in verdicts.items() if v["judged"] and not v["pass"]]
    if check and not check["pass"]:
        failed.append("oversell")
    failed += [f"oversell after {s}" for s, c in checkout_checks.items() if not c["pass"]]
    if args.check and failed:
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        print("\ninterrupted; all servers stopped", file=sys.stderr)
        sys.exit(130)
