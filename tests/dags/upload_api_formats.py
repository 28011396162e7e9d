"""Test DAG: one upload task with the fields of Siro's current API, values from the run's conf.

Retries are on, so a test can show that a refused value or a wrong wire format fails the task on its
first try regardless.
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
    dag_id="siro_test_upload_api_formats",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
    params={"source_path": None, "customer_name": None, "discoverable": None, "result": None},
):
    SiroUploadRecordingOperator(
        task_id="upload",
        source_path="{{ params.source_path }}",
        title="Call with Acme",
        user_email="ae@acme.io",
        customer_name="{{ params.customer_name }}",
        discoverable="{{ params.discoverable }}",
        result="{{ params.result }}",
    )
