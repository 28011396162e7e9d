"""Durable uploads on Airflow 3.3+ (issue 20), with a real kill: a task process is SIGKILLed after Siro
answered 201, and the retry of the same task instance returns that recording, or resumes waiting on it,
without uploading again. No ledger is configured.

The task runs as it does in a deployment: ``airflow scheduler`` (LocalExecutor) launches a supervisor
that forks the task process; the task reaches the Execution API of ``airflow api-server``, which keeps
the task state store in the metadata DB. The test finds the task process by the title Airflow gives it
(``airflow worker -- <task instance id>``) and kills it with SIGKILL, so no ``except``, ``finally`` or
``on_kill`` of the operator runs. The supervisor sees its child die of a signal and reports the try as
up for retry; the scheduler then runs the next try of the same task instance (same run, same state
store), as it would after any lost task process.

The offline Siro server runs in this process and records every request; the other processes reach it
through ``AIRFLOW_CONN_SIRO_DEFAULT``. Every wait polls for an event with a generous ceiling that only
runs while the processes make progress (see ``test_scheduler_deferral._wait_for``).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_scheduler_deferral import RUN_TIMEOUT, STARTUP_TIMEOUT, Cluster, _wait_for, airflow_deployment

from airflow_provider_siro.testing import OfflineSiro

ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = ROOT / "tests" / "dags" / "durable_retry.py"
PROCESSES = {"api-server": ["api-server"], "dag-processor": ["dag-processor"], "scheduler": ["scheduler"]}

pytestmark = [pytest.mark.slow, pytest.mark.airflow3]


@pytest.fixture(scope="module")
def siro_server() -> Iterator[OfflineSiro]:
    """An offline Siro whose recordings stay ``in-progress`` until the test finishes them."""
    with OfflineSiro(processing_polls=10**9) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, siro_server: OfflineSiro) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("durable") / "airflow"
    settings = {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW_CONN_SIRO_DEFAULT": json.dumps(siro_server.connection(retry_backoff=0.01)),
        "TMPDIR": str(home),
    }
    with airflow_deployment(home, [DAG_FILE], settings) as running:
        for name, args in PROCESSES.items():
            running.start(name, args)
        _wait_for("the API server and scheduler", lambda: _healthy(running), STARTUP_TIMEOUT, running)
        for dag_id in ("siro_durable_upload", "siro_durable_upload_and_wait"):
            _wait_for(
                f"the dag-processor to serialize {dag_id}",
                lambda dag_id=dag_id: running.api("GET", f"/dags/{dag_id}"),
                STARTUP_TIMEOUT,
                running,
            )
        yield running


def _healthy(cluster: Cluster) -> bool:
    health = cluster.api("GET", "/monitor/health")
    return all(health[part]["status"] == "healthy" for part in ("metadatabase", "scheduler"))


def _task_process(ti_id: str) -> int | None:
    """The pid of the process Airflow runs this task instance's try in (titled ``airflow worker -- ID``)."""
    title = f"airflow worker -- {ti_id}"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.replace(b"\0", b" ").decode(errors="replace").strip() == title:
            return int(entry.name)
    return None


def _trigger(cluster: Cluster, dag_id: str, conf: dict[str, Any]) -> str:
    run = cluster.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
    return f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}"


def _kill_first_try(cluster: Cluster, run_path: str, ready: Any) -> int:
    """Wait until try 1 of ``upload`` runs and ``ready()`` holds, then SIGKILL its task process."""

    def running_first_try() -> str | None:
        ti = cluster.api("GET", f"{run_path}/taskInstances/upload")
        return ti["id"] if ti["state"] == "running" and ti["try_number"] == 1 else None

    ti_id = _wait_for("try 1 of the upload to run", running_first_try, RUN_TIMEOUT, cluster)
    pid = _wait_for("try 1's task process", lambda: _task_process(ti_id), RUN_TIMEOUT, cluster)
    _wait_for("try 1 to reach the point where it is killed", ready, RUN_TIMEOUT, cluster)
    os.kill(pid, signal.SIGKILL)
    return pid


def _finished(cluster: Cluster, run_path: str) -> str | None:
    state = cluster.api("GET", run_path)["state"]
    return state if state in ("success", "failed") else None


def _log(cluster: Cluster, run_path: str, try_number: int) -> str:
    return json.dumps(
        cluster.api(
            "GET", f"{run_path}/taskInstances/upload/logs/{try_number}", params={"full_content": True}
        )
    )


def _endpoints(server: OfflineSiro, since: int = 0) -> list[str]:
    return [r.endpoint for r in server.requests[since:]]


def test_a_try_killed_after_the_201_is_retried_with_the_same_recording_and_nothing_uploaded(
    cluster: Cluster, siro_server: OfflineSiro, tmp_path: Path
):
    audio, hold = tmp_path / "call.mp3", tmp_path / "holding"
    audio.write_bytes(b"ID3\x03\x00" + os.urandom(30_000))
    before = set(siro_server.recordings)
    run_path = _trigger(cluster, "siro_durable_upload", {"source_path": str(audio), "hold_file": str(hold)})

    # Killed once Siro answered the create with 201 and the operator returned, before Airflow recorded
    # the task's result: the process is gone without a word.
    def answered_and_holding() -> bool:
        created = [r for r in siro_server.requests if r.endpoint == "create_recording" and r.status == 201]
        return bool(created) and hold.exists()

    killed = _kill_first_try(cluster, run_path, answered_and_holding)
    (first_id,) = set(siro_server.recordings) - before
    assert hold.read_text() == first_id  # what the operator returned before the kill
    requests_at_kill = len(siro_server.requests)

    assert _wait_for("the run to finish", lambda: _finished(cluster, run_path), RUN_TIMEOUT, cluster) == (
        "success"
    ), cluster.logs()
    assert _task_process_gone(killed)
    ti = cluster.api("GET", f"{run_path}/taskInstances/upload")
    assert (ti["state"], ti["try_number"]) == ("success", 2)
    # The retry returned the same recording, and sent nothing to Siro: 0 new recordings.
    value = cluster.api("GET", f"{run_path}/taskInstances/upload/xcomEntries/return_value")["value"]
    assert value == first_id
    assert set(siro_server.recordings) - before == {first_id}
    assert _endpoints(siro_server, requests_at_kill) == []
    retry_log = _log(cluster, run_path, 2)
    assert f"Siro recording {first_id} was created by an earlier try of this task" in retry_log
    assert "ledger" not in retry_log.lower()  # no ledger was configured, none was used


def test_a_try_killed_while_waiting_is_retried_and_the_retry_resumes_the_wait(
    cluster: Cluster, siro_server: OfflineSiro, tmp_path: Path
):
    audio = tmp_path / "call.mp3"
    audio.write_bytes(b"ID3\x03\x00" + os.urandom(30_000))
    before = set(siro_server.recordings)
    run_path = _trigger(cluster, "siro_durable_upload_and_wait", {"source_path": str(audio)})

    # Killed while waiting for processing: Siro keeps the recording in progress, and try 1 has read it
    # at least twice (it is in its polling loop).
    def waiting() -> bool:
        return _endpoints(siro_server).count("get_recording") >= 2 and bool(
            set(siro_server.recordings) - before
        )

    _kill_first_try(cluster, run_path, waiting)
    (recording_id,) = set(siro_server.recordings) - before
    requests_at_kill = len(siro_server.requests)

    # The retry reads the same recording again (resuming the wait) without uploading or creating.
    def retry_waiting() -> bool:
        since_kill = _endpoints(siro_server, requests_at_kill)
        uploaded = {"signed_urls", "create_recording"} & set(since_kill)
        assert not uploaded, f"the retry uploaded again: {since_kill}"
        return "get_recording" in since_kill

    _wait_for("the retry to resume waiting", retry_waiting, RUN_TIMEOUT, cluster)
    siro_server.set_recording_status(recording_id, "complete")  # Siro finishes processing

    assert _wait_for("the run to finish", lambda: _finished(cluster, run_path), RUN_TIMEOUT, cluster) == (
        "success"
    ), cluster.logs()
    ti = cluster.api("GET", f"{run_path}/taskInstances/upload")
    assert (ti["state"], ti["try_number"]) == ("success", 2)
    after_kill = siro_server.requests[requests_at_kill:]
    assert {r.endpoint for r in after_kill} <= {"token", "get_recording"}
    assert all(recording_id in r.path for r in after_kill if r.endpoint == "get_recording")
    assert set(siro_server.recordings) - before == {recording_id}  # 0 new recordings
    assert cluster.api("GET", f"{run_path}/taskInstances/upload/xcomEntries/return_value")["value"] == (
        recording_id
    )
    recording = cluster.api("GET", f"{run_path}/taskInstances/upload/xcomEntries/recording")["value"]
    assert (recording["id"], recording["processingStatus"]) == (recording_id, "complete")
    first_log, retry_log = _log(cluster, run_path, 1), _log(cluster, run_path, 2)
    assert f"Siro recording {recording_id} is in-progress" in first_log
    assert f"Siro recording {recording_id} was created by an earlier try of this task" in retry_log
    assert f"Siro has processed recording {recording_id}" in retry_log


def _task_process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie not yet reaped by its supervisor is gone too: it runs nothing.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" in status.read_text()
