"""The order service's domain errors, with stable codes (the envelope's ``reason``)."""

from __future__ import annotations

from ultramarket.core.errors import Conflict, NotFound, ValidationFailed


class OrderNotFound(NotFound):
    code = "ORDER_NOT_FOUND"
    message = "No such order"


class IllegalTransition(Conflict):
    code = "ILLEGAL_TRANSITION"
    message = "The order cannot move to that status"


class NotCancellable(Conflict):
    code = "NOT_CANCELLABLE"
    message = "The order can no longer be cancelled"


class NotRefundable(Conflict):
    code = "NOT_REFUNDABLE"
    message = "The order has nothing to refund"


class RefundExceedsPaid(Conflict):
    code = "REFUND_EXCEEDS_PAID"
    message = "The refund is more than what is left to refund"


class IdempotencyKeyReused(Conflict):
    code = "IDEMPOTENCY_KEY_REUSED"
    message = "This Idempotency-Key was used with another request"


class CheckoutInProgress(Conflict):
    code = "CHECKOUT_IN_PROGRESS"
    message = "The checkout with this Idempotency-Key is still running; retry shortly"


class CartEmpty(ValidationFailed):
    code = "CART_EMPTY"
    message = "Nothing to order: the cart is empty"


class LinesUnavailable(Conflict):
    code = "PRODUCT_UNAVAILABLE"
    message = "Some lines can no longer be bought"


class PriceChanged(Conflict):
    code = "PRICE_CHANGED"
    message = "The price changed during checkout; please review the cart and retry"


class ReservationLost(Conflict):
    code = "RESERVATION_EXPIRED"
    message = "The stock held for this order ran out of time; nothing was charged"


class UnknownOrderLine(ValidationFailed):
    code = "UNKNOWN_ORDER_LINE"
    message = "No such line in this order"


class RefundInProgress(Conflict):
    code = "REFUND_IN_PROGRESS"
    message = "A refund with this Idempotency-Key is still being made; retry shortly"


class RefundFailedBefore(Conflict):
    code = "REFUND_FAILED"
    message = "The refund with this Idempotency-Key was refused"


class RefundClaimPending(Conflict):
    code = "REFUND_CLAIM_PENDING"
    message = "A refund claim of this order is still pending; retry once it has ended"


class NotTrackable(Conflict):
    code = "NOT_TRACKABLE"
    message = "Tracking is kept only for a paid order being fulfilled"
