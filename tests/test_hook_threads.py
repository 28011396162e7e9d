"""The hook under threads, and the Airflow conventions it keeps.

Minting is single-flight per credential (many threads, one mint; another credential not held up); the
HTTP pool is replaced without cutting a request in flight; a typo'd connection extra is warned about
in the task log, with the name it probably meant; ``get_conn()`` returns the hook's session.
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
import requests
from upload_support import write_audio

from airflow_provider_siro.hooks import auth
from airflow_provider_siro.hooks.settings import KNOWN_EXTRAS, unknown_extras
from airflow_provider_siro.hooks.siro import SiroHook
from airflow_provider_siro.payload import validate_recording_fields
from airflow_provider_siro.testing import OfflineSiro

AUDIO = b"ID3\x03\x00" + bytes(range(256)) * 16


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    auth._TOKEN_CACHE.clear()
    yield
    auth._TOKEN_CACHE.clear()


def _run_threads(count: int, target) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(number: int) -> None:
        start.wait()
        try:
            target(number)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def test_many_threads_needing_a_token_mint_it_once(siro_server, monkeypatch):
    conn = siro_server.connection(oauth=True, retry_backoff=0.01)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    siro_server.add_fault("mint_token", delay=0.5)  # the first mint is slow: the others must wait for it
    tokens: list[str] = []

    errors = _run_threads(12, lambda _: tokens.append(SiroHook().get_access_token()))

    assert errors == []
    assert len(tokens) == 12 and len(set(tokens)) == 1
    assert [r.endpoint for r in siro_server.requests] == ["mint_token"]


def test_a_slow_mint_does_not_hold_up_another_credential(siro_server, monkeypatch):
    with OfflineSiro() as other:
        slow = siro_server.connection(oauth=True, retry_backoff=0.01)
        fast = other.connection(oauth=True, retry_backoff=0.01)
        monkeypatch.setenv("AIRFLOW_CONN_SIRO_SLOW", json.dumps(slow))
        monkeypatch.setenv("AIRFLOW_CONN_SIRO_FAST", json.dumps(fast))
        siro_server.add_fault("mint_token", delay=10)  # far longer than the other mint could take
        slow_done = threading.Event()

        def mint_slowly() -> None:
            SiroHook("siro_slow").get_access_token()
            slow_done.set()

        thread = threading.Thread(target=mint_slowly)
        thread.start()
        while not siro_server.fault_counts:  # the slow mint has reached its server, which holds it
            threading.Event().wait(0.01)

        SiroHook("siro_fast").get_access_token()  # would wait out the slow mint under one global lock

        assert not slow_done.is_set()
        assert [r.endpoint for r in other.requests] == ["mint_token"]
        thread.join(30)
        assert slow_done.is_set()


def test_replacing_the_pool_never_cuts_a_request_in_flight(siro_server, monkeypatch):
    conn = siro_server.connection(retry_backoff=0.01, max_retries=0, max_requests_per_minute=0)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    hook = SiroHook()
    url = hook.upload_audio(lambda: io.BytesIO(AUDIO), len(AUDIO), "mp3")
    recording_id = hook.create_recording(url, validate_recording_fields("mp3", user_email="rep@example.com"))
    siro_server.add_fault("get_recording", delay=0.05, times=None)  # each read is in flight a while
    stop = threading.Event()

    def churn() -> None:
        size = 8
        while not stop.is_set():
            size += 1
            hook.size_pool(size)  # a bigger pool: a new session
            hook.close()  # and the old one closed, as the idle refresh before a create does

    def read(_: int) -> None:
        for _ in range(10):
            assert hook.get_recording(recording_id)["id"] == recording_id

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        errors = _run_threads(8, read)
    finally:
        stop.set()
        churner.join(10)

    assert errors == []  # with max_retries 0, one cut request would have failed its thread
    assert len([r for r in siro_server.requests if r.endpoint == "get_recording"]) == 80


def test_get_conn_returns_the_hooks_session(siro_server, siro_connection):
    hook = SiroHook()
    session = hook.get_conn()
    assert isinstance(session, requests.Session)
    assert session is hook.session
    assert session.headers["User-Agent"].startswith("airflow-provider-siro/")


def test_unknown_extras_name_the_closest_known_one():
    assert unknown_extras({"max_retires": 3, "timeout": 5, "extra__siro__scope": "read"}) == [
        "unknown extra 'max_retires' is ignored; did you mean 'max_retries'?"
    ]
    (far,) = unknown_extras({"colour": "blue"})
    assert far.startswith("unknown extra 'colour' is ignored; known extras: auth_host, ")


def test_every_extra_of_the_connection_form_is_known():
    from airflow_provider_siro.get_provider_info import CONN_FIELDS

    assert set(CONN_FIELDS) <= set(KNOWN_EXTRAS)


def test_a_typod_extra_is_warned_about_in_the_task_log(siro_server, run_dag, monkeypatch, capfd, tmp_path):
    conn = siro_server.connection(retry_backoff=0.01, max_retires=3)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    audio = tmp_path / "call.mp3"
    write_audio(Path(audio))
    capfd.readouterr()

    dag_run = run_dag("siro_test_upload_params", {"source_path": str(audio), "user_email": "ae@acme.io"})

    log = "".join(capfd.readouterr())
    assert dag_run.state == "success"
    assert (
        "Connection 'siro_default': unknown extra 'max_retires' is ignored; did you mean 'max_retries'?"
        in log
    )
