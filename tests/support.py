"""Assertions shared by the API tests."""

from __future__ import annotations

from typing import Any

import httpx

from ultramarket.core.errors import public_code


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert the status, the error envelope's exact shape, and its code.

    ``code`` may be the contract's code for the status (``CONFLICT``) or a service's finer
    one (``EMAIL_TAKEN``): the envelope must then carry the contract code in ``code`` and
    the finer one in ``reason``.
    """
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "error", "request_id"}, body
    assert body["success"] is False, body
    error: dict[str, Any] = body["error"]
    expected_code, expected_reason = public_code(status, code)
    keys = {"code", "message", "details"} | ({"reason"} if expected_reason else set())
    assert set(error) == keys, body
    assert error["code"] == expected_code, body
    assert error.get("reason") == expected_reason, body
    assert isinstance(error["message"], str), body
    assert error["message"], body
    assert isinstance(error["details"], list), body
    assert body["request_id"], body
    assert response.headers["x-request-id"] == body["request_id"]
    return error


def error_reason(response: httpx.Response) -> str:
    """The finest code an error response carries (``reason`` if any, else ``code``)."""
    error = response.json()["error"]
    return str(error.get("reason") or error["code"])


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True, body
    return body["data"]
