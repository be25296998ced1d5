"""The auth service's HTTP contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr, Field, StringConstraints

from ultramarket.core.schemas import ReadSchema, Schema

Password = Annotated[str, Field(min_length=1, max_length=256)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
TotpCode = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\d{6}$")]
Token = Annotated[str, StringConstraints(strip_whitespace=True, min_length=16, max_length=512)]
Scope = Annotated[str, StringConstraints(pattern=r"^(\*|[a-z_]+(:[a-z_*]+){0,2})$", max_length=64)]


class Register(Schema):
    email: EmailStr
    password: Password
    first_name: Name = ""
    last_name: Name = ""


class Login(Schema):
    email: EmailStr
    password: Password
    totp_code: TotpCode | None = None


class Refresh(Schema):
    refresh_token: Token


class Logout(Schema):
    refresh_token: Token | None = None
    all: bool = False


class VerifyEmail(Schema):
    token: Token


class ForgotPassword(Schema):
    email: EmailStr


class ResetPassword(Schema):
    token: Token
    new_password: Password


class ChangePassword(Schema):
    current_password: Password
    new_password: Password


class MfaCode(Schema):
    code: TotpCode


class ApiKeyCreate(Schema):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    scopes: list[Scope] = Field(default_factory=list, max_length=50)
    service: bool = Field(
        default=False,
        description=(
            "A platform service's key (split mode, ULTRAMARKET_SERVICE_API_KEY): its tokens "
            "act as the service named `name`, e.g. on services-only endpoints; scopes must be "
            '["*"]. Any other key gets exactly its scopes and is never a service.'
        ),
    )


class ClientCredentials(Schema):
    grant_type: Literal["client_credentials"]
    api_key: Annotated[str, StringConstraints(min_length=10, max_length=200)]


class RoleChange(Schema):
    role: Literal["ADMIN", "MANAGER", "VENDOR", "CUSTOMER"]


class StatusChange(Schema):
    status: Literal["active", "suspended"]


# -- responses -------------------------------------------------------------------


class Tokens(ReadSchema):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


class AccessToken(ReadSchema):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


class UserRead(ReadSchema):
    id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    role: str
    status: str
    verified: bool
    mfa: bool
    created_at: datetime


class Me(UserRead):
    permissions: list[str]


class AuthResult(ReadSchema):
    user: UserRead
    tokens: Tokens


class MfaSetup(ReadSchema):
    secret: str
    otpauth_uri: str


class MfaState(ReadSchema):
    mfa: bool


class Verified(ReadSchema):
    verified: bool


class Accepted(ReadSchema):
    message: str


class ApiKeyRead(ReadSchema):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    service: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret key. Shown once; store it now.")


class AuditEntryRead(ReadSchema):
    id: uuid.UUID
    at: datetime
    action: str
    actor_id: str | None
    subject_id: str | None
    email: str | None
    ip: str | None
    details: dict[str, object]


class AccountRead(UserRead):
    """What other services and managers see of an account."""

    last_login_at: datetime | None
    email_verified_at: datetime | None
