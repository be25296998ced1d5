import uuid

from auth_helpers import API, assert_error, login, mails, ok

PASSWORD = "Sturdy-Passphrase-9"


def new_email() -> str:
    return f"reg-{uuid.uuid4().hex[:10]}@example.com"


async def register(client, email, password=PASSWORD, **extra):
    body = {"email": email, "password": password, "first_name": "Reg", "last_name": "Ister"}
    return await client.post(f"{API}/register", json={**body, **extra})


async def test_register_returns_user_and_tokens(client):
    email = new_email()
    data = ok(await register(client, email), 201)
    assert set(data) == {"user", "tokens"}
    user, tokens = data["user"], data["tokens"]
    assert user["email"] == email
    assert user["role"] == "CUSTOMER"
    assert user["verified"] is False
    assert user["mfa"] is False
    assert user["first_name"] == "Reg"
    assert "password" not in user
    assert "password_hash" not in user
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert tokens["access_token"].count(".") == 2
    assert tokens["refresh_token"]
    me = await client.get(
        f"{API}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert ok(me)["id"] == user["id"]


async def test_register_duplicate_email_conflicts(client):
    email = new_email()
    ok(await register(client, email), 201)
    assert_error(await register(client, email), 409, "EMAIL_TAKEN")


async def test_register_duplicate_email_other_case_conflicts(client):
    email = new_email()
    ok(await register(client, email), 201)
    assert_error(await register(client, email.upper()), 409, "EMAIL_TAKEN")


async def test_register_stores_email_lowercased(client):
    email = new_email()
    data = ok(await register(client, email.replace("reg-", "REG-")), 201)
    assert data["user"]["email"] == email
    ok(await login(client, email.upper(), PASSWORD))


async def test_register_short_password_is_rejected(client):
    email = new_email()
    error = assert_error(await register(client, email, password="Ab1!x"), 422, "VALIDATION_ERROR")
    assert error["details"]
    assert error["details"][0]["field"] == "password"
    assert "8" in error["details"][0]["message"]
    assert_error(await login(client, email, "Ab1!x"), 401, "INVALID_CREDENTIALS")


async def test_register_common_password_is_rejected(client):
    error = assert_error(
        await register(client, new_email(), password="password123"), 422, "VALIDATION_ERROR"
    )
    assert error["details"]
    assert error["details"][0]["field"] == "password"
    assert "common" in error["details"][0]["message"]


async def test_register_common_password_check_ignores_case(client):
    assert_error(
        await register(client, new_email(), password="PASSWORD123"), 422, "VALIDATION_ERROR"
    )


async def test_register_password_equal_to_email_is_rejected(client):
    email = new_email()
    assert_error(await register(client, email, password=email), 422, "VALIDATION_ERROR")


async def test_register_error_details_never_echo_the_password(client):
    response = await register(client, new_email(), password="password123")
    assert_error(response, 422, "VALIDATION_ERROR")
    assert "password123" not in response.text


async def test_register_bad_email_is_rejected(client):
    error = assert_error(await register(client, "not-an-email"), 422, "VALIDATION_ERROR")
    assert any(d["field"].endswith("email") for d in error["details"])


async def test_register_missing_password_is_rejected(client):
    response = await client.post(f"{API}/register", json={"email": new_email()})
    error = assert_error(response, 422, "VALIDATION_ERROR")
    assert any(d["field"].endswith("password") for d in error["details"])


async def test_register_malformed_json_is_bad_request(client):
    response = await client.post(
        f"{API}/register", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "BAD_REQUEST")


async def test_register_role_field_is_refused(client):
    email = new_email()
    error = assert_error(await register(client, email, role="ADMIN"), 422, "VALIDATION_ERROR")
    assert any(d["field"].endswith("role") for d in error["details"])
    # No account was created at all, so in particular no ADMIN.
    assert_error(await login(client, email, PASSWORD), 401, "INVALID_CREDENTIALS")


async def test_register_other_privileged_fields_are_refused(client):
    for extra in ({"verified": True}, {"status": "active"}, {"permissions": ["*"]}):
        email = new_email()
        assert_error(await register(client, email, **extra), 422, "VALIDATION_ERROR")
        assert_error(await login(client, email, PASSWORD), 401, "INVALID_CREDENTIALS")


async def test_register_writes_a_verification_mail(client, container, drain):
    email = new_email()
    ok(await register(client, email), 201)
    await drain()
    sent = mails(container, email)
    assert len(sent) == 1
    assert "Confirm" in sent[0]["Subject"]
    assert "/verify-email?token=" in sent[0].get_content()


async def test_register_rate_limited_per_ip(client):
    for _ in range(20):
        ok(await register(client, new_email()), 201)
    response = await register(client, new_email())
    assert_error(response, 429, "RATE_LIMITED")
    assert int(response.headers["retry-after"]) >= 1
