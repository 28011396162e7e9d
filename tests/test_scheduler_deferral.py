"""Upload and wait under a real scheduler, LocalExecutor workers and a separate triggerer process.

``dag.test()`` runs a deferred task's trigger in the calling process. In production the worker that
defers exits, the trigger's class path and kwargs travel through the metadata DB to a triggerer process,
and a new worker resumes the task from the trigger's event: nothing in memory survives. This test runs
that path with the same processes an Airflow 3.3 deployment has, each started as its own
``airflow ...`` command with a private ``AIRFLOW_HOME`` and SQLite DB:

* ``airflow api-server``: the UI/REST API and, in Airflow 3, the Execution API through which workers
  and the triggerer read connections and report state (workers no longer touch the metadata DB);
* ``airflow dag-processor``: parses the DAG files into serialized DAGs;
* ``airflow scheduler`` with the LocalExecutor: schedules and launches task processes;
* ``airflow triggerer``: runs the trigger.

The offline Siro server runs in this test process on 127.0.0.1; the other processes reach it through
``AIRFLOW_CONN_SIRO_DEFAULT``. Everything is driven and checked through the public REST API, as a user
would, and every wait is bounded.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
DAG_FILES = [
    ROOT / "tests" / "dags" / "wait_for_recording.py",
    ROOT / "tests" / "dags" / "wait_upload_operator.py",
]
PROCESSES = {
    "api-server": ["api-server"],
    "dag-processor": ["dag-processor"],
    "scheduler": ["scheduler"],
    "triggerer": ["triggerer"],
}
STARTUP_TIMEOUT = 180.0
RUN_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
PATIENCE = 4
"""A wait whose processes keep writing to their logs lasts at most this many times its timeout."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(what: str, check: Callable[[], Any], timeout: float, cluster: Cluster) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the processes' logs after ``timeout``
    seconds in which none of them wrote a line, or after ``PATIENCE`` times ``timeout`` in all.

    A loaded machine runs the processes slowly, not differently: as long as they make progress (their
    logs grow), the wait goes on, so the verdict is about what they did, not how fast."""
    started = time.monotonic()
    deadline, written = started + timeout, cluster.log_size()
    last_error: BaseException | None = None
    while time.monotonic() < min(deadline, started + PATIENCE * timeout):
        cluster.assert_alive()
        if cluster.log_size() != written:
            deadline, written = time.monotonic() + timeout, cluster.log_size()
        try:
            result = check()
        except (requests.RequestException, KeyError, ValueError) as exc:
            result, last_error = None, exc
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(
        f"timed out after {time.monotonic() - started:.0f} s waiting for {what} "
        f"(last error: {last_error!r})\n{cluster.logs()}"
    )


@dataclass
class Cluster:
    home: Path
    port: int
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.base_url}/api/v2{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def start(self, name: str, args: list[str]) -> None:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed when the process is reaped
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches its children too
        )
        log.close()

    def assert_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            pytest.fail(f"Airflow processes exited early: {dead}\n{self.logs()}")

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every process group, as a service manager would; SIGKILL what outlives the grace period."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                codes[name] = process.wait(10)
                codes[name] = None
        self.http.close()
        return codes

    def log_size(self) -> int:
        """How much the processes have written to their logs so far: it grows while they work."""
        return sum((self.home / f"{name}.log").stat().st_size for name in self.processes)

    def logs(self, lines: int = 40) -> str:
        parts = []
        for name in self.processes:
            text = (self.home / f"{name}.log").read_text(errors="replace").splitlines()
            parts.append(f"--- {name} (last {lines} lines) ---\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)


PACE = 120.0
"""The connection's ``max_requests_per_minute``: low, so that parallel task processes must share it."""


@pytest.fixture(scope="module")
def siro_server() -> Iterator[Any]:
    """The offline Siro server, finishing a recording on its fourth read: one read in the worker
    before it defers, then three by the trigger, so the trigger has to wait between reads."""
    from airflow_provider_siro.testing import OfflineSiro

    with OfflineSiro(processing_polls=4) as server:
        yield server


@contextmanager
def airflow_deployment(home: Path, dag_files: list[Path], settings: dict[str, str]) -> Iterator[Cluster]:
    """An Airflow home with ``dag_files`` in its DAGs folder and a migrated SQLite DB, as a :class:`Cluster`
    whose processes the caller starts; every one is stopped on the way out, and must stop cleanly.

    :param settings: environment for every process, on top of what all deployments here share (the
        executor, connections, the rate limiter's directory).
    """
    dags = home / "dags"
    dags.mkdir(parents=True)
    for source in dag_files:
        (dags / source.name).symlink_to(source)
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Every REST call acts as an admin: the test needs no login, and nothing listens beyond loopback.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__WORKERS": "1",
            # Workers and the triggerer authenticate to the Execution API with tokens signed by this key.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            **settings,
        }
    )
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        check=True,
        capture_output=True,
        timeout=STARTUP_TIMEOUT,
    )
    running = Cluster(home=home, port=port, env=env)
    running.http.trust_env = False
    try:
        yield running
    finally:
        codes = running.stop()
    # A clean shutdown is part of the contract: every process honoured SIGTERM within the grace period.
    assert None not in codes.values(), f"processes that needed SIGKILL: {codes}\n{running.logs()}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, siro_server: Any) -> Iterator[Cluster]:
    """One set of Airflow processes for the module's tests (starting them takes most of a minute)."""
    home = tmp_path_factory.mktemp("cluster") / "airflow"
    settings = {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        # An OAuth app connection: the worker and the triggerer each mint their own access token.
        "AIRFLOW_CONN_SIRO_DEFAULT": json.dumps(
            siro_server.connection(oauth=True, retry_backoff=0.01, max_requests_per_minute=PACE)
        ),
        # The rate limiter's state, shared by every task process of this "machine".
        "TMPDIR": str(home),
    }
    with airflow_deployment(home, DAG_FILES, settings) as running:
        for name, args in PROCESSES.items():
            running.start(name, args)
        yield running


def _healthy(cluster: Cluster) -> bool:
    health = cluster.api("GET", "/monitor/health")
    return all(health[part]["status"] == "healthy" for part in ("metadatabase", "scheduler", "triggerer"))


def _user_agent_client(request: Any) -> str:
    """``requests`` or ``httpx``: which HTTP client, hence which hook, sent a request."""
    agent = {k.lower(): v for k, v in request.headers.items()}["user-agent"]
    return agent.rsplit("; ", 1)[-1].split("/")[0]


@pytest.mark.slow
@pytest.mark.airflow3
def test_upload_and_wait_defers_to_a_separate_triggerer_and_resumes_in_a_new_worker(
    cluster: Cluster, siro_server: Any, tmp_path: Path
):
    # Two DAGs run side by side: upload then a deferrable sensor, and an upload operator that waits
    # deferred itself (``wait_for_completion=True, deferrable=True``).
    waits = {"siro_wait_deferrable": "wait", "siro_upload_and_wait_deferrable": "upload"}
    audio = tmp_path / "call.mp3"
    audio.write_bytes(b"ID3\x03\x00" + bytes(range(256)) * 64)

    _wait_for("the API server, scheduler and triggerer", lambda: _healthy(cluster), STARTUP_TIMEOUT, cluster)
    for dag_id in waits:
        _wait_for(
            f"the dag-processor to serialize {dag_id}",
            lambda dag_id=dag_id: cluster.api("GET", f"/dags/{dag_id}"),
            STARTUP_TIMEOUT,
            cluster,
        )
    siro_server.clear_requests()

    run_paths = {}
    for dag_id in waits:
        run = cluster.api(
            "POST",
            f"/dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": {"source_path": str(audio)}},
        )
        run_paths[dag_id] = f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}"

    def all_finished() -> dict[str, str] | None:
        states = {dag_id: cluster.api("GET", path)["state"] for dag_id, path in run_paths.items()}
        return states if all(state in ("success", "failed") for state in states.values()) else None

    final_states = _wait_for("both runs to finish", all_finished, RUN_TIMEOUT, cluster)

    for dag_id, waiting_task in waits.items():
        run_path = run_paths[dag_id]
        task_instances = {
            ti["task_id"]: ti for ti in cluster.api("GET", f"{run_path}/taskInstances")["task_instances"]
        }
        assert final_states[dag_id] == "success", (
            dag_id,
            {task: ti["state"] for task, ti in task_instances.items()},
            cluster.logs(),
        )
        assert task_instances[waiting_task]["try_number"] == 1

        # The worker created the recording and read it once, then the triggerer polled it: the
        # triggerer alone runs the trigger, and the trigger alone reads through the async client.
        recording_id = cluster.api("GET", f"{run_path}/taskInstances/upload/xcomEntries/return_value")[
            "value"
        ]
        assert recording_id in siro_server.recordings
        clients = [
            _user_agent_client(r)
            for r in siro_server.requests
            if r.endpoint == "get_recording" and recording_id in r.path
        ]
        assert clients[0] == "requests"
        assert clients[1:] and set(clients[1:]) == {"httpx"}

        # A new worker resumed from the trigger's event: the recording, with its summary, is in XCom
        # and the downstream task used it.
        key = "return_value" if waiting_task == "wait" else "recording"
        recording = cluster.api("GET", f"{run_path}/taskInstances/{waiting_task}/xcomEntries/{key}")["value"]
        assert recording["id"] == recording_id
        assert recording["processingStatus"] == "complete"
        assert recording["summary"]
        note = cluster.api("GET", f"{run_path}/taskInstances/crm_note/xcomEntries/return_value")["value"]
        assert note == f"{recording_id} (complete): {recording['summary']}"

        # The task's log holds both halves: the worker deferring, the triggerer's polls, the worker
        # that resumed.
        log = json.dumps(
            cluster.api(
                "GET", f"{run_path}/taskInstances/{waiting_task}/logs/1", params={"full_content": True}
            )
        )
        # The connection points at the offline server and sets no app_url: the link is its own page.
        url = f"{siro_server.url}/_offline/recordings/{recording_id}"
        assert f"Siro recording {recording_id}: {url}" in log
        assert "Pausing task as DEFERRED" in log
        assert f"Siro recording {recording_id} is in-progress" in log
        assert ".log.trigger." in log, "the triggerer's part of the log is missing"
        assert "next check in" in log  # only the trigger logs this, between its polls
        assert f"Siro has processed recording {recording_id}" in log

        # The extra link, as the UI asks the API server for it.
        links = cluster.api("GET", f"{run_path}/taskInstances/{waiting_task}/links")
        assert links["extra_links"] == {"Siro recording": url}

    # Each process minted its own token from the connection; no token, org token, client secret or
    # signed-URL query string is written to any log of any process.
    minted = [r for r in siro_server.requests if r.endpoint == "mint_token"]
    assert len(minted) >= 2
    credentials = {siro_server.org_token, siro_server.client_secret}
    credentials |= {
        r.headers["x-siro-auth-token"] for r in siro_server.requests if "x-siro-auth-token" in r.headers
    }
    credentials |= {
        urlsplit(r.json["fileUrl"]).query for r in siro_server.requests if r.endpoint == "create_recording"
    }
    assert len(credentials) >= 5
    logs = "\n".join(
        path.read_text(errors="replace") for path in cluster.home.rglob("*.log*") if path.is_file()
    )
    assert "Siro recording" in logs
    leaked = sorted(secret[:6] + "..." for secret in credentials if secret in logs)
    assert not leaked, f"credentials found in Airflow logs: {leaked}"


@pytest.mark.slow
@pytest.mark.airflow3
def test_parallel_mapped_uploads_share_one_request_budget(cluster: Cluster, siro_server: Any, tmp_path: Path):
    # A mapped upload whose task instances run as parallel LocalExecutor processes, each with its own
    # hook and token: together they keep to the connection's pace.
    from test_rate_limit import most_in_any_window

    files = []
    for index in range(12):
        path = tmp_path / f"call-{index:02d}.mp3"
        path.write_bytes(b"ID3\x03\x00" + os.urandom(20_000))
        files.append(str(path))
    _wait_for("the API server, scheduler and triggerer", lambda: _healthy(cluster), STARTUP_TIMEOUT, cluster)
    _wait_for(
        "the dag-processor to serialize siro_upload_mapped",
        lambda: cluster.api("GET", "/dags/siro_upload_mapped"),
        STARTUP_TIMEOUT,
        cluster,
    )
    siro_server.clear_requests()
    run = cluster.api(
        "POST",
        "/dags/siro_upload_mapped/dagRuns",
        json={"logical_date": None, "conf": {"source_paths": files}},
    )
    run_path = f"/dags/siro_upload_mapped/dagRuns/{run['dag_run_id']}"

    def finished() -> str | None:
        state = cluster.api("GET", run_path)["state"]
        return state if state in ("success", "failed") else None

    assert _wait_for("the mapped run to finish", finished, RUN_TIMEOUT, cluster) == "success", cluster.logs()
    instances = cluster.api("GET", f"{run_path}/taskInstances", params={"limit": 100})["task_instances"]
    uploads = [ti for ti in instances if ti["task_id"] == "upload"]
    assert len(uploads) == 12 and {ti["state"] for ti in uploads} == {"success"}
    # They ran side by side (LocalExecutor, parallelism 4): their runs overlap in time.
    spans = sorted((ti["start_date"], ti["end_date"]) for ti in uploads)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))

    paced = [r.time for r in siro_server.requests if r.endpoint in ("signed_urls", "create_recording")]
    assert len(paced) == 24 and len(siro_server.recordings) >= 12
    assert siro_server.rate_limited == 0
    # 120 a minute is one request every 0.5 s after a burst of up to 10: at most 10 + 10 in any 5 s.
    busiest = most_in_any_window(paced, 5.0)
    assert busiest <= PACE * 5 / 60 + 10 + 2, busiest
    assert max(paced) - min(paced) >= (24 - 10) * 60 / PACE - 0.5  # the pace held them back
