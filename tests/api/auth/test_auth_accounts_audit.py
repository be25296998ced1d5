from auth_helpers import API, assert_error, login, ok, refresh


async def audit(client, who, **params):
    response = await client.get(f"{API}/audit-log", params=params, headers=who.headers)
    return ok(response)


async def test_change_role_needs_admin(client, make_user):
    target = await make_user()
    for role in ("CUSTOMER", "VENDOR", "MANAGER"):
        actor = await make_user(role)
        response = await client.put(
            f"{API}/accounts/{target.id}/role", json={"role": "ADMIN"}, headers=actor.headers
        )
        assert_error(response, 403, "FORBIDDEN")
    me = ok(await client.get(f"{API}/me", headers=target.headers))
    assert me["role"] == "CUSTOMER"


async def test_customer_cannot_promote_themselves(client, make_user):
    user = await make_user()
    response = await client.put(
        f"{API}/accounts/{user.id}/role", json={"role": "ADMIN"}, headers=user.headers
    )
    assert_error(response, 403, "FORBIDDEN")


async def test_change_role_by_admin_is_audited(client, make_user):
    admin = await make_user("ADMIN")
    manager = await make_user("MANAGER")
    user = await make_user()
    response = await client.put(
        f"{API}/accounts/{user.id}/role", json={"role": "VENDOR"}, headers=admin.headers
    )
    assert ok(response)["role"] == "VENDOR"
    entries = await audit(client, manager, action="role.changed", subject_id=user.id)
    assert len(entries) == 1
    assert entries[0]["actor_id"] == admin.id
    assert entries[0]["details"] == {"from": "CUSTOMER", "to": "VENDOR"}
    # The new role applies from the next login; old refresh tokens are revoked.
    assert_error(await refresh(client, user.refresh_token), 401, "INVALID_REFRESH_TOKEN")
    data = ok(await login(client, user.email, user.password))
    assert data["user"]["role"] == "VENDOR"


async def test_change_role_rejects_unknown_role(client, make_user):
    admin = await make_user("ADMIN")
    user = await make_user()
    response = await client.put(
        f"{API}/accounts/{user.id}/role", json={"role": "ROOT"}, headers=admin.headers
    )
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_change_role_unknown_account(client, make_user):
    admin = await make_user("ADMIN")
    response = await client.put(
        f"{API}/accounts/00000000-0000-0000-0000-000000000000/role",
        json={"role": "VENDOR"},
        headers=admin.headers,
    )
    assert_error(response, 404, "USER_NOT_FOUND")


async def test_change_status_needs_manager(client, make_user):
    user = await make_user()
    other = await make_user()
    response = await client.put(
        f"{API}/accounts/{other.id}/status", json={"status": "suspended"}, headers=user.headers
    )
    assert_error(response, 403, "FORBIDDEN")


async def test_manager_cannot_suspend_an_admin(client, make_user):
    admin = await make_user("ADMIN")
    manager = await make_user("MANAGER")
    response = await client.put(
        f"{API}/accounts/{admin.id}/status", json={"status": "suspended"}, headers=manager.headers
    )
    assert_error(response, 403, "FORBIDDEN")
    ok(await login(client, admin.email, admin.password))


async def test_status_change_is_audited(client, make_user):
    manager = await make_user("MANAGER")
    user = await make_user()
    ok(
        await client.put(
            f"{API}/accounts/{user.id}/status",
            json={"status": "suspended"},
            headers=manager.headers,
        )
    )
    entries = await audit(client, manager, action="status.changed", subject_id=user.id)
    assert [e["details"] for e in entries] == [{"status": "suspended"}]
    assert entries[0]["actor_id"] == manager.id


async def test_audit_log_records_login_success_and_failure(client, make_user):
    manager = await make_user("MANAGER")
    user = await make_user()
    ok(await login(client, user.email, user.password))
    assert_error(await login(client, user.email, "Wrong-Password-1"), 401, "INVALID_CREDENTIALS")
    successes = await audit(client, manager, action="login.success", subject_id=user.id)
    assert len(successes) == 1
    assert successes[0]["ip"] == "203.0.113.7"
    assert successes[0]["email"] == user.email
    failures = await audit(client, manager, action="login.failure", subject_id=user.id)
    assert len(failures) == 1
    assert failures[0]["details"]["reason"] == "bad_credentials"
    assert failures[0]["ip"] == "203.0.113.7"


async def test_audit_log_records_failures_for_unknown_emails(client, make_user):
    manager = await make_user("MANAGER")
    await login(client, "who-is-this@example.com", "Wrong-Password-1")
    failures = await audit(client, manager, action="login.failure")
    assert [f["email"] for f in failures] == ["who-is-this@example.com"]
    assert failures[0]["subject_id"] is None


async def test_audit_log_never_stores_passwords(client, make_user):
    manager = await make_user("MANAGER")
    user = await make_user()
    await login(client, user.email, "Wrong-Password-1")
    response = await client.get(f"{API}/audit-log", params={"limit": 100}, headers=manager.headers)
    ok(response)
    assert "Wrong-Password-1" not in response.text
    assert user.password not in response.text


async def test_audit_log_needs_audit_read(client, make_user):
    for role in ("CUSTOMER", "VENDOR"):
        user = await make_user(role)
        assert_error(await client.get(f"{API}/audit-log", headers=user.headers), 403, "FORBIDDEN")
    assert_error(await client.get(f"{API}/audit-log"), 401, "UNAUTHENTICATED")


async def test_audit_log_is_paginated(client, make_user):
    manager = await make_user("MANAGER")
    user = await make_user()
    for _ in range(3):
        await login(client, user.email, "Wrong-Password-1")
    response = await client.get(
        f"{API}/audit-log",
        params={"action": "login.failure", "limit": 2, "page": 1},
        headers=manager.headers,
    )
    body = response.json()
    assert len(ok(response)) == 2
    assert body["meta"] == {"page": 1, "limit": 2, "total": 3, "pages": 2}


async def test_get_account_owner_or_staff_only(client, make_user):
    user = await make_user()
    other = await make_user()
    manager = await make_user("MANAGER")
    assert ok(await client.get(f"{API}/accounts/{user.id}", headers=user.headers))["id"] == user.id
    assert (
        ok(await client.get(f"{API}/accounts/{user.id}", headers=manager.headers))["id"] == user.id
    )
    response = await client.get(f"{API}/accounts/{user.id}", headers=other.headers)
    assert_error(response, 403, "FORBIDDEN")
