"""Test DAGs: one task uploads and waits (``wait_for_completion``), and mapped uploads with links.

* ``siro_upload_and_wait`` waits in the worker, ``siro_upload_and_wait_deferrable`` in the triggerer;
  both hand the summary to a downstream task through the ``recording`` XCom. The ``..._briefly``
  variants wait at most two seconds, for the tests of a wait that runs out.
* ``siro_upload_mapped`` uploads several files, one mapped task instance each (for the extra link).

Trigger with ``{"source_path": "/path/to/call.mp3"}`` or ``{"source_paths": [...]}``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

for deferrable, timeout in [(False, 300), (True, 300), (False, 2), (True, 2)]:
    dag_id = (
        "siro_upload_and_wait" + ("_briefly" if timeout < 60 else "") + ("_deferrable" if deferrable else "")
    )
    with DAG(
        dag_id=dag_id,
        description="Upload a call and wait for Siro to process it, in one task",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["siro", "test"],
        params={"source_path": Param(type="string", description="the audio to upload")},
    ):
        upload = SiroUploadRecordingOperator(
            task_id="upload",
            source_path="{{ params.source_path }}",
            title="Renewal call",
            user_email="rep@example.com",
            wait_for_completion=True,
            deferrable=deferrable,
            poll_interval=0.2,
            timeout=timeout,
            show_summary=True,
            # Below Airflow 3.3 never used: a failed wait must not upload the audio again. On 3.3 the retry
            # resumes the wait on the recording in the task state store; a short delay keeps dag.test quick.
            retries=2,
            retry_delay=timedelta(seconds=1),
        )

        @task
        def crm_note(recording_id: str, recording: dict[str, Any]) -> str:
            return f"{recording_id} ({recording['processingStatus']}): {recording['summary']}"

        crm_note(upload.output, upload.output["recording"])

with DAG(
    dag_id="siro_upload_mapped",
    description="Upload several calls, one mapped task instance each",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["siro", "test"],
    params={"source_paths": Param(type="array", items={"type": "string"})},
):

    @task
    def source_paths(**context: Any) -> list[str]:
        return list(context["params"]["source_paths"])

    SiroUploadRecordingOperator.partial(task_id="upload", user_email="rep@example.com").expand(
        source_path=source_paths()
    )
