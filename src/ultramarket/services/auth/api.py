"""HTTP routes of the auth service: parse, authorise, call AuthService, shape the reply."""

from __future__ import annotations

import uuid
from typing import Annotated, NoReturn

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.deps import ContainerDep, unit_of_work
from ultramarket.core.ratelimit import client_key
from ultramarket.core.responses import JSONResponse
from ultramarket.core.schemas import Envelope, Page, PageParams, page_params
from ultramarket.core.security import CurrentPrincipal, Principal, Role, permissions_for, require
from ultramarket.core.service import ServiceRouter
from ultramarket.services.auth import schemas as s
from ultramarket.services.auth.keys import KeyStore
from ultramarket.services.auth.models import Account
from ultramarket.services.auth.service import AuthService, IssuedTokens, RequestInfo

router = ServiceRouter(prefix="/api/v1/auth", tags=["auth"])

Session = Annotated[AsyncSession, unit_of_work("auth")]


def keystore(container: ContainerDep) -> KeyStore:
    keys: KeyStore = container.extras["auth.keys"]
    return keys


async def auth_service(container: ContainerDep, session: Session) -> AuthService:
    return AuthService(
        session,
        settings=container.settings,
        keys=keystore(container),
        publisher=container.publisher("auth"),
        limiter=container.limiter,
    )


Auth = Annotated[AuthService, Depends(auth_service)]


async def request_info(request: Request) -> RequestInfo:
    return RequestInfo(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


Info = Annotated[RequestInfo, Depends(request_info)]


async def rate_limit(container: ContainerDep, info: Info, rule: str, name: str) -> None:
    await container.limiter.hit(rule, name, client_key(info.ip or "unknown"))


def limited(attribute: str) -> object:
    async def dependency(container: ContainerDep, info: Info) -> None:
        rule = getattr(container.settings.rate_limits, attribute)
        await rate_limit(container, info, rule, attribute)

    return Depends(dependency)


def user_read(account: Account) -> s.UserRead:
    return s.UserRead(
        id=account.id,
        email=account.email,
        first_name=account.first_name,
        last_name=account.last_name,
        role=account.role,
        status=account.status,
        verified=account.email_verified_at is not None,
        mfa=account.mfa_enabled_at is not None,
        created_at=account.created_at,
    )


def account_read(account: Account) -> s.AccountRead:
    return s.AccountRead(
        **user_read(account).model_dump(),
        last_login_at=account.last_login_at,
        email_verified_at=account.email_verified_at,
    )


def tokens(issued: IssuedTokens) -> s.Tokens:
    return s.Tokens(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )


ERRORS = {401: {"description": "Not authenticated"}, 422: {"description": "Invalid input"}}


@router.post(
    "/register",
    status_code=201,
    response_model=Envelope[s.AuthResult],
    responses={409: {"description": "Email taken"}, 429: {"description": "Rate limited"}},
    dependencies=[limited("register_per_ip")],
)
async def register(body: s.Register, auth: Auth, info: Info) -> Envelope[s.AuthResult]:
    account = await auth.register(
        email=body.email,
        password=body.password,
        first_name=body.first_name,
        last_name=body.last_name,
    )
    issued = await auth.issue_tokens(account, uuid.uuid4(), info)
    return Envelope(data=s.AuthResult(user=user_read(account), tokens=tokens(issued)))


@router.post(
    "/login",
    response_model=Envelope[s.AuthResult],
    responses={**ERRORS, 403: {"description": "Suspended"}, 429: {"description": "Brute force"}},
    dependencies=[limited("login_per_ip")],
)
async def login(body: s.Login, auth: Auth, info: Info) -> Envelope[s.AuthResult]:
    account, issued = await auth.login(
        email=body.email, password=body.password, totp_code=body.totp_code, info=info
    )
    return Envelope(data=s.AuthResult(user=user_read(account), tokens=tokens(issued)))


@router.post(
    "/refresh",
    response_model=Envelope[s.Tokens],
    responses=ERRORS,
    dependencies=[limited("refresh_per_ip")],
)
async def refresh(body: s.Refresh, auth: Auth, info: Info) -> Envelope[s.Tokens]:
    _, issued = await auth.refresh(body.refresh_token, info)
    return Envelope(data=tokens(issued))


@router.post("/logout", response_model=Envelope[dict[str, int]], responses=ERRORS)
async def logout(body: s.Logout, auth: Auth, me: CurrentPrincipal) -> Envelope[dict[str, int]]:
    revoked = await auth.logout(me.user_id, body.refresh_token, body.all)
    return Envelope(data={"revoked": revoked})


@router.post("/verify-email", response_model=Envelope[s.Verified], responses=ERRORS)
async def verify_email(body: s.VerifyEmail, auth: Auth) -> Envelope[s.Verified]:
    await auth.verify_email(body.token)
    return Envelope(data=s.Verified(verified=True))


@router.post(
    "/resend-verification",
    status_code=202,
    response_model=Envelope[s.Accepted],
    responses={**ERRORS, 409: {"description": "Already verified"}},
    dependencies=[limited("forgot_password_per_ip")],
)
async def resend_verification(auth: Auth, me: CurrentPrincipal) -> Envelope[s.Accepted]:
    await auth.resend_verification(me.user_id)
    return Envelope(data=s.Accepted(message="Verification email sent"))


@router.post(
    "/forgot-password",
    status_code=202,
    response_model=Envelope[s.Accepted],
    dependencies=[limited("forgot_password_per_ip")],
)
async def forgot_password(body: s.ForgotPassword, auth: Auth, info: Info) -> Envelope[s.Accepted]:
    await auth.forgot_password(body.email, info)
    return Envelope(
        data=s.Accepted(message="If an account exists for this email, a reset link is on its way")
    )


@router.post("/reset-password", response_model=Envelope[s.Verified], responses=ERRORS)
async def reset_password(body: s.ResetPassword, auth: Auth, info: Info) -> Envelope[s.Verified]:
    await auth.reset_password(body.token, body.new_password, info)
    return Envelope(data=s.Verified(verified=True))


@router.post("/change-password", response_model=Envelope[s.Tokens], responses=ERRORS)
async def change_password(
    body: s.ChangePassword, auth: Auth, me: CurrentPrincipal, info: Info
) -> Envelope[s.Tokens]:
    _, issued = await auth.change_password(
        me.user_id, body.current_password, body.new_password, info
    )
    return Envelope(data=tokens(issued))


@router.get("/me", response_model=Envelope[s.Me], responses=ERRORS)
async def me(auth: Auth, principal: CurrentPrincipal) -> Envelope[s.Me]:
    account = await auth.get(principal.user_id)
    return Envelope(
        data=s.Me(
            **user_read(account).model_dump(),
            permissions=sorted(permissions_for(account.role)),
        )
    )


@router.post("/mfa/setup", response_model=Envelope[s.MfaSetup], responses=ERRORS)
async def mfa_setup(auth: Auth, principal: CurrentPrincipal) -> Envelope[s.MfaSetup]:
    secret, uri = await auth.mfa_setup(principal.user_id)
    return Envelope(data=s.MfaSetup(secret=secret, otpauth_uri=uri))


@router.post("/mfa/enable", response_model=Envelope[s.MfaState], responses=ERRORS)
async def mfa_enable(
    body: s.MfaCode, auth: Auth, principal: CurrentPrincipal, info: Info
) -> Envelope[s.MfaState]:
    await auth.mfa_enable(principal.user_id, body.code, info)
    return Envelope(data=s.MfaState(mfa=True))


@router.post("/mfa/disable", response_model=Envelope[s.MfaState], responses=ERRORS)
async def mfa_disable(
    body: s.MfaCode, auth: Auth, principal: CurrentPrincipal, info: Info
) -> Envelope[s.MfaState]:
    await auth.mfa_disable(principal.user_id, body.code, info)
    return Envelope(data=s.MfaState(mfa=False))


@router.get("/.well-known/jwks.json", summary="Public signing keys (JWKS)")
async def jwks(container: ContainerDep) -> JSONResponse:
    return JSONResponse(
        keystore(container).jwks(), headers={"cache-control": "public, max-age=300"}
    )


# -- API keys (ADMIN) --------------------------------------------------------------------

AdminOnly = Annotated[Principal, require("*")]


def api_key_read(key: object) -> s.ApiKeyRead:
    return s.ApiKeyRead.model_validate(key)


@router.post("/api-keys", status_code=201, response_model=Envelope[s.ApiKeyCreated])
async def create_api_key(
    body: s.ApiKeyCreate, auth: Auth, admin: AdminOnly
) -> Envelope[s.ApiKeyCreated]:
    key, secret = await auth.create_api_key(
        body.name, body.scopes, actor=admin.user_id, service=body.service
    )
    return Envelope(data=s.ApiKeyCreated(**api_key_read(key).model_dump(), key=secret))


@router.get("/api-keys", response_model=Envelope[list[s.ApiKeyRead]])
async def list_api_keys(auth: Auth, _: AdminOnly) -> Envelope[list[s.ApiKeyRead]]:
    return Envelope(data=[api_key_read(k) for k in await auth.list_api_keys()])


@router.get("/api-keys/{key_id}", response_model=Envelope[s.ApiKeyRead])
async def get_api_key(key_id: uuid.UUID, auth: Auth, _: AdminOnly) -> Envelope[s.ApiKeyRead]:
    return Envelope(data=api_key_read(await auth.get_api_key(key_id)))


@router.delete("/api-keys/{key_id}", response_model=Envelope[s.ApiKeyRead])
async def revoke_api_key(key_id: uuid.UUID, auth: Auth, admin: AdminOnly) -> Envelope[s.ApiKeyRead]:
    await auth.revoke_api_key(key_id, actor=admin.user_id)
    return Envelope(data=api_key_read(await auth.get_api_key(key_id)))


@router.post(
    "/token",
    response_model=Envelope[s.AccessToken],
    responses=ERRORS,
    dependencies=[limited("refresh_per_ip")],
    summary="Client credentials: exchange an API key for a short-lived access token",
)
async def token(body: s.ClientCredentials, auth: Auth) -> Envelope[s.AccessToken]:
    access, ttl = await auth.exchange_api_key(body.api_key)
    return Envelope(data=s.AccessToken(access_token=access, expires_in=ttl))


# -- accounts, for other services and managers ------------------------------------------


@router.get("/accounts/{account_id}", response_model=Envelope[s.AccountRead])
async def get_account(
    account_id: uuid.UUID, auth: Auth, principal: CurrentPrincipal
) -> Envelope[s.AccountRead]:
    # A scope, not just being a service: an API key scoped elsewhere must not read accounts.
    if not (principal.can("user:read:any") or principal.owns(account_id)):
        raise_forbidden()
    return Envelope(data=account_read(await auth.get(account_id)))


@router.put("/accounts/{account_id}/role", response_model=Envelope[s.AccountRead])
async def change_role(
    account_id: uuid.UUID, body: s.RoleChange, auth: Auth, admin: AdminOnly
) -> Envelope[s.AccountRead]:
    account = await auth.change_role(account_id, Role(body.role), actor=admin.subject)
    return Envelope(data=account_read(account))


@router.put("/accounts/{account_id}/status", response_model=Envelope[s.AccountRead])
async def change_status(
    account_id: uuid.UUID,
    body: s.StatusChange,
    auth: Auth,
    actor: Annotated[Principal, require("user:write:any")],
) -> Envelope[s.AccountRead]:
    target = await auth.get(account_id)
    if target.role == Role.ADMIN and not actor.can("*"):
        raise_forbidden("Only an ADMIN can suspend an ADMIN")
    account = await auth.change_status(account_id, body.status, actor=actor.subject)
    return Envelope(data=account_read(account))


@router.get("/audit-log", response_model=Page[s.AuditEntryRead])
async def audit_log(
    auth: Auth,
    _: Annotated[Principal, require("audit:read")],
    paging: Annotated[PageParams, Depends(page_params)],
    action: Annotated[str | None, Query(max_length=64)] = None,
    subject_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[s.AuditEntryRead]:
    rows, total = await auth.audit_log(
        action=action, subject_id=subject_id, offset=paging.offset, limit=paging.limit
    )
    return Page.of(
        [s.AuditEntryRead.model_validate(r) for r in rows],
        page=paging.page,
        limit=paging.limit,
        total=total,
    )


def raise_forbidden(message: str = "You are not allowed to do this") -> NoReturn:
    from ultramarket.core.errors import Forbidden

    raise Forbidden(message)
