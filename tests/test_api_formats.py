"""Both of Siro's wire formats, end to end: real Airflow (``dag.test()``) against the offline Siro in
each mode (issue 19).

The default connection (``api_fields`` unset: ``auto``) creates exactly one recording against a Siro
that speaks the current API and against one that speaks the original API; a connection pinned to one
format fails once, clearly, against the other, creating nothing; ``discoverable`` and ``result`` reach
the create body under those names; a ``result`` Siro does not know fails before any request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from upload_support import endpoints, return_value, task_instances, write_audio

from airflow_provider_siro.hooks import siro as siro_hook_module
from airflow_provider_siro.testing import OfflineSiro

DAG_ID = "siro_test_upload_api_formats"


@pytest.fixture(params=["current", "original"])
def any_siro(request: pytest.FixtureRequest) -> Iterator[OfflineSiro]:
    with OfflineSiro(api=request.param) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_negotiation() -> Iterator[None]:
    """Each test is a fresh process as far as the learnt wire format goes."""
    siro_hook_module._NEGOTIATED.clear()
    yield
    siro_hook_module._NEGOTIATED.clear()


def connect(monkeypatch: pytest.MonkeyPatch, server: OfflineSiro, **extras: Any) -> None:
    connection = server.connection(retry_backoff=0.01, **extras)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(connection))


def audio(tmp_path: Path) -> str:
    path = tmp_path / "call.mp3"
    write_audio(path)
    return str(path)


def create_statuses(server: OfflineSiro) -> list[int | None]:
    return [r.status for r in server.requests if r.endpoint == "create_recording"]


def test_default_operator_and_connection_create_exactly_one_recording(
    any_siro, run_dag, tmp_path, monkeypatch
):
    connect(monkeypatch, any_siro)

    dag_run = run_dag(DAG_ID, {"source_path": audio(tmp_path), "customer_name": "Ada Lovelace"})

    assert dag_run.state == "success"
    (recording,) = any_siro.recordings.values()
    assert return_value(dag_run, "upload") == recording.id
    url_key, name_key = (
        ("fileUrl", "contactName") if any_siro.api == "current" else ("downloadUrl", "customerName")
    )
    assert recording.body == {
        url_key: recording.body[url_key],
        "fileType": "mp3",
        "title": "Call with Acme",
        "userEmail": "ae@acme.io",
        name_key: "Ada Lovelace",
    }
    # The current names first; against the original Siro one refused create (nothing made), then its names.
    assert create_statuses(any_siro) == ([201] if any_siro.api == "current" else [422, 201])


@pytest.mark.parametrize(("server_api", "pinned"), [("original", "current"), ("current", "original")])
def test_a_pinned_connection_against_the_other_siro_fails_once_and_creates_nothing(
    server_api, pinned, run_dag, tmp_path, monkeypatch, capfd
):
    with OfflineSiro(api=server_api) as server:
        connect(monkeypatch, server, api_fields=pinned)

        dag_run = run_dag(DAG_ID, {"source_path": audio(tmp_path)})

        assert dag_run.state == "failed"
        ti = task_instances(dag_run)[("upload", -1)]
        assert (ti.state, ti.try_number) == ("failed", 1)  # retries=2, yet not retried
        assert server.recordings == {}
        assert create_statuses(server) == [422]
        log = capfd.readouterr()
        assert re.search(
            rf"does not accept the {pinned} field names that connection 'siro_default' is pinned to "
            rf"\(extra api_fields={pinned}\); set api_fields to auto",
            log.out + log.err,
        )


@pytest.mark.parametrize(
    ("discoverable", "result"), [(True, "closed"), (False, "not closed"), (True, "in progress")]
)
def test_discoverable_and_result_reach_the_body_under_those_names(
    siro_server, run_dag, tmp_path, monkeypatch, discoverable, result
):
    connect(monkeypatch, siro_server)

    dag_run = run_dag(
        DAG_ID, {"source_path": audio(tmp_path), "discoverable": discoverable, "result": result}
    )

    assert dag_run.state == "success"
    (recording,) = siro_server.recordings.values()
    assert recording.body["discoverable"] is discoverable and recording.body["result"] == result
    assert return_value(dag_run, "upload") == recording.id


def test_a_result_siro_does_not_know_fails_before_any_request(
    any_siro, run_dag, tmp_path, monkeypatch, capfd
):
    connect(monkeypatch, any_siro)

    dag_run = run_dag(DAG_ID, {"source_path": audio(tmp_path), "result": "maybe"})

    assert dag_run.state == "failed"
    ti = task_instances(dag_run)[("upload", -1)]
    assert (ti.state, ti.try_number) == ("failed", 1)
    assert endpoints(any_siro) == []
    log = capfd.readouterr()
    assert (
        "SiroValidationError: result: must be one of 'closed', 'not closed', 'in progress', got 'maybe'"
        in (log.out + log.err)
    )


def test_the_original_siro_cannot_take_result_and_says_so(run_dag, tmp_path, monkeypatch, capfd):
    with OfflineSiro(api="original") as server:
        connect(monkeypatch, server)

        dag_run = run_dag(DAG_ID, {"source_path": audio(tmp_path), "result": "closed"})

        assert dag_run.state == "failed"
        assert server.recordings == {}
        assert create_statuses(server) == [422]  # the current body, refused by name; nothing sent after
        log = capfd.readouterr()
        assert "SiroValidationError: result: is a field of Siro's current API only" in log.out + log.err


def test_a_connection_pinned_to_original_refuses_result_before_any_request(
    siro_server, run_dag, tmp_path, monkeypatch, capfd
):
    connect(monkeypatch, siro_server, api_fields="original")

    dag_run = run_dag(DAG_ID, {"source_path": audio(tmp_path), "discoverable": True})

    assert dag_run.state == "failed"
    ti = task_instances(dag_run)[("upload", -1)]
    assert (ti.state, ti.try_number) == ("failed", 1)
    assert endpoints(siro_server) == []
    log = capfd.readouterr()
    assert (
        "SiroValidationError: discoverable: is a field of Siro's current API only, and the connection is "
        "pinned to its original field names (extra api_fields=original)"
    ) in log.out + log.err


def test_once_siro_is_known_to_speak_the_original_api_result_is_refused_before_any_request(
    run_dag, tmp_path, monkeypatch, capfd
):
    with OfflineSiro(api="original") as server:
        connect(monkeypatch, server)
        assert run_dag(DAG_ID, {"source_path": audio(tmp_path)}).state == "success"
        server.clear_requests()

        dag_run = run_dag(DAG_ID, {"source_path": audio(tmp_path), "result": "closed"})

        assert dag_run.state == "failed"
        assert endpoints(server) == []  # learnt in this process: nothing uploaded, nothing sent
        assert len(server.recordings) == 1
        log = capfd.readouterr()
        assert "SiroValidationError: result: is a field of Siro's current API only" in log.out + log.err
