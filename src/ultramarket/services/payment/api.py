"""HTTP routes of the payment service: /api/v1/payments and /api/v1/wallet.

Writes that move money take an ``Idempotency-Key`` header: the same key and body
return the first response (200 on a replay), the same key with another body is a
409 CONFLICT. Customers see their own payments (others' are 404); MANAGER+
(``payment:read:any``) see all.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Header, Query, Request, Response
from pydantic import StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from ultramarket.core.container import Container
from ultramarket.core.deps import ClientIP, ContainerDep, container_of, read_session, unit_of_work
from ultramarket.core.errors import Forbidden
from ultramarket.core.money import CurrencyCode
from ultramarket.core.schemas import Envelope, Page, PageParams, page_params
from ultramarket.core.security import (
    CurrentPrincipal,
    Principal,
    Role,
    current_principal,
    require,
    require_role,
)
from ultramarket.core.service import ServiceRouter
from ultramarket.services.payment import schemas as s
from ultramarket.services.payment.providers import providers_of
from ultramarket.services.payment.service import PaymentService, WalletService

router = ServiceRouter(prefix="/api/v1/payments", tags=["payments"])
wallet_router = ServiceRouter(prefix="/api/v1/wallet", tags=["wallet"])

Session = Annotated[AsyncSession, unit_of_work("payment")]
ReadSession = Annotated[AsyncSession, read_session("payment")]
Paging = Annotated[PageParams, Depends(page_params)]
KEY_MIN_LENGTH, KEY_MAX_LENGTH = 1, 200  # of an Idempotency-Key
# An Idempotency-Key's text, as the routes' header and the charge's in-process twin take it.
KeyText = Annotated[str, StringConstraints(min_length=KEY_MIN_LENGTH, max_length=KEY_MAX_LENGTH)]
IdempotencyKey = Annotated[KeyText | None, Header(alias="Idempotency-Key")]
Creator = Annotated[Principal, require("payment:create")]
Refunder = Annotated[Principal, require("payment:refund")]
Staff = Annotated[Principal, require_role(Role.MANAGER)]
WalletUser = Annotated[Principal, require("wallet:use")]


def _actor(principal: Principal) -> str:
    return principal.service or principal.subject


@asynccontextmanager
async def payment_unit(container: Container, principal: Principal) -> AsyncIterator[PaymentService]:
    """The service on a unit of work (committed when the block ends, a decline kept):
    the routes' and the in-process client's."""
    database = container.db("payment")
    async with database.session() as session:
        yield PaymentService(
            session,
            container.publisher("payment"),
            providers_of(container),
            container.settings.payments,
            actor=_actor(principal),
            database=database,
        )


async def payment_service(request: Request) -> AsyncIterator[PaymentService]:
    """The service on a unit of work that commits before the response is sent."""
    async with payment_unit(container_of(request), await current_principal(request)) as unit:
        yield unit


async def charge_for_user(
    payments: PaymentService,
    principal: Principal,
    body: s.InternalCharge,
    idempotency_key: str | None,
) -> tuple[s.PaymentRead, bool]:
    """A service paying on behalf of ``body.user_id`` (the order service's checkout)."""
    if not principal.is_service:
        raise Forbidden("Only services may charge on behalf of a user")
    return await payments.create(
        body.user_id,
        body,
        ip=body.ip,
        idempotency_key=idempotency_key,
        owner=f"service:{principal.service or principal.subject}",
    )


async def webhook_service(container: ContainerDep, session: Session) -> PaymentService:
    """Webhooks are anonymous: the signature is the authentication."""
    return PaymentService(
        session,
        container.publisher("payment"),
        providers_of(container),
        container.settings.payments,
        actor="webhook",
    )


async def payment_reader(container: ContainerDep, session: ReadSession) -> PaymentService:
    return PaymentService(session, None, providers_of(container), container.settings.payments)


async def wallet_service(container: ContainerDep, session: Session) -> WalletService:
    return WalletService(session, providers_of(container), container.settings.payments)


async def wallet_reader(container: ContainerDep, session: ReadSession) -> WalletService:
    return WalletService(session, providers_of(container), container.settings.payments)


Payments = Annotated[PaymentService, Depends(payment_service, scope="function")]
Webhooks = Annotated[PaymentService, Depends(webhook_service)]
PaymentsReader = Annotated[PaymentService, Depends(payment_reader)]
Wallet = Annotated[WalletService, Depends(wallet_service)]
WalletReader = Annotated[WalletService, Depends(wallet_reader)]

ERRORS = {
    401: {"description": "Not authenticated"},
    403: {"description": "Missing permission"},
    422: {"description": "Invalid input"},
}
CREATE_ERRORS = {
    **ERRORS,
    402: {
        "description": "PAYMENT_FAILED (declined; details carry decline_code) or "
        "PAYMENT_BLOCKED (fraud checks)"
    },
    409: {"description": "CONFLICT: the Idempotency-Key was used with another body"},
    503: {"description": "PROVIDER_UNAVAILABLE"},
}
NOT_FOUND = {404: {"description": "PAYMENT_NOT_FOUND"}}


# -- payments ---------------------------------------------------------------------------


@router.post("", status_code=201, response_model=Envelope[s.PaymentRead], responses=CREATE_ERRORS)
async def create_payment(
    body: s.PaymentCreate,
    payments: Payments,
    principal: Creator,
    ip: ClientIP,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[s.PaymentRead]:
    """Pay for an order with a card token, the wallet or PayPal.

    Until the order service exists the amount and currency come in the body; the
    order service will pass its totals through ``PaymentClient``. ``capture:
    false`` only authorises (status ``requires_capture``); so does a payment held
    for fraud review (``review_required: true``)."""
    payment, created = await payments.create(
        principal.user_id, body, ip=ip, idempotency_key=idempotency_key, owner=principal.subject
    )
    if not created:
        response.status_code = 200
    return Envelope(data=payment)


@router.post(
    "/internal/charges",
    status_code=201,
    response_model=Envelope[s.PaymentRead],
    responses=CREATE_ERRORS,
    include_in_schema=True,
)
async def internal_charge(
    body: s.InternalCharge,
    payments: Payments,
    principal: CurrentPrincipal,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[s.PaymentRead]:
    """Services only: pay on behalf of ``user_id`` (the order service's checkout)."""
    payment, created = await charge_for_user(payments, principal, body, idempotency_key)
    if not created:
        response.status_code = 200
    return Envelope(data=payment)


@router.post(
    "/internal/charges/forfeit",
    response_model=Envelope[s.PaymentRead | None],
    responses={**ERRORS, 403: {"description": "Services only"}},
)
async def internal_forfeit(
    body: s.ForfeitCharge,
    payments: Payments,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[KeyText, Header(alias="Idempotency-Key")],
) -> Envelope[s.PaymentRead | None]:
    """Services only (the order sweeper): the charge the calling service made with this
    Idempotency-Key for ``order_id``, or null - and then no charge will ever be made
    with that key (a late one is refused, 409 ``CHARGE_FORFEITED``)."""
    if not principal.is_service:
        raise Forbidden("Only services may forfeit their charges")
    owner = f"service:{principal.service or principal.subject}"
    payment = await payments.forfeit(body.order_id, idempotency_key, owner)
    return Envelope(data=None if payment is None else s.PaymentRead.of(payment))


@router.get("", response_model=Page[s.PaymentRead], responses=ERRORS)
async def list_payments(
    payments: PaymentsReader,
    principal: CurrentPrincipal,
    paging: Paging,
    status: Annotated[str | None, Query(max_length=24)] = None,
    order_id: Annotated[str | None, Query(max_length=100)] = None,
    user_id: uuid.UUID | None = None,
) -> Page[s.PaymentRead]:
    """Own payments; MANAGER+ see all (and may filter by ``user_id``)."""
    owner = user_id if principal.can("payment:read:any") else principal.user_id
    rows, total = await payments.list(
        user_id=owner,
        status=status,
        order_id=order_id,
        offset=paging.offset,
        limit=paging.limit,
        sort=paging.sort,
    )
    return Page.of(
        [s.PaymentRead.of(p) for p in rows], page=paging.page, limit=paging.limit, total=total
    )


@router.get(
    "/analytics",
    response_model=Envelope[s.PaymentAnalytics],
    responses={**ERRORS, 403: {"description": "Needs MANAGER or higher"}},
)
async def payment_analytics(
    payments: PaymentsReader,
    principal: Staff,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> Envelope[s.PaymentAnalytics]:
    """Volume, success rate and refunds, by currency, provider and day."""
    return Envelope(data=await payments.analytics(days))


@router.post(
    "/webhooks/stripe",
    response_model=Envelope[s.WebhookAck],
    responses={400: {"description": "INVALID_SIGNATURE"}},
)
async def stripe_webhook(request: Request, payments: Webhooks) -> Envelope[s.WebhookAck]:
    """Stripe events, verified with the signing secret; a replayed event id is ignored."""
    return Envelope(data=await payments.webhook("stripe", await request.body(), request.headers))


@router.post(
    "/webhooks/paypal",
    response_model=Envelope[s.WebhookAck],
    responses={400: {"description": "INVALID_SIGNATURE"}},
)
async def paypal_webhook(request: Request, payments: Webhooks) -> Envelope[s.WebhookAck]:
    """PayPal events, verified through PayPal's verify-webhook-signature API."""
    return Envelope(data=await payments.webhook("paypal", await request.body(), request.headers))


@router.get(
    "/{payment_id}", response_model=Envelope[s.PaymentRead], responses={**ERRORS, **NOT_FOUND}
)
async def get_payment(
    payment_id: uuid.UUID, payments: PaymentsReader, principal: CurrentPrincipal
) -> Envelope[s.PaymentRead]:
    owner = None if principal.can("payment:read:any") else str(principal.user_id)
    return Envelope(data=s.PaymentRead.of(await payments.get_visible(payment_id, owner)))


@router.post(
    "/{payment_id}/refund",
    status_code=201,
    response_model=Envelope[s.RefundResult],
    responses={
        **ERRORS,
        **NOT_FOUND,
        409: {
            "description": "REFUND_EXCEEDS_REFUNDABLE, ILLEGAL_PAYMENT_STATE, REFUND_FAILED, "
            "or CONFLICT (Idempotency-Key reused with another body)"
        },
    },
)
async def refund_payment(
    payment_id: uuid.UUID,
    body: s.RefundCreate,
    payments: Payments,
    principal: Refunder,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[s.RefundResult]:
    """MANAGER+ and services: refund all that is left (no amount) or part of it."""
    result = await payments.refund(
        payment_id, body, idempotency_key=idempotency_key, owner=_actor(principal)
    )
    return Envelope(data=result)


@router.post(
    "/{payment_id}/capture",
    response_model=Envelope[s.PaymentRead],
    responses={**ERRORS, **NOT_FOUND, 409: {"description": "ILLEGAL_PAYMENT_STATE"}},
)
async def capture_payment(
    payment_id: uuid.UUID, payments: Payments, principal: Staff
) -> Envelope[s.PaymentRead]:
    """MANAGER+ and services: capture an authorisation (also approves a held review)."""
    return Envelope(data=await payments.capture(payment_id))


@router.post(
    "/{payment_id}/void",
    response_model=Envelope[s.PaymentRead],
    responses={**ERRORS, **NOT_FOUND, 409: {"description": "ILLEGAL_PAYMENT_STATE"}},
)
async def void_payment(
    payment_id: uuid.UUID, payments: Payments, principal: Staff
) -> Envelope[s.PaymentRead]:
    """MANAGER+ and services: release an authorisation (status ``canceled``)."""
    return Envelope(data=await payments.void(payment_id))


# -- wallet -----------------------------------------------------------------------------


@wallet_router.get("", response_model=Envelope[s.WalletRead], responses=ERRORS)
async def get_wallet(
    wallet: WalletReader, principal: WalletUser, currency: CurrencyCode | None = None
) -> Envelope[s.WalletRead]:
    """The caller's balance (default currency unless ``currency`` is given)."""
    return Envelope(data=await wallet.balance(principal.user_id, currency))


@wallet_router.get("/transactions", response_model=Page[s.WalletTransaction], responses=ERRORS)
async def wallet_transactions(
    wallet: WalletReader,
    principal: WalletUser,
    paging: Paging,
    currency: CurrencyCode | None = None,
) -> Page[s.WalletTransaction]:
    """The caller's ledger entries, newest first (+ into the wallet, - out of it)."""
    items, total = await wallet.transactions(
        principal.user_id, currency, paging.offset, paging.limit
    )
    return Page.of(items, page=paging.page, limit=paging.limit, total=total)


@wallet_router.post(
    "/deposit",
    status_code=201,
    response_model=Envelope[s.WalletMoveResult],
    responses={**CREATE_ERRORS},
)
async def wallet_deposit(
    body: s.WalletDeposit,
    wallet: Wallet,
    principal: WalletUser,
    response: Response,
    ip: ClientIP,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[s.WalletMoveResult]:
    """Top up the wallet, charged to a card through the card provider, after the fraud
    rules (402 PAYMENT_BLOCKED at the review score: a deposit cannot wait for review)."""
    result, created = await wallet.deposit(
        principal.user_id, body, idempotency_key=idempotency_key, ip=ip
    )
    if not created:
        response.status_code = 200
    return Envelope(data=result)


@wallet_router.post(
    "/withdraw",
    status_code=201,
    response_model=Envelope[s.WalletMoveResult],
    responses={
        **ERRORS,
        409: {"description": "INSUFFICIENT_FUNDS, or CONFLICT (Idempotency-Key reused)"},
    },
)
async def wallet_withdraw(
    body: s.WalletWithdraw,
    wallet: Wallet,
    principal: WalletUser,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[s.WalletMoveResult]:
    """Pay out of the wallet; more than the balance is a 409 INSUFFICIENT_FUNDS."""
    result, created = await wallet.withdraw(
        principal.user_id, body, idempotency_key=idempotency_key
    )
    if not created:
        response.status_code = 200
    return Envelope(data=result)
