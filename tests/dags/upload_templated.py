"""Test DAG: plain (string) Jinja rendering, the way most DAGs template the operator.

* ``from_url`` renders ``crm_objects`` in depth (templates inside the list's dicts) and takes
  ``date_created`` from an upstream task that returns an aware datetime in the office's time zone.
* ``dated_by_logical_date`` sends ``"{{ logical_date }}"``, which renders to a string such as
  ``2026-03-02 12:00:00+00:00``.

Both create a recording from the same ``download_url``. Retries are on, so a test can show that bad
input fails both tasks on their first try regardless.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pendulum

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

with DAG(
    dag_id="siro_test_upload_templated",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=0)},
    params={
        "download_url": "https://storage.example/call.wav",
        "user_email": "ae@acme.io",
        "integration_connection_id": "conn-1",
        "object_type": "Opportunity",
        "object_id": "006xx1",
        "call_started": "2026-03-01T09:30:00",
        "office_timezone": "Europe/Berlin",
    },
):

    @task
    def call_started(params: dict | None = None) -> datetime:
        """When the call began, as a phone system reports it: local wall-clock time in the office's zone."""
        params = params or {}
        return pendulum.parse(params["call_started"], tz=params["office_timezone"])

    SiroUploadRecordingOperator(
        task_id="from_url",
        download_url="{{ params.download_url }}",
        title="Call with {{ params.object_type }} {{ params.object_id }}",
        user_email="{{ params.user_email }}",
        integration_connection_id="{{ params.integration_connection_id }}",
        crm_objects=[{"objectType": "{{ params.object_type }}", "objectId": "{{ params.object_id }}"}],
        date_created=call_started(),
    )

    SiroUploadRecordingOperator(
        task_id="dated_by_logical_date",
        download_url="{{ params.download_url }}",
        user_email="{{ params.user_email }}",
        date_created="{{ logical_date }}",
    )
