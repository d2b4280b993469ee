"""Shared fixtures: a fresh data dir and a running server process per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import app_server, browser  # noqa: F401 - fixtures for the browser tests
from tests.helpers import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server on a free port with a short flush interval and grace period."""
    srv = ServerProcess(tmp_path / "data", "--flush-interval", "0.5", "--grace-seconds", "0.5").start()
    yield srv
    if srv.proc and srv.proc.poll() is None:
        srv.stop()
