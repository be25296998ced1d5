async def test_register_and_me(client, make_user):
    user = await make_user()
    response = await client.get("/api/v1/auth/me", headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["data"]["email"] == user.email
    assert body["data"]["role"] == "CUSTOMER"
