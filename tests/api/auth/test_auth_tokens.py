import hashlib
import hmac
import time
import uuid

import jwt
from auth_helpers import API, assert_error, b64json, b64url, bearer, ok, unverified_parts
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def claims_for(user, **changes):
    now = int(time.time())
    claims = {
        "sub": user.id,
        "email": user.email,
        "role": user.role,
        "permissions": [],
        "typ": "access",
        "iat": now,
        "exp": now + 900,
        "iss": "ultramarket",
        "aud": "ultramarket",
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def me(client, token):
    return await client.get(f"{API}/me", headers=bearer(token))


async def test_me_returns_the_profile_and_permissions(client, make_user):
    user = await make_user("MANAGER")
    data = ok(await me(client, user.access_token))
    assert data["id"] == user.id
    assert data["email"] == user.email
    assert data["role"] == "MANAGER"
    assert "audit:read" in data["permissions"]
    assert data["verified"] is True
    assert data["mfa"] is False


async def test_me_without_token_is_unauthenticated(client):
    assert_error(await client.get(f"{API}/me"), 401, "UNAUTHENTICATED")


async def test_me_with_a_non_bearer_scheme_is_unauthenticated(client, make_user):
    user = await make_user()
    response = await client.get(
        f"{API}/me", headers={"Authorization": f"Basic {user.access_token}"}
    )
    assert_error(response, 401, "UNAUTHENTICATED")


async def test_me_with_garbage_token_is_invalid(client):
    assert_error(await me(client, "not.a.jwt"), 401, "INVALID_TOKEN")
    assert_error(await me(client, "garbage"), 401, "INVALID_TOKEN")


async def test_our_own_signed_token_is_accepted(client, container, make_user):
    # Sanity check for the forgeries below: the same claims signed by the real key pass.
    user = await make_user()
    token = container.extras["auth.keys"].sign(claims_for(user))
    assert ok(await me(client, token))["id"] == user.id


async def test_expired_token_is_rejected(client, container, make_user):
    user = await make_user()
    now = int(time.time())
    token = container.extras["auth.keys"].sign(claims_for(user, iat=now - 4000, exp=now - 3000))
    assert_error(await me(client, token), 401, "TOKEN_EXPIRED")


async def test_token_without_exp_is_rejected(client, container, make_user):
    user = await make_user()
    token = container.extras["auth.keys"].sign(claims_for(user, exp=None))
    assert_error(await me(client, token), 401, "INVALID_TOKEN")


async def test_token_without_jti_is_rejected(client, container, make_user):
    user = await make_user()
    token = container.extras["auth.keys"].sign(claims_for(user, jti=None))
    assert_error(await me(client, token), 401, "INVALID_TOKEN")


async def test_tampered_payload_is_rejected(client, make_user):
    user = await make_user()
    header, payload, signature = user.access_token.split(".")
    index = len(payload) // 2
    flipped = "A" if payload[index] != "A" else "B"
    tampered = f"{header}.{payload[:index]}{flipped}{payload[index + 1 :]}.{signature}"
    assert_error(await me(client, tampered), 401, "INVALID_TOKEN")


async def test_payload_escalated_to_admin_is_rejected(client, make_user):
    user = await make_user()
    header, _, signature = user.access_token.split(".")
    _, claims = unverified_parts(user.access_token)
    claims.update(role="ADMIN", permissions=["*"])
    forged = f"{header}.{b64json(claims)}.{signature}"
    assert_error(await me(client, forged), 401, "INVALID_TOKEN")


async def test_tampered_signature_is_rejected(client, make_user):
    user = await make_user()
    header, payload, signature = user.access_token.split(".")
    flipped = "A" if signature[0] != "A" else "B"
    assert_error(
        await me(client, f"{header}.{payload}.{flipped}{signature[1:]}"), 401, "INVALID_TOKEN"
    )


async def test_alg_none_token_is_rejected(client, make_user):
    user = await make_user()
    header, claims = unverified_parts(user.access_token)
    for alg in ("none", "None", "NONE"):
        forged_header = {"alg": alg, "typ": "JWT", "kid": header["kid"]}
        token = f"{b64json(forged_header)}.{b64json(claims)}."
        assert_error(await me(client, token), 401, "INVALID_TOKEN")


async def test_token_signed_by_a_foreign_key_is_rejected(client, make_user):
    user = await make_user()
    header, claims = unverified_parts(user.access_token)
    foreign = ed25519.Ed25519PrivateKey.generate()
    for kid in (header["kid"], "attacker-key"):
        token = jwt.encode(claims, foreign, algorithm="EdDSA", headers={"kid": kid})
        assert_error(await me(client, token), 401, "INVALID_TOKEN")


async def test_token_without_kid_is_rejected(client, make_user):
    user = await make_user()
    _, claims = unverified_parts(user.access_token)
    foreign = ed25519.Ed25519PrivateKey.generate()
    token = jwt.encode(claims, foreign, algorithm="EdDSA")
    assert_error(await me(client, token), 401, "INVALID_TOKEN")


async def test_hs256_token_keyed_with_the_public_key_is_rejected(client, container, make_user):
    user = await make_user()
    header, claims = unverified_parts(user.access_token)
    public = container.extras["auth.keys"].private_key.public_key()
    jwk = next(k for k in container.extras["auth.keys"].jwks()["keys"] if k["kid"] == header["kid"])
    secrets = [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        jwk["x"].encode(),
    ]
    for secret in secrets:
        forged_header = {"alg": "HS256", "typ": "JWT", "kid": header["kid"]}
        signing_input = f"{b64json(forged_header)}.{b64json(claims)}"
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{b64url(signature)}"
        assert_error(await me(client, token), 401, "INVALID_TOKEN")


async def test_wrong_audience_is_rejected(client, container, make_user):
    user = await make_user()
    token = container.extras["auth.keys"].sign(claims_for(user, aud="someone-else"))
    assert_error(await me(client, token), 401, "INVALID_TOKEN")


async def test_wrong_issuer_is_rejected(client, container, make_user):
    user = await make_user()
    token = container.extras["auth.keys"].sign(claims_for(user, iss="evil-issuer"))
    assert_error(await me(client, token), 401, "INVALID_TOKEN")


async def test_token_of_an_unknown_type_is_rejected(client, container, make_user):
    user = await make_user()
    token = container.extras["auth.keys"].sign(claims_for(user, typ="refresh"))
    assert_error(await me(client, token), 401, "INVALID_TOKEN")


async def test_token_with_unknown_role_is_rejected(client, container, make_user):
    user = await make_user()
    token = container.extras["auth.keys"].sign(claims_for(user, role="ROOT"))
    assert_error(await me(client, token), 401, "INVALID_TOKEN")


async def test_service_token_cannot_call_me(client, container):
    # A service token names a service, not a user: /me is not for it.
    keys = container.extras["auth.keys"]
    now = int(time.time())
    token = keys.sign(
        {
            "sub": "service:orders",
            "svc": "orders",
            "permissions": ["*"],
            "typ": "service",
            "iat": now,
            "exp": now + 300,
            "iss": "ultramarket",
            "aud": "ultramarket",
            "jti": uuid.uuid4().hex,
        }
    )
    assert_error(await me(client, token), 403, "FORBIDDEN")
    response = await client.post(f"{API}/mfa/setup", headers=bearer(token))
    assert_error(response, 403, "FORBIDDEN")
