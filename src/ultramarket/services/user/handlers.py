"""The user service's reactions to auth's events: it keeps a mirror of each account.

Every handler is idempotent on its own (upserts and absolute updates), on top of
the inbox that already drops redelivered events.
"""

from __future__ import annotations

from sqlalchemy import case, literal, or_

from ultramarket.core.db import UTCDateTime
from ultramarket.core.events import HandlerContext, Subscription, subscription
from ultramarket.services.auth import events as auth_events
from ultramarket.services.user.models import Profile
from ultramarket.services.user.service import UserService


async def on_registered(ctx: HandlerContext) -> None:
    event = auth_events.UserRegistered.model_validate(ctx.envelope.data)
    await UserService(ctx.session).record_registration(
        user_id=event.user_id,
        email=event.email,
        first_name=event.first_name,
        last_name=event.last_name,
        role=event.role,
        verified=event.verified,
        registered_at=ctx.envelope.occurred_at,
    )


async def on_logged_in(ctx: HandlerContext) -> None:
    event = auth_events.UserLoggedIn.model_validate(ctx.envelope.data)
    # Events may arrive out of order: never move last_login_at backwards.
    at = literal(event.at, UTCDateTime())
    latest = case(
        (or_(Profile.last_login_at.is_(None), Profile.last_login_at < at), at),
        else_=Profile.last_login_at,
    )
    await UserService(ctx.session).mirror(event.user_id, last_login_at=latest)


async def on_verified(ctx: HandlerContext) -> None:
    event = auth_events.UserVerified.model_validate(ctx.envelope.data)
    await UserService(ctx.session).mirror(event.user_id, verified=True)


async def on_role_changed(ctx: HandlerContext) -> None:
    event = auth_events.UserRoleChanged.model_validate(ctx.envelope.data)
    await UserService(ctx.session).mirror(event.user_id, role=event.role)


async def on_status_changed(ctx: HandlerContext) -> None:
    event = auth_events.UserStatusChanged.model_validate(ctx.envelope.data)
    await UserService(ctx.session).mirror(event.user_id, status=event.status)


def subscriptions() -> list[Subscription]:
    return [
        subscription("user", auth_events.UserRegistered, on_registered),
        subscription("user", auth_events.UserLoggedIn, on_logged_in),
        subscription("user", auth_events.UserVerified, on_verified),
        subscription("user", auth_events.UserRoleChanged, on_role_changed),
        subscription("user", auth_events.UserStatusChanged, on_status_changed),
    ]
