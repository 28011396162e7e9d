"""utils/reconcile.py: finding the recording an ambiguous create made, against the offline Siro.

The lister is a real SiroHook over HTTP on 127.0.0.1; the recordings are made by real creates, some of
them with their answer lost on purpose.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_provider_siro.exceptions import SiroAmbiguousCreateError, SiroReconcileError
from airflow_provider_siro.hooks import siro as siro_hook_module
from airflow_provider_siro.hooks.siro import SiroHook
from airflow_provider_siro.payload import validate_recording_fields
from airflow_provider_siro.utils.reconcile import find_created_recording, matches, search_window

AUDIO = b"ID3\x03\x00" + bytes(range(256)) * 16


@pytest.fixture
def hook(siro_server, monkeypatch) -> SiroHook:
    siro_hook_module._NEGOTIATED.clear()
    connection = siro_server.connection(retry_backoff=0.01, timeout=0.5)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(connection))
    return SiroHook()


def create(hook: SiroHook, **fields: Any) -> tuple[str, dict[str, Any], datetime]:
    """Upload and create; return the ID, the body as sent, and when it was sent."""
    download_url = hook.upload_audio(lambda: io.BytesIO(AUDIO), len(AUDIO), "mp3")
    checked = validate_recording_fields("mp3", **{"user_id": "u1", **fields})
    sent_at = datetime.now(UTC)
    return hook.create_recording(download_url, checked), checked.to_body(download_url), sent_at


def lists(server) -> int:
    return sum(1 for r in server.requests if r.endpoint == "list_recordings")


def test_one_match_is_the_recording(siro_server, hook):
    create(hook, title="Other call")
    recording_id, body, sent_at = create(hook, title="QBR", result="closed", discoverable=True)
    create(hook, title="QBR", result="not closed", discoverable=True)
    create(hook, title="QBR", result="closed", discoverable=False)
    siro_server.clear_requests()

    assert find_created_recording(hook, body, sent_at, settle_polls=3, settle_interval=0.01) == recording_id
    assert lists(siro_server) == 1  # found on the first read: no settling wait


def test_an_exact_date_created_tells_identical_bodies_apart(siro_server, hook):
    stamps = ["2026-03-01T09:30:00Z", "2026-03-01T09:30:00.001Z", "2026-03-01T09:29:59.999Z"]
    made = {stamp: create(hook, title="Daily sync", date_created=stamp) for stamp in stamps}
    recording_id, body, _ = made["2026-03-01T09:30:00Z"]

    # sent_at far from the date: with a dateCreated the window is the date itself.
    far = datetime(2030, 1, 1, tzinfo=UTC)
    assert find_created_recording(hook, body, far, settle_polls=1, settle_interval=0.0) == recording_id


def test_no_match_after_the_settling_polls_is_none(siro_server, hook):
    _, body, sent_at = create(hook, title="Landed")
    body = {**body, "title": "Never created"}
    siro_server.clear_requests()

    assert find_created_recording(hook, body, sent_at, settle_polls=3, settle_interval=0.01) is None
    assert lists(siro_server) == 3


def test_a_recording_outside_the_window_is_not_a_match(siro_server, hook):
    _, body, sent_at = create(hook, title="Yesterday's call")
    later = sent_at + timedelta(hours=1)
    assert find_created_recording(hook, body, later, settle_polls=1, settle_interval=0.0) is None


def test_two_candidates_fail_naming_both(siro_server, hook):
    first, body, sent_at = create(hook, title="Twice")
    second, _, _ = create(hook, title="Twice")

    with pytest.raises(SiroReconcileError) as info:
        find_created_recording(hook, body, sent_at, settle_polls=2, settle_interval=0.01)

    assert info.value.candidates == sorted([first, second])
    assert first in str(info.value) and second in str(info.value)
    assert info.value.retryable is False


def test_a_create_whose_answer_was_lost_is_found_once_it_lands(siro_server, hook):
    # The server holds the create past the client's timeout (0.5 s), then makes the recording.
    siro_server.add_fault("create_recording", delay=1.5)
    download_url = hook.upload_audio(lambda: io.BytesIO(AUDIO), len(AUDIO), "mp3")
    fields = validate_recording_fields("mp3", user_id="u1", title="Slow Siro", result="in progress")
    sent_at = datetime.now(UTC)
    with pytest.raises(SiroAmbiguousCreateError):
        hook.create_recording(download_url, fields)

    found = find_created_recording(
        hook, fields.to_body(download_url), sent_at, settle_polls=200, settle_interval=0.05
    )

    siro_server.wait_idle()
    (recording,) = siro_server.recordings.values()
    assert found == recording.id


def test_the_window_is_exact_around_a_date_created_else_around_the_send():
    sent_at = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    low, high = search_window({"dateCreated": "2026-03-01T09:30:00.250Z"}, sent_at)
    assert (low, high) == (
        datetime(2026, 3, 1, 9, 30, 0, 249000, tzinfo=UTC),
        datetime(2026, 3, 1, 9, 30, 0, 251000, tzinfo=UTC),
    )
    low, high = search_window({"title": "x"}, sent_at)
    assert low < sent_at < high and high - low <= timedelta(minutes=10)
    with pytest.raises(ValueError, match="timezone-aware"):
        search_window({}, datetime(2026, 3, 1))


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"id": "r", "title": "T", "userId": "u", "result": "closed", "discoverable": True}, True),
        ({"id": "r", "title": "T"}, True),  # fields the list does not show are no evidence
        ({"id": "r", "title": "t", "userId": "u"}, False),
        ({"id": "r", "title": "T", "userId": "someone"}, False),
        ({"id": "r", "title": "T", "result": None}, False),
        ({"id": "r", "title": "T", "discoverable": False}, False),
    ],
)
def test_every_listed_field_the_create_set_must_match(item, expected):
    body = {
        "fileUrl": "https://x",
        "fileType": "mp3",
        "title": "T",
        "userId": "u",
        "result": "closed",
        "discoverable": True,
    }
    assert matches(item, body) is expected


def test_utils_reconcile_does_not_import_the_hook():
    import ast
    from pathlib import Path

    import airflow_provider_siro.utils.reconcile as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    assert not [
        name
        for name in imported
        if re.match(r"airflow_provider_siro\.(hooks|operators|sensors|triggers|links)", name)
    ]
