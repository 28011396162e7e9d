"""Example: a daily sync of a bucket prefix, uploaded in bulk with an upload ledger; safe to re-run.

Each day a storage sync delivers the day's calls under a prefix (``s3://calls/inbox/2026-03-02/``).
One task uploads every audio file there, eight at a time, through one Siro hook; the ledger under
``s3://calls/_siro_ledger/`` remembers what is uploaded, so clearing a run, re-running it, or a listing
that overlaps yesterday's uploads nothing twice: a file already in the ledger returns its recording ID.
Set ``source_root`` and ``ledger_path`` to local folders to try it without a bucket.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param

from airflow_provider_siro.operators.siro import SiroUploadRecordingsOperator

SOURCE_CONN_ID = "aws_default"  # object storage's connection for s3:// paths; unused for local ones


def fields_for(source: str) -> dict[str, str]:
    """Per-file recording fields: here the title, from the file name (``rep-42_acme-discovery.mp3``)."""
    name = os.path.basename(source).rsplit(".", 1)[0]
    return {"title": name.replace("_", " ")}


with DAG(
    dag_id="siro_bulk_sync",
    description="Upload the day's synced calls in one task, with a ledger so a re-run uploads nothing twice",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["siro", "example"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},  # a retry uploads only what is new
    params={
        "source_root": Param("s3://calls/inbox/", type="string", description="bucket prefix or folder"),
        "ledger_path": Param("s3://calls/_siro_ledger/", type="string"),
        "user_email": Param("rep@example.com", type="string"),
    },
) as dag:
    upload = SiroUploadRecordingsOperator(
        task_id="upload_day",
        source_folder="{{ params.source_root }}{{ ds }}/",
        pattern="*.mp3",
        source_conn_id=SOURCE_CONN_ID,
        ledger_path="{{ params.ledger_path }}",
        user_email="{{ params.user_email }}",
        date_created="{{ data_interval_end }}",
        fields_per_source=fields_for,
        max_concurrency=8,
    )

    @task
    def report(recording_ids: dict[str, str]) -> int:
        """Stands in for what comes next: a CRM write-back, a sensor per recording."""
        for source, recording_id in sorted(recording_ids.items()):
            print(f"{source} -> Siro recording {recording_id}")
        return len(recording_ids)

    report(upload.output)
