"""Example: every call in a folder or bucket prefix, uploaded in one task with an upload ledger; safe to re-run.

A storage sync delivers calls into a folder. One task uploads every audio file there, eight at a time,
through one Siro hook; the ledger remembers what is uploaded, so clearing a run, re-running it, or a
folder that still holds yesterday's calls uploads nothing twice: a file already in the ledger returns
its recording ID.

Safe to unpause: it runs only when triggered, and its defaults are local folders
(``/tmp/siro-call-inbox/`` and ``/tmp/siro-upload-ledger/``). In production, give it a schedule and the
day's prefix of a bucket, for instance ``schedule="@daily"`` with
``source_folder="s3://<bucket>/inbox/{{ ds }}/"`` and the ledger in the same bucket (``SOURCE_CONN_ID``
names the bucket's connection).
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

SOURCE_CONN_ID = "aws_default"  # object storage's connection for s3:// paths; unused for local folders


def fields_for(source: str) -> dict[str, str]:
    """Per-file recording fields: here the title, from the file name (``rep-42_acme-discovery.mp3``)."""
    name = os.path.basename(source).rsplit(".", 1)[0]
    return {"title": name.replace("_", " ")}


with DAG(
    dag_id="siro_bulk_sync",
    description="Upload a folder's calls in one task, with a ledger so a re-run uploads nothing twice",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["siro", "example"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},  # a retry uploads only what is new
    params={
        "source_folder": Param("/tmp/siro-call-inbox/", type="string", description="folder or bucket prefix"),
        "ledger_path": Param(
            "/tmp/siro-upload-ledger/", type="string", description="folder or bucket prefix"
        ),
        "user_email": Param("rep@example.com", type="string"),
    },
) as dag:
    upload = SiroUploadRecordingsOperator(
        task_id="upload_day",
        source_folder="{{ params.source_folder }}",
        pattern="*.mp3",
        source_conn_id=SOURCE_CONN_ID,
        ledger_path="{{ params.ledger_path }}",
        user_email="{{ params.user_email }}",
        # A run started by hand on Airflow 3 may have no logical date, and so no data interval: then the
        # recordings are dated when the run was due.
        date_created="{{ data_interval_end | default(dag_run.run_after, true) }}",
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
