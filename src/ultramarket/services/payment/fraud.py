"""Fraud rules run before a charge. Each rule that fires adds its score; the sum is
compared with the block and review thresholds of ``PaymentSettings``.

Every card attempt counts: payments and wallet deposits alike (``card_attempts``).
There is no account age in this service, so "new account" means the user's first
card attempt here was less than ``fraud_new_account_hours`` ago (or this is it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Subquery, func, insert, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.config import PaymentSettings
from ultramarket.core.db import utcnow
from ultramarket.core.money import Money
from ultramarket.services.payment.models import DepositAttempt, FraudSignal, Payment

PAY = Payment.__table__
ATTEMPT = DepositAttempt.__table__


def card_attempts(exclude: uuid.UUID) -> Subquery:
    """Every card attempt but ``exclude``, in one shape: the payments and the wallet
    deposits (which make no payment row), so the rules see both."""
    return union_all(
        select(
            PAY.c.user_id, PAY.c.fingerprint, PAY.c.ip, PAY.c.created_at,
            (PAY.c.status == "failed").label("declined"),
        ).where(PAY.c.id != exclude),
        select(
            ATTEMPT.c.user_id, ATTEMPT.c.fingerprint, ATTEMPT.c.ip, ATTEMPT.c.created_at,
            ATTEMPT.c.status.in_(("failed", "blocked")).label("declined"),
        ).where(ATTEMPT.c.id != exclude),
    ).subquery("card_attempt")  # fmt: skip


def new_account_threshold(settings: PaymentSettings, currency: str) -> Money | None:
    """How much a new account's payment in ``currency`` may be before it is suspect, in
    that currency's minor units (JPY has none, KWD three): the default currency's
    ``fraud_new_account_amount``, another's own ``fraud_new_account_amounts`` entry.
    None for a currency with neither - comparing 1,000 of any currency with 1,000 of
    any other flagged every yen payment over 7 dollars and no dinar one under 3,000."""
    if currency == settings.default_currency:
        value = settings.fraud_new_account_amount
    elif currency in settings.fraud_new_account_amounts:
        value = settings.fraud_new_account_amounts[currency]
    else:
        return None
    try:
        return Money.of(value, currency)
    except ValueError:  # more decimals than the currency has: its whole units
        return Money.of(int(value), currency)


@dataclass
class Assessment:
    score: int = 0
    signals: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)

    def add(self, rule: str, score: int, **detail: Any) -> None:
        self.score += score
        self.signals.append((rule, score, detail))


async def assess(
    session: AsyncSession,
    settings: PaymentSettings,
    *,
    user_id: uuid.UUID,
    money: Money,
    fingerprint: str | None,
    ip: str | None,
    exclude: uuid.UUID,
) -> Assessment:
    result = Assessment()
    if not settings.fraud_enabled:
        return result
    now = utcnow()
    since = now - timedelta(minutes=settings.fraud_window_minutes)
    tried = card_attempts(exclude)

    recent = await session.scalar(
        select(func.count()).where(tried.c.user_id == user_id, tried.c.created_at >= since)
    )
    if (recent or 0) >= settings.fraud_velocity_max:
        result.add("velocity", settings.fraud_velocity_score, recent=recent)

    if fingerprint:
        users = await session.scalar(
            select(func.count(func.distinct(tried.c.user_id))).where(
                tried.c.fingerprint == fingerprint, tried.c.user_id != user_id
            )
        )
        if (users or 0) + 1 > settings.fraud_fingerprint_max_users:
            result.add("card_fingerprint", settings.fraud_fingerprint_score, users=(users or 0) + 1)

    if ip:
        from_ip = await session.scalar(
            select(func.count()).where(tried.c.ip == ip, tried.c.created_at >= since)
        )
        if (from_ip or 0) >= settings.fraud_ip_max:
            result.add("ip_velocity", settings.fraud_ip_score, attempts=from_ip)

    first_seen = await session.scalar(
        select(func.min(tried.c.created_at)).where(tried.c.user_id == user_id)
    )
    is_new = first_seen is None or first_seen >= now - timedelta(
        hours=settings.fraud_new_account_hours
    )
    threshold = new_account_threshold(settings, money.currency)
    if is_new and threshold is not None and money.amount > threshold.amount:
        result.add(
            "new_account_amount",
            settings.fraud_new_account_score,
            amount=str(money),
            currency=money.currency,
            first_seen=first_seen.isoformat() if first_seen else None,
        )

    declines = await session.scalar(
        select(func.count()).where(
            tried.c.user_id == user_id, tried.c.declined, tried.c.created_at >= since
        )
    )
    if (declines or 0) >= settings.fraud_declines_max:
        result.add("recent_declines", settings.fraud_declines_score, declines=declines)
    return result


async def record(
    session: AsyncSession, assessment: Assessment, user_id: uuid.UUID, payment_id: uuid.UUID
) -> None:
    if not assessment.signals:
        return
    now = utcnow()
    await session.execute(
        insert(FraudSignal.__table__),
        [
            {
                "id": uuid.uuid4(),
                "payment_id": payment_id,
                "user_id": user_id,
                "rule": rule,
                "score": score,
                "detail": detail,
                "created_at": now,
            }
            for rule, score, detail in assessment.signals
        ],
    )
