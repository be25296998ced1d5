"""Tables owned by the user service: profiles, address books, preferences.

A profile's id is the auth account's id; role, status, verification and last login
are a mirror kept up to date by auth's events (auth stays the source of truth).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ultramarket.core.db import IdMixin, TimestampMixin, service_base, utcnow
from ultramarket.core.events import event_tables

Base = service_base("user")
EVENTS = event_tables(Base.metadata, "user")


class Profile(TimestampMixin, Base):
    __tablename__ = "profile"
    __table_args__ = (
        Index(None, "email"),
        Index(None, "created_at"),
        Index(None, "last_login_at"),
        Index(None, "role", "status"),
    )

    # The auth account id: no default, a profile never exists without an account.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    phone: Mapped[str | None] = mapped_column(String(32))
    locale: Mapped[str | None] = mapped_column(String(35))
    avatar_file_id: Mapped[uuid.UUID | None]
    # Mirrored from auth events.
    role: Mapped[str] = mapped_column(String(16), default="CUSTOMER")
    status: Mapped[str] = mapped_column(String(16), default="active")
    verified: Mapped[bool] = mapped_column(default=False)
    last_login_at: Mapped[datetime | None]


class Address(IdMixin, TimestampMixin, Base):
    __tablename__ = "address"
    __table_args__ = (
        Index(None, "user_id", "created_at"),
        # At most one default of each kind per user, enforced by the database too.
        Index(
            "uq_address_default_shipping",
            "user_id",
            unique=True,
            sqlite_where=text("is_default_shipping"),
            postgresql_where=text("is_default_shipping"),
        ),
        Index(
            "uq_address_default_billing",
            "user_id",
            unique=True,
            sqlite_where=text("is_default_billing"),
            postgresql_where=text("is_default_billing"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user.profile.id", ondelete="CASCADE"))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    company: Mapped[str | None] = mapped_column(String(200))
    line1: Mapped[str] = mapped_column(String(200))
    line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str] = mapped_column(String(2))
    phone: Mapped[str | None] = mapped_column(String(32))
    is_default_shipping: Mapped[bool] = mapped_column(default=False)
    is_default_billing: Mapped[bool] = mapped_column(default=False)


class Preferences(Base):
    __tablename__ = "preference"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user.profile.id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(String(35), default="en")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    notify_email: Mapped[bool] = mapped_column(default=True)
    notify_sms: Mapped[bool] = mapped_column(default=False)
    notify_push: Mapped[bool] = mapped_column(default=True)
    notify_in_app: Mapped[bool] = mapped_column(default=True)
    marketing_consent: Mapped[bool] = mapped_column(default=False)
    marketing_consent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
