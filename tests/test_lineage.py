"""OpenLineage and asset events of the upload operators (issue 23).

The OpenLineage test runs ``dag.test()`` in a fresh interpreter whose environment configures the
OpenLineage provider's file transport: the provider reads that configuration, and loads its listener,
when Airflow first loads its plugins, which in this test session has happened long before (with
OpenLineage unconfigured, hence off). The run is otherwise the same real one: this session's metadata
DB and DAGs folder, the offline Siro server and moto's S3 on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from airflow_compat import AIRFLOW_3
from test_object_storage import s3_bucket  # noqa: F401 - the module's moto S3 fixture
from upload_support import write_audio

from airflow_provider_siro.utils.assets import (
    asset_event_extra,
    recording_ids_from_events,
    sanitize_uri,
    siro_asset_uri,
)
from airflow_provider_siro.utils.openlineage import (
    UploadedRecording,
    plan_lineage,
    recording_namespace,
    source_dataset,
)

DAG_ID = "siro_test_lineage_uploads"
RUN = """
import json, sys
from airflow_compat import DagBag, dag_test_kwargs
dag = DagBag(sys.argv[1]).get_dag(sys.argv[2])
run = dag.test(run_conf=json.loads(sys.argv[3]), **dag_test_kwargs({}))
print("RUN-STATE", run.state)
# This run's asset (dataset) events, read by the process that ran it, from the DB it wrote them to.
from airflow.utils.session import create_session
from sqlalchemy import select
try:
    from airflow.models.asset import AssetEvent as Event
    uri_of = lambda row: row.asset.uri
except ImportError:
    from airflow.models.dataset import DatasetEvent as Event
    uri_of = lambda row: row.dataset.uri
with create_session() as session:
    rows = session.scalars(select(Event).where(Event.source_run_id == run.run_id)).all()
    print("ASSET-EVENTS", json.dumps({uri_of(row): dict(row.extra) for row in rows}))
"""


def test_sources_are_named_the_openlineage_way():
    assert source_dataset("file:///data/calls/a%20b.mp3") == ("file", "/data/calls/a b.mp3")
    assert source_dataset("/data/calls/a.mp3") == ("file", "/data/calls/a.mp3")
    assert source_dataset("s3://calls/2026/a.mp3") == ("s3://calls", "2026/a.mp3")
    assert source_dataset("s3://aws_default@calls/a.mp3") == ("s3://calls", "a.mp3")
    assert source_dataset("gcs://bucket/x/a.wav") == ("gs://bucket", "x/a.wav")
    # A downloadUrl: never its signature.
    assert source_dataset("https://storage.siro.ai/u/abc.mp3") == ("https://storage.siro.ai", "/u/abc.mp3")
    assert recording_namespace("https://api.siro.ai") == "siro://api.siro.ai"
    assert recording_namespace("http://127.0.0.1:8080/") == "siro://127.0.0.1:8080"


def test_a_batch_beyond_the_limit_lists_the_first_ones_and_a_summary():
    uploads = [UploadedRecording(f"rec-{i}", f"s3://calls/{i}.mp3", None, "mp3", 10) for i in range(5)]

    plan = plan_lineage(uploads, "https://api.siro.ai", limit=3)

    assert plan.inputs == [("s3://calls", "0.mp3"), ("s3://calls", "1.mp3"), ("s3://calls", "2.mp3")]
    assert [name for _, name, _ in plan.outputs] == ["rec-0", "rec-1", "rec-2"]
    assert plan.summary == {"recordings": 5, "listed": 3, "totalBytes": 50}
    assert plan_lineage(uploads, "https://api.siro.ai").summary is None


def test_siro_asset_uris_are_normalised_and_need_a_host_and_name():
    assert sanitize_uri(urlsplit("siro://API.Siro.ai/calls/?x=1#f")).geturl() == "siro://api.siro.ai/calls"
    with pytest.raises(ValueError, match="needs a name"):
        sanitize_uri(urlsplit("siro://api.siro.ai/"))
    with pytest.raises(ValueError, match="needs the Siro API host"):
        sanitize_uri(urlsplit("siro:///calls"))
    assert siro_asset_uri("sales-calls") == "siro://api.siro.ai/sales-calls"


def test_the_provider_registers_the_siro_scheme_with_airflow():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    if AIRFLOW_3:
        manager.initialize_providers_asset_uri_resources()
        handlers = manager.asset_uri_handlers
    else:
        manager.initialize_providers_dataset_uri_resources()
        handlers = manager.dataset_uri_handlers
    assert handlers["siro"] is sanitize_uri


def test_recording_ids_come_from_siro_events_only_oldest_first_each_once():
    def event(uri: str, when: str, ids: list[str]) -> SimpleNamespace:
        return SimpleNamespace(asset=SimpleNamespace(uri=uri), timestamp=when, extra={"recording_ids": ids})

    events = {
        "siro://api.siro.ai/calls": [
            event("siro://api.siro.ai/calls", "2026-01-01T10:05", ["rec-2", "rec-3"]),
            event("siro://api.siro.ai/calls", "2026-01-01T10:00", ["rec-1", "rec-2"]),
        ],
        "file:///inbox": [event("file:///inbox", "2026-01-01T09:00", ["not-a-recording"])],
    }
    assert recording_ids_from_events(events) == ["rec-1", "rec-2", "rec-3"]
    assert recording_ids_from_events({}) == []
    assert asset_event_extra({"rec-1": "file:///a.mp3"}) == {
        "recording_ids": ["rec-1"],
        "sources": {"rec-1": "file:///a.mp3"},
    }


def _datasets(entries: list[dict]) -> set[tuple[str, str]]:
    return {(entry["namespace"], entry["name"]) for entry in entries}


def test_complete_events_name_the_sources_and_the_recordings(
    dagbag,
    siro_server,
    siro_connection,
    s3_bucket,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    local = tmp_path / "call-local.mp3"
    write_audio(local, 3000)
    s3_bucket.put_object(Bucket="calls", Key="lineage/call-s3.wav", Body=os.urandom(4000))
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "siro-tests",
        "AIRFLOW__OPENLINEAGE__DISABLED": "False",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    conf = {
        "source_path": "s3://calls/lineage/call-s3.wav",
        "source_paths": [str(local), "s3://calls/lineage/call-s3.wav"],
    }

    if not AIRFLOW_3:
        # Airflow 2.11 records an event only for a Dataset the metadata DB knows, which the DAG processor
        # adds when it syncs the DAG; dag.test() there does not sync, so the test does as it would.
        dagbag.get_dag(DAG_ID).sync_to_db()

    done = subprocess.run(
        [sys.executable, "-c", RUN, os.environ["AIRFLOW__CORE__DAGS_FOLDER"], DAG_ID, json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert "RUN-STATE success" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    complete = {
        event["job"]["name"].rsplit(".", 1)[-1]: event
        for event in events
        if event["eventType"] == "COMPLETE" and event["job"]["name"].startswith(f"{DAG_ID}.")
    }
    by_title = {r.body["title"]: [] for r in siro_server.recordings.values()}
    for recording_id, recording in siro_server.recordings.items():
        by_title[recording.body["title"]].append(recording_id)
    namespace = f"siro://{urlsplit(siro_server.url).netloc}"

    single = complete["upload"]
    assert _datasets(single["inputs"]) == {("s3://calls", "lineage/call-s3.wav")}
    (output,) = single["outputs"]
    assert (output["namespace"], output["name"]) == (namespace, by_title["single call"][0])
    facet = output["facets"]["siroRecording"]
    assert (facet["title"], facet["fileType"], facet["sizeBytes"]) == ("single call", "wav", 4000)

    bulk = complete["upload_many"]
    assert _datasets(bulk["inputs"]) == {("file", str(local)), ("s3://calls", "lineage/call-s3.wav")}
    assert _datasets(bulk["outputs"]) == {(namespace, rid) for rid in by_title["bulk call"]}
    assert len(by_title["bulk call"]) == 2
    facets = sorted(
        (o["facets"]["siroRecording"]["fileType"], o["facets"]["siroRecording"]["sizeBytes"])
        for o in bulk["outputs"]
    )
    assert facets == [("mp3", 3000), ("wav", 4000)]

    # The same run's asset events: each task's Siro asset, its recording IDs and sources in extra.
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("ASSET-EVENTS ")]
    extras = json.loads(line.removeprefix("ASSET-EVENTS "))
    assert extras["siro://127.0.0.1/lineage-single"] == {
        "recording_ids": by_title["single call"],
        "sources": {by_title["single call"][0]: "s3://calls/lineage/call-s3.wav"},
    }
    bulk_extra = extras["siro://127.0.0.1/lineage-bulk"]
    assert sorted(bulk_extra["recording_ids"]) == sorted(by_title["bulk call"])
    assert sorted(bulk_extra["sources"].values()) == sorted(
        [local.as_uri(), "s3://calls/lineage/call-s3.wav"]
    )
