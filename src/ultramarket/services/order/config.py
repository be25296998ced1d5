"""The order service's settings (``ULTRAMARKET_ORDER__RESERVATION_TTL_SECONDS=900``)."""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

SETTINGS_KEY = "order.settings"


class OrderSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ULTRAMARKET_ORDER__", env_nested_delimiter="__", extra="ignore"
    )

    # Prefix of the human order numbers ("UM-261121-7K3QX9").
    number_prefix: str = "UM"
    # How long a checkout's stock reservation lives before the inventory sweeper frees it.
    reservation_ttl_seconds: int = 900
    # A checkout still ``pending`` this long after it began is reconciled by the sweeper:
    # confirmed when its payment went through, else cancelled with everything given back.
    pending_timeout_seconds: float = 120.0
    sweep_seconds: float = 30.0
    # A retried checkout (same Idempotency-Key) waits this long for the first to finish.
    idempotency_wait_seconds: float = 15.0
    max_notes_per_order: int = 200


def order_settings(container: Any) -> OrderSettings:
    """The order settings held by the container (tests put their own in ``extras``)."""
    settings = container.extras.get(SETTINGS_KEY)
    if settings is None:
        settings = container.extras[SETTINGS_KEY] = OrderSettings()
    assert isinstance(settings, OrderSettings)
    return settings
