"""Example: create a Siro recording from audio that is already uploaded, with fields from the run.

Trigger it with the ``downloadUrl`` that Siro's signed-URL upload returned, e.g.::

    airflow dags trigger siro_upload_from_download_url \
        -c '{"download_url": "https://storage.googleapis.com/...", "user_email": "rep@example.com"}'

To try it on your machine, ``siro-offline serve`` runs an offline Siro and ``siro-offline upload
call.wav`` uploads a file to it and prints the download URL to trigger the run with.

The download URL's query string is a credential: the operator masks it in logs and rendered fields.
The recording ID is the upload task's XCom ``return_value``; ``upload.output`` hands it downstream.
"""

from __future__ import annotations

import pendulum

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

with DAG(
    dag_id="siro_upload_from_download_url",
    description="Create a Siro recording from an uploaded file, titled and dated from the run",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["siro", "example"],
    params={
        "download_url": Param(type="string", description="downloadUrl from Siro's signed-urls endpoint"),
        "user_email": Param("rep@example.com", type="string", format="idn-email"),
    },
) as dag:
    upload = SiroUploadRecordingOperator(
        task_id="upload_recording",
        download_url="{{ params.download_url }}",
        file_type="wav",
        title="Discovery call {{ (dag_run.logical_date or dag_run.run_after) | ds }} ({{ dag_run.run_id }})",
        user_email="{{ params.user_email }}",
        # A manual run in Airflow 3 may have no logical date; run_after always exists.
        date_created="{{ data_interval_end | default(dag_run.run_after, true) }}",
    )

    @task
    def announce(recording_id: str) -> str:
        """Stands in for whatever comes next: a CRM write-back, a Slack message, a sensor."""
        print(f"New Siro recording: {recording_id}")
        return recording_id

    announce(upload.output)
