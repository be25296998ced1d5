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


ROUNDS = 8  # the races below are timing-dependent: several rounds make each outcome likely


async def test_reuse_racing_a_rotation_leaves_no_live_token(client, make_user):
    """A thief rotates R1 -> R2 while the victim replays the spent R0: whichever
    transaction commits first, no token of that family refreshes afterwards."""
    user = await make_user()
    for _ in range(ROUNDS):
        spent = ok(await login(client, user.email, user.password))["tokens"]["refresh_token"]
        stolen = ok(await refresh(client, spent))["refresh_token"]
        thief, victim = await asyncio.gather(refresh(client, stolen), refresh(client, spent))
        assert_error(victim, 401, "REFRESH_TOKEN_REUSED")
        if thief.status_code == 200:
            newest = thief.json()["data"]["refresh_token"]
            assert_error(await refresh(client, newest), 401, "INVALID_REFRESH_TOKEN")
        else:
            assert_error(thief, 401, "INVALID_REFRESH_TOKEN")


async def test_logout_everywhere_racing_a_refresh_leaves_no_live_token(client, make_user):
    user = await make_user()
    for _ in range(ROUNDS):
        tokens = ok(await login(client, user.email, user.password))["tokens"]
        rotated, logout = await asyncio.gather(
            refresh(client, tokens["refresh_token"]),
            client.post(
                f"{API}/logout", json={"all": True}, headers=bearer(tokens["access_token"])
            ),
        )
        ok(logout)
        if rotated.status_code == 200:
            newest = rotated.json()["data"]["refresh_token"]
            assert_error(await refresh(client, newest), 401, "INVALID_REFRESH_TOKEN")
        else:
            assert_error(rotated, 401, "INVALID_REFRESH_TOKEN")


async def test_role_change_racing_a_refresh_leaves_no_old_session(client, make_user):
    """A role change ends every session (the new role applies from the next login):
    a refresh committed around it must not leave a token that still works."""
    admin = await make_user("ADMIN")
    user = await make_user()
    for round_ in range(ROUNDS):
        tokens = ok(await login(client, user.email, user.password))["tokens"]
        role = ("VENDOR", "CUSTOMER")[round_ % 2]
        rotated, changed = await asyncio.gather(
            refresh(client, tokens["refresh_token"]),
            client.put(
                f"{API}/accounts/{user.id}/role", json={"role": role}, headers=admin.headers
            ),
        )
        assert ok(changed)["role"] == role
        if rotated.status_code == 200:
            newest = rotated.json()["data"]["refresh_token"]
            assert_error(await refresh(client, newest), 401, "INVALID_REFRESH_TOKEN")
        else:
            assert_error(rotated, 401, "INVALID_REFRESH_TOKEN")
