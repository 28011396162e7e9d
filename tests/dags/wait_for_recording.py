"""Test DAGs: upload a call, wait for Siro to process it, and use the summary downstream.

One DAG per way of waiting (``siro_wait_poke``, ``siro_wait_reschedule``, ``siro_wait_deferrable``),
the same three tasks each: the upload operator creates the recording, the sensor waits for it with its
ID from ``upload.output``, and a plain task builds a CRM note from the summary the sensor put in XCom.
Trigger with ``{"source_path": "/path/to/call.mp3"}``.
"""

from __future__ import annotations

from typing import Any

import pendulum

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator
from airflow_provider_siro.sensors.siro import SiroRecordingSensor

MODES = ("poke", "reschedule", "deferrable")

for mode in MODES:
    with DAG(
        dag_id=f"siro_wait_{mode}",
        description=f"Upload a call and wait for Siro to process it ({mode})",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["siro", "test"],
        params={"source_path": Param(type="string", description="the audio to upload")},
    ):
        upload = SiroUploadRecordingOperator(
            task_id="upload",
            source_path="{{ params.source_path }}",
            title=f"Discovery call ({mode})",
            user_email="rep@example.com",
        )
        wait = SiroRecordingSensor(
            task_id="wait",
            recording_id=upload.output,
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
            poke_interval=0.2,
            timeout=300,
            show_summary=True,
            show_entity_extractions=True,
        )

        @task
        def crm_note(recording: dict[str, Any]) -> str:
            """What a CRM write-back would do with the sensor's XCom: no second call to Siro."""
            return f"{recording['id']} ({recording['processingStatus']}): {recording['summary']}"

        crm_note(wait.output)
