"""Events the auth service publishes (versioned; fields are only ever added)."""

from __future__ import annotations

import uuid
from datetime import datetime

from ultramarket.core.events import Event

LINK_PURPOSE = "auth-mail-link"


class UserRegistered(Event):
    type = "user.registered.v1"
    user_id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    role: str
    verified: bool


class UserLoggedIn(Event):
    type = "user.logged_in.v1"
    user_id: uuid.UUID
    at: datetime


class UserVerified(Event):
    type = "user.verified.v1"
    user_id: uuid.UUID


class UserRoleChanged(Event):
    type = "user.role_changed.v1"
    user_id: uuid.UUID
    role: str
    previous_role: str


class UserStatusChanged(Event):
    type = "user.status_changed.v1"
    user_id: uuid.UUID
    status: str


class EmailVerificationRequested(Event):
    """Carries the one-time link for the mailer (and later the notification service).

    The link is sealed with the platform secret (``core.crypto.Sealer``, purpose
    ``LINK_PURPOSE``): outbox rows, dead letters and broker messages never hold a
    usable token, and the token itself is stored only hashed."""

    type = "auth.email_verification_requested.v1"
    user_id: uuid.UUID
    email: str
    first_name: str
    sealed_link: str
    expires_at: datetime


class PasswordResetRequested(Event):
    type = "auth.password_reset_requested.v1"
    user_id: uuid.UUID
    email: str
    first_name: str
    sealed_link: str  # sealed like EmailVerificationRequested.sealed_link
    expires_at: datetime


class PasswordChanged(Event):
    type = "auth.password_changed.v1"
    user_id: uuid.UUID
    email: str
    first_name: str
