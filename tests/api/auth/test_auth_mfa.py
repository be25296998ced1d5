import asyncio
import time
from urllib.parse import parse_qs, urlparse

import pyotp
from auth_helpers import API, assert_error, login, ok


def wrong_code(secret: str) -> str:
    """A six-digit code that is not valid anywhere near now."""
    totp = pyotp.TOTP(secret)
    now = time.time()
    valid = {totp.at(now + 30 * k) for k in range(-3, 4)}
    candidate = 123456
    while f"{candidate:06d}" in valid:
        candidate += 1
    return f"{candidate:06d}"


async def setup(client, user) -> str:
    data = ok(await client.post(f"{API}/mfa/setup", headers=user.headers))
    return data["secret"]


async def enable(client, user) -> str:
    secret = await setup(client, user)
    response = await client.post(
        f"{API}/mfa/enable", json={"code": pyotp.TOTP(secret).now()}, headers=user.headers
    )
    assert ok(response) == {"mfa": True}
    return secret


async def test_mfa_setup_returns_secret_and_uri(client, make_user):
    user = await make_user()
    data = ok(await client.post(f"{API}/mfa/setup", headers=user.headers))
    assert data["secret"]
    uri = urlparse(data["otpauth_uri"])
    assert uri.scheme == "otpauth"
    assert uri.netloc == "totp"
    query = parse_qs(uri.query)
    assert query["secret"] == [data["secret"]]
    assert query["issuer"] == ["UltraMarket"]
    # Setting up alone does not turn MFA on.
    assert ok(await client.get(f"{API}/me", headers=user.headers))["mfa"] is False
    ok(await login(client, user.email, user.password))


async def test_mfa_setup_needs_authentication(client):
    assert_error(await client.post(f"{API}/mfa/setup"), 401, "UNAUTHENTICATED")


async def test_mfa_enable_with_wrong_code(client, make_user):
    user = await make_user()
    secret = await setup(client, user)
    response = await client.post(
        f"{API}/mfa/enable", json={"code": wrong_code(secret)}, headers=user.headers
    )
    error = assert_error(response, 422, "MFA_INVALID")
    assert error["details"][0]["field"] == "code"
    assert ok(await client.get(f"{API}/me", headers=user.headers))["mfa"] is False


async def test_mfa_enable_with_malformed_code(client, make_user):
    user = await make_user()
    await setup(client, user)
    response = await client.post(f"{API}/mfa/enable", json={"code": "12ab"}, headers=user.headers)
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_mfa_enable_without_setup(client, make_user):
    user = await make_user()
    response = await client.post(f"{API}/mfa/enable", json={"code": "123456"}, headers=user.headers)
    assert_error(response, 409, "MFA_NOT_SET_UP")


async def test_mfa_enable_and_login_flow(client, make_user):
    user = await make_user()
    secret = await enable(client, user)
    assert ok(await client.get(f"{API}/me", headers=user.headers))["mfa"] is True
    # The password alone is no longer enough.
    assert_error(await login(client, user.email, user.password), 401, "MFA_REQUIRED")
    response = await login(client, user.email, user.password, totp_code=wrong_code(secret))
    assert_error(response, 401, "MFA_INVALID")
    # The enable call used the current 30 s step; the next step is inside the window.
    code = pyotp.TOTP(secret).at(time.time() + 30)
    data = ok(await login(client, user.email, user.password, totp_code=code))
    assert data["user"]["mfa"] is True
    # A code is good once.
    assert_error(await login(client, user.email, user.password, totp_code=code), 401, "MFA_INVALID")


async def test_mfa_code_does_not_bypass_the_password(client, make_user):
    user = await make_user()
    secret = await enable(client, user)
    code = pyotp.TOTP(secret).at(time.time() + 30)
    response = await login(client, user.email, "Wrong-Password-1", totp_code=code)
    assert_error(response, 401, "INVALID_CREDENTIALS")
    # The code was not spent by the failed attempt.
    ok(await login(client, user.email, user.password, totp_code=code))


async def test_mfa_setup_again_when_enabled_conflicts(client, make_user):
    user = await make_user()
    await enable(client, user)
    assert_error(
        await client.post(f"{API}/mfa/setup", headers=user.headers), 409, "MFA_ALREADY_ENABLED"
    )


async def test_mfa_disable_with_wrong_code(client, make_user):
    user = await make_user()
    secret = await enable(client, user)
    response = await client.post(
        f"{API}/mfa/disable", json={"code": wrong_code(secret)}, headers=user.headers
    )
    assert_error(response, 422, "MFA_INVALID")
    assert ok(await client.get(f"{API}/me", headers=user.headers))["mfa"] is True


async def test_mfa_disable(client, make_user):
    user = await make_user()
    secret = await enable(client, user)
    code = pyotp.TOTP(secret).at(time.time() + 30)
    response = await client.post(f"{API}/mfa/disable", json={"code": code}, headers=user.headers)
    assert ok(response) == {"mfa": False}
    assert ok(await client.get(f"{API}/me", headers=user.headers))["mfa"] is False
    ok(await login(client, user.email, user.password))


async def test_mfa_disable_when_not_enabled(client, make_user):
    user = await make_user()
    response = await client.post(
        f"{API}/mfa/disable", json={"code": "123456"}, headers=user.headers
    )
    assert_error(response, 409, "MFA_NOT_ENABLED")


async def test_concurrent_wrong_codes_cannot_outrun_the_lockout(client, make_user):
    """The right password with a guessed code is a failed attempt too, counted before
    the code is checked: 25 guesses at once get at most the limit (5) evaluated."""
    user = await make_user()
    secret = await enable(client, user)
    responses = await asyncio.gather(
        *(login(client, user.email, user.password, totp_code=wrong_code(secret)) for _ in range(25))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(401) <= 5, statuses
    assert statuses.count(401) + statuses.count(429) == 25, statuses
    for response in responses:
        if response.status_code == 401:
            assert_error(response, 401, "MFA_INVALID")
        else:
            assert_error(response, 429, "RATE_LIMITED")
    code = pyotp.TOTP(secret).now()
    assert_error(
        await login(client, user.email, user.password, totp_code=code), 429, "RATE_LIMITED"
    )


async def test_mfa_disable_guesses_are_throttled(client, make_user):
    user = await make_user()
    secret = await enable(client, user)
    for _ in range(5):
        response = await client.post(
            f"{API}/mfa/disable", json={"code": wrong_code(secret)}, headers=user.headers
        )
        assert_error(response, 422, "MFA_INVALID")
    response = await client.post(
        f"{API}/mfa/disable", json={"code": wrong_code(secret)}, headers=user.headers
    )
    assert_error(response, 429, "RATE_LIMITED")
    assert ok(await client.get(f"{API}/me", headers=user.headers))["mfa"] is True
