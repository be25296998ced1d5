"""User use cases: profiles (mirroring auth accounts), address books, preferences."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Date,
    Select,
    bindparam,
    case,
    cast,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.db import insert_for, utcnow
from ultramarket.core.errors import Conflict, NotFound, ValidationFailed
from ultramarket.core.events import EventPublisher
from ultramarket.core.security import Principal
from ultramarket.services.user import events
from ultramarket.services.user.models import Address, Preferences, Profile
from ultramarket.services.user.schemas import MAX_ADDRESSES

ACTIVE_WINDOW = timedelta(days=30)
SORTABLE = {
    "created_at": Profile.created_at,
    "email": Profile.email,
    "first_name": Profile.first_name,
    "last_name": Profile.last_name,
    "last_login_at": Profile.last_login_at,
}
DEFAULT_PREFERENCES: dict[str, Any] = {
    "language": "en",
    "currency": "USD",
    "notify_email": True,
    "notify_sms": False,
    "notify_push": True,
    "notify_in_app": True,
    "marketing_consent": False,
}
EDITABLE_PROFILE_FIELDS = ("first_name", "last_name", "phone", "locale", "avatar_file_id")
NOT_NULL_NAMES = ("first_name", "last_name")


class ProfileNotFound(NotFound):
    code = "PROFILE_NOT_FOUND"
    message = "No such user"


class AddressNotFound(NotFound):
    code = "ADDRESS_NOT_FOUND"
    message = "No such address"


class AddressLimitReached(Conflict):
    code = "ADDRESS_LIMIT_REACHED"
    message = f"An address book holds at most {MAX_ADDRESSES} addresses"


@dataclass(frozen=True)
class UserQuery:
    q: str | None = None
    role: str | None = None
    status: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    sort: str | None = None
    offset: int = 0
    limit: int = 20


def _like(term: str) -> str:
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class UserService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        publisher: EventPublisher | None = None,
        now: datetime | None = None,
    ) -> None:
        self.session = session
        self.publisher = publisher
        self._now = now

    def now(self) -> datetime:
        return self._now or utcnow()

    # -- profiles -----------------------------------------------------------------------

    async def find(self, user_id: uuid.UUID) -> Profile | None:
        """One primary-key read (the hot path of ``GET /me``)."""
        return await self.session.get(Profile, user_id)

    async def get(self, user_id: uuid.UUID) -> Profile:
        profile = await self.find(user_id)
        if profile is None:
            raise ProfileNotFound()
        return profile

    async def ensure(self, principal: Principal) -> Profile:
        """The caller's profile, created from the token's claims when auth's
        ``user.registered`` event has not been delivered yet (the event fills in
        the rest when it arrives)."""
        user_id = principal.user_id
        profile = await self.find(user_id)
        if profile is not None:
            return profile
        now = self.now()
        await self.session.execute(
            insert_for(self.session, Profile)
            .values(
                id=user_id,
                email=principal.email or "",
                role=principal.role.value if principal.role else "CUSTOMER",
                status="active",
                verified=False,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["id"])
        )
        await self._ensure_preferences(user_id)
        return await self.get(user_id)

    async def _lock(self, user_id: uuid.UUID) -> None:
        """Serialise a user's address-book changes on their profile row (PostgreSQL;
        SQLite writers are serialised by ``BEGIN IMMEDIATE`` already)."""
        await self.session.execute(
            select(Profile.id).where(Profile.id == user_id).with_for_update()
        )

    async def update_profile(self, principal: Principal, changes: dict[str, Any]) -> Profile:
        profile = await self.ensure(principal)
        changed: list[str] = []
        for field in EDITABLE_PROFILE_FIELDS:  # an allow-list: nothing else can be set
            if field not in changes:
                continue
            value = changes[field]
            if value is None and field in NOT_NULL_NAMES:
                value = ""
            if getattr(profile, field) != value:
                setattr(profile, field, value)
                changed.append(field)
        if changed:
            profile.updated_at = self.now()
            await self.session.flush()
            if self.publisher is not None:
                await self.publisher.publish(
                    self.session,
                    events.ProfileUpdated(
                        user_id=profile.id,
                        email=profile.email,
                        first_name=profile.first_name,
                        last_name=profile.last_name,
                        locale=profile.locale,
                        changed=changed,
                    ),
                )
        return profile

    # -- the mirror of auth's accounts (event handlers) --------------------------------------

    async def record_registration(
        self,
        *,
        user_id: uuid.UUID,
        email: str,
        first_name: str,
        last_name: str,
        role: str,
        verified: bool,
        registered_at: datetime,
    ) -> None:
        """Create the profile and default preferences, or bring a lazily created
        profile up to date. Safe to run any number of times, and late: the event may
        be retried after a role change or a verification was mirrored, so on conflict
        it sets only what registration owns (email, names not set by the user) and
        never moves the rest backwards (role stays, verified only turns on, created_at
        only moves earlier)."""
        mirror = {"email": email, "role": role, "verified": verified}
        names = {"first_name": first_name, "last_name": last_name}
        stmt = insert_for(self.session, Profile).values(
            id=user_id,
            **mirror,
            **names,
            status="active",
            created_at=registered_at,
            updated_at=self.now(),
        )
        excluded, current = stmt.excluded, Profile.__table__.c
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["id"],
                set_={
                    "email": excluded.email,
                    # A lazily created profile took the role from a token issued after
                    # registration, and role changes are mirrored by their own events.
                    "verified": or_(current.verified, excluded.verified),
                    "created_at": case(
                        (excluded.created_at < current.created_at, excluded.created_at),
                        else_=current.created_at,
                    ),
                    "updated_at": excluded.updated_at,
                    # Names the user already set themselves win over auth's.
                    "first_name": func.coalesce(
                        func.nullif(current.first_name, ""), excluded.first_name
                    ),
                    "last_name": func.coalesce(
                        func.nullif(current.last_name, ""), excluded.last_name
                    ),
                },
            )
        )
        await self._ensure_preferences(user_id)

    async def _ensure_preferences(self, user_id: uuid.UUID) -> None:
        await self.session.execute(
            insert_for(self.session, Preferences)
            .values(user_id=user_id, updated_at=self.now(), **DEFAULT_PREFERENCES)
            .on_conflict_do_nothing(index_elements=["user_id"])
        )

    async def mirror(self, user_id: uuid.UUID, **values: Any) -> None:
        """Copy account state from an auth event. A profile not created yet raises,
        so the relay retries the event after ``user.registered`` has landed."""
        result = await self.session.execute(
            update(Profile)
            .where(Profile.id == user_id)
            .values(**values, updated_at=self.now())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise ProfileNotFound(f"No profile {user_id} yet; the event will be retried")

    # -- staff views -------------------------------------------------------------------------

    def _filtered(self, query: UserQuery, stmt: Select[Any]) -> Select[Any]:
        if query.q:
            pattern = _like(query.q)
            stmt = stmt.where(
                or_(
                    func.lower(Profile.email).like(pattern, escape="\\"),
                    func.lower(Profile.first_name).like(pattern, escape="\\"),
                    func.lower(Profile.last_name).like(pattern, escape="\\"),
                    func.lower(Profile.first_name + " " + Profile.last_name).like(
                        pattern, escape="\\"
                    ),
                )
            )
        if query.role:
            stmt = stmt.where(Profile.role == query.role)
        if query.status:
            stmt = stmt.where(Profile.status == query.status)
        if query.created_from:
            stmt = stmt.where(Profile.created_at >= _aware(query.created_from))
        if query.created_to:
            stmt = stmt.where(Profile.created_at <= _aware(query.created_to))
        return stmt

    async def search(self, query: UserQuery) -> tuple[list[Profile], int]:
        sort = query.sort or "-created_at"
        column = SORTABLE.get(sort.lstrip("-"))
        if column is None:
            raise ValidationFailed(
                f"Cannot sort by {sort.lstrip('-')}",
                details=[{"field": "sort", "message": f"one of {', '.join(sorted(SORTABLE))}"}],
            )
        order = column.desc() if sort.startswith("-") else column.asc()
        total = await self.session.scalar(
            self._filtered(query, select(func.count()).select_from(Profile))
        )
        rows = await self.session.scalars(
            self._filtered(query, select(Profile))
            .order_by(order, Profile.id)
            .offset(query.offset)
            .limit(query.limit)
        )
        return list(rows), int(total or 0)

    async def analytics(self, days: int) -> dict[str, Any]:
        now = self.now()
        today = now.date()
        first_day = today - timedelta(days=days - 1)
        since = datetime.combine(first_day, time.min, tzinfo=UTC)
        if self.session.get_bind().dialect.name == "postgresql":
            day = cast(func.timezone("UTC", Profile.created_at), Date)
        else:
            day = func.date(Profile.created_at)  # stored as naive UTC
        per_day = await self.session.execute(
            select(day, func.count()).where(Profile.created_at >= since).group_by(day)
        )
        counts: dict[date, int] = {}
        for value, count in per_day.all():
            key = value if isinstance(value, date) else date.fromisoformat(str(value))
            counts[key] = int(count)
        signups = [
            {
                "date": first_day + timedelta(days=i),
                "count": counts.get(first_day + timedelta(i), 0),
            }
            for i in range(days)
        ]
        total = await self.session.scalar(select(func.count()).select_from(Profile))
        active = await self.session.scalar(
            select(func.count())
            .select_from(Profile)
            .where(Profile.last_login_at >= now - ACTIVE_WINDOW)
        )
        by_role = await self.session.execute(
            select(Profile.role, func.count()).group_by(Profile.role)
        )
        by_status = await self.session.execute(
            select(Profile.status, func.count()).group_by(Profile.status)
        )
        return {
            "days": days,
            "total_users": int(total or 0),
            "active_users": int(active or 0),
            "new_users": sum(counts.values()),
            "signups": signups,
            "by_role": {role: int(n) for role, n in by_role.all()},
            "by_status": {status: int(n) for status, n in by_status.all()},
        }

    # -- addresses ---------------------------------------------------------------------------

    async def addresses(self, user_id: uuid.UUID) -> list[Address]:
        rows = await self.session.scalars(
            select(Address)
            .where(Address.user_id == user_id)
            .order_by(Address.created_at, Address.id)
        )
        return list(rows)

    async def _address(self, user_id: uuid.UUID, address_id: uuid.UUID) -> Address:
        # Someone else's address is "not found": ids of others' data never leak.
        address = await self.session.scalar(
            select(Address).where(Address.id == address_id, Address.user_id == user_id)
        )
        if address is None:
            raise AddressNotFound()
        return address

    async def default_address(self, user_id: uuid.UUID, kind: str) -> Address | None:
        flag = Address.is_default_shipping if kind == "shipping" else Address.is_default_billing
        return await self.session.scalar(
            select(Address).where(Address.user_id == user_id, flag.is_(True))
        )

    async def _make_default(self, address: Address, kind: str) -> None:
        """Clear the previous default of this kind first, then set it: one statement
        each, in that order, so the partial unique index never sees two."""
        column = "is_default_shipping" if kind == "shipping" else "is_default_billing"
        flag = getattr(Address, column)
        await self.session.execute(
            update(Address)
            .where(Address.user_id == address.user_id, Address.id != address.id, flag.is_(True))
            .values({column: False, "updated_at": self.now()})
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(
            update(Address)
            .where(Address.id == address.id)
            .values({column: True, "updated_at": self.now()})
            .execution_options(synchronize_session=False)
        )

    async def _apply_defaults(
        self, address: Address, shipping: bool | None, billing: bool | None
    ) -> Address:
        for kind, wanted in (("shipping", shipping), ("billing", billing)):
            if wanted:
                await self._make_default(address, kind)
            elif wanted is False:
                column = f"is_default_{kind}"
                await self.session.execute(
                    update(Address)
                    .where(Address.id == address.id)
                    .values({column: False})
                    .execution_options(synchronize_session=False)
                )
        await self.session.refresh(address)
        return address

    async def add_address(self, principal: Principal, data: dict[str, Any]) -> Address:
        profile = await self.ensure(principal)
        await self._lock(profile.id)
        count = int(
            await self.session.scalar(
                select(func.count()).select_from(Address).where(Address.user_id == profile.id)
            )
            or 0
        )
        if count >= MAX_ADDRESSES:
            raise AddressLimitReached()
        shipping = data.pop("is_default_shipping", None)
        billing = data.pop("is_default_billing", None)
        if count == 0:  # the first address is the default of both kinds
            shipping = billing = True
        address = Address(user_id=profile.id, **data)
        self.session.add(address)
        await self.session.flush()
        return await self._apply_defaults(address, shipping, billing)

    async def replace_address(
        self, user_id: uuid.UUID, address_id: uuid.UUID, data: dict[str, Any]
    ) -> Address:
        await self._lock(user_id)
        address = await self._address(user_id, address_id)
        shipping = data.pop("is_default_shipping", None)
        billing = data.pop("is_default_billing", None)
        for field, value in data.items():
            setattr(address, field, value)
        address.updated_at = self.now()
        await self.session.flush()
        return await self._apply_defaults(address, shipping, billing)

    async def delete_address(self, user_id: uuid.UUID, address_id: uuid.UUID) -> None:
        """Delete; when it was a default, the newest remaining address takes over."""
        await self._lock(user_id)
        address = await self._address(user_id, address_id)
        was = {"shipping": address.is_default_shipping, "billing": address.is_default_billing}
        await self.session.execute(delete(Address).where(Address.id == address.id))
        self.session.expunge(address)
        if not any(was.values()):
            return
        successor = await self.session.scalar(
            select(Address)
            .where(Address.user_id == user_id)
            .order_by(Address.created_at.desc(), Address.id.desc())
            .limit(1)
        )
        if successor is not None:
            for kind, flag in was.items():
                if flag:
                    await self._make_default(successor, kind)

    # -- preferences ---------------------------------------------------------------------------

    async def preferences(self, user_id: uuid.UUID) -> Preferences | None:
        return await self.session.get(Preferences, user_id)

    async def update_preferences(
        self, principal: Principal, changes: dict[str, Any]
    ) -> Preferences:
        profile = await self.ensure(principal)
        await self._ensure_preferences(profile.id)
        prefs = await self.session.get(Preferences, profile.id, populate_existing=True)
        assert prefs is not None
        for field in ("language", "currency"):
            if changes.get(field) is not None:
                setattr(prefs, field, changes[field])
        for channel, value in (changes.get("notifications") or {}).items():
            if value is not None:
                setattr(prefs, f"notify_{channel}", value)
        consent = changes.get("marketing_consent")
        if consent is not None and consent != prefs.marketing_consent:
            prefs.marketing_consent = consent
            # When the current choice (given or withdrawn) was recorded: the evidence.
            prefs.marketing_consent_at = self.now()
        prefs.updated_at = self.now()
        await self.session.flush()
        return prefs


# The query behind ``GET /me``: the columns of ``ProfileRead`` for one user, built once.
PROFILE_BY_ID: Select[Any] = select(
    Profile.id,
    Profile.email,
    Profile.first_name,
    Profile.last_name,
    Profile.phone,
    Profile.locale,
    Profile.avatar_file_id,
).where(Profile.id == bindparam("user_id"))
