"""The cart service's domain errors, with stable codes."""

from __future__ import annotations

from ultramarket.core.errors import Conflict, NotFound, ValidationFailed


class CartNotFound(NotFound):
    code = "CART_NOT_FOUND"
    message = "No cart"


class CartItemNotFound(NotFound):
    code = "CART_ITEM_NOT_FOUND"
    message = "No such line in the cart"


class VariantNotFound(NotFound):
    code = "VARIANT_NOT_FOUND"
    message = "No such product variant, or it is not for sale"


class QuantityLimit(ValidationFailed):
    code = "VALIDATION_ERROR"
    message = "Quantity over the per-line limit"


class CartLineLimit(ValidationFailed):
    code = "CART_LINE_LIMIT"
    message = "The cart holds too many lines"


class CartEmpty(ValidationFailed):
    code = "CART_EMPTY"
    message = "The cart is empty"


class CurrencyMismatch(Conflict):
    code = "CURRENCY_MISMATCH"
    message = "The cart holds items in another currency"


class CouponNotFound(NotFound):
    code = "COUPON_NOT_FOUND"
    message = "No such coupon"


class CouponInactive(ValidationFailed):
    code = "COUPON_INACTIVE"
    message = "This coupon is not active"


class CouponNotStarted(ValidationFailed):
    code = "COUPON_NOT_STARTED"
    message = "This coupon is not valid yet"


class CouponExpired(ValidationFailed):
    code = "COUPON_EXPIRED"
    message = "This coupon has expired"


class CouponMinSubtotal(ValidationFailed):
    code = "COUPON_MIN_SUBTOTAL"
    message = "The subtotal is below this coupon's minimum"


class CouponCurrencyMismatch(ValidationFailed):
    code = "COUPON_CURRENCY_MISMATCH"
    message = "This coupon is for another currency"


class CouponExhausted(Conflict):
    code = "COUPON_EXHAUSTED"
    message = "This coupon has been used up"


class CouponUserLimit(Conflict):
    code = "COUPON_USER_LIMIT"
    message = "You have used this coupon as often as allowed"


class CouponCodeTaken(Conflict):
    code = "COUPON_CODE_TAKEN"
    message = "A coupon with this code exists"


class InvalidCoupon(ValidationFailed):
    code = "VALIDATION_ERROR"
    message = "Invalid coupon"


class RedemptionConflict(Conflict):
    code = "REDEMPTION_CONFLICT"
    message = "This order already redeemed another coupon, or its redemption was released"
