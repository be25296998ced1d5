"""The split mode across processes: auth and user as separate servers, a worker for
the outbox, public keys fetched over JWKS and service identity bought with an API key."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support import error_reason

from ultramarket.gateway import ROUTES, nginx_config

PASSWORD = "Split-Mode-Pass-77"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ultramarket.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        handle = log.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ultramarket.cli", *args],
            env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def wait_healthy(url: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not come up:\n{log.read_text()[-3000:]}")


@pytest.fixture
def procs() -> Iterator[Processes]:
    running = Processes()
    try:
        yield running
    finally:
        running.stop()


def base_env(tmp_path: Path, data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRAMARKET_")}
    env.update(
        ULTRAMARKET_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
        ULTRAMARKET_DATA_DIR=str(tmp_path / data_dir),
        ULTRAMARKET_RATE_LIMITS__ENABLED="false",
        ULTRAMARKET_LOG_LEVEL="WARNING",
        ULTRAMARKET_EVENTS__RELAY_INTERVAL_SECONDS="0.1",
    )
    return env


def test_auth_and_user_as_separate_processes(tmp_path: Path, procs: Processes) -> None:
    auth_env = base_env(tmp_path, "auth-data")
    cli("migrate", env=auth_env)
    cli("create-user", "--email", "root@example.com", "--password", PASSWORD,
        "--role", "ADMIN", env=auth_env)  # fmt: skip

    auth_port, user_port = free_port(), free_port()
    auth_url, user_url = f"http://127.0.0.1:{auth_port}", f"http://127.0.0.1:{user_port}"
    auth_log = tmp_path / "auth.log"
    procs.start("serve", "--service", "auth", "--port", str(auth_port), env=auth_env, log=auth_log)
    wait_healthy(auth_url, auth_log)

    admin = httpx.post(
        f"{auth_url}/api/v1/auth/login", json={"email": "root@example.com", "password": PASSWORD}
    ).json()["data"]["tokens"]["access_token"]
    created = httpx.post(
        f"{auth_url}/api/v1/auth/api-keys",
        json={"name": "user-service", "scopes": ["*"], "service": True},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert created.status_code == 201, created.text
    api_key = created.json()["data"]["key"]

    # The user service holds no key material: it fetches the JWKS from auth.
    user_env = base_env(tmp_path, "user-data")
    user_env.update(
        ULTRAMARKET_AUTH__JWKS_URL=f"{auth_url}/api/v1/auth/.well-known/jwks.json",
        ULTRAMARKET_SERVICES__AUTH__URL=auth_url,
        ULTRAMARKET_SERVICE_API_KEY=api_key,
    )
    user_log = tmp_path / "user.log"
    procs.start("serve", "--service", "user", "--port", str(user_port), env=user_env, log=user_log)
    procs.start("worker", env=auth_env, log=tmp_path / "worker.log")
    wait_healthy(user_url, user_log)

    # The user service does not serve auth's routes, and vice versa.
    assert httpx.get(f"{user_url}/api/v1/auth/.well-known/jwks.json").status_code == 404
    assert httpx.get(f"{auth_url}/api/v1/users/me").status_code == 404

    registered = httpx.post(
        f"{auth_url}/api/v1/auth/register",
        json={"email": "split@example.com", "password": PASSWORD,
              "first_name": "Split", "last_name": "Mode"},
    )  # fmt: skip
    assert registered.status_code == 201, registered.text
    customer = registered.json()["data"]
    headers = {"Authorization": f"Bearer {customer['tokens']['access_token']}"}

    # user.registered travels through the outbox and the worker to the user service.
    deadline = time.monotonic() + 20
    profile: dict[str, object] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{user_url}/api/v1/users/me", headers=headers)
        assert response.status_code == 200, response.text
        profile = response.json()["data"]
        if profile["first_name"] == "Split":
            break
        time.sleep(0.2)
    assert profile["first_name"] == "Split", (tmp_path / "worker.log").read_text()[-2000:]
    assert profile["email"] == "split@example.com"

    # A manager view makes the user service call auth over HTTP with its service token.
    seen = httpx.get(
        f"{user_url}/api/v1/users/{customer['user']['id']}",
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert seen.status_code == 200, seen.text
    account = seen.json()["data"]["account"]
    assert account is not None, user_log.read_text()[-2000:]
    assert account["email"] == "split@example.com"
    assert account["role"] == "CUSTOMER"

    # A token from another signer is refused by the user service on its own.
    forged = customer["tokens"]["access_token"][:-4] + "AAAA"
    refused = httpx.get(
        f"{user_url}/api/v1/users/me", headers={"Authorization": f"Bearer {forged}"}
    )
    assert refused.status_code == 401
    assert error_reason(refused) == "INVALID_TOKEN"


def test_gateway_config_routes_every_prefix_to_its_port() -> None:
    config = nginx_config("10.0.0.5")
    for prefix, service in ROUTES.items():
        assert f"location {prefix} {{" in config
        assert f"proxy_pass http://ultramarket_{service};" in config
    assert "server 10.0.0.5:3002;" in config  # auth
    assert "server 10.0.0.5:3001;" in config  # user
    assert "client_max_body_size 10m;" in config
