from auth_helpers import API, assert_error, bearer, ok, unverified_parts


async def create_key(client, admin, name="reporting", scopes=("audit:read",)):
    response = await client.post(
        f"{API}/api-keys", json={"name": name, "scopes": list(scopes)}, headers=admin.headers
    )
    return ok(response, 201)


async def exchange(client, key):
    return await client.post(
        f"{API}/token", json={"grant_type": "client_credentials", "api_key": key}
    )


async def test_api_keys_need_admin(client, make_user):
    for role in ("CUSTOMER", "VENDOR", "MANAGER"):
        user = await make_user(role)
        body = {"name": "x", "scopes": []}
        assert_error(
            await client.post(f"{API}/api-keys", json=body, headers=user.headers), 403, "FORBIDDEN"
        )
        assert_error(await client.get(f"{API}/api-keys", headers=user.headers), 403, "FORBIDDEN")


async def test_api_keys_need_authentication(client):
    assert_error(await client.get(f"{API}/api-keys"), 401, "UNAUTHENTICATED")


async def test_api_key_create_shows_the_key_once(client, make_user):
    admin = await make_user("ADMIN")
    created = await create_key(client, admin)
    assert created["key"].startswith("um_")
    assert created["name"] == "reporting"
    assert created["scopes"] == ["audit:read"]
    assert created["revoked_at"] is None
    assert created["key"].split("_")[1] == created["prefix"]

    listed = await client.get(f"{API}/api-keys", headers=admin.headers)
    items = ok(listed)
    assert [i["id"] for i in items] == [created["id"]]
    assert "key" not in items[0]
    assert created["key"] not in listed.text
    assert created["key"].split("_", 2)[2] not in listed.text

    fetched = await client.get(f"{API}/api-keys/{created['id']}", headers=admin.headers)
    assert "key" not in ok(fetched)
    assert created["key"].split("_", 2)[2] not in fetched.text


async def test_api_key_create_validates_scopes(client, make_user):
    admin = await make_user("ADMIN")
    response = await client.post(
        f"{API}/api-keys", json={"name": "bad", "scopes": ["NOT A SCOPE"]}, headers=admin.headers
    )
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_api_key_get_unknown_is_not_found(client, make_user):
    admin = await make_user("ADMIN")
    response = await client.get(
        f"{API}/api-keys/00000000-0000-0000-0000-000000000000", headers=admin.headers
    )
    assert_error(response, 404, "NOT_FOUND")


async def test_api_key_exchange_gives_a_scoped_service_token(client, make_user):
    admin = await make_user("ADMIN")
    created = await create_key(client, admin, scopes=["audit:read"])
    data = ok(await exchange(client, created["key"]))
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 300
    token = data["access_token"]
    # audit:read is enough for the audit log ...
    assert isinstance(ok(await client.get(f"{API}/audit-log", headers=bearer(token))), list)
    # ... but not for what needs more.
    response = await client.post(
        f"{API}/api-keys", json={"name": "escalate", "scopes": ["*"]}, headers=bearer(token)
    )
    assert_error(response, 403, "FORBIDDEN")
    # And it is not a user.
    assert_error(await client.get(f"{API}/me", headers=bearer(token)), 403, "FORBIDDEN")
    fetched = ok(await client.get(f"{API}/api-keys/{created['id']}", headers=admin.headers))
    assert fetched["last_used_at"] is not None


async def test_api_key_without_the_scope_is_forbidden(client, make_user):
    admin = await make_user("ADMIN")
    created = await create_key(client, admin, scopes=["product:write"])
    token = ok(await exchange(client, created["key"]))["access_token"]
    assert_error(await client.get(f"{API}/audit-log", headers=bearer(token)), 403, "FORBIDDEN")


async def test_revoked_api_key_is_rejected(client, make_user):
    admin = await make_user("ADMIN")
    created = await create_key(client, admin)
    ok(await exchange(client, created["key"]))
    revoked = ok(await client.delete(f"{API}/api-keys/{created['id']}", headers=admin.headers))
    assert revoked["revoked_at"] is not None
    assert "key" not in revoked
    assert_error(await exchange(client, created["key"]), 401, "INVALID_API_KEY")


async def test_wrong_api_key_is_rejected(client, make_user):
    admin = await make_user("ADMIN")
    created = await create_key(client, admin)
    um, prefix, secret = created["key"].split("_", 2)
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    for key in (f"{um}_{prefix}_{flipped}", f"um_000000000000_{secret}", "nonsense-key-value"):
        assert_error(await exchange(client, key), 401, "INVALID_API_KEY")


async def test_token_endpoint_needs_client_credentials_grant(client, make_user):
    admin = await make_user("ADMIN")
    created = await create_key(client, admin)
    response = await client.post(
        f"{API}/token", json={"grant_type": "password", "api_key": created["key"]}
    )
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_api_key_scopes_limit_account_reads(client, make_user):
    admin = await make_user("ADMIN")
    user = await make_user()
    narrow = await create_key(client, admin, name="catalog", scopes=["product:write"])
    token = ok(await exchange(client, narrow["key"]))["access_token"]
    response = await client.get(f"{API}/accounts/{user.id}", headers=bearer(token))
    assert_error(response, 403, "FORBIDDEN")
    wide = await create_key(client, admin, name="crm", scopes=["user:read:any"])
    token = ok(await exchange(client, wide["key"]))["access_token"]
    assert ok(await client.get(f"{API}/accounts/{user.id}", headers=bearer(token)))["id"] == user.id


async def test_api_key_token_is_not_a_service_token(client, make_user):
    """An API key gets exactly its scopes: it is not a platform service, so the
    services-only endpoints (charging a user's wallet, emptying a cart) refuse it."""
    admin = await make_user("ADMIN")
    victim = await make_user()
    created = await create_key(client, admin, name="analytics", scopes=["search:analytics"])
    token = ok(await exchange(client, created["key"]))["access_token"]
    charge = {
        "user_id": victim.id,
        "order_id": "stolen-1",
        "amount": "10.00",
        "currency": "USD",
        "method": "wallet",
    }
    response = await client.post(
        "/api/v1/payments/internal/charges", json=charge, headers=bearer(token)
    )
    assert_error(response, 403, "FORBIDDEN")
    response = await client.get(f"/api/v1/cart/internal/users/{victim.id}", headers=bearer(token))
    assert_error(response, 403, "FORBIDDEN")
    response = await client.delete(
        f"/api/v1/cart/internal/users/{victim.id}", headers=bearer(token)
    )
    assert_error(response, 403, "FORBIDDEN")
    assert unverified_parts(token)[1]["typ"] == "api_key"


async def test_an_all_scopes_api_key_is_still_not_a_service(client, make_user):
    admin = await make_user("ADMIN")
    victim = await make_user()
    created = await create_key(client, admin, name="everything", scopes=["*"])
    assert created["service"] is False
    token = ok(await exchange(client, created["key"]))["access_token"]
    # Every permission, as its scopes say ...
    assert isinstance(ok(await client.get(f"{API}/audit-log", headers=bearer(token))), list)
    # ... but no service identity.
    response = await client.get(f"/api/v1/cart/internal/users/{victim.id}", headers=bearer(token))
    assert_error(response, 403, "FORBIDDEN")


async def test_service_api_key_buys_a_service_token(client, make_user):
    """Split mode: the key a platform service exchanges (ULTRAMARKET_SERVICE_API_KEY)
    is created as a service key and its tokens act as that service."""
    admin = await make_user("ADMIN")
    customer = await make_user()
    body = {"name": "order", "scopes": ["*"], "service": True}
    created = ok(await client.post(f"{API}/api-keys", json=body, headers=admin.headers), 201)
    assert created["service"] is True
    token = ok(await exchange(client, created["key"]))["access_token"]
    claims = unverified_parts(token)[1]
    assert (claims["typ"], claims["svc"]) == ("service", "order")
    response = await client.get(f"/api/v1/cart/internal/users/{customer.id}", headers=bearer(token))
    assert ok(response)["items"] == []


async def test_service_api_key_must_hold_every_scope(client, make_user):
    admin = await make_user("ADMIN")
    body = {"name": "order", "scopes": ["order:read:any"], "service": True}
    response = await client.post(f"{API}/api-keys", json=body, headers=admin.headers)
    assert_error(response, 422, "VALIDATION_ERROR")
