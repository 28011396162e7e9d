"""No secret in any message: whatever Siro (or a proxy in front of it) echoes back stays out of the
task log, XCom and exception text; odd 2xx answers are named; a bulk task's log holds no signature.

The offline server's ``echo`` fault answers an error whose body repeats the request, headers and body:
the access token, the org token and client secret (when minting), a signed download URL (when
creating). Every run is scanned with the secret audit's scanner for the secrets that server issued.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import AIRFLOW_HOME
from reliability_report import record
from secret_audit import SecretScanner, fernet_keys_near
from upload_support import task_instances, write_audio

from airflow_provider_siro.exceptions import SiroAmbiguousCreateError, SiroApiError
from airflow_provider_siro.hooks import auth
from airflow_provider_siro.hooks.siro import SiroHook
from airflow_provider_siro.payload import validate_recording_fields

AUDIO = b"ID3\x03\x00" + bytes(range(256)) * 16
STATUSES = [400, 401, 403, 422, 500]
ENDPOINTS = ["mint_token", "signed_urls", "create_recording"]


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    auth._TOKEN_CACHE.clear()
    yield
    auth._TOKEN_CACHE.clear()


def _use_oauth(siro_server, monkeypatch) -> None:
    conn = siro_server.connection(oauth=True, retry_backoff=0.01, max_retries=1)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))


def _leaks(siro_server, *texts: str, tree: bool = False) -> list[str]:
    scanner = SecretScanner(siro_server.issued_secret_kinds())
    for number, text in enumerate(texts):
        scanner.scan_text(text, f"text {number}")
    if tree:  # task logs, and the metadata DB (XCom, rendered fields, the failed try's note)
        for database in scanner.scan_tree(AIRFLOW_HOME):
            scanner.scan_sqlite(database, fernet_keys_near(database))
    return [str(hit) for hit in scanner.leaks]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_echoed_request_leaves_no_secret_in_the_exception(siro_server, monkeypatch, endpoint, status):
    _use_oauth(siro_server, monkeypatch)
    siro_server.add_fault(endpoint, status=status, echo=True, times=None)
    hook = SiroHook()

    with pytest.raises(SiroApiError) as raised:
        url = hook.upload_audio(lambda: io.BytesIO(AUDIO), len(AUDIO), "mp3")
        hook.create_recording(url, validate_recording_fields("mp3", user_email="rep@example.com"))

    echoed = [r for r in siro_server.requests if r.endpoint == endpoint]
    assert echoed and all(r.status == status for r in echoed)
    text = str(raised.value) + repr(raised.value) + repr(raised.value.__reduce__())
    leaks = _leaks(siro_server, text)
    record("echoed_errors", **{f"exception-{endpoint}-{status}": len(leaks)})
    assert f"returned {status}" in str(raised.value)
    assert "request" in text and "***" in text  # the echo is quoted, scrubbed
    assert _leaks(siro_server, text) == []
    assert "characters)" in text and len(str(raised.value)) < 700  # the quote is capped


@pytest.mark.parametrize("status", STATUSES)
def test_an_echoing_siro_leaves_no_secret_in_a_real_dag_runs_logs_xcom_or_db(
    siro_server, run_dag, monkeypatch, capfd, tmp_path, status
):
    _use_oauth(siro_server, monkeypatch)
    siro_server.add_fault("create_recording", status=status, echo=True, times=None)
    audio = tmp_path / "call.mp3"
    write_audio(Path(audio))
    capfd.readouterr()

    dag_run = run_dag("siro_test_upload_params", {"source_path": str(audio), "user_email": "ae@acme.io"})

    log = "".join(capfd.readouterr())
    assert dag_run.state == "failed"
    creates = [r for r in siro_server.requests if r.endpoint == "create_recording"]
    assert [r.status for r in creates] == [status] * (2 if status == 401 else 1)  # 401: one fresh token
    leaks = _leaks(siro_server, log, tree=True)
    record("echoed_errors", **{f"dag-run-create-{status}": len(leaks)})
    assert f"returned {status}" in log
    assert leaks == []
    assert task_instances(dag_run)[("upload", -1)].try_number == 1  # rejected or ambiguous: final


@pytest.mark.parametrize(
    ("status", "content_type", "body", "retried"),
    [
        (200, "text/html", "<html><body>Sign in to the corporate proxy</body></html>", False),
        (200, "application/json", "", False),
        (502, "text/html", "<html><h1>502 Bad Gateway</h1></html>", True),
    ],
)
def test_an_answer_that_is_not_json_is_named(siro_server, monkeypatch, status, content_type, body, retried):
    _use_oauth(siro_server, monkeypatch)
    siro_server.add_fault("signed_urls", status=status, content_type=content_type, body=body, times=None)

    with pytest.raises(SiroApiError) as raised:
        SiroHook().get_signed_urls("mp3", 10)

    message = str(raised.value)
    assert f"POST /v1/core/recordings/signed-urls returned {status}" in message
    assert content_type in message
    assert (body[:20] if body else "an empty body") in message
    assert raised.value.retryable is retried
    assert len([r for r in siro_server.requests if r.endpoint == "signed_urls"]) == (2 if retried else 1)


def test_a_create_answered_with_html_is_ambiguous(siro_server, monkeypatch):
    _use_oauth(siro_server, monkeypatch)
    hook = SiroHook()
    url = hook.upload_audio(lambda: io.BytesIO(AUDIO), len(AUDIO), "mp3")
    siro_server.add_fault("create_recording", status=200, content_type="text/html", body="<p>ok</p>")

    with pytest.raises(
        SiroAmbiguousCreateError, match=r"not the JSON object expected \(text/html\): <p>ok</p>"
    ):
        hook.create_recording(url, validate_recording_fields("mp3", user_email="rep@example.com"))


def test_a_bulk_task_of_200_files_leaves_no_signature_in_its_log(
    siro_server, run_dag, monkeypatch, capfd, tmp_path
):
    _use_oauth(siro_server, monkeypatch)
    paths = []
    for number in range(200):
        path = tmp_path / f"call-{number:03}.mp3"
        write_audio(path, 600)
        paths.append(str(path))
    capfd.readouterr()

    dag_run = run_dag(
        "siro_test_ledger_bulk", {"source_paths": paths, "ledger_path": str(tmp_path / "ledger")}
    )

    log = "".join(capfd.readouterr())
    assert dag_run.state == "success"
    assert len(siro_server.recordings) == 200
    signatures = {s for s, kind in siro_server.issued_secret_kinds().items() if kind.endswith("signature")}
    assert len(signatures) >= 400
    leaks = _leaks(siro_server, log, tree=True)
    record("bulk_signatures", files=200, signatures=len(signatures), found=len(leaks))
    assert leaks == []
