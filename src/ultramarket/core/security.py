"""Access-token verification, the current principal, roles and permissions.

Every service verifies access tokens itself with the auth service's public keys
(JWKS); only the auth service holds the private key. Tokens are checked for
signature, algorithm (pinned per key, so ``alg: none`` and algorithm swaps fail),
``kid``, ``exp``, ``iat``, ``iss`` and ``aud``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt
from fastapi import Depends, Request
from jwt import PyJWK

from ultramarket.core.errors import Forbidden, Unauthenticated

log = logging.getLogger("ultramarket.security")


class Role(enum.StrEnum):
    ADMIN = "ADMIN"
    MANAGER = "MANAGER"
    VENDOR = "VENDOR"
    CUSTOMER = "CUSTOMER"


ROLE_RANK = {Role.CUSTOMER: 0, Role.VENDOR: 0, Role.MANAGER: 1, Role.ADMIN: 2}

# Permission strings are "<resource>:<action>[:<scope>]"; "*" grants everything and
# "<resource>:*" everything on one resource.
ROLE_PERMISSIONS: dict[Role, frozenset[str]] = {
    Role.ADMIN: frozenset({"*"}),
    Role.MANAGER: frozenset(
        {
            "user:read:any",
            "user:write:any",
            "analytics:read",
            "admin:read",
            "product:write",
            "product:write:any",
            "category:write",
            "inventory:*",
            "coupon:write",
            "order:read:any",
            "order:write:any",
            "order:refund",
            "payment:read:any",
            "payment:refund",
            "review:moderate",
            "review:delete:any",
            "notification:send",
            "shipping:write",
            "search:analytics",
            "file:delete:any",
            "file:read:any",
            "file:write",
            "audit:read",
        }
    ),
    Role.VENDOR: frozenset(
        {
            "product:write",
            "order:read:own",
            "order:create",
            "file:write",
            "review:write",
            "cart:write",
            "payment:create",
            "wallet:use",
        }
    ),
    Role.CUSTOMER: frozenset(
        {"order:create", "review:write", "cart:write", "file:write", "payment:create", "wallet:use"}
    ),
}


def permissions_for(role: Role | str) -> frozenset[str]:
    return ROLE_PERMISSIONS[Role(role)]


def grants(granted: Iterable[str], wanted: str) -> bool:
    """True when the granted permission strings include ``wanted``."""

    parts = wanted.split(":")
    for perm in granted:
        if perm == "*" or perm == wanted:
            return True
        if perm.endswith(":*") and parts[: len(perm.split(":")) - 1] == perm.split(":")[:-1]:
            return True
    return False


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (access token), a platform service (service token) or an
    API key (a token bought with it: exactly its scopes, and no service identity)."""

    subject: str
    kind: str  # "user" | "service" | "api_key"
    role: Role | None = None
    email: str | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)
    token_id: str | None = None
    service: str | None = None

    @property
    def user_id(self) -> uuid.UUID:
        if self.kind != "user":
            raise Forbidden("This action needs a user account")
        return uuid.UUID(self.subject)

    @property
    def is_service(self) -> bool:
        """One of the platform's own services: only tokens the platform mints for them."""
        return self.kind == "service"

    def can(self, permission: str) -> bool:
        return grants(self.permissions, permission)

    def at_least(self, role: Role) -> bool:
        return self.role is not None and ROLE_RANK[self.role] >= ROLE_RANK[role]

    @property
    def holds_everything(self) -> bool:
        """A service or API key holding ``*`` (what ADMIN holds): past every role check.
        An API key scoped to a few permissions gets exactly its scopes."""
        return self.kind != "user" and self.can("*")

    def is_staff(self) -> bool:
        """MANAGER, ADMIN, or a service or API key holding ``*``."""
        return self.at_least(Role.MANAGER) or self.holds_everything

    def owns(self, user_id: uuid.UUID | str | None) -> bool:
        return self.kind == "user" and user_id is not None and str(user_id) == self.subject


class TokenVerifier:
    """Holds the public keys (by ``kid``) and verifies access tokens."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        leeway: int = 10,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.leeway = leeway
        self._keys: dict[str, PyJWK] = {}
        # Verified tokens (by their exact text) until they expire: a client sends the
        # same token many times, and a signature check costs more than a dict lookup.
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._cache_size = 10_000
        self._last_fetch = 0.0
        self._fetch_lock = asyncio.Lock()

    def add_jwks(self, jwks: dict[str, Any]) -> None:
        for data in jwks.get("keys", []):
            key = PyJWK.from_dict(data)
            if key.key_id:
                self._keys[key.key_id] = key

    def add_jwk_files(self, directory: Path) -> None:
        """Load ``*.public.json`` JWK files (written by the auth service in development)."""
        import json

        for path in sorted(directory.glob("*.public.json")):
            self.add_jwks({"keys": [json.loads(path.read_text())]})

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    async def _refresh(self) -> None:
        if not self.jwks_url:
            return
        async with self._fetch_lock:
            if time.monotonic() - self._last_fetch < 30:
                return
            self._last_fetch = time.monotonic()
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    response = await client.get(self.jwks_url)
                    response.raise_for_status()
                    self.add_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("could not fetch JWKS", extra={"error": str(exc)})

    def _decode(self, token: str) -> dict[str, Any]:
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise LookupError(kid)
        algorithm = key.algorithm_name
        if header.get("alg") != algorithm:
            raise jwt.InvalidAlgorithmError("algorithm does not match the key")
        return jwt.decode(
            token,
            key.key,
            algorithms=[algorithm],
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway,
            options={"require": ["exp", "iat", "sub", "iss", "aud", "jti"]},
        )

    async def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            if cached[1] > time.time():
                return cached[0]
            del self._verified[token]
        principal, expires = await self._verify(token)
        if len(self._verified) >= self._cache_size:
            self._verified.pop(next(iter(self._verified)))  # oldest first
        self._verified[token] = (principal, expires)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            try:
                claims = self._decode(token)
            except LookupError:
                await self._refresh()
                claims = self._decode(token)
        except LookupError:
            raise Unauthenticated("Unknown signing key", code="INVALID_TOKEN") from None
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("Token expired", code="TOKEN_EXPIRED") from None
        except jwt.PyJWTError:
            raise Unauthenticated("Invalid token", code="INVALID_TOKEN") from None
        return principal_from_claims(claims), float(claims["exp"])


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    typ = claims.get("typ", "access")
    perms = frozenset(str(p) for p in claims.get("permissions", []))
    if typ == "service":
        return Principal(
            subject=str(claims["sub"]),
            kind="service",
            service=claims.get("svc"),
            permissions=perms,
            token_id=claims.get("jti"),
        )
    if typ == "api_key":
        return Principal(
            subject=str(claims["sub"]),
            kind="api_key",
            permissions=perms,
            token_id=claims.get("jti"),
        )
    if typ != "access":
        raise Unauthenticated("Not an access token", code="INVALID_TOKEN")
    try:
        role = Role(claims["role"])
        uuid.UUID(str(claims["sub"]))
    except (KeyError, ValueError):
        raise Unauthenticated("Invalid token", code="INVALID_TOKEN") from None
    return Principal(
        subject=str(claims["sub"]),
        kind="user",
        role=role,
        email=claims.get("email"),
        permissions=perms,
        token_id=claims.get("jti"),
    )


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization header must be 'Bearer <token>'")
    return token.strip()


# Per-user rate limiting is applied where the principal becomes known; the app
# container provides it (see core.http), kept as a hook so core stays independent.
PrincipalHook = Callable[[Request, Principal], Awaitable[None]]


async def optional_principal(request: Request) -> Principal | None:
    # ``request.state`` is this dict; read directly, a miss costs no AttributeError.
    state: dict[str, Any] = request.scope.setdefault("state", {})
    cached: Principal | None = state.get("principal")
    if cached is not None:
        return cached
    token = bearer_token(request)
    if token is None:
        return None
    verifier: TokenVerifier = request.app.state.container.verifier
    principal = await verifier.verify(token)
    state["principal"] = principal
    hook: PrincipalHook | None = getattr(request.app.state.container, "principal_hook", None)
    if hook is not None:
        await hook(request, principal)
    return principal


async def current_principal(request: Request) -> Principal:
    principal = await optional_principal(request)
    if principal is None:
        raise Unauthenticated()
    return principal


# The dependencies below take the request and call ``optional_principal`` themselves
# rather than declaring it as a sub-dependency: every route has one of them, and each
# level of FastAPI's dependency tree costs as much as the check it wraps.
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


async def authorised(request: Request, permission: str) -> Principal:
    """The request's principal if it holds ``permission``; 401 without one, else 403.
    For a service's own dependency (``Depends`` on a function that calls this), which
    saves FastAPI a level of its dependency tree on every request."""
    principal = await current_principal(request)
    if not principal.can(permission):
        raise Forbidden(f"Missing permission {permission}")
    return principal


def require(permission: str) -> Any:
    """A dependency that yields the principal if it holds ``permission``, else 403."""

    async def dependency(request: Request) -> Principal:
        return await authorised(request, permission)

    dependency.__name__ = f"require_{permission.replace(':', '_').replace('*', 'all')}"
    return Depends(dependency)


def require_role(role: Role) -> Any:
    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)
        if not (principal.at_least(role) or principal.holds_everything):
            raise Forbidden(f"Requires {role.value} or higher")
        return principal

    return Depends(dependency)
