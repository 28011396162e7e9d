"""An upload's Siro asset event starts the downstream DAG through a real scheduler (issue 23).

The example pair of ``example_dags/siro_lineage_assets.py`` runs in a real Airflow 3 deployment (API
server, dag-processor, scheduler, triggerer, LocalExecutor): the upload DAG's bulk task creates the recordings and
emits its ``siro://`` asset event with their IDs in ``extra``; the scheduler starts the analysis DAG on
that event, whose sensor (given no ID) reads the IDs from the triggering event, waits for Siro in the
triggerer (one trigger for all of them), and hands the recordings on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_scheduler_deferral import STARTUP_TIMEOUT, Cluster, _wait_for, airflow_deployment
from upload_support import write_audio

ROOT = Path(__file__).resolve().parents[1]
PRODUCER = "siro_upload_calls_to_asset"
CONSUMER = "siro_analyse_uploaded_calls"
RUN_TIMEOUT = 900.0  # a hang guard, not a verdict: a busy 2-core machine may take minutes


@pytest.fixture(scope="module")
def siro_server() -> Iterator[Any]:
    """Recordings finish on their second read, so the sensor waits at least once."""
    from airflow_provider_siro.testing import OfflineSiro

    with OfflineSiro(processing_polls=2) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, siro_server: Any) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("asset-cluster") / "airflow"
    settings = {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW_CONN_SIRO_DEFAULT": json.dumps(siro_server.connection(retry_backoff=0.01)),
        "TMPDIR": str(home),
    }
    with airflow_deployment(home, [ROOT / "example_dags" / "siro_lineage_assets.py"], settings) as running:
        for name in ("api-server", "dag-processor", "scheduler", "triggerer"):
            running.start(name, [name])
        yield running


@pytest.mark.slow
@pytest.mark.airflow3
def test_an_uploads_asset_event_starts_the_analysis_dag_which_waits_for_its_recordings(
    cluster: Cluster, siro_server: Any, tmp_path: Path
):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("call-1.mp3", "call-2.mp3"):
        write_audio(inbox / name, 5000)
    (inbox / "notes.txt").write_text("not audio")

    def healthy() -> bool:
        health = cluster.api("GET", "/monitor/health")
        return all(health[part]["status"] == "healthy" for part in ("metadatabase", "scheduler", "triggerer"))

    _wait_for("the API server and scheduler", healthy, STARTUP_TIMEOUT, cluster)
    for dag_id in (PRODUCER, CONSUMER):
        _wait_for(
            f"the dag-processor to serialize {dag_id}",
            lambda dag_id=dag_id: cluster.api("GET", f"/dags/{dag_id}"),
            STARTUP_TIMEOUT,
            cluster,
        )

    cluster.api(
        "POST",
        f"/dags/{PRODUCER}/dagRuns",
        json={"logical_date": None, "conf": {"source_folder": str(inbox)}},
    )

    def consumer_finished() -> dict[str, Any] | None:
        runs = cluster.api("GET", f"/dags/{CONSUMER}/dagRuns")["dag_runs"]
        done = [run for run in runs if run["state"] in ("success", "failed")]
        return done[0] if done else None

    run = _wait_for(
        f"{CONSUMER} to be started by the asset event and finish", consumer_finished, RUN_TIMEOUT, cluster
    )
    run_path = f"/dags/{CONSUMER}/dagRuns/{run['dag_run_id']}"
    assert run["state"] == "success", cluster.logs()
    assert run["run_type"] == "asset_triggered"

    # The upload created exactly the two calls; its asset event named them.
    created = sorted(siro_server.recordings)
    assert len(created) == 2
    events = cluster.api("GET", "/assets/events", params={"source_dag_id": PRODUCER})["asset_events"]
    (event,) = events
    assert event["uri"] == "siro://api.siro.ai/example-calls"
    assert sorted(event["extra"]["recording_ids"]) == created
    assert sorted(event["extra"]["sources"].values()) == sorted(
        (inbox / name).as_uri() for name in ("call-1.mp3", "call-2.mp3")
    )

    # The downstream sensor found the IDs in the triggering event and waited for Siro's analysis.
    recordings = cluster.api("GET", f"{run_path}/taskInstances/wait_for_analysis/xcomEntries/return_value")[
        "value"
    ]
    assert sorted(recordings) == created
    assert {rec["processingStatus"] for rec in recordings.values()} == {"complete"}
    assert all(rec["summary"] for rec in recordings.values())
    reported = cluster.api("GET", f"{run_path}/taskInstances/report/xcomEntries/return_value")["value"]
    assert reported == created
