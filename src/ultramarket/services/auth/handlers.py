"""The auth service's reactions to events: it mails its own links until the
notification service takes mail over."""

from __future__ import annotations

from ultramarket.core.crypto import Sealer
from ultramarket.core.events import HandlerContext, Subscription, subscription
from ultramarket.core.mail import Mail
from ultramarket.services.auth import events


def open_link(ctx: HandlerContext, sealed: str) -> str:
    link = Sealer(ctx.services.settings.secret_key, events.LINK_PURPOSE).open(sealed)
    if link is None:
        raise ValueError("sealed link cannot be opened (was the secret key changed?)")
    return link


async def send_verification_mail(ctx: HandlerContext) -> None:
    event = events.EmailVerificationRequested.model_validate(ctx.envelope.data)
    link = open_link(ctx, event.sealed_link)
    await ctx.services.mailer.send(
        Mail(
            to=event.email,
            subject="Confirm your email address",
            text=(
                f"Hello {event.first_name or 'there'},\n\n"
                "Confirm your email address for UltraMarket by opening this link:\n"
                f"{link}\n\n"
                f"The link works once and expires at {event.expires_at:%Y-%m-%d %H:%M} UTC.\n"
            ),
        )
    )


async def send_reset_mail(ctx: HandlerContext) -> None:
    event = events.PasswordResetRequested.model_validate(ctx.envelope.data)
    link = open_link(ctx, event.sealed_link)
    await ctx.services.mailer.send(
        Mail(
            to=event.email,
            subject="Reset your password",
            text=(
                f"Hello {event.first_name or 'there'},\n\n"
                f"Someone asked to reset your UltraMarket password. If it was you, open:\n"
                f"{link}\n\nThe link works once and expires at "
                f"{event.expires_at:%Y-%m-%d %H:%M} UTC. If it was not you, ignore this mail.\n"
            ),
        )
    )


async def send_password_changed_mail(ctx: HandlerContext) -> None:
    event = events.PasswordChanged.model_validate(ctx.envelope.data)
    await ctx.services.mailer.send(
        Mail(
            to=event.email,
            subject="Your password was changed",
            text=(
                f"Hello {event.first_name or 'there'},\n\nThe password of your UltraMarket "
                "account was just changed and every session was signed out. If this was not "
                "you, reset your password now.\n"
            ),
        )
    )


def subscriptions() -> list[Subscription]:
    return [
        subscription(
            "auth", events.EmailVerificationRequested, send_verification_mail, batch=False
        ),
        subscription("auth", events.PasswordResetRequested, send_reset_mail, batch=False),
        subscription("auth", events.PasswordChanged, send_password_changed_mail, batch=False),
    ]
