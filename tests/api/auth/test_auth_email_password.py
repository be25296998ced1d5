import asyncio

from auth_helpers import (
    API,
    NEW_PASSWORD,
    assert_error,
    bearer,
    login,
    mailed_token,
    mails,
    ok,
    refresh,
)


async def test_verify_email_with_the_mailed_token(client, container, make_user):
    user = await make_user()
    assert ok(await client.get(f"{API}/me", headers=user.headers))["verified"] is False
    token = mailed_token(container, user.email, "verify-email")
    assert ok(await client.post(f"{API}/verify-email", json={"token": token})) == {"verified": True}
    assert ok(await client.get(f"{API}/me", headers=user.headers))["verified"] is True


async def test_verify_email_token_is_single_use(client, container, make_user):
    user = await make_user()
    token = mailed_token(container, user.email, "verify-email")
    ok(await client.post(f"{API}/verify-email", json={"token": token}))
    response = await client.post(f"{API}/verify-email", json={"token": token})
    error = assert_error(response, 422, "INVALID_TOKEN")
    assert error["details"][0]["field"] == "token"


async def test_verify_email_unknown_token(client):
    response = await client.post(f"{API}/verify-email", json={"token": "z" * 43})
    assert_error(response, 422, "INVALID_TOKEN")


async def test_reset_token_cannot_verify_email(client, container, make_user, drain):
    user = await make_user()
    ok(await client.post(f"{API}/forgot-password", json={"email": user.email}), 202)
    await drain()
    reset = mailed_token(container, user.email, "reset-password")
    assert_error(
        await client.post(f"{API}/verify-email", json={"token": reset}), 422, "INVALID_TOKEN"
    )


async def test_resend_verification_sends_a_new_link(client, container, make_user, drain):
    user = await make_user()
    old = mailed_token(container, user.email, "verify-email")
    response = await client.post(f"{API}/resend-verification", headers=user.headers)
    assert response.status_code == 202, response.text
    assert response.json()["success"] is True
    await drain()
    new = mailed_token(container, user.email, "verify-email")
    assert new != old
    assert len(mails(container, user.email)) == 2
    # The earlier link stops working once a new one is sent.
    assert_error(
        await client.post(f"{API}/verify-email", json={"token": old}), 422, "INVALID_TOKEN"
    )
    ok(await client.post(f"{API}/verify-email", json={"token": new}))


async def test_resend_verification_needs_authentication(client):
    assert_error(await client.post(f"{API}/resend-verification"), 401, "UNAUTHENTICATED")


async def test_resend_verification_when_verified_conflicts(client, make_user):
    manager = await make_user("MANAGER")  # created verified
    response = await client.post(f"{API}/resend-verification", headers=manager.headers)
    assert_error(response, 409, "ALREADY_VERIFIED")


async def test_forgot_password_known_email_sends_a_reset_mail(client, container, make_user, drain):
    user = await make_user()
    response = await client.post(f"{API}/forgot-password", json={"email": user.email})
    assert ok(response, 202)["message"]
    await drain()
    assert mailed_token(container, user.email, "reset-password")


async def test_forgot_password_unknown_email_is_accepted_without_mail(client, container, drain):
    email = "ghost-account@example.com"
    known_shape = await client.post(f"{API}/forgot-password", json={"email": email})
    data = ok(known_shape, 202)
    await drain()
    assert mails(container, email) == []
    assert mails(container) == []
    assert data["message"]


async def test_forgot_password_answers_alike_for_known_and_unknown(client, make_user):
    user = await make_user()
    known = await client.post(f"{API}/forgot-password", json={"email": user.email})
    unknown = await client.post(f"{API}/forgot-password", json={"email": "nope@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json()["data"] == unknown.json()["data"]


async def test_reset_password_sets_the_new_password(client, container, make_user, drain):
    user = await make_user()
    other_session = ok(await login(client, user.email, user.password))["tokens"]
    ok(await client.post(f"{API}/forgot-password", json={"email": user.email}), 202)
    await drain()
    token = mailed_token(container, user.email, "reset-password")
    response = await client.post(
        f"{API}/reset-password", json={"token": token, "new_password": NEW_PASSWORD}
    )
    ok(response)
    # Every session is revoked.
    assert_error(await refresh(client, user.refresh_token), 401, "INVALID_REFRESH_TOKEN")
    assert_error(
        await refresh(client, other_session["refresh_token"]), 401, "INVALID_REFRESH_TOKEN"
    )
    assert_error(await login(client, user.email, user.password), 401, "INVALID_CREDENTIALS")
    data = ok(await login(client, user.email, NEW_PASSWORD))
    # Following the mailed link also proves the address.
    assert data["user"]["verified"] is True


async def test_reset_password_token_is_single_use(client, container, make_user, drain):
    user = await make_user()
    ok(await client.post(f"{API}/forgot-password", json={"email": user.email}), 202)
    await drain()
    token = mailed_token(container, user.email, "reset-password")
    body = {"token": token, "new_password": NEW_PASSWORD}
    ok(await client.post(f"{API}/reset-password", json=body))
    again = {"token": token, "new_password": "Another-Secret-88"}
    assert_error(await client.post(f"{API}/reset-password", json=again), 422, "INVALID_TOKEN")
    assert_error(await login(client, user.email, "Another-Secret-88"), 401, "INVALID_CREDENTIALS")


async def test_reset_password_policy_failure_keeps_the_token(client, container, make_user, drain):
    user = await make_user()
    ok(await client.post(f"{API}/forgot-password", json={"email": user.email}), 202)
    await drain()
    token = mailed_token(container, user.email, "reset-password")
    weak = {"token": token, "new_password": "password123"}
    error = assert_error(
        await client.post(f"{API}/reset-password", json=weak), 422, "VALIDATION_ERROR"
    )
    assert error["details"][0]["field"] == "new_password"
    ok(
        await client.post(
            f"{API}/reset-password", json={"token": token, "new_password": NEW_PASSWORD}
        )
    )


async def test_reset_password_older_link_dies_when_a_new_one_is_sent(
    client, container, make_user, drain
):
    user = await make_user()
    ok(await client.post(f"{API}/forgot-password", json={"email": user.email}), 202)
    await drain()
    first = mailed_token(container, user.email, "reset-password")
    ok(await client.post(f"{API}/forgot-password", json={"email": user.email}), 202)
    await drain()
    second = mailed_token(container, user.email, "reset-password")
    assert first != second
    body = {"token": first, "new_password": NEW_PASSWORD}
    assert_error(await client.post(f"{API}/reset-password", json=body), 422, "INVALID_TOKEN")
    ok(await client.post(f"{API}/reset-password", json={**body, "token": second}))


async def test_reset_password_with_verification_token_fails(client, container, make_user):
    user = await make_user()
    verify = mailed_token(container, user.email, "verify-email")
    body = {"token": verify, "new_password": NEW_PASSWORD}
    assert_error(await client.post(f"{API}/reset-password", json=body), 422, "INVALID_TOKEN")


async def test_change_password_wrong_current(client, make_user):
    user = await make_user()
    response = await client.post(
        f"{API}/change-password",
        json={"current_password": "Not-My-Password-1", "new_password": NEW_PASSWORD},
        headers=user.headers,
    )
    error = assert_error(response, 422, "INVALID_PASSWORD")
    assert error["details"][0]["field"] == "current_password"
    ok(await login(client, user.email, user.password))


async def change_password(client, user, current, new=NEW_PASSWORD):
    return await client.post(
        f"{API}/change-password",
        json={"current_password": current, "new_password": new},
        headers=user.headers,
    )


async def test_change_password_guesses_count_toward_the_account_lockout(client, make_user):
    """Guessing the current password is throttled like login, in the same bucket."""
    user = await make_user()
    for _ in range(5):
        response = await change_password(client, user, "Not-My-Password-1")
        assert_error(response, 422, "INVALID_PASSWORD")
    response = await change_password(client, user, "Not-My-Password-1")
    assert_error(response, 429, "RATE_LIMITED")
    assert int(response.headers["retry-after"]) >= 1
    # Locked: even the right password is refused, here and at login.
    assert_error(await change_password(client, user, user.password), 429, "RATE_LIMITED")
    assert_error(await login(client, user.email, user.password), 429, "RATE_LIMITED")


async def test_concurrent_change_password_guesses_cannot_outrun_the_lockout(client, make_user):
    user = await make_user()
    responses = await asyncio.gather(
        *(change_password(client, user, f"Not-My-Password-{i}") for i in range(20))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(422) <= 5, statuses
    assert statuses.count(422) + statuses.count(429) == 20, statuses
    assert_error(await login(client, user.email, user.password), 429, "RATE_LIMITED")


async def test_change_password_weak_new_password(client, make_user):
    user = await make_user()
    response = await client.post(
        f"{API}/change-password",
        json={"current_password": user.password, "new_password": "short"},
        headers=user.headers,
    )
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert error["details"][0]["field"] == "new_password"


async def test_change_password_to_the_same_password_is_refused(client, make_user):
    user = await make_user()
    response = await client.post(
        f"{API}/change-password",
        json={"current_password": user.password, "new_password": user.password},
        headers=user.headers,
    )
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_change_password_returns_new_tokens_and_revokes_old_sessions(
    client, container, make_user, drain
):
    user = await make_user()
    other = ok(await login(client, user.email, user.password))["tokens"]
    response = await client.post(
        f"{API}/change-password",
        json={"current_password": user.password, "new_password": NEW_PASSWORD},
        headers=user.headers,
    )
    tokens = ok(response)
    assert tokens["token_type"] == "Bearer"
    assert (
        ok(await client.get(f"{API}/me", headers=bearer(tokens["access_token"])))["id"] == user.id
    )
    assert_error(await refresh(client, user.refresh_token), 401, "INVALID_REFRESH_TOKEN")
    assert_error(await refresh(client, other["refresh_token"]), 401, "INVALID_REFRESH_TOKEN")
    ok(await refresh(client, tokens["refresh_token"]))
    assert_error(await login(client, user.email, user.password), 401, "INVALID_CREDENTIALS")
    ok(await login(client, user.email, NEW_PASSWORD))
    await drain()
    assert any("changed" in m["Subject"] for m in mails(container, user.email))


async def test_change_password_needs_authentication(client):
    response = await client.post(
        f"{API}/change-password",
        json={"current_password": "whatever-1", "new_password": NEW_PASSWORD},
    )
    assert_error(response, 401, "UNAUTHENTICATED")
