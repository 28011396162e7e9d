"""The one retry policy, as a table: what Siro (or the network) answers -> retried or not.

The same table runs through the sync hook (``requests``) and the async hook (``httpx``) against the
offline server, reading a recording (a call that is safe to repeat); a second table covers the create
call, which is repeated only where Siro cannot have acted on it.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from airflow_provider_siro.exceptions import SiroAmbiguousCreateError, SiroApiError, SiroRejectedError
from airflow_provider_siro.hooks import auth, retries
from airflow_provider_siro.hooks.siro import SiroAsyncHook, SiroHook
from airflow_provider_siro.payload import validate_recording_fields

AUDIO = b"ID3\x03\x00" + bytes(range(256)) * 16

# (fault on the endpoint, retried?)
READ_TABLE: list[tuple[dict[str, Any], bool]] = [
    ({"status": 429}, True),
    ({"status": 429, "retry_after": 0}, True),
    ({"status": 500}, True),
    ({"status": 502}, True),
    ({"status": 503}, True),
    ({"status": 504}, True),
    ({"drop": "before"}, True),
    ({"drop": "after"}, True),
    ({"status": 400}, False),
    ({"status": 401}, False),  # a pasted token: nothing to refresh
    ({"status": 403}, False),
    ({"status": 404}, False),
    ({"status": 409}, False),
    ({"status": 422}, False),
    ({"status": 301, "redirect": "http://localhost:9/elsewhere"}, False),
    ({"status": 302, "redirect": "http://localhost:9/elsewhere"}, False),
    ({"status": 307, "redirect": "http://localhost:9/elsewhere"}, False),
    ({"status": 308, "redirect": "http://localhost:9/elsewhere"}, False),
]

CREATE_TABLE: list[tuple[dict[str, Any], str]] = [
    ({"status": 429}, "retried"),
    ({"status": 503, "retry_after": 0}, "retried"),
    ({"status": 503}, "ambiguous"),
    ({"drop": "before"}, "ambiguous"),  # sent: the client cannot tell whether Siro acted
    ({"status": 500, "acted": True}, "ambiguous"),
    ({"status": 502, "acted": True}, "ambiguous"),
    ({"status": 504, "acted": True}, "ambiguous"),
    ({"drop": "after"}, "ambiguous"),
    ({"status": 400}, "rejected"),
    ({"status": 422}, "rejected"),
    ({"status": 307, "redirect": "http://localhost:9/v1/core/recordings/upload"}, "rejected"),
]


def _name(value: Any) -> str:
    return (
        "-".join(f"{k}={v}" for k, v in value.items() if k != "redirect") if isinstance(value, dict) else ""
    )


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    auth._TOKEN_CACHE.clear()
    yield
    auth._TOKEN_CACHE.clear()


@pytest.fixture
def recording_id(siro_server, monkeypatch) -> str:
    conn = siro_server.connection(retry_backoff=0.01, max_retries=2)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    hook = SiroHook()
    url = hook.upload_audio(lambda: io.BytesIO(AUDIO), len(AUDIO), "mp3")
    found = hook.create_recording(url, validate_recording_fields("mp3", user_email="rep@example.com"))
    siro_server.clear_requests()
    return found


def _read_sync(recording_id: str) -> dict[str, Any]:
    return SiroHook().get_recording(recording_id)


def _read_async(recording_id: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        hook = SiroAsyncHook()
        try:
            return await hook.aget_recording(recording_id)
        finally:
            await hook.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize("read", [_read_sync, _read_async], ids=["sync", "async"])
@pytest.mark.parametrize(("fault", "retried"), READ_TABLE, ids=_name)
def test_the_read_table(siro_server, recording_id, read, fault, retried):
    siro_server.add_fault("get_recording", **fault)

    if retried:
        assert read(recording_id)["id"] == recording_id
        assert [r.status for r in siro_server.requests][-1] == 200
        assert len(siro_server.requests) == 2
    else:
        with pytest.raises(SiroApiError) as raised:
            read(recording_id)
        assert raised.value.retryable is False
        assert len(siro_server.requests) == 1


@pytest.mark.parametrize("read", [_read_sync, _read_async], ids=["sync", "async"])
def test_retries_stop_at_the_budget_and_the_last_error_is_retryable(siro_server, recording_id, read):
    siro_server.add_fault("get_recording", status=503, times=None)

    with pytest.raises(SiroApiError) as raised:
        read(recording_id)

    assert raised.value.status_code == 503 and raised.value.retryable is True
    assert len(siro_server.requests) == 3  # max_retries is 2


@pytest.mark.parametrize(("fault", "outcome"), CREATE_TABLE, ids=_name)
def test_the_create_table(siro_server, recording_id, fault, outcome):
    hook = SiroHook()
    url = hook.upload_audio(lambda: io.BytesIO(AUDIO), len(AUDIO), "mp3")
    before = set(siro_server.recordings)
    siro_server.clear_requests()
    siro_server.add_fault("create_recording", **fault)
    fields = validate_recording_fields("mp3", user_email="rep@example.com")

    if outcome == "retried":
        created = hook.create_recording(url, fields)
        assert set(siro_server.recordings) - before == {created}
        assert len(siro_server.requests) == 2
        return
    kind = SiroAmbiguousCreateError if outcome == "ambiguous" else SiroRejectedError
    with pytest.raises(kind) as raised:
        hook.create_recording(url, fields)
    assert raised.value.retryable is False
    assert len(siro_server.requests) == 1


@pytest.mark.parametrize(
    ("retry_after", "cap", "expected"),
    [(None, 120.0, None), ("5", 120.0, 5.0), ("500", 30.0, 30.0), ("0", 30.0, 0.0)],
)
def test_retry_after_is_honoured_up_to_the_cap(retry_after, cap, expected):
    from tenacity import RetryCallState, Retrying

    wait = retries._Wait(backoff=2.0, cap=cap)
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = 3
    error = SiroApiError("x", status_code=429)
    state.set_exception(
        (
            retries.RetryLater,
            retries.RetryLater(error, "x", retry_after=retries.parse_retry_after(retry_after)),
            None,
        )
    )
    waits = {wait(state) for _ in range(50)}
    if expected is not None:
        assert waits == {expected}
    else:  # equal jitter over [backoff * 2**2 / 2, backoff * 2**2]: never zero, not one fixed value
        assert all(4.0 <= w <= 8.0 for w in waits) and len(waits) > 1
