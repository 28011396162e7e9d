"""The mapped-task leg of ``dev/bench_bulk.py``: a real LocalExecutor deployment, as a user runs one.

``airflow api-server``, ``dag-processor`` and ``scheduler`` (LocalExecutor, ``parallelism`` = the
bulk operator's width) start on a fresh SQLite DB, through the same helper the suite's deployment tests
use (``tests/test_scheduler_deferral.py``). Two DAG runs are then timed from trigger to finish: the
files as one bulk task, and a sample of them as one mapped task instance each. Both pay the
scheduler, the task supervisor and the metadata DB; the mapped run pays them once per file.

CPU is the whole machine's busy time during a run (every Airflow process, the task processes they
start), less the benchmark process's own (the offline server): other load on the machine counts too.
Peak RSS is the most the deployment's processes held at once, summed, sampled every 0.2 s.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import psutil

from benchmarks.common import cpu_seconds

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dev" / "benchmarks" / "dags" / "bench_bulk_vs_mapped.py"


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot, over all cores (``/proc/stat``)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class _RssSampler(threading.Thread):
    """The largest sum of RSS over the deployment's process trees, sampled until stopped."""

    def __init__(self, roots: list[int]) -> None:
        super().__init__(daemon=True)
        self.roots, self.peak, self.done = roots, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            total = 0
            for pid in self.roots:
                try:
                    root = psutil.Process(pid)
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:
                    continue
                for process in tree:
                    try:
                        total += process.memory_info().rss
                    except psutil.Error:
                        continue  # a task process that just exited
            self.peak = max(self.peak, total)
            self.done.wait(0.2)


def run_in_deployment(
    env: dict[str, str], work: Path, bulk_paths: list[str], mapped_paths: list[str], width: int
) -> dict[str, dict[str, float]]:
    """Time the bulk task over ``bulk_paths`` and the mapped run over ``mapped_paths``.

    :param env: the benchmark's environment (``AIRFLOW_CONN_SIRO_DEFAULT`` names the offline server).
    :return: per leg ("bulk task", "mapped tasks"): files, seconds, CPU seconds, peak RSS (MiB).
    """
    sys.path.insert(0, str(ROOT / "tests"))
    from test_scheduler_deferral import STARTUP_TIMEOUT, _wait_for, airflow_deployment

    home = work / "deployment" / "airflow"
    settings = {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(width),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(width),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_SIRO_DEFAULT": env["AIRFLOW_CONN_SIRO_DEFAULT"],
        "SIRO_BENCH_WIDTH": str(width),
        "TMPDIR": str(work),
    }
    results: dict[str, dict[str, float]] = {}
    with airflow_deployment(home, [DAG_FILE], settings) as cluster:
        for name in ("api-server", "dag-processor", "scheduler"):
            cluster.start(name, [name])

        def healthy() -> bool:
            health = cluster.api("GET", "/monitor/health")
            return all(health[part]["status"] == "healthy" for part in ("metadatabase", "scheduler"))

        _wait_for("the API server and scheduler", healthy, STARTUP_TIMEOUT, cluster)
        for leg, dag_id, paths in (
            ("bulk task", "siro_bench_bulk_task", bulk_paths),
            ("mapped tasks", "siro_bench_mapped_tasks", mapped_paths),
        ):
            _wait_for(
                f"the dag-processor to serialize {dag_id}",
                lambda dag_id=dag_id: cluster.api("GET", f"/dags/{dag_id}"),
                STARTUP_TIMEOUT,
                cluster,
            )
            sampler = _RssSampler([p.pid for p in cluster.processes.values()])
            sampler.start()
            busy, own, started = _busy_seconds(), cpu_seconds(), time.monotonic()
            run = cluster.api(
                "POST",
                f"/dags/{dag_id}/dagRuns",
                json={"logical_date": None, "conf": {"source_paths": paths}},
            )
            run_path = f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}"

            def finished(run_path: str = run_path) -> str | None:
                state = cluster.api("GET", run_path)["state"]
                return state if state in ("success", "failed") else None

            state = _wait_for(f"{dag_id} to finish", finished, 7200.0, cluster)
            seconds = time.monotonic() - started
            cpu = (_busy_seconds() - busy) - (cpu_seconds() - own)
            sampler.done.set()
            sampler.join()
            if state != "success":
                raise SystemExit(f"{dag_id} ended {state}:\n{cluster.logs()}")
            results[leg] = {
                "files": len(paths),
                "seconds": seconds,
                "cpu": cpu,
                "rss": sampler.peak / 2**20,
            }
    return results
