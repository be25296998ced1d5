"""``ultramarket worker --service X`` relays X's outbox. With the in-process bus that
worker is the only consumer there is: events for other services' handlers would be
marked delivered with nobody handling them, so it refuses to start."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from ultramarket.cli import app
from ultramarket.core.config import get_settings


@pytest.fixture
def memory_bus(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    monkeypatch.setenv("ULTRAMARKET_BROKER_URL", "memory://")
    monkeypatch.setenv("ULTRAMARKET_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_one_service_worker_needs_a_broker(memory_bus: Any) -> None:
    result = CliRunner().invoke(app, ["worker", "--service", "product"])
    assert result.exit_code == 2
    assert "--service needs a broker" in result.output
