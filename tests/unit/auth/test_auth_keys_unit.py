import hashlib
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from ultramarket.core.config import AuthSettings
from ultramarket.core.errors import Forbidden, Unauthenticated
from ultramarket.core.security import TokenVerifier
from ultramarket.services.auth.keys import KeyStore, TokenIssuer, ensure_dev_key, public_jwk

NOW = 1_700_000_000


def b64url(data: bytes) -> str:
    return jwt.utils.base64url_encode(data).decode()


def store(private=None) -> KeyStore:
    private = private or ed25519.Ed25519PrivateKey.generate()
    jwk = public_jwk(private.public_key())
    return KeyStore(private, jwk["kid"], jwk["alg"], [jwk])


def test_thumbprint_is_stable_for_one_key():
    key = ed25519.Ed25519PrivateKey.generate()
    assert public_jwk(key.public_key())["kid"] == public_jwk(key.public_key())["kid"]


def test_thumbprint_differs_between_keys():
    a = public_jwk(ed25519.Ed25519PrivateKey.generate().public_key())
    b = public_jwk(ed25519.Ed25519PrivateKey.generate().public_key())
    assert a["kid"] != b["kid"]


def test_thumbprint_is_rfc7638_for_okp():
    jwk = public_jwk(ed25519.Ed25519PrivateKey.generate().public_key())
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":")
    )
    assert jwk["kid"] == b64url(hashlib.sha256(canonical.encode()).digest())
    assert jwk["alg"] == "EdDSA"
    assert jwk["use"] == "sig"
    assert "d" not in jwk


def test_thumbprint_is_rfc7638_for_rsa():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = public_jwk(key.public_key())
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"))
    assert jwk["kid"] == b64url(hashlib.sha256(canonical.encode()).digest())
    assert jwk["alg"] == "RS256"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)


def test_dev_key_survives_a_restart(tmp_path):
    first = public_jwk(ensure_dev_key(tmp_path).public_key())["kid"]
    second = public_jwk(ensure_dev_key(tmp_path).public_key())["kid"]
    assert first == second
    assert (tmp_path / f"{first}.public.json").exists()


def test_access_token_claims():
    keys = store()
    settings = AuthSettings()
    token = TokenIssuer(keys, settings).access_token(
        subject="7b0c4a1e-8f7a-4a59-9a44-0c6f7e1b2c3d",
        email="a@example.com",
        role="MANAGER",
        permissions=["audit:read", "user:read:any"],
        now=NOW,
    )
    header = jwt.get_unverified_header(token)
    assert header["kid"] == keys.kid
    assert header["alg"] == "EdDSA"
    claims = jwt.decode(
        token,
        keys.private_key.public_key(),
        algorithms=["EdDSA"],
        audience=settings.audience,
        issuer=settings.issuer,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["sub"] == "7b0c4a1e-8f7a-4a59-9a44-0c6f7e1b2c3d"
    assert claims["email"] == "a@example.com"
    assert claims["role"] == "MANAGER"
    assert claims["permissions"] == ["audit:read", "user:read:any"]
    assert claims["typ"] == "access"
    assert claims["iat"] == NOW
    assert claims["exp"] == NOW + 900
    assert claims["iss"] == "ultramarket"
    assert claims["aud"] == "ultramarket"
    assert len(claims["jti"]) == 32
    int(claims["jti"], 16)


def test_access_tokens_have_unique_jti():
    issuer = TokenIssuer(store(), AuthSettings())
    args = {"subject": "s", "email": "e@example.com", "role": "CUSTOMER", "permissions": []}
    a = jwt.decode(issuer.access_token(**args, now=NOW), options={"verify_signature": False})
    b = jwt.decode(issuer.access_token(**args, now=NOW), options={"verify_signature": False})
    assert a["jti"] != b["jti"]


def test_service_token_claims():
    keys = store()
    token = TokenIssuer(keys, AuthSettings()).service_token(
        subject="apikey:1", service="reporting", scopes=["audit:read"], now=NOW
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["typ"] == "service"
    assert claims["svc"] == "reporting"
    assert claims["permissions"] == ["audit:read"]
    assert claims["exp"] == NOW + 300
    assert "role" not in claims


async def test_verifier_accepts_issued_token_and_rejects_other_keys():
    keys = store()
    issuer = TokenIssuer(keys, AuthSettings())
    verifier = TokenVerifier(issuer="ultramarket", audience="ultramarket")
    verifier.add_jwks(keys.jwks())
    token = issuer.access_token(
        subject="7b0c4a1e-8f7a-4a59-9a44-0c6f7e1b2c3d",
        email="a@example.com",
        role="CUSTOMER",
        permissions=["cart:write"],
        now=int(time.time()),
    )
    principal = await verifier.verify(token)
    assert principal.kind == "user"
    assert principal.role == "CUSTOMER"
    assert principal.can("cart:write")

    stranger = TokenIssuer(store(), AuthSettings()).access_token(
        subject="7b0c4a1e-8f7a-4a59-9a44-0c6f7e1b2c3d",
        email="a@example.com",
        role="ADMIN",
        permissions=["*"],
        now=int(time.time()),
    )
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(stranger)
    assert caught.value.code == "INVALID_TOKEN"


async def test_api_key_tokens_are_not_service_tokens():
    keys = store()
    issuer = TokenIssuer(keys, AuthSettings())
    verifier = TokenVerifier(issuer="ultramarket", audience="ultramarket")
    verifier.add_jwks(keys.jwks())
    token = issuer.api_key_token(
        subject="apikey:1", name="reporting", scopes=["search:analytics"], now=int(time.time())
    )
    assert jwt.decode(token, options={"verify_signature": False})["typ"] == "api_key"
    principal = await verifier.verify(token)
    assert principal.kind == "api_key"
    assert not principal.is_service
    assert not principal.is_staff()
    assert principal.can("search:analytics")
    assert not principal.can("payment:create")
    with pytest.raises(Forbidden):
        _ = principal.user_id
    # Even every scope gives an API key no service identity (it is staff, as ADMIN is).
    everything = await verifier.verify(
        issuer.api_key_token(subject="apikey:2", name="ops", scopes=["*"], now=int(time.time()))
    )
    assert not everything.is_service
    assert everything.is_staff()
    # Only what the platform mints for its own services is a service.
    service = await verifier.verify(
        issuer.service_token(subject="service:order", service="order", scopes=["*"])
    )
    assert service.is_service
    assert service.service == "order"
