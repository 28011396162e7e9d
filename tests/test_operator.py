"""SiroUploadRecordingOperator end to end: real DAG runs (dag.test) against the offline Siro server."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_siro.hooks.siro import SiroHook


def task_instances(dag_run: Any) -> dict[tuple[str, int], Any]:
    return {(ti.task_id, ti.map_index): ti for ti in dag_run.get_task_instances()}


def write_audio(path: Path, size: int = 50_000) -> str:
    path.write_bytes(os.urandom(size))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_example_dags_parse_without_errors(dagbag):
    assert dagbag.import_errors == {}
    for dag_id in (
        "siro_upload_from_download_url",
        "siro_storage_sync",
        "siro_call_audio_sync",
        "siro_upload_new_call_audio",
    ):
        assert dagbag.get_dag(dag_id) is not None, dag_id


def test_download_url_example_creates_the_recording_and_pushes_its_id(
    siro_server, siro_connection, run_dag, tmp_path
):
    audio = tmp_path / "call.wav"
    digest = write_audio(audio)
    download_url = SiroHook().upload_audio(lambda: audio.open("rb"), audio.stat().st_size, "wav")
    siro_server.clear_requests()

    dag_run = run_dag(
        "siro_upload_from_download_url", {"download_url": download_url, "user_email": "ae@acme.io"}
    )

    assert dag_run.state == "success"
    tis = task_instances(dag_run)
    recording_id = tis[("upload_recording", -1)].xcom_pull(task_ids="upload_recording")
    assert tis[("announce", -1)].xcom_pull(task_ids="announce") == recording_id
    recording = siro_server.recordings[recording_id]
    assert recording.sha256 == digest
    body = recording.body
    assert set(body) == {
        "downloadUrl",
        "fileType",
        "title",
        "userEmail",
        "dateCreated",
    }  # nothing sent as null
    assert body["downloadUrl"] == download_url
    assert body["fileType"] == "wav"
    assert body["userEmail"] == "ae@acme.io"
    assert body["title"].startswith(f"Discovery call {dag_run.logical_date:%Y-%m-%d} (")
    assert body["dateCreated"].endswith("Z")
    assert [r.endpoint for r in siro_server.requests] == ["create_recording"]


def test_storage_sync_example_uploads_every_file_in_parallel_and_collects_ids(
    siro_server, siro_connection, run_dag, tmp_path
):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    digests = {
        name: write_audio(inbox / name, 30_000 + i) for i, name in enumerate(["a.mp3", "b.wav", "c.mp3"])
    }
    (inbox / "notes.txt").write_text("not audio")

    dag_run = run_dag("siro_storage_sync", {"source_folder": str(inbox)})

    assert dag_run.state == "success"
    tis = task_instances(dag_run)
    mapped = sorted(key[1] for key in tis if key[0] == "upload_recording")
    assert mapped == [0, 1, 2]
    ids = tis[("collect", -1)].xcom_pull(task_ids="collect")
    assert sorted(ids) == sorted(siro_server.recordings)
    by_file = {r.body["title"].split(" ")[0]: r for r in siro_server.recordings.values()}
    assert set(by_file) == set(digests)
    for name, recording in by_file.items():
        assert recording.sha256 == digests[name], name
        assert recording.file_type == name.rsplit(".", 1)[1]
    puts = [r for r in siro_server.requests if r.endpoint == "upload_put"]
    assert sorted(r.body_size for r in puts) == sorted((inbox / n).stat().st_size for n in digests)


def test_asset_examples_announce_then_upload(siro_server, siro_connection, run_dag, tmp_path):
    audio = tmp_path / "synced.mp3"
    digest = write_audio(audio)
    producer = run_dag("siro_call_audio_sync", {"synced_file": str(audio)})
    assert producer.state == "success"

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        event = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == "call_audio")
            .order_by(AssetEvent.timestamp.desc())
            .first()
        )
        assert event is not None and event.extra["source_path"] == str(audio)
        announced = event.extra["source_path"]

    # dag.test() starts a manual run, which carries no asset event: hand the consumer the file the
    # producer announced, as the scheduler would through triggering_asset_events.
    consumer = run_dag("siro_upload_new_call_audio", {"source_path": announced})
    assert consumer.state == "success"
    (recording,) = siro_server.recordings.values()
    assert recording.sha256 == digest


def test_upload_with_every_field_templated_natively(siro_server, siro_connection, run_dag, tmp_path):
    audio = tmp_path / "full.aac"
    digest = write_audio(audio)
    conf = {
        "source_path": f"file://{audio}",
        "title": "QBR with Acme",
        "user_id": "u-42",
        "user_email": "ae@acme.io",
        "user_phone": "+1 (555) 010-2000",
        "organization_id": "org-7",
        "conversation_type": "Discovery",
        "integration_connection_id": siro_server.integration_connection_id,
        "crm_objects": [{"objectType": "Opportunity", "objectId": "006xx1"}],
        "customer_phone": "+1 555 010 2001",
        "customer_name": "Ada Lovelace",
        "date_created": "2026-03-01T09:30:00+01:00",
    }
    dag_run = run_dag("siro_test_upload_params", conf)
    assert dag_run.state == "success"
    recording_id = task_instances(dag_run)[("upload", -1)].xcom_pull(task_ids="upload")
    recording = siro_server.recordings[recording_id]
    assert recording.sha256 == digest
    assert recording.body == {
        "downloadUrl": recording.body["downloadUrl"],
        "fileType": "aac",
        "title": "QBR with Acme",
        "userId": "u-42",
        "userEmail": "ae@acme.io",
        "userPhone": "+1 (555) 010-2000",
        "organizationId": "org-7",
        "conversationType": "Discovery",
        "integrationConnectionId": siro_server.integration_connection_id,
        "crmObjects": [{"objectType": "Opportunity", "objectId": "006xx1"}],
        "customerPhone": "+1 555 010 2001",
        "customerName": "Ada Lovelace",
        "dateCreated": "2026-03-01T08:30:00Z",
    }


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"file_type": "flac"}, "file_type: must be one of mp3, aac, wav, got 'flac'"),
        ({"file_type": "wav"}, "file_type: is 'wav' but source_path"),
        ({"user_email": None}, "user_id: Siro needs to know whose recording this is"),
        ({"user_email": "not-an-email"}, "user_email: 'not-an-email' is not an email address"),
        (
            {"crm_objects": [{"objectType": "Deal", "objectId": "1"}]},
            "crm_objects[0].objectType: must be one of",
        ),
        (
            {"integration_connection_id": "conn-1"},
            "crm_objects: is required when integration_connection_id is set",
        ),
        (
            {"date_created": "2026-03-01 09:30"},
            "date_created: '2026-03-01 09:30' is not an RFC 3339 date-time",
        ),
        ({"title": "Call {{ params.missing }"}, "title: contains an unrendered Jinja expression"),
        ({"source_path": "/nonexistent/call.mp3"}, "source_path: '/nonexistent/call.mp3' does not exist"),
        ({"empty_source": True}, "is empty (0 bytes)"),
    ],
)
def test_bad_input_fails_once_with_a_clear_message_and_sends_nothing(
    siro_server, siro_connection, run_dag, tmp_path, capfd, conf, message
):
    audio = tmp_path / "call.mp3"
    if conf.pop("empty_source", False):
        audio.write_bytes(b"")
    else:
        write_audio(audio)
    full = {"source_path": str(audio), "user_email": "ae@acme.io", **conf}
    capfd.readouterr()

    dag_run = run_dag("siro_test_upload_params", full)

    assert dag_run.state == "failed"
    ti = task_instances(dag_run)[("upload", -1)]
    assert ti.state == "failed"
    assert ti.try_number == 1  # retries=2, yet no retry: no retry can fix bad input
    captured = capfd.readouterr()
    assert message in captured.out + captured.err
    assert siro_server.requests == []


def test_signed_download_url_is_masked_in_rendered_fields(siro_server, siro_connection, run_dag, tmp_path):
    audio = tmp_path / "call.wav"
    write_audio(audio)
    download_url = SiroHook().upload_audio(lambda: audio.open("rb"), audio.stat().st_size, "wav")
    signature = download_url.split("X-Goog-Signature=")[1].split("&")[0]

    dag_run = run_dag("siro_upload_from_download_url", {"download_url": download_url})
    assert dag_run.state == "success"

    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(run_id=dag_run.run_id).all()
        stored = json.dumps([row.rendered_fields for row in rows])
    assert "download_url" in stored
    assert signature not in stored
