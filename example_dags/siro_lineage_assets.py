"""Example: an upload DAG updates a Siro asset; an analysis DAG scheduled on it waits for the calls.

``siro_upload_calls_to_asset`` uploads every audio file of a folder (or bucket) with one bulk task
whose ``outlets`` hold the Siro asset ``siro://api.siro.ai/example-calls``. When the task succeeds,
Airflow records an asset event whose ``extra`` names the recordings it created
(``{"recording_ids": [...], "sources": {recording ID: source}}``).

``siro_analyse_uploaded_calls`` is scheduled on that asset. Its sensor is given no ``recording_id``: it
reads the IDs from the asset events that triggered the run, waits until Siro has analysed every one,
and hands ``{recording ID: recording}`` (with the call summaries) to the next task. No glue code.

Both run as they are against a local folder and the offline Siro server (``make siro-server``); neither
reads a logical date. On Airflow 2.11 the asset is a Dataset and the same code runs (tests run the
pair through a real scheduler on Airflow 3; on 2.11 they check the upload's event and the sensor alone).
"""

from __future__ import annotations

import pendulum

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param

from airflow_provider_siro.operators.siro import SiroUploadRecordingsOperator
from airflow_provider_siro.sensors.siro import SiroRecordingSensor
from airflow_provider_siro.utils.assets import siro_asset

# siro://<API host>/<name>: the host names where the recordings live, the name which stream of uploads
# a downstream DAG follows. It is a name only; the connection decides which API is called.
SIRO_CALLS = siro_asset("example-calls")

with DAG(
    dag_id="siro_upload_calls_to_asset",
    description="Upload a folder's calls to Siro and announce the recordings on the example-calls asset",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["siro", "example"],
    params={
        "source_folder": Param("/tmp/siro-call-inbox", type="string", description="folder or bucket URL"),
        "pattern": Param("*.mp3", type="string"),
        "user_email": Param("rep@example.com", type="string"),
    },
):
    SiroUploadRecordingsOperator(
        task_id="upload_calls",
        source_folder="{{ params.source_folder }}",
        pattern="{{ params.pattern }}",
        user_email="{{ params.user_email }}",
        title="synced call",
        outlets=[SIRO_CALLS],
    )


with DAG(
    dag_id="siro_analyse_uploaded_calls",
    description="Wait for Siro's analysis of the calls named by the triggering example-calls events",
    schedule=[SIRO_CALLS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["siro", "example"],
):
    analysed = SiroRecordingSensor(
        task_id="wait_for_analysis",
        # No recording_id: the IDs come from the siro:// asset events that triggered this run.
        show_summary=True,
        poke_interval=5,
        timeout=3600,
        # Siro takes minutes per call: wait in the triggerer (one trigger for all the IDs), no worker slot.
        deferrable=True,
    )

    @task
    def report(recordings: dict) -> list[str]:
        """Stands in for what comes next: score the call, write the summary to the CRM."""
        lines = [f"{rid}: {rec.get('summary') or '(no summary)'}" for rid, rec in recordings.items()]
        for line in lines:
            print(line)
        return sorted(recordings)

    report(analysed.output)
