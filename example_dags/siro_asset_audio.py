"""Example: schedule uploads on an Airflow asset that a sync DAG updates when new audio arrives.

Airflow 3 only: it uses assets, their events' ``extra`` and ``dag_run.run_after``; on Airflow 2.11 the same
pattern is written with a Dataset, and the upload operator is the same.

``siro_call_audio_sync`` stands in for the DAG that copies calls out of a phone system; each time it
lands a file it updates the ``call_audio`` asset and names the file in the event's ``extra``.
``siro_upload_new_call_audio`` is scheduled on that asset and uploads every file the triggering events
name: when several calls land before the scheduler starts a run, that one run consumes all of their
events, so it maps one upload task over them rather than reading only the newest. A manual run may
name a file with the ``source_path`` param instead.

An asset-triggered run has no logical date, so the upload DAG's templates use ``dag_run.run_after``
(when the run was due) instead of ``ds``, ``ts`` or ``data_interval_end``, which are undefined there.
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
    description="Upload the call files named by the call_audio asset events that triggered the run",
    schedule=[CALL_AUDIO],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["siro", "example"],
    params={"source_path": Param(None, type=["null", "string"], description="for manual runs")},
):

    @task
    def files_from_events(*, triggering_asset_events=None, params=None) -> list[str]:
        """The ``source_path`` of every triggering event, oldest first, each once; a manual run's
        ``source_path`` param when no event triggered the run."""
        events = [event for batch in (triggering_asset_events or {}).values() for event in batch]
        files: list[str] = []
        for event in sorted(events, key=lambda event: event.timestamp):  # not ordered as delivered
            path = str(event.extra["source_path"])
            if path not in files:
                files.append(path)
        if not files and params and params.get("source_path"):
            files.append(str(params["source_path"]))
        if not files:
            raise ValueError("no call_audio asset event and no source_path param: nothing to upload")
        return files

    SiroUploadRecordingOperator.partial(
        task_id="upload_recording",
        user_email="rep@example.com",
        title="{{ task.source_path.rsplit('/', 1)[-1] }} (synced {{ dag_run.run_after | ds }})",
        date_created="{{ dag_run.run_after }}",
    ).expand(source_path=files_from_events())
