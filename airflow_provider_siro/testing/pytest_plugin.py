"""pytest fixtures for testing DAGs that use the Siro provider against the offline server.

Enable with ``pytest_plugins = ["airflow_provider_siro.testing.pytest_plugin"]`` in a conftest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_siro.testing.server import OfflineSiro


@pytest.fixture
def siro_server() -> Iterator[OfflineSiro]:
    """A started offline Siro server on 127.0.0.1, with fresh state, stopped after the test."""
    with OfflineSiro() as server:
        yield server


@pytest.fixture
def siro_connection(siro_server: OfflineSiro, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Point ``siro_default`` at ``siro_server`` with a pasted token; returns the connection dict.

    Retries back off for 10 ms instead of a second, so fault tests stay fast.
    """
    connection = siro_server.connection(retry_backoff=0.01)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(connection))
    return connection
