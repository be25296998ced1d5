import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from user_helpers import API, assert_error, new_id, ok

from ultramarket.core.errors import NotFound
from ultramarket.services.user.client import UserClient
from ultramarket.services.user.models import Profile


async def backdate(container, user_id, *, created_days=0, login_days=None):
    now = datetime.now(UTC)
    values = {"created_at": now - timedelta(days=created_days)}
    if login_days is not None:
        values["last_login_at"] = now - timedelta(days=login_days)
    async with container.db("user").session() as session:
        await session.execute(
            update(Profile).where(Profile.id == uuid.UUID(user_id)).values(**values)
        )


async def test_get_user_owner_staff_and_strangers(client, make_user):
    user = await make_user()
    other = await make_user()
    manager = await make_user("MANAGER")

    own = ok(await client.get(f"{API}/{user.id}", headers=user.headers))
    assert own["email"] == user.email
    assert own["account"] is None
    assert_error(await client.get(f"{API}/{user.id}", headers=other.headers), 403, "FORBIDDEN")
    assert_error(await client.get(f"{API}/{new_id()}", headers=other.headers), 403, "FORBIDDEN")

    detail = ok(await client.get(f"{API}/{user.id}", headers=manager.headers))
    assert detail["id"] == user.id
    assert detail["role"] == "CUSTOMER"
    account = detail["account"]  # fetched from the auth service through AuthClient
    assert account["id"] == user.id
    assert account["email"] == user.email
    assert account["mfa"] is False
    assert "email_verified_at" in account
    assert_error(
        await client.get(f"{API}/{new_id()}", headers=manager.headers), 404, "PROFILE_NOT_FOUND"
    )
    assert_error(
        await client.get(f"{API}/not-a-uuid", headers=manager.headers), 422, "VALIDATION_ERROR"
    )


async def test_user_client_reads_profiles(container, make_user):
    user = await make_user(first_name="Linus")
    users = container.client(UserClient, "order")
    profile = await users.get_profile(user.id)
    assert profile.first_name == "Linus"
    assert profile.account is None  # services get the profile only
    with pytest.raises(NotFound) as caught:
        await users.get_profile(uuid.uuid4())
    assert caught.value.code == "PROFILE_NOT_FOUND"


async def test_list_users_is_for_staff(client, make_user):
    customer = await make_user()
    vendor = await make_user("VENDOR")
    for who in (customer, vendor):
        assert_error(await client.get(API, headers=who.headers), 403, "FORBIDDEN")
        assert_error(await client.get(f"{API}/analytics", headers=who.headers), 403, "FORBIDDEN")
    assert_error(await client.get(API), 401, "UNAUTHENTICATED")


async def test_list_users_search_filter_and_pages(client, container, make_user):
    manager = await make_user("MANAGER", first_name="Max", last_name="Manager")
    alice = await make_user(first_name="Alice", last_name="Zeta", email="alice@shop.example.com")
    await make_user(first_name="Bob", last_name="Young", email="bob@shop.example.com")
    await make_user(first_name="Carol", last_name="Xu", email="carol@elsewhere.example.com")
    vendor = await make_user("VENDOR", first_name="Vera", last_name="Vendor")
    await backdate(container, alice.id, created_days=40)

    page = (await client.get(API, headers=manager.headers)).json()
    assert page["success"] is True
    assert page["meta"] == {"page": 1, "limit": 20, "total": 5, "pages": 1}
    assert page["data"][-1]["id"] == alice.id  # newest first by default

    def emails(response):
        assert response.status_code == 200, response.text
        return [u["email"] for u in response.json()["data"]]

    assert emails(
        await client.get(
            API, params={"q": "SHOP.Example.com", "sort": "email"}, headers=manager.headers
        )
    ) == ["alice@shop.example.com", "bob@shop.example.com"]
    assert emails(await client.get(API, params={"q": "zeta"}, headers=manager.headers)) == [
        "alice@shop.example.com"
    ]
    assert emails(await client.get(API, params={"q": "alice zeta"}, headers=manager.headers)) == [
        "alice@shop.example.com"
    ]
    assert emails(await client.get(API, params={"q": "%"}, headers=manager.headers)) == []
    assert emails(await client.get(API, params={"role": "VENDOR"}, headers=manager.headers)) == [
        vendor.email
    ]
    since = (datetime.now(UTC) - timedelta(days=7)).isoformat()
    recent = emails(await client.get(API, params={"created_from": since}, headers=manager.headers))
    assert "alice@shop.example.com" not in recent
    assert len(recent) == 4
    old = emails(await client.get(API, params={"created_to": since}, headers=manager.headers))
    assert old == ["alice@shop.example.com"]

    response = await client.get(
        API, params={"limit": 2, "page": 2, "sort": "-last_name"}, headers=manager.headers
    )
    body = response.json()
    assert body["meta"] == {"page": 2, "limit": 2, "total": 5, "pages": 3}
    assert [u["last_name"] for u in body["data"]] == ["Xu", "Vendor"]
    assert set(body["data"][0]) >= {"id", "email", "role", "status", "verified", "created_at"}

    assert_error(
        await client.get(API, params={"sort": "password"}, headers=manager.headers),
        422,
        "VALIDATION_ERROR",
    )
    assert_error(
        await client.get(API, params={"role": "GOD"}, headers=manager.headers),
        422,
        "VALIDATION_ERROR",
    )
    assert_error(
        await client.get(API, params={"limit": 1000}, headers=manager.headers),
        422,
        "VALIDATION_ERROR",
    )


async def test_user_analytics(client, container, make_user):
    manager = await make_user("MANAGER")  # logs in: active
    fresh = await make_user()  # registered, never logged in
    old = await make_user()
    lapsed = await make_user("VENDOR")
    ok(
        await client.post(
            "/api/v1/auth/login", json={"email": fresh.email, "password": fresh.password}
        )
    )
    await backdate(container, old.id, created_days=10, login_days=3)
    await backdate(container, lapsed.id, created_days=100, login_days=45)
    # deliver the login event of `fresh`
    while await container.relay.run_once():
        pass

    data = ok(await client.get(f"{API}/analytics", params={"days": 14}, headers=manager.headers))
    assert data["days"] == 14
    assert data["total_users"] == 4
    assert data["active_users"] == 3  # manager, fresh, old; not lapsed
    assert data["new_users"] == 3  # lapsed signed up 100 days ago
    assert len(data["signups"]) == 14
    today = datetime.now(UTC).date()
    assert data["signups"][-1] == {"date": today.isoformat(), "count": 2}
    ten_days_ago = (today - timedelta(days=10)).isoformat()
    assert {"date": ten_days_ago, "count": 1} in data["signups"]
    assert data["by_role"] == {"MANAGER": 1, "CUSTOMER": 2, "VENDOR": 1}
    assert data["by_status"] == {"active": 4}

    default = ok(await client.get(f"{API}/analytics", headers=manager.headers))
    assert default["days"] == 30
    assert_error(
        await client.get(f"{API}/analytics", params={"days": 0}, headers=manager.headers),
        422,
        "VALIDATION_ERROR",
    )
