"""No credential leaves Siro's hosts: a redirect from any Siro endpoint is not followed.

The offline server answers 301/302/307/308 pointing at a second offline server, on another port and
under another hostname (``localhost`` beside ``127.0.0.1``), which records whatever reaches it. A
client that followed would send it the access token (or, when minting, the org token and the client
secret; or the audio) and, for a create, take its answer as the recording ID. Each case must end with
no request at the other server, no recording there, and an error naming the status and the host.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from reliability_report import record
from upload_support import endpoints, task_instances, write_audio

from airflow_provider_siro.exceptions import SiroRejectedError
from airflow_provider_siro.hooks import auth
from airflow_provider_siro.hooks.siro import SiroHook
from airflow_provider_siro.payload import validate_recording_fields
from airflow_provider_siro.testing import OfflineSiro

AUDIO = b"ID3\x03\x00" + bytes(range(256)) * 16
QUERY = "X-Goog-Signature=secret-part-of-the-redirect"

# endpoint faulted -> how the test reaches it with a hook
ENDPOINTS = ["mint_token", "signed_urls", "upload_put", "create_recording"]


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    auth._TOKEN_CACHE.clear()
    yield
    auth._TOKEN_CACHE.clear()


@pytest.fixture
def other_host():
    """The server a redirect points at: another port of this machine, recording what it receives."""
    with OfflineSiro() as other:
        yield other


def _location(other: OfflineSiro, hostname: str, path: str) -> str:
    return f"http://{hostname}:{other.port}{path}?{QUERY}"


def _credentials_in(requests: list[Any], siro: OfflineSiro) -> list[str]:
    """The requests carrying any secret ``siro`` issued (token, org token, client secret, signature),
    in a header or in the body."""
    secrets = set(siro._issued)
    return [
        r.endpoint
        for r in requests
        if any(s in json.dumps(dict(r.headers.items())) + json.dumps(r.json) for s in secrets)
    ]


def _upload_and_create(hook: SiroHook) -> str:
    url = hook.upload_audio(lambda: io.BytesIO(AUDIO), len(AUDIO), "mp3", label="call.mp3")
    return hook.create_recording(url, validate_recording_fields("mp3", user_email="rep@example.com"))


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_redirect_is_not_followed(siro_server, other_host, monkeypatch, endpoint, status, hostname):
    conn = siro_server.connection(oauth=True, retry_backoff=0.01, max_retries=3)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    paths = {
        "mint_token": f"/api-externalApi/v1/core/oauth/apps/{siro_server.client_id}/access-token",
        "signed_urls": "/v1/core/recordings/signed-urls",
        "upload_put": "/storage/upload/abc",
        "create_recording": "/v1/core/recordings/upload",
    }
    siro_server.add_fault(endpoint, status=status, redirect=_location(other_host, hostname, paths[endpoint]))

    with pytest.raises(SiroRejectedError) as raised:
        _upload_and_create(SiroHook())

    message = str(raised.value)
    record(
        "redirects",
        **{
            f"{endpoint}-{status}-{hostname}": {
                "other_requests": len(other_host.requests),
                "other_recordings": len(other_host.recordings),
                "credentials_sent": len(_credentials_in(other_host.requests, siro_server)),
                "attempts": endpoints(siro_server).count(endpoint),
            }
        },
    )
    assert f"returned {status}: redirect to http://{hostname}:{other_host.port}, not followed" in message
    assert QUERY not in message and "secret-part" not in message
    assert raised.value.retryable is False
    assert other_host.requests == [] and other_host.recordings == {}
    assert _credentials_in(other_host.requests, siro_server) == []
    assert endpoints(siro_server).count(endpoint) == 1  # not retried
    assert siro_server.recordings == {}


def test_a_relative_redirect_names_no_other_host(siro_server, monkeypatch):
    conn = siro_server.connection(retry_backoff=0.01)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    siro_server.add_fault("signed_urls", status=302, redirect=f"/login?next=/x&{QUERY}")

    with pytest.raises(SiroRejectedError, match="returned 302: redirect to another path of the same host"):
        SiroHook().get_signed_urls("mp3", 10)
    assert endpoints(siro_server) == ["signed_urls"]


def test_the_put_to_storage_carries_no_siro_credential(siro_server, monkeypatch):
    conn = siro_server.connection(oauth=True, retry_backoff=0.01)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    _upload_and_create(SiroHook())
    (put,) = [r for r in siro_server.requests if r.endpoint == "upload_put"]
    assert "x-siro-auth-token" not in put.headers and "Authorization" not in put.headers
    assert _credentials_in([put], siro_server) == []


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirected_create_in_a_real_dag_run_fails_once_and_reaches_no_one(
    siro_server, other_host, run_dag, monkeypatch, capfd, tmp_path, status
):
    conn = siro_server.connection(retry_backoff=0.01)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    audio = tmp_path / "call.mp3"
    write_audio(Path(audio))
    location = _location(other_host, "localhost", "/v1/core/recordings/upload")
    siro_server.add_fault("create_recording", status=status, redirect=location)
    capfd.readouterr()

    dag_run = run_dag("siro_test_upload_params", {"source_path": str(audio), "user_email": "ae@acme.io"})

    log = "".join(capfd.readouterr())
    assert dag_run.state == "failed"
    ti = task_instances(dag_run)[("upload", -1)]
    assert (ti.state, ti.try_number) == ("failed", 1)  # retries=2, yet not retried
    assert f"returned {status}: redirect to http://localhost:{other_host.port}, not followed" in log
    assert "secret-part" not in log
    assert other_host.requests == [] and other_host.recordings == {}
    assert endpoints(siro_server).count("create_recording") == 1
    assert siro_server.recordings == {}
