"""The sensor and trigger wait for many recordings at once: a list, a bulk upload's output, or the IDs of
the Siro asset events that triggered the run (that last one through a real scheduler in
test_asset_scheduling.py)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from airflow_compat import serde
from test_trigger import first_event, import_string, use_connection
from upload_support import task_instances, write_audio

from airflow_provider_siro.hooks.siro import SiroHook
from airflow_provider_siro.payload import validate_recording_fields
from airflow_provider_siro.triggers.siro import SiroRecordingsTrigger

AUDIO = b"ID3\x03\x00" + bytes(range(256)) * 16


def create_recording(title: str) -> str:
    hook = SiroHook()
    download_url = hook.upload_audio(lambda: io.BytesIO(AUDIO), len(AUDIO), "mp3", label="call.mp3")
    return hook.create_recording(
        download_url, validate_recording_fields("mp3", user_email="a@b.co", title=title)
    )


def many_trigger(recording_ids: list[str]) -> SiroRecordingsTrigger:
    """Built from its serialized kwargs, as the triggerer does."""
    serialize, deserialize = serde()
    original = SiroRecordingsTrigger(
        recording_ids=recording_ids,
        siro_conn_id="siro_default",
        end_time=time.time() + 60,
        poll_interval=0.05,
    )
    classpath, kwargs = original.serialize()
    assert kwargs["recording_ids"] == recording_ids and "recording_id" not in kwargs
    return import_string(classpath)(**deserialize(json.loads(json.dumps(serialize(kwargs)))))


def test_one_trigger_waits_for_every_recording(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    ids = [create_recording(f"call {i}") for i in range(3)]

    event = first_event(many_trigger(ids))

    assert event["status"] == "success"
    assert list(event["recordings"]) == ids
    assert {rec["processingStatus"] for rec in event["recordings"].values()} == {"complete"}


def test_a_failed_recording_among_many_fails_the_wait_naming_it(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    ids = [create_recording(f"call {i}") for i in range(3)]
    siro_server.set_recording_status(ids[1], "error")

    event = first_event(many_trigger(ids))

    assert (event["status"], event["recording_id"]) == ("failed", ids[1])
    assert "could not process it" in event["message"]


def test_a_sensor_waits_for_a_bulk_uploads_recordings_in_a_worker_and_deferred(
    siro_server, siro_connection, run_dag, tmp_path: Path
):
    paths = [tmp_path / f"call-{i}.mp3" for i in range(3)]
    for path in paths:
        write_audio(path, 2000)

    dag_run = run_dag("siro_test_wait_many", {"source_paths": [str(p) for p in paths]})

    assert dag_run.state == "success"
    tis = task_instances(dag_run)
    uploaded = tis[("upload_many", -1)].xcom_pull(task_ids="upload_many")
    assert sorted(uploaded) == sorted(str(p) for p in paths)
    for task_id in ("wait_poke", "wait_deferred"):
        recordings = tis[(task_id, -1)].xcom_pull(task_ids=task_id)
        assert sorted(recordings) == sorted(uploaded.values())
        assert {rec["processingStatus"] for rec in recordings.values()} == {"complete"}


def test_a_sensor_without_ids_in_a_run_no_siro_event_triggered_fails_at_once(
    siro_server, siro_connection, run_dag
):
    dag_run = run_dag("siro_test_wait_no_ids")

    assert dag_run.state == "failed"
    ti = task_instances(dag_run)[("wait", -1)]
    assert (ti.state, ti.try_number) == ("failed", 1)
    assert siro_server.requests == []
