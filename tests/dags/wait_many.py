"""Test DAGs: one sensor waits for every recording a bulk upload created (in a worker and deferred),
and a sensor given no ID in a run no Siro asset event triggered."""

from __future__ import annotations

from datetime import timedelta

import pendulum

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG

from airflow_provider_siro.operators.siro import SiroUploadRecordingsOperator
from airflow_provider_siro.sensors.siro import SiroRecordingSensor

with DAG(
    dag_id="siro_test_wait_many",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    params={"source_paths": None},
):
    upload = SiroUploadRecordingsOperator(
        task_id="upload_many", source_paths="{{ params.source_paths }}", user_email="rep@example.com"
    )
    SiroRecordingSensor(task_id="wait_poke", recording_id=upload.output, poke_interval=0.1, timeout=60)
    SiroRecordingSensor(
        task_id="wait_deferred", recording_id=upload.output, poke_interval=0.1, timeout=60, deferrable=True
    )

with DAG(
    dag_id="siro_test_wait_no_ids",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
):
    SiroRecordingSensor(task_id="wait", poke_interval=0.1, timeout=10)
