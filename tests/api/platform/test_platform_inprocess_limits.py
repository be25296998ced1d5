"""Calls between services of one process are not counted against a client IP."""

from __future__ import annotations

import httpx

from ultramarket import registry
from ultramarket.core.config import RateLimits
from ultramarket.core.http import create_app
from ultramarket.seed import create_account

PASSWORD = "In-Process-Pass-42"


def client_from(app, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_in_process_service_calls_do_not_share_an_ip_budget(settings) -> None:
    limited = settings.model_copy(update={"rate_limits": RateLimits(default_per_ip="2/minute")})
    app = create_app(registry.load_all(), limited, run_relay=False)
    async with app.router.lifespan_context(app):
        container = app.state.container
        manager = await create_account(
            container, email="boss@example.com", password=PASSWORD, role="MANAGER"
        )
        customer = await create_account(
            container, email="shopper@example.com", password=PASSWORD, role="CUSTOMER"
        )
        while await container.relay.run_once():
            pass
        async with client_from(app, "198.51.100.1") as http:
            login = await http.post(
                "/api/v1/auth/login", json={"email": "boss@example.com", "password": PASSWORD}
            )
        token = login.json()["data"]["tokens"]["access_token"]

        # Each request comes from another IP, and each makes the user service call auth
        # in-process. Four such calls exceed "2/minute" if they were counted together.
        for n in range(4):
            async with client_from(app, f"198.51.100.{10 + n}") as http:
                response = await http.get(
                    f"/api/v1/users/{customer.id}", headers={"Authorization": f"Bearer {token}"}
                )
            assert response.status_code == 200, response.text
            account = response.json()["data"]["account"]
            assert account is not None, f"call {n}: auth refused the in-process call"
            assert account["email"] == "shopper@example.com"
        assert manager.role == "MANAGER"
