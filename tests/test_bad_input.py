"""Bad input fails the upload task on its first try, with a message naming the argument, before a single
request reaches Siro.

Each case is a real DAG run (``dag.test()``) of a test DAG whose tasks have ``retries=2``: a task that
ends ``failed`` with ``try_number == 1`` was not retried. The offline server's request log shows that
nothing left the machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from upload_support import endpoints, return_value, task_instances, upload_out_of_band, write_audio

CRM = [{"objectType": "Opportunity", "objectId": "006xx1"}]


def make_source(tmp_path: Path, kind: str) -> str | None:
    """The ``source_path`` a case uploads from: a real file, or one that is wrong in some way."""
    if kind == "mp3":
        write_audio(tmp_path / "call.mp3")
        return str(tmp_path / "call.mp3")
    if kind == "empty":
        (tmp_path / "call.mp3").write_bytes(b"")
        return str(tmp_path / "call.mp3")
    if kind == "directory":
        (tmp_path / "calls.mp3").mkdir()
        return str(tmp_path / "calls.mp3")
    if kind in ("ogg", "noext"):
        name = "call.ogg" if kind == "ogg" else "call"
        write_audio(tmp_path / name)
        return str(tmp_path / name)
    if kind == "missing":
        return str(tmp_path / "nowhere" / "call.mp3")
    assert kind == "none"
    return None


def output(capfd: pytest.CaptureFixture[str]) -> str:
    captured = capfd.readouterr()
    return captured.out + captured.err


def assert_failed_once(dag_run: Any, *task_ids: str) -> None:
    assert dag_run.state == "failed"
    tis = task_instances(dag_run)
    for task_id in task_ids:
        ti = tis[(task_id, -1)]
        assert (ti.state, ti.try_number) == ("failed", 1), task_id  # retries=2, yet not retried


@pytest.mark.parametrize(
    ("source", "conf", "message"),
    [
        ("mp3", {"file_type": "flac"}, "file_type: must be one of mp3, aac, wav, got 'flac'"),
        ("mp3", {"file_type": "wav"}, "file_type: is 'wav' but source_path '{source}' has a .mp3 extension"),
        (
            "ogg",
            {"file_type": "mp3"},
            "source_path: has extension .ogg, which does not match file_type 'mp3'",
        ),
        ("noext", {}, "file_type: is required: source_path '{source}' has no .mp3, .aac or .wav extension"),
        ("mp3", {"user_email": None}, "user_id: Siro needs to know whose recording this is"),
        ("mp3", {"user_email": "rep.example.com"}, "user_email: 'rep.example.com' is not an email address"),
        ("mp3", {"user_phone": "call me"}, "user_phone: 'call me' is not a phone number"),
        # Native rendering turns a bare number into an int; the operator does not guess it was a phone.
        ("mp3", {"customer_phone": 15550102001}, "customer_phone: must be a string, got int"),
        ("mp3", {"title": "Call {{ params.missing }"}, "title: contains an unrendered Jinja expression"),
        (
            "mp3",
            {"integration_connection_id": "conn-1"},
            "crm_objects: is required when integration_connection_id is set",
        ),
        ("mp3", {"crm_objects": CRM}, "integration_connection_id: is required when crm_objects is set"),
        (
            "mp3",
            {"integration_connection_id": "conn-1", "crm_objects": "Opportunity:006xx1"},
            "crm_objects: must be a list of objects, got str",
        ),
        (
            "mp3",
            {"integration_connection_id": "conn-1", "crm_objects": [{"objectType": "Deal", "objectId": "1"}]},
            "crm_objects[0].objectType: must be one of Opportunity, Account, Contact, Lead, Engagement, Event, "
            "ServiceAppointment, got 'Deal'",
        ),
        (
            "mp3",
            {"integration_connection_id": "conn-1", "crm_objects": [CRM[0], {"objectType": "Lead"}]},
            "crm_objects[1].objectId: is missing",
        ),
        (
            "mp3",
            {"date_created": "2026-03-01 09:30"},
            "date_created: '2026-03-01 09:30' is not an RFC 3339 date-time with a time zone",
        ),
        (
            "mp3",
            {"date_created": "2026-03-01T09:30:00"},
            "date_created: '2026-03-01T09:30:00' is not an RFC 3339 date-time with a time zone",
        ),
        ("missing", {}, "source_path: '{source}' does not exist"),
        ("empty", {}, "source_path: '{source}' is empty (0 bytes)"),
        ("directory", {}, "source_path: '{source}' is not a file"),
        ("none", {}, "source_path: give exactly one of download_url and source_path"),
    ],
    ids=lambda value: None if not isinstance(value, str) else value[:40],
)
def test_bad_value_fails_on_the_first_try_with_its_name_and_sends_nothing(
    siro_server, siro_connection, run_dag, tmp_path, capfd, source, conf, message
):
    source_path = make_source(tmp_path, source)
    output(capfd)

    dag_run = run_dag(
        "siro_test_upload_params", {"source_path": source_path, "user_email": "ae@acme.io", **conf}
    )

    assert_failed_once(dag_run, "upload")
    log = output(capfd)
    assert message.format(source=source_path) in log, log[-4000:]
    assert "SiroValidationError" in log
    assert siro_server.requests == []


def test_a_download_url_that_is_not_http_fails_both_tasks_and_sends_nothing(
    siro_server, siro_connection, run_dag, capfd
):
    output(capfd)

    dag_run = run_dag("siro_test_upload_templated", {"download_url": "gs://siro-uploads/call.wav"})

    assert_failed_once(dag_run, "from_url", "dated_by_logical_date")
    assert output(capfd).count("download_url: must be an absolute http(s) URL") >= 2
    assert siro_server.requests == []


def test_a_bad_value_inside_a_templated_list_is_caught_after_rendering(
    siro_server, siro_connection, run_dag, capfd
):
    download_url = upload_out_of_band(siro_server, os.urandom(8_000))
    output(capfd)

    dag_run = run_dag(
        "siro_test_upload_templated",
        {
            "download_url": download_url,
            "integration_connection_id": siro_server.integration_connection_id,
            "object_type": "Deal",  # rendered into crm_objects[0].objectType
        },
    )

    assert_failed_once(dag_run, "from_url")
    assert "crm_objects[0].objectType: must be one of Opportunity" in output(capfd)
    # Only the other task, which has no CRM objects, reached Siro.
    assert task_instances(dag_run)[("dated_by_logical_date", -1)].state == "success"
    assert endpoints(siro_server) == ["create_recording"]
    (recording,) = siro_server.recordings.values()
    assert recording.id == return_value(dag_run, "dated_by_logical_date")
    assert "crmObjects" not in recording.body
