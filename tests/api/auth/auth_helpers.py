"""Helpers shared by the auth API tests (imported by module name; not a test file)."""

from __future__ import annotations

import base64
import json
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from tests.support import assert_error, ok  # noqa: F401 - re-exported for the tests

from ultramarket.core.container import Container

API = "/api/v1/auth"
NEW_PASSWORD = "Brand-New-Secret-77"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mails(container: Container, to: str | None = None) -> list[EmailMessage]:
    """Mails written by the file mailer, oldest first, optionally only those to ``to``."""
    directory = Path(container.settings.data_dir) / "mail"
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        if to is None or message["To"].lower() == to.lower():
            found.append(message)
    return found


def mailed_token(container: Container, to: str, path: str) -> str:
    """The token from the newest mail to ``to`` whose link points at ``/<path>?token=``."""
    for message in reversed(mails(container, to)):
        body = message.get_content()
        match = re.search(rf"/{re.escape(path)}\?token=([A-Za-z0-9_\-]+)", body)
        if match:
            return match.group(1)
    raise AssertionError(f"no {path} mail to {to}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
    )


async def login(
    client: httpx.AsyncClient, email: str, password: str, **extra: Any
) -> httpx.Response:
    return await client.post(f"{API}/login", json={"email": email, "password": password, **extra})


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{API}/refresh", json={"refresh_token": token})
