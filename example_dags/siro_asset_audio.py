"""Example: schedule uploads on an Airflow asset that a sync DAG updates when new audio arrives.

``siro_call_audio_sync`` stands in for the DAG that copies calls out of a phone system; each time it
lands a file it updates the ``call_audio`` asset and names the file in the event's ``extra``.
``siro_upload_new_call_audio`` is scheduled on that asset and uploads the file the event names. A
manual run of the upload DAG may name a file with the ``source_path`` param instead.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, Param, task

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

CALL_AUDIO = Asset(name="call_audio", uri="file:///tmp/siro-call-inbox", extra={"kind": "call recordings"})

with DAG(
    dag_id="siro_call_audio_sync",
    description="Stand-in for a phone-system sync: announces each new call file on the call_audio asset",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["siro", "example"],
    params={"synced_file": Param("/tmp/siro-call-inbox/call.mp3", type="string")},
):

    @task(outlets=[CALL_AUDIO])
    def announce_new_audio(synced_file: str, *, outlet_events=None) -> str:
        """Update the asset, naming the delivered file in the event's extra."""
        outlet_events[CALL_AUDIO].extra = {"source_path": synced_file}
        return synced_file

    announce_new_audio("{{ params.synced_file }}")


with DAG(
    dag_id="siro_upload_new_call_audio",
    description="Upload the call file named by each call_audio asset event to Siro",
    schedule=[CALL_AUDIO],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["siro", "example"],
    params={"source_path": Param(None, type=["null", "string"], description="for manual runs")},
):

    @task
    def file_from_event(*, triggering_asset_events=None, params=None) -> str:
        """The newest event's ``source_path``; a manual run's ``source_path`` param otherwise."""
        events = [event for batch in (triggering_asset_events or {}).values() for event in batch]
        if events:
            return str(events[-1].extra["source_path"])
        if params and params.get("source_path"):
            return str(params["source_path"])
        raise ValueError("no call_audio asset event and no source_path param: nothing to upload")

    SiroUploadRecordingOperator(
        task_id="upload_recording",
        source_path=file_from_event(),
        user_email="rep@example.com",
        title="New call {{ ts }}",
        date_created="{{ dag_run.run_after }}",
    )
