"""SiroUploadRecordingOperator: its arguments, and real DAG runs (``dag.test()``) against the offline Siro
server over HTTP: what the server received, what landed in XCom, what the log says.

The bad-input cases live in test_bad_input.py, the example DAGs in test_example_dags.py.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

import pendulum
import pytest
from upload_support import endpoints, return_value, task_instances, upload_out_of_band, write_audio

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator
from airflow_provider_siro.testing import OfflineSiro

SEED_ARGUMENTS = (
    "download_url",
    "source_path",
    "file_type",
    "title",
    "user_id",
    "user_email",
    "user_phone",
    "organization_id",
    "conversation_type",
    "integration_connection_id",
    "crm_objects",
    "customer_phone",
    "customer_name",
    "date_created",
    "discoverable",
    "result",
)


# ---------------------------------------------------------------------------------------- arguments
def declared_parameters(operator_class: type) -> dict[str, inspect.Parameter]:
    """Every keyword parameter the class's ``__init__`` chain declares (what Airflow's ``partial()`` and
    ``default_args`` look at), the subclass's first."""
    found: dict[str, inspect.Parameter] = {}
    for klass in operator_class.__mro__:
        if "__init__" in vars(klass):
            for name, parameter in inspect.signature(vars(klass)["__init__"]).parameters.items():
                if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
                    found.setdefault(name, parameter)
    return found


def test_the_public_signature_keeps_its_names_and_defaults():
    parameters = declared_parameters(SiroUploadRecordingOperator)
    assert parameters["siro_conn_id"].default == "siro_default"
    for name in ("source_conn_id", *SEED_ARGUMENTS):
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert parameters[name].default is None, name


def test_every_argument_but_the_connection_ids_is_templated():
    assert set(SiroUploadRecordingOperator.template_fields) == {*SEED_ARGUMENTS, "ledger_path"}
    assert SiroUploadRecordingOperator.template_fields_renderers["crm_objects"] == "json"


@pytest.mark.parametrize(
    "sources",
    [{}, {"download_url": "https://storage.example/a.wav", "source_path": "/calls/a.wav"}],
    ids=["neither", "both"],
)
def test_exactly_one_of_download_url_and_source_path(sources):
    with pytest.raises(ValueError, match=r"'upload': give exactly one of download_url and source_path"):
        SiroUploadRecordingOperator(task_id="upload", user_email="ae@acme.io", **sources)


def test_path_objects_are_taken_as_their_path_or_url(monkeypatch):
    from airflow_provider_siro.compat import ObjectStoragePath

    # Building an s3:// ObjectStoragePath loads its connection's credentials: give it some, or boto
    # would go looking for the EC2 metadata service. Nothing is read from the bucket here.
    monkeypatch.setenv(
        "AIRFLOW_CONN_S3_PATH_OBJECT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"region_name": "us-east-1"},
            }
        ),
    )
    local = SiroUploadRecordingOperator(task_id="a", source_path=Path("/calls/a.mp3"), user_id="u")
    remote = SiroUploadRecordingOperator(
        task_id="b",
        source_path=ObjectStoragePath("s3://calls/inbox/a.mp3", conn_id="s3_path_object"),
        user_id="u",
    )
    assert local.source_path == "/calls/a.mp3"
    assert remote.source_path == "s3://s3_path_object@calls/inbox/a.mp3"  # the connection travels with it


# ---------------------------------------------------------------------------------------- end to end
def test_every_field_templated_natively_is_sent_as_the_seed_body(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    audio = tmp_path / "full.aac"
    digest = write_audio(audio, 123_457)
    conf = {
        "source_path": f"file://{audio}",
        "title": "QBR with Acme",
        "user_id": "u-42",
        "user_email": "ae@acme.io",
        "user_phone": "+1 (555) 010-2000",
        "organization_id": "org-7",
        "conversation_type": "Discovery",
        "integration_connection_id": siro_server.integration_connection_id,
        "crm_objects": [
            {"objectType": "Opportunity", "objectId": "006xx1"},
            {"objectType": "Contact", "objectId": "003xx9"},
        ],
        "customer_phone": "+1 555 010 2001",
        "customer_name": "Ada Lovelace",
        "date_created": "2026-03-01T09:30:00+01:00",
    }
    capfd.readouterr()

    dag_run = run_dag("siro_test_upload_params", conf)

    assert dag_run.state == "success"
    recording_id = return_value(dag_run, "upload")
    assert endpoints(siro_server) == ["signed_urls", "upload_put", "create_recording"]
    signed, put, create = siro_server.requests
    # Signed URLs sized to the file, exactly.
    assert signed.json == {"fileType": "aac", "fileSize": 123_457}
    # The PUT carries the signed headers and a Content-Length, no Siro credential, no chunking.
    assert put.headers["Content-Type"] == "audio/aac"
    assert put.headers["x-goog-content-length-range"] == "0,123457"
    assert put.headers["Content-Length"] == "123457"
    assert "Transfer-Encoding" not in put.headers
    assert "x-siro-auth-token" not in put.headers and "Authorization" not in put.headers
    assert put.body_size == 123_457
    # The bytes Siro holds are the source's.
    recording = siro_server.recordings[recording_id]
    assert recording.sha256 == digest
    # Every field in Siro's current camelCase names; the date in UTC.
    assert create.json == recording.body
    assert recording.body == {
        "fileUrl": recording.body["fileUrl"],
        "fileType": "aac",
        "title": "QBR with Acme",
        "userId": "u-42",
        "userEmail": "ae@acme.io",
        "userPhone": "+1 (555) 010-2000",
        "organizationId": "org-7",
        "conversationType": "Discovery",
        "integrationConnectionId": siro_server.integration_connection_id,
        "crmObjects": [
            {"objectType": "Opportunity", "objectId": "006xx1"},
            {"objectType": "Contact", "objectId": "003xx9"},
        ],
        "contactPhone": "+1 555 010 2001",
        "contactName": "Ada Lovelace",
        "dateCreated": "2026-03-01T08:30:00Z",
    }
    # The log names the recording, the user, the source and how long it took.
    log = capfd.readouterr().out
    assert re.search(
        rf"Created Siro recording {recording_id} for userEmail=ae@acme\.io from {re.escape(str(audio))} "
        rf"\(123457 bytes\) in \d+\.\d s",
        log,
    ), log[-3000:]


def test_plain_templates_render_crm_objects_in_depth_and_dates_from_the_run(
    siro_server, siro_connection, run_dag
):
    download_url = upload_out_of_band(siro_server, os.urandom(20_000), "wav")

    dag_run = run_dag(
        "siro_test_upload_templated",
        {
            "download_url": download_url,
            "integration_connection_id": siro_server.integration_connection_id,
            "object_type": "Lead",
            "object_id": "00Qxx7",
            "call_started": "2026-07-01T09:30:00",
            "office_timezone": "America/Los_Angeles",
        },
        logical_date=pendulum.datetime(2026, 7, 2, 12, 0, 5, tz="UTC"),
    )

    assert dag_run.state == "success"
    from_url = siro_server.recordings[return_value(dag_run, "from_url")]
    assert from_url.body == {
        "fileUrl": download_url,
        "fileType": "wav",
        "title": "Call with Lead 00Qxx7",
        "userEmail": "ae@acme.io",
        "integrationConnectionId": siro_server.integration_connection_id,
        "crmObjects": [{"objectType": "Lead", "objectId": "00Qxx7"}],
        # The upstream task's aware datetime (09:30 PDT), in UTC.
        "dateCreated": "2026-07-01T16:30:00Z",
    }
    dated = siro_server.recordings[return_value(dag_run, "dated_by_logical_date")]
    assert dated.body["dateCreated"] == "2026-07-02T12:00:05Z"
    assert endpoints(siro_server) == ["create_recording", "create_recording"]


def test_newer_docs_field_names_and_response_shape(run_dag, tmp_path, monkeypatch):
    audio = tmp_path / "call.mp3"
    digest = write_audio(audio)
    with OfflineSiro(response_id_key="recordingId") as server:
        connection = server.connection(newer_field_names=True, retry_backoff=0.01)
        monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(connection))

        dag_run = run_dag(
            "siro_test_upload_params",
            {
                "source_path": str(audio),
                "user_id": "u-42",
                "customer_phone": "+1 555 010 2001",
                "customer_name": "Ada Lovelace",
            },
        )

        assert dag_run.state == "success"
        (recording,) = server.recordings.values()
        assert return_value(dag_run, "upload") == recording.id  # read from data.recordingId
        assert recording.sha256 == digest
        assert recording.body == {
            "fileUrl": recording.body["fileUrl"],
            "fileType": "mp3",
            "userId": "u-42",
            "contactPhone": "+1 555 010 2001",
            "contactName": "Ada Lovelace",
        }


def test_a_rejected_signed_url_is_replaced_and_a_failed_put_restarts_from_the_first_byte(
    siro_server, siro_connection, run_dag, tmp_path
):
    audio = tmp_path / "call.wav"
    digest = write_audio(audio, 300_001)
    siro_server.add_fault("upload_put", status=403)  # storage refuses the first signed URL
    siro_server.add_fault("upload_put", status=503)  # then fails the next PUT once

    dag_run = run_dag("siro_test_upload_params", {"source_path": str(audio), "user_email": "ae@acme.io"})

    assert dag_run.state == "success"
    assert task_instances(dag_run)[("upload", -1)].try_number == 1  # recovered inside one try
    assert endpoints(siro_server) == [
        "signed_urls",
        "upload_put",  # 403: ask for a fresh URL
        "signed_urls",
        "upload_put",  # 503: the same URL again, from byte 0
        "upload_put",
        "create_recording",
    ]
    puts = [r for r in siro_server.requests if r.endpoint == "upload_put"]
    assert [r.status for r in puts] == [403, 503, 200]
    assert all(r.body_size == 300_001 for r in puts)
    recording = siro_server.recordings[return_value(dag_run, "upload")]
    assert recording.sha256 == digest
    uploaded = [obj.name for obj in siro_server.objects.values() if obj.uploaded]
    assert uploaded == [recording.object_name]  # created from the second signed URL, the one that took


def test_nothing_is_created_while_the_bytes_cannot_be_stored_and_airflow_retries_that(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    audio = tmp_path / "call.mp3"
    write_audio(audio)
    siro_server.add_fault("upload_put", status=503, times=None)
    capfd.readouterr()

    dag_run = run_dag("siro_test_upload_params", {"source_path": str(audio), "user_email": "ae@acme.io"})

    assert dag_run.state == "failed"
    ti = task_instances(dag_run)[("upload", -1)]
    assert (ti.state, ti.try_number) == ("failed", 3)  # an outage, unlike bad input, is worth retries=2
    assert "create_recording" not in endpoints(siro_server)
    assert siro_server.recordings == {}
    assert re.search(r"Siro API PUT /storage/upload/\S+ returned 503", capfd.readouterr().out)


def test_the_signed_url_query_is_masked_in_rendered_fields_and_logs(
    siro_server, siro_connection, run_dag, capfd
):
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    single = upload_out_of_band(siro_server, os.urandom(10_000))
    mapped = [upload_out_of_band(siro_server, os.urandom(10_000 + i)) for i in range(2)]
    capfd.readouterr()

    runs = [
        run_dag("siro_upload_from_download_url", {"download_url": single}),
        run_dag("siro_test_upload_mapped_urls", {"download_urls": mapped}),
    ]

    assert [run.state for run in runs] == ["success", "success"]
    mapped_ids = [return_value(runs[1], "upload", i) for i in (0, 1)]
    assert [siro_server.recordings[i].body["fileUrl"] for i in mapped_ids] == mapped  # Siro got the real URL
    log = capfd.readouterr().out
    with create_session() as session:
        stored = {
            (row.task_id, row.map_index): row.rendered_fields["download_url"]
            for run in runs
            for row in session.query(RenderedTaskInstanceFields).filter_by(run_id=run.run_id)
            if "download_url" in row.rendered_fields
        }
    assert stored == {
        ("upload_recording", -1): single.split("?")[0] + "?***",
        ("upload", 0): mapped[0].split("?")[0] + "?***",
        ("upload", 1): mapped[1].split("?")[0] + "?***",
    }
    # The provider's own log lines name each URL without its query. (The test DAG's upstream task keeps
    # the URLs it returns out of its log: that is the user's task, not the operator.)
    # Airflow 3's lines name the logger; Airflow 2's name the source file (the provider's modules are
    # siro.py, transport.py, upload.py, ...; the test DAG's is upload_mapped_urls.py), and Airflow 2's
    # dag.test() prints each line twice, in two formats: each message counts once.
    ours = re.compile(r"airflow_provider_siro|\{(?:siro|transport|upload|auth|redaction|settings)\.py:\d+\}")
    messages = {line.split("} ", 1)[-1] for line in log.splitlines() if ours.search(line)}
    provider_lines = "\n".join(sorted(messages))
    assert provider_lines.count("Created Siro recording") == 3
    for url in (single, *mapped):
        assert url.split("?")[0] in provider_lines
        assert url.split("?")[1] not in provider_lines
        assert url.split("X-Goog-Signature=")[1] not in provider_lines
