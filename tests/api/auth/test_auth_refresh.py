import asyncio

from auth_helpers import API, assert_error, bearer, login, ok, refresh


async def test_refresh_rotates_the_pair(client, make_user):
    user = await make_user()
    tokens = ok(await refresh(client, user.refresh_token))
    assert set(tokens) >= {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "Bearer"
    assert tokens["refresh_token"] != user.refresh_token
    assert tokens["access_token"] != user.access_token
    me = ok(await client.get(f"{API}/me", headers=bearer(tokens["access_token"])))
    assert me["id"] == user.id
    ok(await refresh(client, tokens["refresh_token"]))


async def test_refresh_unknown_token_is_rejected(client):
    assert_error(await refresh(client, "x" * 43), 401, "INVALID_REFRESH_TOKEN")


async def test_refresh_with_an_access_token_is_rejected(client, make_user):
    user = await make_user()
    response = await refresh(client, user.access_token)
    # Access tokens are longer than any refresh token, so the schema already refuses them.
    if response.status_code == 422:
        assert_error(response, 422, "VALIDATION_ERROR")
    else:
        assert_error(response, 401, "INVALID_REFRESH_TOKEN")


async def test_refresh_reuse_revokes_the_family(client, make_user):
    user = await make_user()
    other_login = ok(await login(client, user.email, user.password))["tokens"]
    newer = ok(await refresh(client, user.refresh_token))
    # The spent token comes back: someone stole it.
    assert_error(await refresh(client, user.refresh_token), 401, "REFRESH_TOKEN_REUSED")
    # The whole family is gone, including the newer token the thief or the user holds.
    assert_error(await refresh(client, newer["refresh_token"]), 401, "INVALID_REFRESH_TOKEN")
    # A separate login is a separate family and still works.
    ok(await refresh(client, other_login["refresh_token"]))


async def test_refresh_reuse_revokes_descendants_several_steps_on(client, make_user):
    user = await make_user()
    first = ok(await refresh(client, user.refresh_token))
    second = ok(await refresh(client, first["refresh_token"]))
    assert_error(await refresh(client, first["refresh_token"]), 401, "REFRESH_TOKEN_REUSED")
    assert_error(await refresh(client, second["refresh_token"]), 401, "INVALID_REFRESH_TOKEN")


async def test_refresh_reuse_is_audited(client, make_user):
    user = await make_user()
    manager = await make_user("MANAGER")
    ok(await refresh(client, user.refresh_token))
    await refresh(client, user.refresh_token)
    response = await client.get(
        f"{API}/audit-log",
        params={"action": "refresh.reuse_detected", "subject_id": user.id},
        headers=manager.headers,
    )
    assert len(ok(response)) == 1


async def test_concurrent_refresh_only_one_wins(client, make_user):
    user = await make_user()
    responses = await asyncio.gather(
        refresh(client, user.refresh_token), refresh(client, user.refresh_token)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 401], [r.text for r in responses]
    loser = next(r for r in responses if r.status_code == 401)
    assert_error(loser, 401, "REFRESH_TOKEN_REUSED")


async def test_refresh_body_is_validated(client):
    assert_error(await client.post(f"{API}/refresh", json={}), 422, "VALIDATION_ERROR")


async def test_logout_revokes_the_given_refresh_token(client, make_user):
    user = await make_user()
    other = ok(await login(client, user.email, user.password))["tokens"]
    response = await client.post(
        f"{API}/logout", json={"refresh_token": user.refresh_token}, headers=user.headers
    )
    assert ok(response) == {"revoked": 1}
    assert_error(await refresh(client, user.refresh_token), 401, "INVALID_REFRESH_TOKEN")
    ok(await refresh(client, other["refresh_token"]))


async def test_logout_all_revokes_every_session(client, make_user):
    user = await make_user()
    second = ok(await login(client, user.email, user.password))["tokens"]
    third = ok(await login(client, user.email, user.password))["tokens"]
    response = await client.post(f"{API}/logout", json={"all": True}, headers=user.headers)
    assert ok(response)["revoked"] == 3
    for token in (user.refresh_token, second["refresh_token"], third["refresh_token"]):
        assert_error(await refresh(client, token), 401, "INVALID_REFRESH_TOKEN")


async def test_logout_cannot_revoke_someone_elses_token(client, make_user):
    victim = await make_user()
    attacker = await make_user()
    response = await client.post(
        f"{API}/logout", json={"refresh_token": victim.refresh_token}, headers=attacker.headers
    )
    assert ok(response) == {"revoked": 0}
    ok(await refresh(client, victim.refresh_token))


async def test_logout_needs_a_token_or_all(client, make_user):
    user = await make_user()
    response = await client.post(f"{API}/logout", json={}, headers=user.headers)
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_logout_needs_authentication(client, make_user):
    user = await make_user()
    response = await client.post(f"{API}/logout", json={"refresh_token": user.refresh_token})
    assert_error(response, 401, "UNAUTHENTICATED")
    ok(await refresh(client, user.refresh_token))
