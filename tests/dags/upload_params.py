"""Test DAG: one upload task whose every value comes from the run's conf (native rendering).

Retries are on, so a test can show that bad input fails the task on its first try regardless.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

FIELDS = (
    "file_type",
    "title",
    "user_id",
    "user_email",
    "user_phone",
    "organization_id",
    "conversation_type",
    "integration_connection_id",
    "crm_objects",
    "customer_phone",
    "customer_name",
    "date_created",
)

with DAG(
    dag_id="siro_test_upload_params",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
    params={"source_path": None, **dict.fromkeys(FIELDS)},
):
    SiroUploadRecordingOperator(
        task_id="upload",
        source_path="{{ params.source_path }}",
        source_conn_id="aws_default",  # object storage's connection for s3:// sources; local paths ignore it
        **{name: "{{ params.%s }}" % name for name in FIELDS},  # noqa: UP031 - Jinja, not Python, formatting
    )
