"""UltraMarket HTTP benchmark: the app next to two ceilings, measured in the same run.

    .venv/bin/python bench/run.py [--duration 10] [--connections 64] [--threads 2]

What it does (see bench/README.md for the figures and knobs):

1. makes sure ``wrk`` is installed (``apt-get install -y wrk`` if not);
2. creates a fresh PostgreSQL database (``um_bench``), migrates it, creates the bench
   account with the CLI and bulk-inserts ~10,000 more customers with asyncpg;
3. serves the platform (``ultramarket serve --workers 2``) on a free loopback port with
   rate limits OFF, logs in once, and loads it with wrk for each scenario;
4. serves the two ceilings from ``bench/ceilings.py`` (uvicorn, 2 workers) and loads them;
5. prints one table and writes ``bench/results/latest.json``.

Every child runs in its own process group, every wait is bounded, and every child is
killed at the end, including on Ctrl-C or an exception. Load only ever targets 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
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
from dataclasses import asdict, dataclass, field
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
) -> Result:
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
                "email": f"customer{i:06d}@bench.example.com",
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
            "ULTRAMARKET_ACCESS_LOG": "false",
            "ULTRAMARKET_LOG_LEVEL": "WARNING",
            "ULTRAMARKET_HOST": HOST,
        }
    )
    return env


def uvicorn_cmd(app: str, port: int, workers: int) -> list[str]:
    return [
        str(VENV_BIN / "uvicorn"),
        app,
        "--app-dir",
        str(BENCH_DIR),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--no-server-header",
    ]


def fmt_table(results: list[Result], me: Result | None, row: Result | None) -> str:
    head = f"{'scenario':<34} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}  {'errors':>6}  notes"
    lines = [head, "-" * len(head)]
    for r in results:
        note = ""
        if r is me and row is not None:
            ratio = r.rps / row.rps if row.rps else 0.0
            verdict_ratio = "PASS" if ratio >= TARGET_RATIO else "FAIL"
            verdict_p99 = "PASS" if r.p99_ms < TARGET_P99_MS else "FAIL"
            note = (
                f"{ratio:.0%} of raw one-row ceiling (target >= {TARGET_RATIO:.0%}: "
                f"{verdict_ratio}); p99 < {TARGET_P99_MS:.0f} ms: {verdict_p99}"
            )
        if r.notes:
            note = "; ".join(filter(None, [note, *r.notes]))
        lines.append(
            f"{r.scenario:<34} {r.rps:>10,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}  "
            f"{r.errors:>6}  {note}"
        )
    return "\n".join(lines)


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
        default="uvicorn",
        help="server for the app (the ceilings always run on uvicorn)",
    )
    parser.add_argument("--users", type=int, default=10_000, help="extra seeded customers")
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
        "--check", action="store_true", help="exit 1 when GET /users/me misses its target"
    )
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "latest.json")
    args = parser.parse_args()

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
        log(f"seeding {args.users:,} customers")
        seeded = asyncio.run(seed(dsn, args.users))
        log(f"seeded: {seeded}")
        account_id = seeded["bench_account_id"]

        if args.only != "ceilings":
            port = free_port()
            base = f"http://{HOST}:{port}"
            logfile = tmp / "app.log"
            cmd = [cli, "serve", "--host", HOST, "--port", str(port),
                   "--workers", str(args.workers), "--server", args.server]  # fmt: skip
            log(f"starting UltraMarket: {' '.join(cmd[1:])}")
            app = spawn(cmd, env, logfile)
            wait_ready(app, f"{base}/health", logfile)
            status, body = http("POST", f"{base}{LOGIN}",
                                {"email": BENCH_EMAIL, "password": BENCH_PASSWORD})  # fmt: skip
            if status != 200:
                raise SystemExit(f"login failed: HTTP {status} {body}")
            token = body["data"]["tokens"]["access_token"]
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
            stop(app)
            errors_in_log = [ln for ln in logfile.read_text().splitlines() if "Traceback" in ln]
            if errors_in_log:
                log(f"the server logged {len(errors_in_log)} tracebacks; see {logfile}")
                meta["server_tracebacks"] = len(errors_in_log)

        if args.only != "app":
            ceiling_env = {**os.environ, "BENCH_PG_DSN": dsn, "BENCH_ROW_ID": account_id}
            for scenario, app_name, path in (
                ("ceiling: FastAPI /ping", "ceilings:ping_app", "/ping"),
                ("ceiling: raw asyncpg one row", "ceilings:row_app", "/row"),
            ):
                port = free_port()
                base = f"http://{HOST}:{port}"
                logfile = tmp / f"{app_name.split(':')[1]}.log"
                proc = spawn(uvicorn_cmd(app_name, port, args.workers), ceiling_env, logfile)
                wait_ready(proc, f"{base}{path}", logfile)
                result = load(cfg, scenario, base, path)
                results.append(result)
                if path == "/row":
                    row_result = result
                stop(proc)
    except BaseException:
        log(f"aborted; server logs and raw wrk output kept in {tmp}")
        raise
    finally:
        stop_all()
        if not args.keep_db:
            with contextlib.suppress(Exception):
                asyncio.run(drop_database(admin, args.db_name))

    print()
    print(
        f"UltraMarket benchmark - wrk -t{args.threads} -c{args.connections} -d{args.duration}s "
        f"(+{args.warmup}s warm-up), app on {args.server} x{args.workers} workers, "
        f"ceilings on uvicorn x{args.workers}, PostgreSQL db {args.db_name}, "
        f"{args.users:,} seeded customers"
    )
    print("NOTE: rate limits are DISABLED for this run (ULTRAMARKET_RATE_LIMITS__ENABLED=false).")
    if "users_me_fallback" in meta:
        print(f"NOTE: {meta['users_me_fallback']}; measured {meta['me_path']} instead.")
    print()
    print(fmt_table(results, me_result, row_result))
    print()

    verdict: dict[str, Any] = {}
    if me_result and row_result:
        ratio = me_result.rps / row_result.rps if row_result.rps else 0.0
        verdict = {
            "path": me_result.url_path,
            "ratio_to_row_ceiling": round(ratio, 4),
            "ratio_target": TARGET_RATIO,
            "p99_ms": me_result.p99_ms,
            "p99_target_ms": TARGET_P99_MS,
            "ratio_pass": ratio >= TARGET_RATIO,
            "p99_pass": me_result.p99_ms < TARGET_P99_MS,
            "no_errors": me_result.errors == 0,
        }
        verdict["pass"] = verdict["ratio_pass"] and verdict["p99_pass"] and verdict["no_errors"]
        print(f"users/me target: {'PASS' if verdict['pass'] else 'FAIL'}")

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
            "seeded_users": args.users,
            "rate_limits": "disabled",
        },
        "meta": {k: v for k, v in meta.items() if k != "me_sample"},
        "results": [{**asdict(r), "errors": r.errors} for r in results],
        "users_me_target": verdict,
    }
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    log(f"wrote {args.output}")
    shutil.rmtree(tmp, ignore_errors=True)
    if args.check and verdict and not verdict.get("pass"):
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        print("\ninterrupted; all servers stopped", file=sys.stderr)
        sys.exit(130)
