"""The signing keys: only the auth service holds the private key.

Development generates an Ed25519 key into ``<data_dir>/keys`` on first run (atomically,
so several workers agree on one key) and publishes its public JWK beside it.
Production takes the PEM from ``ULTRAMARKET_AUTH__PRIVATE_KEY``; retired public keys
stay valid through ``ULTRAMARKET_AUTH__PREVIOUS_PUBLIC_KEYS`` until their tokens expire.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from ultramarket.core.config import AuthSettings

PRIVATE_NAME = "signing.private.pem"
RETIRED_DIR = "retired"

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def _algorithm(key: PrivateKey | PublicKey) -> str:
    return (
        "EdDSA"
        if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey)
        else "RS256"
    )


def public_jwk(public: PublicKey) -> dict[str, Any]:
    """The JWK of a public key, with a ``kid`` that is its RFC 7638 thumbprint."""
    if isinstance(public, ed25519.Ed25519PublicKey):
        jwk: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(public))
    else:
        jwk = json.loads(RSAAlgorithm.to_jwk(public))
    required = {k: jwk[k] for k in sorted(jwk) if k in {"crv", "e", "kty", "n", "x"}}
    digest = jwt.utils.base64url_encode(
        hashlib.sha256(json.dumps(required, separators=(",", ":")).encode()).digest()
    ).decode()
    jwk.update(kid=digest, alg=_algorithm(public), use="sig")
    return jwk


def _load_private(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise ValueError("signing key must be Ed25519 or RSA")
    return key


def _load_public(pem: bytes) -> PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise ValueError("public key must be Ed25519 or RSA")
    return key


def _generate(algorithm: str) -> PrivateKey:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


def _pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_dev_key(directory: Path, algorithm: str = "EdDSA") -> PrivateKey:
    """Load the development key, creating it once if there is none."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PRIVATE_NAME
    if not path.exists():
        key = _generate(algorithm)
        tmp = directory / f".{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(_pem(key))
        try:
            os.link(tmp, path)  # atomic: the first worker wins, the others load its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = _load_private(path.read_bytes())
    jwk = public_jwk(key.public_key())
    (directory / f"{jwk['kid']}.public.json").write_text(json.dumps(jwk))
    return key


def rotate_dev_key(directory: Path, algorithm: str = "EdDSA") -> str:
    """Retire the current development key (its public half keeps verifying) and make a new one."""
    path = directory / PRIVATE_NAME
    if path.exists():
        retired = directory / RETIRED_DIR
        retired.mkdir(exist_ok=True)
        path.rename(retired / f"{int(time.time())}.private.pem")
    key = ensure_dev_key(directory, algorithm)
    return str(public_jwk(key.public_key())["kid"])


@dataclass
class KeyStore:
    private_key: PrivateKey
    kid: str
    algorithm: str
    verification_keys: list[dict[str, Any]]  # JWKs: current first, then retired ones

    @classmethod
    def from_settings(cls, settings: AuthSettings, data_dir: Path, production: bool) -> KeyStore:
        keys_dir = data_dir / "keys"
        if settings.private_key is not None:
            private = _load_private(settings.private_key.get_secret_value().encode())
        elif production:
            raise RuntimeError("ULTRAMARKET_AUTH__PRIVATE_KEY is required in production")
        else:
            private = ensure_dev_key(keys_dir, settings.algorithm)
        current = public_jwk(private.public_key())
        jwks = [current]
        for pem in settings.previous_public_keys:
            jwks.append(public_jwk(_load_public(pem.encode())))
        retired = keys_dir / RETIRED_DIR
        if settings.private_key is None and retired.is_dir():
            for old in sorted(retired.glob("*.private.pem")):
                jwks.append(public_jwk(_load_private(old.read_bytes()).public_key()))
        return cls(private, current["kid"], current["alg"], jwks)

    def jwks(self) -> dict[str, Any]:
        return {"keys": self.verification_keys}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm=self.algorithm, headers={"kid": self.kid}
        )


class TokenIssuer:
    """Signs access tokens (users), service tokens (the platform's own services) and
    API-key tokens (``typ`` ``api_key``: the key's scopes, no service identity)."""

    def __init__(self, keys: KeyStore, settings: AuthSettings) -> None:
        self.keys = keys
        self.settings = settings

    def _claims(self, now: int, ttl: int) -> dict[str, Any]:
        return {
            "iat": now,
            "exp": now + ttl,
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "jti": uuid.uuid4().hex,
        }

    def access_token(
        self, *, subject: str, email: str, role: str, permissions: list[str], now: int
    ) -> str:
        claims = self._claims(now, self.settings.access_ttl_seconds)
        claims.update(sub=subject, email=email, role=role, permissions=permissions, typ="access")
        return self.keys.sign(claims)

    def service_token(
        self, *, subject: str, service: str, scopes: list[str], now: int | None = None
    ) -> str:
        now = int(time.time()) if now is None else now
        claims = self._claims(now, self.settings.service_token_ttl_seconds)
        claims.update(sub=subject, svc=service, permissions=scopes, typ="service")
        return self.keys.sign(claims)

    def api_key_token(
        self, *, subject: str, name: str, scopes: list[str], now: int | None = None
    ) -> str:
        now = int(time.time()) if now is None else now
        claims = self._claims(now, self.settings.service_token_ttl_seconds)
        claims.update(sub=subject, name=name, permissions=scopes, typ="api_key")
        return self.keys.sign(claims)
