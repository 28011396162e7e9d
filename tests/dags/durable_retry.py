"""Test DAGs for durable uploads on Airflow 3.3+ (tests/test_durable_kill.py): a task process is killed
after Siro created its recording, and the retry of the same task instance must find that recording in
the task state store instead of uploading again. No ledger anywhere.

* ``siro_durable_upload``: upload without waiting. Its first try stays alive after the operator
  returned (``hold_first_try``), as a worker about to be lost would, so the test can kill it there.
* ``siro_durable_upload_and_wait``: upload and wait for processing in the worker; the test kills the
  first try during the wait.

Trigger with ``{"source_path": "/path/to/call.mp3", "hold_file": "/path/to/marker"}``.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum

try:
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.models.param import Param

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

HOLD_SECONDS = 900.0
"""How long the first try stays alive after the operator returned; the test kills it long before."""


def hold_first_try(context: Any, result: Any = None) -> None:
    """``post_execute`` of the first try: say so in ``hold_file`` (with the recording ID), then stay."""
    if context["ti"].try_number != 1:
        return
    Path(context["params"]["hold_file"]).write_text(str(result))
    deadline = time.monotonic() + HOLD_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.5)


common: dict[str, Any] = {
    "schedule": None,
    "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
    "catchup": False,
    "tags": ["siro", "test"],
    "params": {
        "source_path": Param(type="string", description="the audio to upload"),
        "hold_file": Param("", type="string", description="written by the first try once it holds"),
    },
}
upload_args: dict[str, Any] = {
    "task_id": "upload",
    "source_path": "{{ params.source_path }}",
    "title": "Durable call",
    "user_email": "rep@example.com",
    # One retry, soon: the retry is the point of these DAGs.
    "retries": 1,
    "retry_delay": timedelta(seconds=1),
}

with DAG(dag_id="siro_durable_upload", description="Upload a call; the first try is killed", **common):
    SiroUploadRecordingOperator(post_execute=hold_first_try, **upload_args)

with DAG(
    dag_id="siro_durable_upload_and_wait",
    description="Upload a call and wait for processing; the first try is killed while waiting",
    **common,
):
    SiroUploadRecordingOperator(
        wait_for_completion=True, deferrable=False, poll_interval=0.5, timeout=3600, **upload_args
    )
