import asyncio
import uuid

from auth_helpers import API, assert_error, login, ok, refresh


async def test_login_success(client, make_user):
    user = await make_user()
    data = ok(await login(client, user.email, user.password))
    assert data["user"]["id"] == user.id
    assert data["user"]["email"] == user.email
    assert data["tokens"]["token_type"] == "Bearer"
    assert data["tokens"]["expires_in"] == 900
    me = await client.get(
        f"{API}/me", headers={"Authorization": f"Bearer {data['tokens']['access_token']}"}
    )
    assert ok(me)["id"] == user.id


async def test_login_email_is_case_insensitive(client, make_user):
    user = await make_user()
    ok(await login(client, user.email.upper(), user.password))


async def test_login_wrong_password(client, make_user):
    user = await make_user()
    assert_error(await login(client, user.email, "Wrong-Password-1"), 401, "INVALID_CREDENTIALS")


async def test_login_unknown_email_has_the_same_answer(client, make_user):
    user = await make_user()
    wrong = await login(client, user.email, "Wrong-Password-1")
    unknown = await login(client, "nobody-here@example.com", "Wrong-Password-1")
    e1 = assert_error(wrong, 401, "INVALID_CREDENTIALS")
    e2 = assert_error(unknown, 401, "INVALID_CREDENTIALS")
    assert e1["message"] == e2["message"]


async def test_login_brute_force_is_rate_limited_per_account(client, make_user):
    user = await make_user()
    for _ in range(5):
        assert_error(
            await login(client, user.email, "Wrong-Password-1"), 401, "INVALID_CREDENTIALS"
        )
    response = await login(client, user.email, "Wrong-Password-1")
    assert_error(response, 429, "RATE_LIMITED")
    assert int(response.headers["retry-after"]) >= 1
    # Even the right password is refused while the account is locked out.
    response = await login(client, user.email, user.password)
    assert_error(response, 429, "RATE_LIMITED")
    assert int(response.headers["retry-after"]) >= 1


async def test_login_brute_force_lockout_counts_other_email_case(client, make_user):
    user = await make_user()
    for i in range(5):
        email = user.email.upper() if i % 2 else user.email
        assert_error(await login(client, email, "Wrong-Password-1"), 401, "INVALID_CREDENTIALS")
    assert_error(await login(client, user.email, user.password), 429, "RATE_LIMITED")


async def test_login_brute_force_lockout_is_per_account(client, make_user):
    victim = await make_user()
    other = await make_user()
    for _ in range(6):
        await login(client, victim.email, "Wrong-Password-1")
    assert_error(await login(client, victim.email, victim.password), 429, "RATE_LIMITED")
    ok(await login(client, other.email, other.password))


async def test_login_success_resets_the_failure_count(client, make_user):
    user = await make_user()
    for _ in range(4):
        assert_error(
            await login(client, user.email, "Wrong-Password-1"), 401, "INVALID_CREDENTIALS"
        )
    ok(await login(client, user.email, user.password))
    for _ in range(4):
        assert_error(
            await login(client, user.email, "Wrong-Password-1"), 401, "INVALID_CREDENTIALS"
        )
    ok(await login(client, user.email, user.password))


async def test_login_rate_limited_per_ip(client):
    for _ in range(30):
        email = f"ip-{uuid.uuid4().hex[:10]}@example.com"
        assert_error(await login(client, email, "Wrong-Password-1"), 401, "INVALID_CREDENTIALS")
    response = await login(client, "another@example.com", "Wrong-Password-1")
    assert_error(response, 429, "RATE_LIMITED")
    assert int(response.headers["retry-after"]) >= 1


async def test_login_missing_fields_is_validation_error(client):
    response = await client.post(f"{API}/login", json={"email": "a@example.com"})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert any(d["field"].endswith("password") for d in error["details"])


async def test_login_suspended_account_is_forbidden(client, make_user):
    user = await make_user()
    manager = await make_user("MANAGER")
    response = await client.put(
        f"{API}/accounts/{user.id}/status", json={"status": "suspended"}, headers=manager.headers
    )
    assert ok(response)["status"] == "suspended"
    assert_error(await login(client, user.email, user.password), 403, "ACCOUNT_SUSPENDED")
    # Suspension also ended the sessions it had.
    assert_error(await refresh(client, user.refresh_token), 401, "INVALID_REFRESH_TOKEN")
    # A wrong password still only says the credentials are wrong.
    assert_error(await login(client, user.email, "Wrong-Password-1"), 401, "INVALID_CREDENTIALS")


async def test_login_works_again_after_reactivation(client, make_user):
    user = await make_user()
    manager = await make_user("MANAGER")
    url = f"{API}/accounts/{user.id}/status"
    ok(await client.put(url, json={"status": "suspended"}, headers=manager.headers))
    assert_error(await login(client, user.email, user.password), 403, "ACCOUNT_SUSPENDED")
    ok(await client.put(url, json={"status": "active"}, headers=manager.headers))
    ok(await login(client, user.email, user.password))


async def test_login_updates_last_login(client, make_user):
    user = await make_user()
    ok(await login(client, user.email, user.password))
    account = ok(await client.get(f"{API}/accounts/{user.id}", headers=user.headers))
    assert account["last_login_at"] is not None


async def test_concurrent_wrong_passwords_cannot_outrun_the_lockout(client, make_user):
    """Each attempt is counted before its password is checked: of 25 guesses sent at
    once, no more than the limit (5) are ever evaluated."""
    user = await make_user()
    responses = await asyncio.gather(
        *(login(client, user.email, "Wrong-Password-1") for _ in range(25))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(401) <= 5, statuses
    assert statuses.count(401) + statuses.count(429) == 25, statuses
    for response in responses:
        if response.status_code == 429:
            assert_error(response, 429, "RATE_LIMITED")
    assert_error(await login(client, user.email, user.password), 429, "RATE_LIMITED")
