"""The user service's HTTP contract."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from ultramarket.core.schemas import ReadSchema, Schema
from ultramarket.services.auth.schemas import AccountRead
from ultramarket.services.user.iso import COUNTRIES, CURRENCIES


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _country(value: str) -> str:
    if value not in COUNTRIES:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code")
    return value


def _currency(value: str) -> str:
    if value not in CURRENCIES:
        raise ValueError("must be an ISO 4217 currency code")
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
RequiredName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9][0-9 ().\-]{4,30}$")
]
# BCP 47 language tag, e.g. "en", "en-GB", "uz-Latn-UZ".
LanguageTag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8}){0,3}$"),
]
CountryCode = Annotated[
    str, BeforeValidator(_upper), StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_country)
]
CurrencyCode = Annotated[
    str,
    BeforeValidator(_upper),
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    AfterValidator(_currency),
]
Role = Literal["ADMIN", "MANAGER", "VENDOR", "CUSTOMER"]
Status = Literal["active", "suspended"]
AddressKind = Literal["shipping", "billing"]

MAX_ADDRESSES = 20


# -- profile ---------------------------------------------------------------------------


class ProfileRead(ReadSchema):
    id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    phone: str | None
    locale: str | None
    avatar_file_id: uuid.UUID | None


class ProfileUpdate(Schema):
    """What a user may change about themselves; anything else (role, email...) is a 422."""

    first_name: Name | None = None
    last_name: Name | None = None
    phone: Phone | None = None
    locale: LanguageTag | None = None
    avatar_file_id: uuid.UUID | None = None


class UserSummary(ProfileRead):
    """A profile as staff see it in lists: with the mirrored account state."""

    role: str
    status: str
    verified: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


class UserDetail(UserSummary):
    """One user; ``account`` (from the auth service) is filled for staff only."""

    account: AccountRead | None = None


# -- addresses ---------------------------------------------------------------------------


class AddressFields(Schema):
    first_name: RequiredName
    last_name: RequiredName
    company: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    line1: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    line2: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    city: RequiredName
    region: Name | None = None
    postal_code: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 \-]{0,19}$"),
        ]
        | None
    ) = None
    country: CountryCode
    phone: Phone | None = None


class AddressCreate(AddressFields):
    """``is_default_*`` omitted: false, except that a user's first address is both."""

    is_default_shipping: bool | None = None
    is_default_billing: bool | None = None


class AddressReplace(AddressFields):
    """PUT replaces the address; omitted ``is_default_*`` leave the flag as it is."""

    is_default_shipping: bool | None = None
    is_default_billing: bool | None = None


class AddressRead(ReadSchema):
    id: uuid.UUID
    user_id: uuid.UUID
    first_name: str
    last_name: str
    company: str | None
    line1: str
    line2: str | None
    city: str
    region: str | None
    postal_code: str | None
    country: str
    phone: str | None
    is_default_shipping: bool
    is_default_billing: bool
    created_at: datetime
    updated_at: datetime


# -- preferences ---------------------------------------------------------------------------


class Notifications(Schema):
    email: bool = True
    sms: bool = False
    push: bool = True
    in_app: bool = True


class NotificationsUpdate(Schema):
    email: bool | None = None
    sms: bool | None = None
    push: bool | None = None
    in_app: bool | None = None


class PreferencesRead(ReadSchema):
    language: str
    currency: str
    notifications: Notifications
    marketing_consent: bool
    marketing_consent_at: datetime | None
    updated_at: datetime | None


class PreferencesUpdate(Schema):
    """Omitted fields keep their value; ``marketing_consent_at`` is set by the server."""

    language: LanguageTag | None = None
    currency: CurrencyCode | None = None
    notifications: NotificationsUpdate | None = None
    marketing_consent: bool | None = None


# -- analytics ------------------------------------------------------------------------------


class DailyCount(ReadSchema):
    date: date
    count: int


class UserAnalytics(ReadSchema):
    days: int
    total_users: int
    active_users: int = Field(description="Users who logged in within the last 30 days")
    new_users: int = Field(description="Sign-ups within the window")
    signups: list[DailyCount]
    by_role: dict[str, int]
    by_status: dict[str, int]
