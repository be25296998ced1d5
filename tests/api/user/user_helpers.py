"""Helpers shared by the user API tests (imported by module name; not a test file)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from tests.support import assert_error, ok  # noqa: F401 - re-exported for the tests

from ultramarket.core.container import Container
from ultramarket.core.events import Event

API = "/api/v1/users"


def address(**overrides: Any) -> dict[str, Any]:
    body = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines Ltd",
        "line1": "12 St James's Square",
        "line2": None,
        "city": "London",
        "region": "Greater London",
        "postal_code": "SW1Y 4JH",
        "country": "GB",
        "phone": "+44 20 7946 0000",
    }
    body.update(overrides)
    return body


async def publish_as_auth(container: Container, event: Event) -> None:
    """Write an auth event to auth's outbox, as the auth service would."""
    async with container.db("auth").session() as session:
        await container.publisher("auth").publish(session, event)


async def outbox_types(container: Container, service: str = "user") -> list[str]:
    outbox = container.events(service).outbox
    async with container.db(service).read_session() as session:
        return list((await session.scalars(select(outbox.c.event_type))).all())


def new_id() -> str:
    return str(uuid.uuid4())
