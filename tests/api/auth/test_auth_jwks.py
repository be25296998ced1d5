from auth_helpers import API, unverified_parts

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


async def test_jwks_is_public_and_has_the_signing_kid(client, make_user):
    user = await make_user()
    response = await client.get(f"{API}/.well-known/jwks.json")
    assert response.status_code == 200, response.text
    keys = response.json()["keys"]
    header, _ = unverified_parts(user.access_token)
    kids = [k["kid"] for k in keys]
    assert header["kid"] in kids
    current = next(k for k in keys if k["kid"] == header["kid"])
    assert current["alg"] == header["alg"] == "EdDSA"
    assert current["use"] == "sig"
    assert current["kty"] == "OKP"


async def test_jwks_has_no_private_members(client):
    response = await client.get(f"{API}/.well-known/jwks.json")
    for key in response.json()["keys"]:
        assert not PRIVATE_MEMBERS & set(key), key


async def test_jwks_is_cacheable(client):
    response = await client.get(f"{API}/.well-known/jwks.json")
    assert "max-age" in response.headers["cache-control"]
