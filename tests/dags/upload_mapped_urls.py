"""Test DAG: one mapped upload task per ``downloadUrl`` in the run's conf.

Shows that mapping over ``download_url`` works like a plain task, and lets a test check what a mapped
task stores among its rendered fields (a signed URL's query string is a credential).
"""

from __future__ import annotations

import pendulum

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

with DAG(
    dag_id="siro_test_upload_mapped_urls",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"download_urls": [], "user_email": "ae@acme.io"},
):
    # Airflow logs what a task returns, and a signed URL's query string is a credential: a task that
    # hands signed URLs on keeps its return value out of the log. (Not mask_secret: dag.test() does not
    # redact its console log, and registering the URLs here would also let the operator's own masking
    # of its rendered fields pass untested.)
    @task(show_return_value_in_logs=False)
    def download_urls(params: dict | None = None) -> list[str]:
        """The URLs to create recordings from, as an upstream system would hand them over."""
        return list((params or {})["download_urls"])

    SiroUploadRecordingOperator.partial(
        task_id="upload",
        file_type="wav",
        user_email="{{ params.user_email }}",
    ).expand(download_url=download_urls())
