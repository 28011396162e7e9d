"""SiroRecordingTrigger and SiroAsyncHook against the offline Siro server, over real HTTP on 127.0.0.1.

The trigger is driven as the triggerer drives it: built from its serialized form, then its ``run()``
iterated on an event loop until the first event.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import subprocess
import sys
import time
from typing import Any

import pytest
from airflow_compat import serde

from airflow_provider_siro.hooks import auth
from airflow_provider_siro.hooks.siro import SiroAsyncHook, SiroHook
from airflow_provider_siro.payload import validate_recording_fields
from airflow_provider_siro.triggers.siro import SiroRecordingTrigger

AUDIO = b"ID3\x03\x00" + bytes(range(256)) * 16


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    auth._TOKEN_CACHE.clear()
    yield
    auth._TOKEN_CACHE.clear()


def use_connection(monkeypatch, server, **kwargs: Any) -> dict[str, Any]:
    extras = {"retry_backoff": 0.01, **kwargs.pop("extras", {})}
    conn = server.connection(**kwargs, **extras)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    return conn


def create_recording(title: str = "Trigger test") -> str:
    hook = SiroHook()
    download_url = hook.upload_audio(lambda: io.BytesIO(AUDIO), len(AUDIO), "mp3", label="call.mp3")
    return hook.create_recording(
        download_url, validate_recording_fields("mp3", user_email="rep@example.com", title=title)
    )


def make_trigger(recording_id: str, *, timeout: float = 60.0, **kwargs: Any) -> SiroRecordingTrigger:
    """A trigger as the triggerer builds it: from the classpath and kwargs a task deferred with."""
    serialize, deserialize = serde()

    original = SiroRecordingTrigger(
        recording_id=recording_id,
        siro_conn_id="siro_default",
        end_time=time.time() + timeout,
        poll_interval=kwargs.pop("poll_interval", 0.05),
        **kwargs,
    )
    classpath, trigger_kwargs = original.serialize()
    return import_string(classpath)(**deserialize(serialize(trigger_kwargs)))


def import_string(classpath: str) -> Any:
    """Load a trigger class from its classpath, as the triggerer does."""
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


def first_event(trigger: SiroRecordingTrigger) -> dict[str, Any]:
    async def run() -> Any:
        events = trigger.run()
        try:
            return await anext(events)
        finally:
            await events.aclose()

    return asyncio.run(run()).payload


def recording_reads(server, recording_id: str) -> list[Any]:
    return [
        r
        for r in server.requests
        if r.endpoint == "get_recording" and r.path.split("?")[0].endswith(recording_id)
    ]


# --------------------------------------------------------------------------- serialize contract


def test_serializes_to_its_classpath_and_plain_kwargs_without_secrets(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, oauth=True)
    trigger = SiroRecordingTrigger(
        recording_id="rec-123",
        siro_conn_id="siro_default",
        end_time=1_800_000_000.0,
        poll_interval=30,
        show_summary=True,
    )
    classpath, kwargs = trigger.serialize()

    assert classpath == "airflow_provider_siro.triggers.siro.SiroRecordingTrigger"
    assert kwargs == {
        "recording_id": "rec-123",
        "siro_conn_id": "siro_default",
        "end_time": 1_800_000_000.0,
        "poll_interval": 30.0,
        "show_summary": True,
        "show_entity_extractions": False,
        "show_crm_opportunities": False,
    }
    # What the metadata DB stores must be enough to rebuild the trigger, and must hold no credential.
    serialize, deserialize = serde()

    stored = json.dumps(serialize(kwargs))
    for secret in (siro_server.org_token, siro_server.client_secret):
        assert secret not in stored
    rebuilt = import_string(classpath)(**deserialize(json.loads(stored)))
    assert rebuilt.serialize() == (classpath, kwargs)


def test_a_running_trigger_still_serializes_without_the_token_it_minted(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, oauth=True)
    recording_id = create_recording()
    trigger = make_trigger(recording_id)

    event = first_event(trigger)

    assert event["status"] == "success"
    minted = [r for r in siro_server.requests if r.endpoint == "mint_token"]
    assert minted, "the OAuth connection should have minted a token"
    token = SiroHook().get_access_token()
    assert token not in json.dumps(trigger.serialize()[1])
    assert token not in json.dumps(event)


# --------------------------------------------------------------------------- run contract


def test_fires_success_with_the_requested_details_once_siro_has_processed_it(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    recording_id = create_recording("Quarterly review")
    siro_server.clear_requests()

    event = first_event(make_trigger(recording_id, show_summary=True, show_entity_extractions=True))

    assert event["status"] == "success"
    assert event["recording_id"] == recording_id
    recording = event["recording"]
    assert recording["id"] == recording_id
    assert recording["processingStatus"] == "complete"
    assert recording["title"] == "Quarterly review"
    assert recording["summary"]
    assert "entityExtractions" in recording
    reads = recording_reads(siro_server, recording_id)
    # The offline server finishes a recording after a few reads: the trigger polled until then.
    assert len(reads) == siro_server.recordings[recording_id].polls >= 2
    assert all(r.headers.get("User-Agent", "").startswith("airflow-provider-siro/") for r in reads)
    assert all("httpx/" in r.headers["User-Agent"] for r in reads)


def test_fires_failed_when_siro_reports_a_processing_error(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    recording_id = create_recording()
    siro_server.set_recording_status(recording_id, "error")

    event = first_event(make_trigger(recording_id))

    assert event["status"] == "failed"
    assert event["recording_id"] == recording_id
    assert "could not process" in event["message"]
    assert "recording" not in event


@pytest.mark.parametrize("how", ["unknown id", "deleted"])
def test_fires_failed_when_the_recording_does_not_exist(siro_server, monkeypatch, how):
    use_connection(monkeypatch, siro_server)
    if how == "deleted":
        recording_id = create_recording()
        siro_server.delete_recording(recording_id)
    else:
        recording_id = "no-such-recording"

    event = first_event(make_trigger(recording_id))

    assert event["status"] == "failed"
    assert "no such recording" in event["message"]
    assert "wrong or it was deleted" in event["message"]


def test_fires_timeout_when_processing_outlasts_the_deadline(monkeypatch):
    from airflow_provider_siro.testing import OfflineSiro

    with OfflineSiro(processing_polls=10_000) as server:
        use_connection(monkeypatch, server)
        recording_id = create_recording()

        event = first_event(make_trigger(recording_id, timeout=0.3, poll_interval=0.05))

        assert event["status"] == "timeout"
        assert event["recording_id"] == recording_id
        assert "had not processed" in event["message"]
        assert "in-progress" in event["message"]
        assert len(recording_reads(server, recording_id)) >= 2


def test_a_deadline_already_past_still_reads_once_and_reports_what_it_saw(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    recording_id = create_recording()
    siro_server.set_recording_status(recording_id, "complete")

    event = first_event(make_trigger(recording_id, timeout=-5))

    assert event["status"] == "success"
    assert "summary" not in event["recording"], "no show_* flag, no details"


@pytest.mark.parametrize("status", [429, 503])
def test_backs_off_on_rate_limits_and_gateway_errors_then_succeeds(siro_server, monkeypatch, status):
    use_connection(monkeypatch, siro_server)
    recording_id = create_recording()
    siro_server.set_recording_status(recording_id, "complete")
    siro_server.clear_requests()
    siro_server.add_fault("get_recording", status=status, retry_after=0, times=2)

    event = first_event(make_trigger(recording_id))

    assert event["status"] == "success"
    assert [r.status for r in recording_reads(siro_server, recording_id)] == [status, status, 200]


def test_honours_retry_after(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, extras={"retry_backoff": 30})
    recording_id = create_recording()
    siro_server.set_recording_status(recording_id, "complete")
    siro_server.add_fault("get_recording", status=429, retry_after=0, times=1)

    # With a 30 s backoff this would hang the test; Retry-After: 0 tells the hook to try again at once.
    event = first_event(make_trigger(recording_id))

    assert event["status"] == "success"


def test_fires_error_when_siro_stays_unavailable(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, extras={"max_retries": 2})
    recording_id = create_recording()
    siro_server.add_fault("get_recording", status=503, times=3)

    event = first_event(make_trigger(recording_id))

    assert event["status"] == "error"
    assert "503" in event["message"]
    assert len(recording_reads(siro_server, recording_id)) == 3


def test_fires_error_when_the_connection_is_unusable(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SIRO_DEFAULT", json.dumps({"conn_type": "siro", "host": "http://127.0.0.1:9"})
    )

    event = first_event(make_trigger("rec-1"))

    assert event["status"] == "error"
    assert "cannot mint one" in event["message"]


def test_mints_again_after_a_401(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, oauth=True)
    recording_id = create_recording()
    siro_server.set_recording_status(recording_id, "complete")
    siro_server.clear_requests()
    siro_server.add_fault("get_recording", status=401, times=1)

    event = first_event(make_trigger(recording_id))

    assert event["status"] == "success"
    assert [r.endpoint for r in siro_server.requests] == ["get_recording", "mint_token", "get_recording"]


def test_the_event_loop_keeps_running_while_siro_is_slow(siro_server, monkeypatch):
    """Other triggers share the triggerer's loop: a slow answer must not stop them."""
    use_connection(monkeypatch, siro_server)
    recording_id = create_recording()
    siro_server.set_recording_status(recording_id, "complete")
    siro_server.add_fault("get_recording", delay=1.0, times=1)

    async def run() -> tuple[dict[str, Any], int]:
        ticks = 0
        done = asyncio.Event()

        async def neighbour() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        other = asyncio.create_task(neighbour())
        events = make_trigger(recording_id).run()
        try:
            event = await anext(events)
        finally:
            done.set()
            await events.aclose()
            await other
        return event.payload, ticks

    event, ticks = asyncio.run(run())

    assert event["status"] == "success"
    # A blocking read would have frozen the neighbour for the whole second; it kept ticking instead.
    assert ticks >= 10


def test_the_hook_and_requests_are_never_imported_on_the_event_loop(siro_server, monkeypatch):
    """A first import of the hook module (requests, urllib3, ...) takes a good part of a second; the
    triggerer would spend it with every other trigger stopped. Checked in a fresh interpreter, with an
    import spy noting which thread imports what."""
    use_connection(monkeypatch, siro_server)
    recording_id = create_recording()
    siro_server.set_recording_status(recording_id, "complete")
    script = f"""
import asyncio, json, sys, threading, time

class Spy:
    threads = {{}}

    def find_spec(self, name, path=None, target=None):
        if name in ("requests", "airflow_provider_siro.hooks.siro"):
            self.threads.setdefault(name, threading.get_ident())
        return None

import airflow.triggers.base  # the base class: Airflow 2 imports requests itself, in this thread
TRACKED = sorted(n for n in ("requests", "airflow_provider_siro.hooks.siro") if n not in sys.modules)
sys.meta_path.insert(0, Spy())
from airflow_provider_siro.triggers.siro import SiroRecordingTrigger

async def main():
    trigger = SiroRecordingTrigger({recording_id!r}, "siro_default", time.time() + 60, 0.05)
    events = trigger.run()
    event = await anext(events)
    await events.aclose()
    loop_thread = threading.get_ident()
    print(json.dumps({{"status": event.payload["status"],
                      "on_loop": sorted(n for n, t in Spy.threads.items() if t == loop_thread),
                      "imported": sorted(n for n in Spy.threads if n in TRACKED),
                      "tracked": TRACKED}}))

asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])

    assert "airflow_provider_siro.hooks.siro" in result["tracked"]
    assert result == {
        "status": "success",
        "on_loop": [],
        "imported": result["tracked"],
        "tracked": result["tracked"],
    }


# --------------------------------------------------------------------------- async hook


def test_async_hook_reads_what_the_sync_hook_reads(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    recording_id = create_recording("Same either way")
    siro_server.set_recording_status(recording_id, "complete")

    async def read() -> dict[str, Any]:
        hook = SiroAsyncHook()
        try:
            return await hook.aget_recording(recording_id, show_summary=True, show_crm_opportunities=True)
        finally:
            await hook.aclose()

    from_async = asyncio.run(read())
    from_sync = SiroHook().get_recording(recording_id, show_summary=True, show_crm_opportunities=True)

    assert from_async == from_sync
    assert from_async["title"] == "Same either way"
