"""Auth use cases: accounts, sessions (refresh-token families), MFA, API keys, audit."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
import pyotp
from email_validator import EmailNotValidError, validate_email
from prometheus_client import Counter
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.config import Settings
from ultramarket.core.crypto import Sealer
from ultramarket.core.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from ultramarket.core.events import EventPublisher
from ultramarket.core.ratelimit import RateLimiter
from ultramarket.core.security import Role, permissions_for
from ultramarket.services.auth import events
from ultramarket.services.auth.keys import KeyStore, TokenIssuer
from ultramarket.services.auth.models import Account, ApiKey, AuditEntry, OneTimeToken, RefreshToken
from ultramarket.services.auth.passwords import (
    check_policy,
    hash_password,
    needs_rehash,
    verify_password,
)

LOGINS = Counter("auth_logins_total", "Login attempts by outcome", ["outcome"])
REGISTRATIONS = Counter("auth_registrations_total", "Self-service sign-ups")
REFRESH_REUSE = Counter("auth_refresh_reuse_total", "Spent refresh tokens presented again")

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()


def valid_email(email: str) -> str:
    """The normalised address, or a 422 (the HTTP schemas check too; the CLI relies on this)."""
    try:
        return normalize_email(validate_email(email, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise ValidationFailed(
            "Invalid email address", details=[{"field": "email", "message": str(exc)}]
        ) from None


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class RequestInfo:
    ip: str | None = None
    user_agent: str | None = None


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        settings: Settings,
        keys: KeyStore,
        publisher: EventPublisher,
        limiter: RateLimiter,
        now: datetime | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.tokens = TokenIssuer(keys, settings.auth)
        self.publisher = publisher
        self.limiter = limiter
        self._now = now
        self._mfa = Sealer(settings.secret_key, "mfa")
        self._links = Sealer(settings.secret_key, events.LINK_PURPOSE)

    def now(self) -> datetime:
        from ultramarket.core.db import utcnow

        return self._now or utcnow()

    # -- accounts -------------------------------------------------------------------

    async def register(
        self, *, email: str, password: str, first_name: str, last_name: str
    ) -> Account:
        """Self-service sign-up: always a CUSTOMER, unverified, with a verification mail."""
        account = await self.create_account(
            email=email,
            password=password,
            first_name=first_name,
            last_name=last_name,
            role=Role.CUSTOMER,
            verified=False,
        )
        await self._request_verification(account)
        REGISTRATIONS.inc()
        return account

    async def create_account(
        self,
        *,
        email: str,
        password: str,
        first_name: str = "",
        last_name: str = "",
        role: Role = Role.CUSTOMER,
        verified: bool = True,
    ) -> Account:
        email = valid_email(email)
        check_policy(password, email=email)
        if await self._by_email(email) is not None:
            raise Conflict("An account with this email already exists", code="EMAIL_TAKEN")
        account = Account(
            email=email,
            password_hash=await anyio.to_thread.run_sync(hash_password, password),
            role=role.value,
            first_name=first_name,
            last_name=last_name,
            email_verified_at=self.now() if verified else None,
        )
        self.session.add(account)
        try:
            await self.session.flush()
        except IntegrityError:
            raise Conflict(
                "An account with this email already exists", code="EMAIL_TAKEN"
            ) from None
        await self.publisher.publish(
            self.session,
            events.UserRegistered(
                user_id=account.id,
                email=account.email,
                first_name=first_name,
                last_name=last_name,
                role=account.role,
                verified=verified,
            ),
        )
        return account

    async def get(self, account_id: uuid.UUID) -> Account:
        account = await self.session.get(Account, account_id)
        if account is None:
            raise NotFound("No such user", code="USER_NOT_FOUND")
        return account

    async def _by_email(self, email: str) -> Account | None:
        result = await self.session.scalars(select(Account).where(Account.email == email))
        return result.first()

    async def change_role(self, account_id: uuid.UUID, role: Role, *, actor: str) -> Account:
        account = await self.get(account_id)
        previous = account.role
        if previous == role.value:
            return account
        account.role = role.value
        await self._revoke_all(account.id)  # new permissions take effect on next login
        await self.audit(
            "role.changed",
            actor=actor,
            subject=account,
            details={"from": previous, "to": role.value},
        )
        await self.publisher.publish(
            self.session,
            events.UserRoleChanged(user_id=account.id, role=role.value, previous_role=previous),
        )
        return account

    async def change_status(self, account_id: uuid.UUID, status: str, *, actor: str) -> Account:
        account = await self.get(account_id)
        if account.status != status:
            account.status = status
            if status != "active":
                await self._revoke_all(account.id)
            await self.audit(
                "status.changed", actor=actor, subject=account, details={"status": status}
            )
            await self.publisher.publish(
                self.session, events.UserStatusChanged(user_id=account.id, status=status)
            )
        return account

    # -- login and sessions -------------------------------------------------------------

    async def login(
        self, *, email: str, password: str, totp_code: str | None, info: RequestInfo
    ) -> tuple[Account, IssuedTokens]:
        email = normalize_email(email)
        await self._attempt(email)
        account = await self._by_email(email)
        valid = await anyio.to_thread.run_sync(
            verify_password, account.password_hash if account else None, password
        )
        if account is None or not valid:
            await self._login_failed(email, account, info, "bad_credentials")
            raise Unauthenticated(
                "Email or password is wrong", code="INVALID_CREDENTIALS", persist_changes=True
            )
        if account.mfa_enabled_at is not None:
            if not totp_code:
                # Stays counted: the answer tells the password was right.
                raise Unauthenticated("A TOTP code is required", code="MFA_REQUIRED")
            if not await self._accept_totp(account, account.mfa_secret, totp_code):
                await self._login_failed(email, account, info, "bad_totp")
                raise Unauthenticated(
                    "The TOTP code is wrong", code="MFA_INVALID", persist_changes=True
                )
        if account.status != "active":
            await self.audit("login.blocked", subject=account, info=info)
            raise Forbidden(
                "This account is suspended", code="ACCOUNT_SUSPENDED", persist_changes=True
            )
        if needs_rehash(account.password_hash):
            account.password_hash = await anyio.to_thread.run_sync(hash_password, password)
        await self._attempt_succeeded(email)
        account.last_login_at = self.now()
        await self.audit("login.success", subject=account, info=info)
        LOGINS.labels("success").inc()
        await self.publisher.publish(
            self.session, events.UserLoggedIn(user_id=account.id, at=account.last_login_at)
        )
        return account, await self.issue_tokens(account, uuid.uuid4(), info)

    async def _attempt(self, email: str) -> None:
        """Count one guess at this account's password or TOTP code *before* checking it,
        and refuse (429) once over the limit: of many guesses sent at once, no more than
        the limit are ever evaluated. Success clears the count (``_attempt_succeeded``)."""
        await self.limiter.hit(
            self.settings.rate_limits.login_failures_per_account,
            "login-fail",
            email,
            message="Too many failed attempts for this account; try again later",
        )

    async def _attempt_succeeded(self, email: str) -> None:
        await self.limiter.reset(
            self.settings.rate_limits.login_failures_per_account, "login-fail", email
        )

    async def _login_failed(
        self, email: str, account: Account | None, info: RequestInfo, reason: str
    ) -> None:
        await self.audit(
            "login.failure", subject=account, email=email, info=info, details={"reason": reason}
        )
        LOGINS.labels(reason).inc()

    async def refresh(self, raw_token: str, info: RequestInfo) -> tuple[Account, IssuedTokens]:
        """Rotate a refresh token. A spent token presented again revokes its whole family."""
        now = self.now()
        token = (
            await self.session.scalars(
                select(RefreshToken).where(RefreshToken.token_hash == token_hash(raw_token))
            )
        ).first()
        if token is None:
            raise Unauthenticated("Invalid refresh token", code="INVALID_REFRESH_TOKEN")
        # Under the account's lock, read the token again: a revocation (logout, password
        # or role change, reuse detected) that committed while we waited is seen here, and
        # one that comes later waits for this rotation and revokes its new token too.
        await self._lock_account(token.account_id)
        await self.session.refresh(token)
        if token.revoked_at is not None or token.expires_at <= now:
            raise Unauthenticated("Invalid refresh token", code="INVALID_REFRESH_TOKEN")
        # Spend it with one conditional UPDATE: of two concurrent uses, one wins.
        spent = await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.id == token.id,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
            .values(used_at=now)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            await self.session.execute(
                update(RefreshToken)
                .where(RefreshToken.family_id == token.family_id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            REFRESH_REUSE.inc()
            await self.audit(
                "refresh.reuse_detected",
                subject_id=str(token.account_id),
                info=info,
                details={"family_id": str(token.family_id)},
            )
            raise Unauthenticated(
                "Refresh token reuse detected; all sessions of this login are revoked",
                code="REFRESH_TOKEN_REUSED",
                persist_changes=True,
            )
        account = await self.get(token.account_id)
        if account.status != "active":
            raise Unauthenticated("This account is suspended", code="ACCOUNT_SUSPENDED")
        return account, await self.issue_tokens(account, token.family_id, info)

    async def logout(self, account_id: uuid.UUID, raw_token: str | None, everywhere: bool) -> int:
        if everywhere:
            return await self._revoke_all(account_id)
        if raw_token is None:
            raise ValidationFailed(
                "Give the refresh_token to revoke, or all: true",
                details=[{"field": "refresh_token", "message": "required unless all is true"}],
            )
        result = await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash(raw_token),
                RefreshToken.account_id == account_id,
                RefreshToken.revoked_at.is_(None),
            )
            .values(revoked_at=self.now())
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def _lock_account(self, account_id: uuid.UUID) -> None:
        """Serialise an account's refresh-token rotations and revocations on its row.

        On PostgreSQL (READ COMMITTED) an UPDATE by ``family_id`` or ``account_id`` that
        waits on one token's row lock never sees the token the other transaction inserted
        meanwhile; taking this lock first makes every later statement see it. SQLite
        writers are serialised by ``BEGIN IMMEDIATE`` already.
        """
        await self.session.execute(
            select(Account.id).where(Account.id == account_id).with_for_update()
        )

    async def _revoke_all(self, account_id: uuid.UUID) -> int:
        await self._lock_account(account_id)
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.account_id == account_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=self.now())
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def issue_tokens(
        self, account: Account, family_id: uuid.UUID, info: RequestInfo
    ) -> IssuedTokens:
        now = self.now()
        refresh = secrets.token_urlsafe(32)
        self.session.add(
            RefreshToken(
                account_id=account.id,
                family_id=family_id,
                token_hash=token_hash(refresh),
                expires_at=now + timedelta(seconds=self.settings.auth.refresh_ttl_seconds),
                ip=info.ip,
                user_agent=(info.user_agent or "")[:255] or None,
            )
        )
        await self.session.flush()
        return IssuedTokens(
            self.access_token(account), refresh, self.settings.auth.access_ttl_seconds
        )

    def access_token(self, account: Account) -> str:
        return self.tokens.access_token(
            subject=str(account.id),
            email=account.email,
            role=account.role,
            permissions=sorted(permissions_for(account.role)),
            now=int(self.now().timestamp()),
        )

    # -- email verification and password reset --------------------------------------------

    async def _one_time_token(
        self, account: Account, purpose: str, ttl: int
    ) -> tuple[str, datetime]:
        raw = secrets.token_urlsafe(32)
        expires_at = self.now() + timedelta(seconds=ttl)
        self.session.add(
            OneTimeToken(
                account_id=account.id,
                purpose=purpose,
                token_hash=token_hash(raw),
                expires_at=expires_at,
            )
        )
        await self.session.flush()
        return raw, expires_at

    async def _request_verification(self, account: Account) -> None:
        raw, expires_at = await self._one_time_token(
            account, VERIFY_EMAIL, self.settings.auth.verify_ttl_seconds
        )
        await self.publisher.publish(
            self.session,
            events.EmailVerificationRequested(
                user_id=account.id,
                email=account.email,
                first_name=account.first_name,
                sealed_link=self._links.seal(
                    f"{self.settings.public_url}/verify-email?token={raw}"
                ),
                expires_at=expires_at,
            ),
        )

    async def resend_verification(self, account_id: uuid.UUID) -> None:
        account = await self.get(account_id)
        if account.email_verified_at is not None:
            raise Conflict("Email already verified", code="ALREADY_VERIFIED")
        await self._spend_open_tokens(account.id, VERIFY_EMAIL)
        await self._request_verification(account)

    async def _consume(self, raw: str, purpose: str) -> Account:
        now = self.now()
        token = (
            await self.session.scalars(
                select(OneTimeToken).where(
                    OneTimeToken.token_hash == token_hash(raw), OneTimeToken.purpose == purpose
                )
            )
        ).first()
        invalid = ValidationFailed(
            "The token is invalid, used or expired",
            code="INVALID_TOKEN",
            details=[{"field": "token", "message": "invalid, used or expired"}],
        )
        if token is None or token.expires_at <= now:
            raise invalid
        spent = await self.session.execute(
            update(OneTimeToken)
            .where(OneTimeToken.id == token.id, OneTimeToken.used_at.is_(None))
            .values(used_at=now)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            raise invalid
        return await self.get(token.account_id)

    async def _spend_open_tokens(self, account_id: uuid.UUID, purpose: str) -> None:
        await self.session.execute(
            update(OneTimeToken)
            .where(
                OneTimeToken.account_id == account_id,
                OneTimeToken.purpose == purpose,
                OneTimeToken.used_at.is_(None),
            )
            .values(used_at=self.now())
        )

    async def verify_email(self, raw: str) -> Account:
        account = await self._consume(raw, VERIFY_EMAIL)
        if account.email_verified_at is None:
            account.email_verified_at = self.now()
            await self.publisher.publish(self.session, events.UserVerified(user_id=account.id))
        return account

    async def forgot_password(self, email: str, info: RequestInfo) -> None:
        """Send a reset link if the account exists; say nothing either way."""
        account = await self._by_email(normalize_email(email))
        if account is None or account.status != "active":
            return
        await self._spend_open_tokens(account.id, RESET_PASSWORD)
        raw, expires_at = await self._one_time_token(
            account, RESET_PASSWORD, self.settings.auth.reset_ttl_seconds
        )
        await self.audit("password.reset_requested", subject=account, info=info)
        await self.publisher.publish(
            self.session,
            events.PasswordResetRequested(
                user_id=account.id,
                email=account.email,
                first_name=account.first_name,
                sealed_link=self._links.seal(
                    f"{self.settings.public_url}/reset-password?token={raw}"
                ),
                expires_at=expires_at,
            ),
        )

    async def reset_password(self, raw: str, new_password: str, info: RequestInfo) -> Account:
        account = await self._consume(raw, RESET_PASSWORD)
        check_policy(new_password, email=account.email, field="new_password")
        await self._set_password(account, new_password)
        # Following a mailed link proves the address too.
        if account.email_verified_at is None:
            account.email_verified_at = self.now()
        await self.audit("password.reset", subject=account, info=info)
        return account

    async def change_password(
        self, account_id: uuid.UUID, current: str, new: str, info: RequestInfo
    ) -> tuple[Account, IssuedTokens]:
        account = await self.get(account_id)
        # A guess at the password like a login's: counted in the same bucket, first.
        await self._attempt(account.email)
        ok = await anyio.to_thread.run_sync(verify_password, account.password_hash, current)
        if not ok:
            raise ValidationFailed(
                "The current password is wrong",
                code="INVALID_PASSWORD",
                details=[{"field": "current_password", "message": "wrong password"}],
            )
        await self._attempt_succeeded(account.email)
        check_policy(new, email=account.email, field="new_password")
        if new == current:
            raise ValidationFailed(
                "The new password must differ from the current one",
                details=[{"field": "new_password", "message": "same as the current password"}],
            )
        await self._set_password(account, new)
        await self.audit("password.changed", subject=account, info=info)
        return account, await self.issue_tokens(account, uuid.uuid4(), info)

    async def _set_password(self, account: Account, password: str) -> None:
        account.password_hash = await anyio.to_thread.run_sync(hash_password, password)
        account.password_changed_at = self.now()
        await self._revoke_all(account.id)
        await self._spend_open_tokens(account.id, RESET_PASSWORD)
        await self.publisher.publish(
            self.session,
            events.PasswordChanged(
                user_id=account.id, email=account.email, first_name=account.first_name
            ),
        )

    # -- MFA ---------------------------------------------------------------------------

    def _encrypt(self, secret: str) -> str:
        return self._mfa.seal(secret)

    def _decrypt(self, value: str | None) -> str | None:
        return self._mfa.open(value)

    async def _accept_totp(self, account: Account, encrypted: str | None, code: str) -> bool:
        """Check a TOTP code and spend its time step with one conditional UPDATE, so a
        code works once even when two logins race with it."""
        secret = self._decrypt(encrypted)
        if secret is None:
            return False
        totp = pyotp.TOTP(secret)
        now = self.now()
        for offset in (0, -1, 1):  # one step of clock drift either way
            at = now + timedelta(seconds=30 * offset)
            if hmac.compare_digest(totp.at(at), code):
                step = int(at.timestamp()) // 30
                spent = await self.session.execute(
                    update(Account)
                    .where(
                        Account.id == account.id,
                        or_(Account.mfa_last_step.is_(None), Account.mfa_last_step < step),
                    )
                    .values(mfa_last_step=step)
                    .execution_options(synchronize_session=False)
                )
                if spent.rowcount != 1:  # type: ignore[attr-defined]
                    return False  # this code (or a later one) was already used
                account.mfa_last_step = step
                return True
        return False

    async def mfa_setup(self, account_id: uuid.UUID) -> tuple[str, str]:
        account = await self.get(account_id)
        if account.mfa_enabled_at is not None:
            raise Conflict("MFA is already enabled", code="MFA_ALREADY_ENABLED")
        secret = pyotp.random_base32()
        account.mfa_pending_secret = self._encrypt(secret)
        uri = pyotp.TOTP(secret).provisioning_uri(name=account.email, issuer_name="UltraMarket")
        return secret, uri

    def _wrong_code(self) -> ValidationFailed:
        return ValidationFailed(
            "The code is wrong",
            code="MFA_INVALID",
            details=[{"field": "code", "message": "wrong or expired code"}],
        )

    async def mfa_enable(self, account_id: uuid.UUID, code: str, info: RequestInfo) -> Account:
        account = await self.get(account_id)
        if account.mfa_enabled_at is not None:
            raise Conflict("MFA is already enabled", code="MFA_ALREADY_ENABLED")
        if account.mfa_pending_secret is None:
            raise Conflict("Call /mfa/setup first", code="MFA_NOT_SET_UP")
        if not await self._accept_totp(account, account.mfa_pending_secret, code):
            raise self._wrong_code()
        account.mfa_secret = account.mfa_pending_secret
        account.mfa_pending_secret = None
        account.mfa_enabled_at = self.now()
        await self.audit("mfa.enabled", subject=account, info=info)
        return account

    async def mfa_disable(self, account_id: uuid.UUID, code: str, info: RequestInfo) -> Account:
        account = await self.get(account_id)
        if account.mfa_enabled_at is None:
            raise Conflict("MFA is not enabled", code="MFA_NOT_ENABLED")
        # Turning MFA off is guarded by a code: guesses at it count like failed logins.
        await self._attempt(account.email)
        if not await self._accept_totp(account, account.mfa_secret, code):
            raise self._wrong_code()
        await self._attempt_succeeded(account.email)
        account.mfa_secret = None
        account.mfa_enabled_at = None
        account.mfa_last_step = None
        await self.audit("mfa.disabled", subject=account, info=info)
        return account

    # -- API keys and service tokens ---------------------------------------------------------

    def _key_hash(self, secret: str) -> str:
        key = self.settings.secret_key.get_secret_value().encode()
        return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()

    async def create_api_key(
        self, name: str, scopes: list[str], *, actor: uuid.UUID, service: bool = False
    ) -> tuple[ApiKey, str]:
        """A key with ``scopes``; ``service`` makes it a platform service's key (split
        mode), whose tokens act as the service ``name``."""
        if service and scopes != ["*"]:
            raise ValidationFailed(
                "A service key acts for a platform service: its scopes must be ['*']",
                details=[{"field": "scopes", "message": "must be ['*'] for a service key"}],
            )
        prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key = ApiKey(
            name=name,
            prefix=prefix,
            key_hash=self._key_hash(secret),
            scopes=sorted(set(scopes)),
            service=service,
            created_by=actor,
        )
        self.session.add(key)
        await self.session.flush()
        await self.audit(
            "api_key.created",
            actor=str(actor),
            subject_id=str(key.id),
            details={"name": name, "scopes": key.scopes, "service": service},
        )
        return key, f"um_{prefix}_{secret}"

    async def list_api_keys(self) -> list[ApiKey]:
        return list(await self.session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc())))

    async def get_api_key(self, key_id: uuid.UUID) -> ApiKey:
        key = await self.session.get(ApiKey, key_id)
        if key is None:
            raise NotFound("No such API key")
        return key

    async def revoke_api_key(self, key_id: uuid.UUID, *, actor: uuid.UUID) -> None:
        key = await self.get_api_key(key_id)
        if key.revoked_at is None:
            key.revoked_at = self.now()
            await self.audit("api_key.revoked", actor=str(actor), subject_id=str(key.id))

    async def exchange_api_key(self, raw: str) -> tuple[str, int]:
        """Client credentials: a valid API key buys a short-lived token with its scopes.

        Only a service key's token is a service token; any other key's token says
        ``typ: api_key`` and grants its scopes, never a service's identity."""
        invalid = Unauthenticated("Invalid API key", code="INVALID_API_KEY")
        parts = raw.split("_", 2)
        if len(parts) != 3 or parts[0] != "um":
            raise invalid
        key = (await self.session.scalars(select(ApiKey).where(ApiKey.prefix == parts[1]))).first()
        if key is None or key.revoked_at is not None:
            raise invalid
        if not hmac.compare_digest(key.key_hash, self._key_hash(parts[2])):
            raise invalid
        key.last_used_at = self.now()
        now = int(self.now().timestamp())
        subject = f"apikey:{key.id}"
        if key.service:
            token = self.tokens.service_token(
                subject=subject, service=key.name, scopes=key.scopes, now=now
            )
        else:
            token = self.tokens.api_key_token(
                subject=subject, name=key.name, scopes=key.scopes, now=now
            )
        return token, self.settings.auth.service_token_ttl_seconds

    # -- audit ------------------------------------------------------------------------------

    async def audit(
        self,
        action: str,
        *,
        actor: str | None = None,
        subject: Account | None = None,
        subject_id: str | None = None,
        email: str | None = None,
        info: RequestInfo | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.session.add(
            AuditEntry(
                at=self.now(),
                action=action,
                actor_id=actor or (str(subject.id) if subject else None),
                subject_id=subject_id or (str(subject.id) if subject else None),
                email=email or (subject.email if subject else None),
                ip=info.ip if info else None,
                details=details
                or ({"user_agent": info.user_agent} if info and info.user_agent else {}),
            )
        )
        await self.session.flush()

    async def audit_log(
        self, *, action: str | None, subject_id: str | None, offset: int, limit: int
    ) -> tuple[list[AuditEntry], int]:
        query = select(AuditEntry)
        if action:
            query = query.where(AuditEntry.action == action)
        if subject_id:
            query = query.where(AuditEntry.subject_id == subject_id)
        total = await self.session.scalar(select(func.count()).select_from(query.subquery()))
        rows = await self.session.scalars(
            query.order_by(AuditEntry.at.desc()).offset(offset).limit(limit)
        )
        return list(rows), int(total or 0)
