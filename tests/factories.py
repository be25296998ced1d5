"""Shared factories: accounts of any role, logged in over HTTP."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ultramarket.core.container import Container
from ultramarket.seed import create_account

PASSWORD = "Correct-Horse-42"


@dataclass
class User:
    id: str
    email: str
    password: str
    role: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@pytest.fixture
def make_user(client: httpx.AsyncClient, container: Container, drain: Any) -> Any:
    """``await make_user(role="MANAGER")``: a verified account with fresh tokens."""

    async def make(
        role: str = "CUSTOMER",
        *,
        email: str | None = None,
        password: str = PASSWORD,
        first_name: str = "Test",
        last_name: str = "User",
    ) -> User:
        email = email or f"{role.lower()}-{uuid.uuid4().hex[:10]}@example.com"
        if role == "CUSTOMER":
            response = await client.post(
                "/api/v1/auth/register",
                json={
                    "email": email,
                    "password": password,
                    "first_name": first_name,
                    "last_name": last_name,
                },
            )
            assert response.status_code == 201, response.text
            data = response.json()["data"]
        else:
            await create_account(
                container,
                email=email,
                password=password,
                role=role,
                first_name=first_name,
                last_name=last_name,
            )
            response = await client.post(
                "/api/v1/auth/login", json={"email": email, "password": password}
            )
            assert response.status_code == 200, response.text
            data = response.json()["data"]
        await drain()
        return User(
            id=data["user"]["id"],
            email=email,
            password=password,
            role=role,
            access_token=data["tokens"]["access_token"],
            refresh_token=data["tokens"]["refresh_token"],
        )

    return make
