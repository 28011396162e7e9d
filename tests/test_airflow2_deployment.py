"""Airflow 2.11 as it is deployed: a real scheduler and a separate triggerer process.

On Airflow 2.11 a deferred task's worker exits, the trigger travels through the metadata DB to the
``airflow triggerer`` process, and a new worker resumes the task from the trigger's event, as in
Airflow 3; but the scheduler parses DAG files itself and workers talk to the metadata DB directly.
This test runs that path with the processes of a 2.11 deployment, each its own ``airflow ...``
command with a private ``AIRFLOW_HOME``. SQLite allows only the SequentialExecutor on 2.11 (one task
at a time, in a fresh process each), which is all the deferral path needs. Runs are started with
``airflow dags trigger`` and checked in the metadata DB and the task logs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_siro.testing import OfflineSiro

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 900.0  # a hang guard, not a verdict: a busy 2-core machine may take minutes
AIRFLOW = [sys.executable, "-m", "airflow"]

pytestmark = [pytest.mark.slow, pytest.mark.airflow2]


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[OfflineSiro, dict[str, str], Path]]:
    """The offline Siro server, and a scheduler and a triggerer on their own Airflow home."""
    home = tmp_path_factory.mktemp("airflow2") / "airflow"
    dags = home / "dags"
    dags.mkdir(parents=True)
    (dags / "wait_for_recording.py").symlink_to(ROOT / "tests" / "dags" / "wait_for_recording.py")
    with OfflineSiro(processing_polls=4) as siro:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW_CONN_SIRO_DEFAULT": json.dumps(siro.connection(oauth=True, retry_backoff=0.01)),
                # The SequentialExecutor runs each task as `airflow tasks run ...`, found on the PATH.
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
        )
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
        )
        processes = {}
        for name in ("scheduler", "triggerer"):
            log = open(home / f"{name}.log", "wb")  # noqa: SIM115 - closed once the process has it
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", name], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            log.close()
        try:
            yield siro, env, home
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()


def _query(home: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(home / "airflow.db", timeout=30) as db:
        return db.execute(sql, args).fetchall()


def _logs(home: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in home.glob("*.log"))


def test_a_deferrable_sensor_finishes_under_a_real_scheduler_and_triggerer(deployment, tmp_path):
    siro, env, home = deployment
    audio = tmp_path / "call.mp3"
    audio.write_bytes(b"ID3\x03\x00" + bytes(range(256)) * 64)
    deadline = time.monotonic() + TIMEOUT
    while not _query(home, "select 1 from dag where dag_id = 'siro_wait_deferrable'"):
        assert time.monotonic() < deadline, "the scheduler did not parse the DAG\n" + _logs(home)
        time.sleep(1)
    run_id = "deferral-test"
    subprocess.run(
        [
            *AIRFLOW,
            "dags",
            "trigger",
            "siro_wait_deferrable",
            "-r",
            run_id,
            "-c",
            json.dumps({"source_path": str(audio)}),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    state = None
    while state not in ("success", "failed"):
        assert time.monotonic() < deadline, f"the run is still {state}\n" + _logs(home)
        time.sleep(1)
        rows = _query(home, "select state from dag_run where run_id = ?", run_id)
        state = rows[0][0] if rows else None
    tries = dict(_query(home, "select task_id, try_number from task_instance where run_id = ?", run_id))
    states = dict(_query(home, "select task_id, state from task_instance where run_id = ?", run_id))
    assert state == "success", (states, _logs(home))
    assert tries["wait"] == 1  # deferred and resumed: one try

    def xcom(task_id: str) -> Any:
        (value,) = _query(
            home,
            "select value from xcom where run_id = ? and task_id = ? and key = 'return_value'",
            run_id,
            task_id,
        )[0]
        return json.loads(value)

    recording_id = xcom("upload")
    assert recording_id in siro.recordings
    # The worker read the recording once before deferring; the triggerer polled it with the async client.
    agents = [
        r.headers["User-Agent"].rsplit("; ", 1)[-1].split("/")[0]
        for r in siro.requests
        if r.endpoint == "get_recording" and recording_id in r.path
    ]
    assert agents[0] == "requests" and set(agents[1:]) == {"httpx"}, agents
    recording = xcom("wait")
    assert recording["id"] == recording_id and recording["processingStatus"] == "complete"
    assert xcom("crm_note") == f"{recording_id} (complete): {recording['summary']}"
    # The task log holds the deferral and the resumed worker's end of it.
    log = "\n".join(
        p.read_text(errors="replace") for p in (home / "logs").rglob("*.log") if "task_id=wait" in str(p)
    )
    assert "Pausing task as DEFERRED" in log
    assert f"Siro has processed recording {recording_id}" in log
    for secret in (siro.org_token, siro.client_secret):
        assert secret not in log
