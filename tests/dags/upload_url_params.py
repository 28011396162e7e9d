"""Test DAG: one upload task from a ``download_url``, every value from the run's conf (native rendering).

``date_created`` is a ``datetime`` object, built in the template from the conf's ``call_started``, the way
a DAG hands over a moment it computed (an ISO string without an offset makes a naive one). Retries are
on, so a test can show that bad input fails the task on its first try regardless.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

with DAG(
    dag_id="siro_test_upload_url_params",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
    params={
        "download_url": "https://storage.example/call.wav",
        "file_type": None,
        "user_email": "ae@acme.io",
        "call_started": "2026-03-01T09:30:00+01:00",
    },
):
    SiroUploadRecordingOperator(
        task_id="upload",
        download_url="{{ params.download_url }}",
        file_type="{{ params.file_type }}",
        user_email="{{ params.user_email }}",
        date_created="{{ macros.datetime.fromisoformat(params.call_started) }}",
    )
