"""Test support for users of the provider: an offline Siro server and pytest fixtures."""

from __future__ import annotations

from airflow_provider_siro.testing.server import Fault, OfflineSiro, RecordedRequest, Recording, StoredObject

__all__ = ["Fault", "OfflineSiro", "RecordedRequest", "Recording", "StoredObject"]
