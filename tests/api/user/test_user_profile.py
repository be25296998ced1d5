import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select
from user_helpers import API, assert_error, ok, outbox_types, publish_as_auth

from ultramarket.core.events import EventEnvelope
from ultramarket.services.auth.events import UserRegistered, UserVerified
from ultramarket.services.user.models import Preferences, Profile


async def test_profile_is_created_by_the_registered_event(client, container, make_user):
    user = await make_user(first_name="Grace", last_name="Hopper")  # drains events

    async with container.db("user").read_session() as session:
        profile = await session.get(Profile, uuid.UUID(user.id))
        prefs = await session.get(Preferences, profile.id)
        assert profile.email == user.email
        assert (profile.first_name, profile.last_name) == ("Grace", "Hopper")
        assert (profile.role, profile.status, profile.verified) == ("CUSTOMER", "active", False)
        assert prefs is not None
        assert prefs.currency == "USD"

    data = ok(await client.get(f"{API}/me", headers=user.headers))
    assert data == {
        "id": user.id,
        "email": user.email,
        "first_name": "Grace",
        "last_name": "Hopper",
        "phone": None,
        "locale": None,
        "avatar_file_id": None,
    }


async def test_registered_event_is_idempotent_and_keeps_user_edits(client, container, make_user):
    user = await make_user(first_name="Grace")
    ok(await client.patch(f"{API}/me", headers=user.headers, json={"first_name": "Amazing"}))
    event = UserRegistered(
        user_id=user.id,
        email=user.email,
        first_name="Grace",
        last_name="User",
        role="CUSTOMER",
        verified=True,
    )
    for _ in range(2):  # a redelivery under a new event id, twice
        envelope = EventEnvelope(
            id=uuid.uuid4(),
            type=event.type,
            source="auth",
            occurred_at=datetime.now(UTC),
            data=event.model_dump(mode="json"),
        )
        await container.dispatcher.dispatch(envelope, final_attempt=False)

    async with container.db("user").read_session() as session:
        count = await session.scalar(select(func.count()).select_from(Profile))
        profile = await session.scalar(select(Profile))
        assert count == 1
        assert profile.first_name == "Amazing"
        assert profile.verified is True


async def test_me_is_created_lazily_when_the_event_is_late(client, drain):
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "email": "late@example.com",
            "password": "Correct-Horse-42",
            "first_name": "Late",
            "last_name": "Comer",
        },
    )
    headers = {"Authorization": f"Bearer {response.json()['data']['tokens']['access_token']}"}

    data = ok(await client.get(f"{API}/me", headers=headers))  # before any delivery
    assert data["email"] == "late@example.com"
    assert data["first_name"] == ""

    await drain()
    data = ok(await client.get(f"{API}/me", headers=headers))
    assert (data["first_name"], data["last_name"]) == ("Late", "Comer")


async def test_me_needs_a_token(client):
    assert_error(await client.get(f"{API}/me"), 401, "UNAUTHENTICATED")


async def test_patch_me_updates_the_profile_and_publishes(client, container, make_user):
    user = await make_user()
    file_id = "6f1c9a52-8e5b-4b0e-9a57-3d0f0d1c2b11"
    data = ok(
        await client.patch(
            f"{API}/me",
            headers=user.headers,
            json={
                "first_name": " Ada ",
                "phone": "+44 20 7946 0000",
                "locale": "en-GB",
                "avatar_file_id": file_id,
            },
        )
    )
    assert data["first_name"] == "Ada"
    assert data["last_name"] == "User"
    assert (data["phone"], data["locale"], data["avatar_file_id"]) == (
        "+44 20 7946 0000",
        "en-GB",
        file_id,
    )
    assert ok(await client.get(f"{API}/me", headers=user.headers)) == data
    assert "user.profile_updated.v1" in await outbox_types(container)

    cleared = ok(await client.patch(f"{API}/me", headers=user.headers, json={"phone": None}))
    assert cleared["phone"] is None
    assert cleared["locale"] == "en-GB"


async def test_patch_me_rejects_role_and_email(client, make_user):
    user = await make_user()
    manager = await make_user("MANAGER")
    for body in (
        {"role": "ADMIN"},
        {"email": "evil@example.com"},
        {"first_name": "X", "role": "ADMIN"},
        {"status": "active"},
        {"id": manager.id},
    ):
        error = assert_error(
            await client.patch(f"{API}/me", headers=user.headers, json=body),
            422,
            "VALIDATION_ERROR",
        )
        assert error["details"]

    detail = ok(await client.get(f"{API}/{user.id}", headers=manager.headers))
    assert (detail["role"], detail["email"], detail["first_name"]) == (
        "CUSTOMER",
        user.email,
        "Test",
    )


async def test_patch_me_validates_fields(client, make_user):
    user = await make_user()
    for body in (
        {"phone": "call me"},
        {"locale": "english please"},
        {"avatar_file_id": "x"},
        {"first_name": "x" * 101},
    ):
        assert_error(
            await client.patch(f"{API}/me", headers=user.headers, json=body),
            422,
            "VALIDATION_ERROR",
        )


async def test_auth_events_update_the_mirror(client, container, make_user, drain):
    admin = await make_user("ADMIN")
    user = await make_user()

    ok(
        await client.put(
            f"/api/v1/auth/accounts/{user.id}/role", headers=admin.headers, json={"role": "VENDOR"}
        )
    )
    ok(
        await client.put(
            f"/api/v1/auth/accounts/{user.id}/status",
            headers=admin.headers,
            json={"status": "suspended"},
        )
    )
    await publish_as_auth(container, UserVerified(user_id=user.id))
    await drain()
    detail = ok(await client.get(f"{API}/{user.id}", headers=admin.headers))
    assert (detail["role"], detail["status"], detail["verified"]) == ("VENDOR", "suspended", True)
    assert detail["last_login_at"] is None

    ok(
        await client.put(
            f"/api/v1/auth/accounts/{user.id}/status",
            headers=admin.headers,
            json={"status": "active"},
        )
    )
    ok(
        await client.post(
            "/api/v1/auth/login", json={"email": user.email, "password": user.password}
        )
    )
    await drain()
    detail = ok(await client.get(f"{API}/{user.id}", headers=admin.headers))
    assert detail["status"] == "active"
    assert detail["last_login_at"] is not None


async def test_a_late_registered_event_does_not_roll_back_the_mirror(
    client, container, make_user, drain
):
    """``user.registered`` retried after backoff lands after a role change and a
    verification: it fills in what registration owns and leaves the rest alone."""
    admin = await make_user("ADMIN")
    user = await make_user(first_name="Grace", last_name="Hopper")
    ok(
        await client.put(
            f"/api/v1/auth/accounts/{user.id}/role", headers=admin.headers, json={"role": "VENDOR"}
        )
    )
    await publish_as_auth(container, UserVerified(user_id=user.id))
    await drain()
    async with container.db("user").read_session() as session:
        created_at = (await session.get(Profile, uuid.UUID(user.id))).created_at

    late = UserRegistered(
        user_id=user.id,
        email=user.email,
        first_name="Grace",
        last_name="Hopper",
        role="CUSTOMER",
        verified=False,
    )
    envelope = EventEnvelope(
        id=uuid.uuid4(),
        type=late.type,
        source="auth",
        occurred_at=datetime.now(UTC),
        data=late.model_dump(mode="json"),
    )
    await container.dispatcher.dispatch(envelope, final_attempt=False)

    async with container.db("user").read_session() as session:
        profile = await session.get(Profile, uuid.UUID(user.id))
        assert (profile.role, profile.verified) == ("VENDOR", True)
        assert profile.created_at == created_at
        assert (profile.email, profile.first_name) == (user.email, "Grace")
