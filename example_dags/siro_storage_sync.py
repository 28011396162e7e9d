"""Example: upload every call a storage sync delivered, in parallel, and collect the recording IDs.

A phone system (or an rclone/S3 sync task) drops audio into a folder or bucket. ``list_new_audio``
lists it through Airflow's object storage, so ``source_folder`` may be a local path, ``file://`` or any
scheme a provider registers (``s3://bucket/calls/``, ``gs://...``; set ``SOURCE_CONN_ID``). One mapped
upload task per file streams it to Siro; ``collect`` receives every recording ID.

Safe to unpause: it runs only when triggered, and its default folder is local (``/tmp/siro-call-inbox``).
Give it a schedule (``"@hourly"``, or an asset the sync updates) once it points at your sync's folder.
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

AUDIO_SUFFIXES = (".mp3", ".wav", ".aac")
SOURCE_CONN_ID = "aws_default"  # the object storage connection for s3:// folders; unused for local ones

with DAG(
    dag_id="siro_storage_sync",
    description="List the audio a sync step delivered and upload each file to Siro in parallel",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["siro", "example"],
    params={
        "source_folder": Param("/tmp/siro-call-inbox", type="string", description="folder or bucket URL"),
        "user_email": Param("rep@example.com", type="string"),
    },
) as dag:

    @task
    def list_new_audio(source_folder: str) -> list[str]:
        """Every audio file in the folder, as URLs/paths the upload task can open."""
        try:
            from airflow.sdk import ObjectStoragePath
        except ImportError:  # Airflow 2.11
            from airflow.io.path import ObjectStoragePath

        folder = ObjectStoragePath(source_folder, conn_id=SOURCE_CONN_ID)
        found = sorted(str(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        print(f"{len(found)} audio file(s) in {source_folder}")
        return found

    sources = list_new_audio("{{ params.source_folder }}")

    upload = SiroUploadRecordingOperator.partial(
        task_id="upload_recording",
        source_conn_id=SOURCE_CONN_ID,
        user_email="{{ params.user_email }}",
        title="{{ task.source_path.rsplit('/', 1)[-1] }} (synced {{ dag_run.run_after | default(dag_run.logical_date) | ds }})",
        # The end of the sync window the call landed in. A manual run started without a logical date
        # has no data interval, hence the fallback to when the run was due.
        date_created="{{ data_interval_end | default(dag_run.run_after, true) }}",
        max_active_tis_per_dagrun=4,
    ).expand(source_path=sources)

    @task
    def collect(recording_ids: list[str]) -> list[str]:
        """Stands in for what comes next: a CRM write-back, a report, a sensor per recording."""
        ids = list(recording_ids)
        print(f"Created {len(ids)} Siro recording(s): {ids}")
        return ids

    collect(upload.output)
