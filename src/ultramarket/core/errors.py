"""Domain errors and the one place that turns every failure into the error envelope."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ultramarket.core.responses import JSONResponse

log = logging.getLogger("ultramarket.errors")


class DomainError(Exception):
    """Base of every expected failure. Services raise these, never HTTPException."""

    status_code = 400
    code = "BAD_REQUEST"
    message = "Bad request"
    # When true, the unit of work commits what was written before the error.
    persist_changes = False

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
        persist_changes: bool | None = None,
    ) -> None:
        self.message = message or self.message
        if persist_changes is not None:
            self.persist_changes = persist_changes
        if code:
            self.code = code
        self.details = details or []
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(DomainError):
    pass


class Unauthenticated(DomainError):
    status_code = 401
    code = "UNAUTHENTICATED"
    message = "Authentication required"


class Forbidden(DomainError):
    status_code = 403
    code = "FORBIDDEN"
    message = "You are not allowed to do this"


class NotFound(DomainError):
    status_code = 404
    code = "NOT_FOUND"
    message = "Not found"


class Conflict(DomainError):
    status_code = 409
    code = "CONFLICT"
    message = "Conflict"


class PaymentFailed(DomainError):
    status_code = 402
    code = "PAYMENT_FAILED"
    message = "Payment failed"


class PayloadTooLarge(DomainError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"
    message = "Request body too large"


class UnsupportedMediaType(DomainError):
    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    message = "Unsupported media type"


class ValidationFailed(DomainError):
    """A business-level validation failure on otherwise well-formed input (422)."""

    status_code = 422
    code = "VALIDATION_ERROR"
    message = "Validation failed"


class RateLimited(DomainError):
    status_code = 429
    code = "RATE_LIMITED"
    message = "Too many requests"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = retry_after


class Unavailable(DomainError):
    status_code = 503
    code = "UNAVAILABLE"
    message = "Service unavailable"


_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    402: "PAYMENT_FAILED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

# Error codes other services may see in a remote envelope, mapped back to a class.
ERROR_CLASSES: dict[int, type[DomainError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    402: PaymentFailed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    503: Unavailable,
}


# Codes the contract names beside its one-code-per-status table.
CONTRACT_EXTRA_CODES = frozenset({"INSUFFICIENT_STOCK", "PAYMENT_BLOCKED"})


def public_code(status: int, code: str) -> tuple[str, str | None]:
    """The envelope's ``code`` for a status, and the precise ``reason`` when it differs.

    The contract fixes one code per status (409 CONFLICT, 404 NOT_FOUND...); a service's
    own, finer code (EMAIL_TAKEN, SKU_TAKEN, TOKEN_EXPIRED) travels as ``reason``.
    """
    contract = _STATUS_CODES.get(status)
    if contract is None or code == contract or code in CONTRACT_EXTRA_CODES:
        return code, None
    return contract, code


def error_body(
    request: Request | None,
    code: str,
    message: str,
    details: list[Any] | None = None,
    *,
    status: int | None = None,
) -> dict[str, Any]:
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    error: dict[str, Any] = {"code": code, "message": message, "details": details or []}
    if status is not None:
        error["code"], reason = public_code(status, code)
        if reason is not None:
            error["reason"] = reason
    return {"success": False, "error": error, "request_id": request_id}


def error_response(
    request: Request | None,
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(request, code, message, details, status=status),
        status_code=status,
        headers=headers,
    )


def validation_details(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The envelope's details of a failed validation (pydantic's ``errors()``)."""
    details = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        # Never echo back the offending input (it may be a password).
        details.append({"field": ".".join(loc), "message": err.get("msg", ""), "type": err["type"]})
    return details


def install_error_handlers(app: FastAPI) -> None:
    async def domain(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return error_response(
            request, exc.status_code, exc.code, exc.message, exc.details, exc.headers
        )

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(request, 400, "BAD_REQUEST", "Malformed JSON body")
        return error_response(
            request,
            422,
            "VALIDATION_ERROR",
            "Request validation failed",
            validation_details(errors),
        )

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "ERROR")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").lower()
        if exc.status_code == 404 and message == "Not Found":
            message = "No such route"
        return error_response(
            request, exc.status_code, code, message, headers=getattr(exc, "headers", None)
        )

    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception(
            "unhandled error",
            extra={"request_id": getattr(request.state, "request_id", None)},
        )
        return error_response(request, 500, "INTERNAL", "Internal server error")

    app.add_exception_handler(DomainError, domain)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, unhandled)
