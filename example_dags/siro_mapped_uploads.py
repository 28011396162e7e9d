"""Example: one upload task per folder, and per batch of files, with dynamic task mapping.

A call recorder drops each team's calls in its own folder. ``SiroUploadRecordingsOperator`` takes the
recording fields every upload shares in ``partial()`` (here the rep's email, from the DAG's params)
and is mapped over what changes: ``expand(source_folder=...)`` gives each folder a task instance of
its own, ``expand(source_paths=...)`` each batch of files. In the UI every mapped instance is named by
its source instead of an index. A folder that fails is retried alone; the others stay green.

Safe to unpause: no schedule (trigger it by hand), no logical date used, and every default is on this
machine (the folders and the upload ledger under ``/tmp/siro_calls/``; point ``siro_default`` at the offline server, see
"Testing your DAGs" in the docs).
"""

from __future__ import annotations

import glob
import os

import pendulum

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param

from airflow_provider_siro.operators.siro import SiroUploadRecordingsOperator

# [START howto_operator_siro_mapped_uploads]
with DAG(
    dag_id="siro_mapped_uploads",
    description="Upload each team's folder, and batches of files, as mapped Siro upload tasks",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["siro", "example"],
    # Recording fields are operator arguments like any other: default_args reach every upload.
    default_args={"conversation_type": "discovery"},
    params={
        "folders": Param(
            ["/tmp/siro_calls/team-a/", "/tmp/siro_calls/team-b/"], type="array", description="folders"
        ),
        "batch_size": Param(2, type="integer", minimum=1),
        "user_email": Param("rep@example.com", type="string"),
        "ledger_path": Param("/tmp/siro_calls/_siro_ledger/", type="string"),
    },
):

    @task
    def folders(params: dict | None = None) -> list[str]:
        """The folders to upload, one mapped task instance each."""
        return [str(folder) for folder in (params or {})["folders"]]

    @task
    def batches(params: dict | None = None) -> list[list[str]]:
        """The same calls as batches of files, for a mapping over ``source_paths``."""
        params = params or {}
        size = int(params["batch_size"])
        files = sorted(f for folder in params["folders"] for f in glob.glob(os.path.join(folder, "*.mp3")))
        return [files[i : i + size] for i in range(0, len(files), size)]

    # One task instance per folder.
    by_folder = SiroUploadRecordingsOperator.partial(
        task_id="upload_folder",
        pattern="*.mp3",
        user_email="{{ params.user_email }}",
        ledger_path="{{ params.ledger_path }}",
        max_concurrency=4,
    ).expand(source_folder=folders())

    # One task instance per batch of the same files. It runs after the folders, and the shared ledger
    # knows every file by then: each batch returns the recordings already made and uploads nothing.
    by_batch = SiroUploadRecordingsOperator.partial(
        task_id="upload_batch",
        user_email="{{ params.user_email }}",
        ledger_path="{{ params.ledger_path }}",
    ).expand(source_paths=batches())
    by_folder >> by_batch
# [END howto_operator_siro_mapped_uploads]
