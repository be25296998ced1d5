"""HTTP routes of the user service: parse, authorise, call UserService, shape the reply."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.deps import ContainerDep, read_session, unit_of_work
from ultramarket.core.errors import Forbidden, NotFound, Unavailable
from ultramarket.core.schemas import Envelope, Page, PageParams, page_params
from ultramarket.core.security import CurrentPrincipal, Principal, require
from ultramarket.core.service import ServiceRouter
from ultramarket.services.auth.client import AuthClient
from ultramarket.services.user import schemas as s
from ultramarket.services.user.models import Address, Preferences
from ultramarket.services.user.service import (
    DEFAULT_PREFERENCES,
    PROFILE_BY_ID,
    UserQuery,
    UserService,
)

router = ServiceRouter(prefix="/api/v1/users", tags=["users"])

Session = Annotated[AsyncSession, unit_of_work("user")]
ReadSession = Annotated[AsyncSession, read_session("user")]
Staff = Annotated[Principal, require("user:read:any")]


async def user_service(container: ContainerDep, session: Session) -> UserService:
    return UserService(session, publisher=container.publisher("user"))


async def user_reader(session: ReadSession) -> UserService:
    return UserService(session)


Users = Annotated[UserService, Depends(user_service)]
UsersReader = Annotated[UserService, Depends(user_reader)]

ERRORS = {401: {"description": "Not authenticated"}, 422: {"description": "Invalid input"}}
STAFF_ERRORS = {**ERRORS, 403: {"description": "Needs MANAGER or higher"}}
ADDRESS_ERRORS = {**ERRORS, 404: {"description": "No such address (or not yours)"}}


def address_read(address: Address) -> s.AddressRead:
    return s.AddressRead.model_validate(address)


def preferences_read(prefs: Preferences | None) -> s.PreferencesRead:
    values = (
        DEFAULT_PREFERENCES | {"marketing_consent_at": None, "updated_at": None}
        if prefs is None
        else {c.key: getattr(prefs, c.key) for c in Preferences.__table__.columns}
    )
    return s.PreferencesRead(
        language=values["language"],
        currency=values["currency"],
        notifications=s.Notifications(
            email=values["notify_email"],
            sms=values["notify_sms"],
            push=values["notify_push"],
            in_app=values["notify_in_app"],
        ),
        marketing_consent=values["marketing_consent"],
        marketing_consent_at=values["marketing_consent_at"],
        updated_at=values["updated_at"],
    )


# -- the caller's own profile --------------------------------------------------------------


@router.get("/me", response_model=Envelope[s.ProfileRead], responses=ERRORS)
async def get_me(principal: CurrentPrincipal, container: ContainerDep) -> Envelope[s.ProfileRead]:
    # The hot path: one primary-key read with SQLAlchemy Core, no ORM session.
    row = await container.db("user").fetch_one(PROFILE_BY_ID, user_id=principal.user_id)
    if row is not None:
        return Envelope(data=s.ProfileRead.model_validate(row))
    # Signed in before auth's user.registered event reached us: create the profile
    # from the token now (rare).
    async with container.db("user").session() as session:
        profile = await UserService(session).ensure(principal)
    return Envelope(data=s.ProfileRead.model_validate(profile))


@router.patch("/me", response_model=Envelope[s.ProfileRead], responses=ERRORS)
async def update_me(
    body: s.ProfileUpdate, users: Users, principal: CurrentPrincipal
) -> Envelope[s.ProfileRead]:
    profile = await users.update_profile(principal, body.model_dump(exclude_unset=True))
    return Envelope(data=s.ProfileRead.model_validate(profile))


# -- address book --------------------------------------------------------------------------


@router.get("/me/addresses", response_model=Envelope[list[s.AddressRead]], responses=ERRORS)
async def list_addresses(
    users: UsersReader, principal: CurrentPrincipal
) -> Envelope[list[s.AddressRead]]:
    return Envelope(data=[address_read(a) for a in await users.addresses(principal.user_id)])


@router.post(
    "/me/addresses",
    status_code=201,
    response_model=Envelope[s.AddressRead],
    responses={**ERRORS, 409: {"description": "Address book full"}},
)
async def add_address(
    body: s.AddressCreate, users: Users, principal: CurrentPrincipal
) -> Envelope[s.AddressRead]:
    address = await users.add_address(principal, body.model_dump())
    return Envelope(data=address_read(address))


@router.put(
    "/me/addresses/{address_id}", response_model=Envelope[s.AddressRead], responses=ADDRESS_ERRORS
)
async def replace_address(
    address_id: uuid.UUID, body: s.AddressReplace, users: Users, principal: CurrentPrincipal
) -> Envelope[s.AddressRead]:
    address = await users.replace_address(principal.user_id, address_id, body.model_dump())
    return Envelope(data=address_read(address))


@router.delete(
    "/me/addresses/{address_id}",
    response_model=Envelope[list[s.AddressRead]],
    responses=ADDRESS_ERRORS,
    summary="Delete an address; returns the remaining address book",
)
async def delete_address(
    address_id: uuid.UUID, users: Users, principal: CurrentPrincipal
) -> Envelope[list[s.AddressRead]]:
    await users.delete_address(principal.user_id, address_id)
    return Envelope(data=[address_read(a) for a in await users.addresses(principal.user_id)])


# -- preferences ---------------------------------------------------------------------------


@router.get("/me/preferences", response_model=Envelope[s.PreferencesRead], responses=ERRORS)
async def get_preferences(
    users: UsersReader, principal: CurrentPrincipal
) -> Envelope[s.PreferencesRead]:
    return Envelope(data=preferences_read(await users.preferences(principal.user_id)))


@router.put("/me/preferences", response_model=Envelope[s.PreferencesRead], responses=ERRORS)
async def update_preferences(
    body: s.PreferencesUpdate, users: Users, principal: CurrentPrincipal
) -> Envelope[s.PreferencesRead]:
    prefs = await users.update_preferences(principal, body.model_dump(exclude_unset=True))
    return Envelope(data=preferences_read(prefs))


# -- staff ---------------------------------------------------------------------------------


@router.get("", response_model=Page[s.UserSummary], responses=STAFF_ERRORS)
@router.get("/", response_model=Page[s.UserSummary], include_in_schema=False)
async def list_users(
    users: UsersReader,
    _: Staff,
    paging: Annotated[PageParams, Depends(page_params)],
    q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    role: s.Role | None = None,
    status: s.Status | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Page[s.UserSummary]:
    rows, total = await users.search(
        UserQuery(
            q=q,
            role=role,
            status=status,
            created_from=created_from,
            created_to=created_to,
            sort=paging.sort,
            offset=paging.offset,
            limit=paging.limit,
        )
    )
    return Page.of(
        [s.UserSummary.model_validate(p) for p in rows],
        page=paging.page,
        limit=paging.limit,
        total=total,
    )


@router.get("/analytics", response_model=Envelope[s.UserAnalytics], responses=STAFF_ERRORS)
async def analytics(
    users: UsersReader,
    _: Staff,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> Envelope[s.UserAnalytics]:
    return Envelope(data=s.UserAnalytics.model_validate(await users.analytics(days)))


@router.get(
    "/{user_id}",
    response_model=Envelope[s.UserDetail],
    responses={**ERRORS, 403: {"description": "Not yours"}, 404: {"description": "No such user"}},
)
async def get_user(
    user_id: uuid.UUID, users: UsersReader, principal: CurrentPrincipal, container: ContainerDep
) -> Envelope[s.UserDetail]:
    staff = principal.can("user:read:any")
    if not (staff or principal.owns(user_id)):
        raise Forbidden("You can only read your own profile")
    profile = await users.get(user_id)
    detail = s.UserDetail.model_validate(profile)
    if staff and not principal.is_service:
        # The account as auth knows it (sessions, MFA, verification): a service call.
        try:
            detail.account = await container.client(AuthClient, "user").get_account(user_id)
        except (NotFound, Unavailable):
            detail.account = None  # the profile is still worth showing
    return Envelope(data=detail)


@router.get(
    "/{user_id}/addresses/default",
    response_model=Envelope[s.AddressRead | None],
    responses={**ERRORS, 403: {"description": "Services and staff only"}},
    summary="A user's default shipping or billing address (for order, shipping, payment)",
)
async def default_address(
    user_id: uuid.UUID,
    users: UsersReader,
    principal: CurrentPrincipal,
    kind: s.AddressKind = "shipping",
) -> Envelope[s.AddressRead | None]:
    if not (principal.can("user:read:any") or principal.owns(user_id)):
        raise Forbidden("You can only read your own addresses")
    address = await users.default_address(user_id, kind)
    return Envelope(data=address_read(address) if address else None)
