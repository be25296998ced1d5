"""Tables owned by the auth service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from ultramarket.core.db import IdMixin, JSONType, TimestampMixin, service_base, utcnow
from ultramarket.core.events import event_tables

Base = service_base("auth")
EVENTS = event_tables(Base.metadata, "auth")


class Account(IdMixin, TimestampMixin, Base):
    __tablename__ = "account"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="CUSTOMER")
    status: Mapped[str] = mapped_column(String(16), default="active")
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    email_verified_at: Mapped[datetime | None]
    mfa_secret: Mapped[str | None] = mapped_column(Text)  # encrypted
    mfa_pending_secret: Mapped[str | None] = mapped_column(Text)  # encrypted, until enabled
    mfa_enabled_at: Mapped[datetime | None]
    mfa_last_step: Mapped[int | None]  # last TOTP time step used (no replay)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class RefreshToken(IdMixin, Base):
    """One refresh token; tokens rotated from one login share a family."""

    __tablename__ = "refresh_token"
    __table_args__ = (Index(None, "family_id"), Index(None, "account_id"))

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("auth.account.id", ondelete="CASCADE"))
    family_id: Mapped[uuid.UUID]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    user_agent: Mapped[str | None] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(64))


class OneTimeToken(IdMixin, Base):
    """Email verification and password reset tokens (stored hashed, single use)."""

    __tablename__ = "one_time_token"
    __table_args__ = (Index(None, "account_id", "purpose"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("auth.account.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class ApiKey(IdMixin, Base):
    __tablename__ = "api_key"

    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    # A platform service's key (split mode): its tokens are service tokens. Any other
    # key's tokens carry its scopes only.
    service: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditEntry(IdMixin, Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "at"), Index(None, "subject_id"), Index(None, "action"))

    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
