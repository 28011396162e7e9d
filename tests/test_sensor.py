"""SiroRecordingSensor in real Airflow DAG runs (``dag.test()``) against the offline Siro server.

The DAGs live in ``tests/dags/wait_for_recording.py`` (upload, wait, use the summary; one DAG per way of
waiting) and ``tests/dags/wait_sensor_only.py`` (the sensor alone, for the ways a wait ends badly).
``dag.test()`` runs a deferred task's trigger in-process; ``test_scheduler_deferral.py`` runs one across
real processes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from airflow_compat import AIRFLOW_3, task_deferred, xcom_value

from airflow_provider_siro.exceptions import SiroRecordingFailedError
from airflow_provider_siro.hooks import auth
from airflow_provider_siro.hooks.siro import SiroHook
from airflow_provider_siro.payload import validate_recording_fields
from airflow_provider_siro.sensors.siro import SiroRecordingSensor
from airflow_provider_siro.triggers.siro import SiroRecordingTrigger

AUDIO = b"ID3\x03\x00" + bytes(range(256)) * 32
MODES = ["poke", "reschedule", "deferrable"]


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    auth._TOKEN_CACHE.clear()
    yield
    auth._TOKEN_CACHE.clear()


@pytest.fixture
def call_file(tmp_path: Path) -> Path:
    path = tmp_path / "discovery-call.mp3"
    path.write_bytes(AUDIO)
    return path


def create_recording(title: str = "Sensor test") -> str:
    hook = SiroHook()
    download_url = hook.upload_audio(lambda: io.BytesIO(AUDIO), len(AUDIO), "mp3", label="call.mp3")
    return hook.create_recording(
        download_url, validate_recording_fields("mp3", user_email="rep@example.com", title=title)
    )


def xcom(dag_run: Any, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    """What a downstream task would pull: the value stored in the metadata DB."""
    return xcom_value(dag_run, task_id, key, map_index)


def task_instance(dag_run: Any, task_id: str) -> Any:
    (ti,) = [ti for ti in dag_run.get_task_instances() if ti.task_id == task_id]
    return ti


def reschedules(ti: Any) -> int:
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        if AIRFLOW_3:
            which = TaskReschedule.ti_id == ti.id
        else:
            which = (TaskReschedule.dag_id == ti.dag_id) & (TaskReschedule.run_id == ti.run_id)
            which &= (TaskReschedule.task_id == ti.task_id) & (TaskReschedule.map_index == ti.map_index)
        return session.scalar(select(func.count()).select_from(TaskReschedule).where(which))


def reads(server: Any, recording_id: str) -> list[Any]:
    return [r for r in server.requests if r.endpoint == "get_recording" and recording_id in r.path]


def user_agent(request: Any) -> str:
    return {k.lower(): v for k, v in request.headers.items()}["user-agent"]


# --------------------------------------------------------------------------- upload, wait, use it


@pytest.mark.parametrize("mode", MODES)
def test_upload_then_wait_hands_the_processed_recording_downstream(
    run_dag, siro_server, siro_connection, call_file, mode
):
    dag_run = run_dag(f"siro_wait_{mode}", conf={"source_path": str(call_file)})

    assert dag_run.state == "success"
    assert {ti.task_id: ti.state for ti in dag_run.get_task_instances()} == {
        "upload": "success",
        "wait": "success",
        "crm_note": "success",
    }
    recording_id = xcom(dag_run, "upload")
    assert recording_id in siro_server.recordings

    recording = xcom(dag_run, "wait")
    assert recording["id"] == recording_id
    assert recording["processingStatus"] == "complete"
    assert recording["title"] == f"Discovery call ({mode})"
    assert recording["summary"]
    assert "entityExtractions" in recording
    # The downstream task got the summary from the sensor's XCom, without calling Siro again.
    assert xcom(dag_run, "crm_note") == f"{recording_id} (complete): {recording['summary']}"

    polls = reads(siro_server, recording_id)
    assert len(polls) >= 2, "the offline server finishes a recording only after a few reads"
    assert polls[-1].status == 200
    wait = task_instance(dag_run, "wait")
    assert wait.try_number == 1
    clients = [user_agent(r).rsplit("; ", 1)[-1].split("/")[0] for r in polls]
    if mode == "deferrable":
        # One read in the worker, then the trigger's reads through the async client.
        assert clients == ["requests"] + ["httpx"] * (len(polls) - 1)
    else:
        assert set(clients) == {"requests"}
    if mode == "reschedule":
        # Every read but the last ended the try early and gave the worker slot back.
        assert reschedules(wait) == len(polls) - 1
    else:
        assert reschedules(wait) == 0


# --------------------------------------------------------------------------- waits that end badly


def failure_output(capfd: Any) -> str:
    out, err = capfd.readouterr()
    return out + err


@pytest.mark.parametrize("mode", MODES)
def test_fails_at_once_when_siro_reports_a_processing_error(
    run_dag, siro_server, siro_connection, capfd, mode
):
    recording_id = create_recording()
    siro_server.set_recording_status(recording_id, "error")
    capfd.readouterr()

    dag_run = run_dag(f"siro_sensor_{mode}", conf={"recording_id": recording_id})

    assert dag_run.state == "failed"
    wait = task_instance(dag_run, "wait")
    assert wait.state == "failed"
    assert wait.try_number == 1, "the DAG allows two retries; a processing error must not use them"
    output = failure_output(capfd)
    assert "SiroRecordingFailedError" in output
    assert f"Siro recording {recording_id}: Siro could not process it (processingStatus error" in output


@pytest.mark.parametrize("how", ["unknown id", "deleted"])
@pytest.mark.parametrize("mode", MODES)
def test_fails_at_once_when_the_recording_does_not_exist(
    run_dag, siro_server, siro_connection, capfd, mode, how
):
    if how == "deleted":
        recording_id = create_recording()
        siro_server.delete_recording(recording_id)
    else:
        recording_id = "rec-that-never-was"
    capfd.readouterr()

    dag_run = run_dag(f"siro_sensor_{mode}", conf={"recording_id": recording_id})

    assert dag_run.state == "failed"
    wait = task_instance(dag_run, "wait")
    assert wait.state == "failed"
    assert wait.try_number == 1
    assert "the ID is wrong or it was deleted" in failure_output(capfd)


@pytest.mark.parametrize("mode", MODES)
def test_times_out_when_processing_takes_longer_than_the_timeout(run_dag, monkeypatch, capfd, mode):
    from airflow_provider_siro.testing import OfflineSiro

    with OfflineSiro(processing_polls=10_000) as slow_siro:
        conn = slow_siro.connection(retry_backoff=0.01)
        monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
        recording_id = create_recording()
        capfd.readouterr()

        dag_run = run_dag(f"siro_sensor_{mode}", conf={"recording_id": recording_id})

        assert dag_run.state == "failed"
        wait = task_instance(dag_run, "wait")
        assert wait.state == "failed"
        assert wait.try_number == 1, "a sensor timeout is final"
        assert "AirflowSensorTimeout" in failure_output(capfd)
        assert len(reads(slow_siro, recording_id)) >= 2
        assert slow_siro.recordings[recording_id].status == "in-progress"


def test_a_recording_id_that_renders_empty_fails_before_any_request(
    run_dag, siro_server, siro_connection, capfd
):
    siro_server.clear_requests()
    capfd.readouterr()

    dag_run = run_dag("siro_sensor_poke", conf={"recording_id": " "})

    assert task_instance(dag_run, "wait").state == "failed"
    assert "recording_id: must be a non-empty string" in failure_output(capfd)
    assert siro_server.requests == []


# --------------------------------------------------------------------------- the deferred half


def test_deferring_hands_the_trigger_the_connection_id_and_deadline_never_a_token(siro_server, monkeypatch):
    """What ``execute`` defers with is exactly what the triggerer will get (kwargs go to the DB)."""
    TaskDeferred = task_deferred()

    conn = siro_server.connection(oauth=True, retry_backoff=0.01)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    recording_id = create_recording()
    sensor = SiroRecordingSensor(
        task_id="wait",
        recording_id=recording_id,
        deferrable=True,
        poke_interval=45,
        timeout=1800,
        show_summary=True,
    )

    class _TI:
        def xcom_push(self, key: str, value: Any) -> None:
            self.pushed = (key, value)

    ti = _TI()
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({"ti": ti})  # type: ignore[arg-type]
    after = time.time()

    trigger = deferred.value.trigger
    assert isinstance(trigger, SiroRecordingTrigger)
    assert deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert kwargs["recording_id"] == recording_id
    assert kwargs["siro_conn_id"] == "siro_default"
    assert kwargs["poll_interval"] == 45
    assert kwargs["show_summary"] is True
    assert before + 1800 <= kwargs["end_time"] <= after + 1800  # the timeout, from when it deferred
    token = SiroHook().get_access_token()
    assert token not in json.dumps(kwargs)
    assert ti.pushed == ("siro_recording_id", recording_id)


@pytest.mark.parametrize(
    ("event", "error", "text"),
    [
        (
            {"status": "failed", "message": "Siro could not process it"},
            SiroRecordingFailedError,
            "could not process",
        ),
        ({"status": "timeout", "message": "still in-progress"}, "AirflowSensorTimeout", "still in-progress"),
        ({"status": "error", "message": "GET returned 503"}, "AirflowException", "GET returned 503"),
    ],
)
def test_execute_complete_turns_each_trigger_event_into_the_tasks_outcome(event, error, text):
    sensor = SiroRecordingSensor(task_id="wait", recording_id="rec-1", deferrable=True)

    with pytest.raises(Exception) as raised:
        sensor.execute_complete({}, {"recording_id": "rec-1", **event})  # type: ignore[arg-type]

    if isinstance(error, str):
        assert type(raised.value).__name__ == error
    else:  # fails the task at once: AirflowFailException, with the provider's error as its cause
        assert type(raised.value).__name__ == "AirflowFailException"
        assert isinstance(raised.value.__cause__, error)
    assert text in str(raised.value)


def test_execute_complete_returns_the_recording_for_xcom():
    sensor = SiroRecordingSensor(task_id="wait", recording_id="rec-1", deferrable=True)
    recording = {"id": "rec-1", "processingStatus": "complete", "summary": "Agreed on a pilot."}

    result = sensor.execute_complete(
        {},  # type: ignore[arg-type]
        {"status": "success", "recording_id": "rec-1", "message": "done", "recording": recording},
    )

    assert result == recording


# --------------------------------------------------------------------------- authoring


def test_recording_id_is_templated_so_upload_output_plugs_in(dagbag):
    dag = dagbag.get_dag("siro_wait_poke")
    wait = dag.get_task("wait")

    assert "recording_id" in SiroRecordingSensor.template_fields
    assert [t.task_id for t in wait.upstream_list] == ["upload"]


def test_deferrable_follows_the_default_deferrable_setting():
    script = (
        "from airflow_provider_siro.sensors.siro import SiroRecordingSensor as S; "
        "print(S(task_id='w', recording_id='r').deferrable)"
    )
    env = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_importing_the_sensor_loads_no_http_client():
    """DAG files that use the sensor parse without importing the hook, requests or httpx: none of them
    comes with the sensor module on top of what its Airflow base class brings (Airflow 2 itself imports
    requests)."""
    script = (
        "import sys; from airflow_provider_siro.compat import BaseSensorOperator, PokeReturnValue, conf; "
        "before = set(sys.modules); import airflow_provider_siro.sensors.siro; "
        "print(sorted(m for m in ('requests', 'httpx', 'aiohttp', 'airflow_provider_siro.hooks.siro') "
        "if m in sys.modules and m not in before))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- the upload operator waits too


@pytest.mark.parametrize("deferrable", [False, True], ids=["in the worker", "deferred"])
def test_one_task_uploads_and_waits(run_dag, siro_server, siro_connection, call_file, deferrable):
    dag_id = "siro_upload_and_wait_deferrable" if deferrable else "siro_upload_and_wait"

    dag_run = run_dag(dag_id, conf={"source_path": str(call_file)})

    assert dag_run.state == "success"
    upload = task_instance(dag_run, "upload")
    assert upload.try_number == 1
    recording_id = xcom(dag_run, "upload")
    assert recording_id in siro_server.recordings, "the return value stays the recording ID"
    recording = xcom(dag_run, "upload", key="recording")
    assert recording["id"] == recording_id
    assert recording["processingStatus"] == "complete"
    assert recording["summary"]
    assert xcom(dag_run, "crm_note") == f"{recording_id} (complete): {recording['summary']}"
    assert xcom(dag_run, "upload", key="siro_recording_id") == recording_id

    polls = reads(siro_server, recording_id)
    assert len(polls) >= 2
    clients = [user_agent(r).rsplit("; ", 1)[-1].split("/")[0] for r in polls]
    if deferrable:
        assert clients == ["requests"] + ["httpx"] * (len(polls) - 1)
    else:
        assert set(clients) == {"requests"}
    assert [r.endpoint for r in siro_server.requests].count("create_recording") == 1


def _has_task_state_store() -> bool:
    from packaging.version import Version

    from airflow_provider_siro.compat import AIRFLOW_VERSION

    return Version(AIRFLOW_VERSION) >= Version("3.3")


HAS_TASK_STATE_STORE = _has_task_state_store()


@pytest.mark.parametrize("deferrable", [False, True], ids=["in the worker", "deferred"])
def test_a_wait_that_runs_out_fails_without_uploading_again(
    run_dag, monkeypatch, call_file, capfd, deferrable
):
    from airflow_provider_siro.testing import OfflineSiro

    dag_id = "siro_upload_and_wait_briefly" + ("_deferrable" if deferrable else "")
    with OfflineSiro(processing_polls=10_000) as slow_siro:
        monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(slow_siro.connection(retry_backoff=0.01)))
        capfd.readouterr()

        dag_run = run_dag(dag_id, conf={"source_path": str(call_file)})

        assert dag_run.state == "failed"
        upload = task_instance(dag_run, "upload")
        assert upload.state == "failed"
        if HAS_TASK_STATE_STORE:
            # Airflow 3.3+: the recording ID is in the task state store, so both retries resumed the wait
            # on it instead of uploading (the one create below).
            assert upload.try_number == 3
        else:
            assert upload.try_number == 1, "the task allows two retries; they would upload the audio again"
        assert [r.endpoint for r in slow_siro.requests].count("create_recording") == 1
        (recording_id,) = slow_siro.recordings
        output = failure_output(capfd)
        assert "SiroRecordingWaitError" in output
        assert f"Siro recording {recording_id} was created, but" in output
        assert "wait for this recording with SiroRecordingSensor" in output
        # The message says what the retries did on this Airflow: resumed the wait, or were not made.
        if HAS_TASK_STATE_STORE:
            assert "a retry of this task resumes waiting on it instead of uploading the audio" in output
            assert "is not retried" not in output
        else:
            assert "The task is not retried, because that would upload the audio again" in output
        # The ID is still there for a sensor, or a person, to pick up.
        assert xcom(dag_run, "upload", key="siro_recording_id") == recording_id


def test_an_unreachable_siro_while_waiting_fails_without_uploading_again(
    run_dag, siro_server, siro_connection, call_file, capfd
):
    siro_server.add_fault("get_recording", status=503, times=SiroHook().settings.max_retries + 1)
    capfd.readouterr()

    dag_run = run_dag("siro_upload_and_wait", conf={"source_path": str(call_file)})

    assert [r.endpoint for r in siro_server.requests].count("create_recording") == 1
    if HAS_TASK_STATE_STORE:
        # Airflow 3.3+: the retry found the recording in the task state store and resumed the wait.
        assert dag_run.state == "success"
        assert task_instance(dag_run, "upload").try_number == 2
        return
    assert dag_run.state == "failed"
    assert task_instance(dag_run, "upload").try_number == 1
    output = failure_output(capfd)
    assert "reading it back failed" in output
    assert "503" in output
