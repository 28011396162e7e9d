"""Many uploads stay within Siro's request rate: from threads of one worker, and from parallel processes.

Siro allows 1000 requests per access token per minute and answers 429 past that. The hook paces its
user-scoped calls (``max_requests_per_minute``, 900 by default) with one budget per credential shared by
every thread and process of the machine (``airflow_provider_siro.utils.rate_limit``). These tests run
the offline server with the same kind of limit on a shorter window, so that minutes of traffic fit in
seconds: ``RATE_LIMIT`` requests per ``WINDOW`` seconds per token, answered 429 past that.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from reliability_report import record

from airflow_provider_siro.hooks.siro import SiroHook
from airflow_provider_siro.payload import validate_recording_fields
from airflow_provider_siro.testing import OfflineSiro
from airflow_provider_siro.utils.rate_limit import RequestRateLimiter

WINDOW = 5.0
RATE_LIMIT = 200  # per token per WINDOW seconds: 2400 a minute
PACE = 1800.0  # the hook's max_requests_per_minute: 150 per window, plus a burst of 10
BURST = 10
PACED = ("signed_urls", "create_recording", "get_recording")


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of ``times`` inside any interval of ``window`` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def paced_times(server: OfflineSiro) -> list[float]:
    return [r.time for r in server.requests if r.endpoint in PACED]


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def upload(index: int, audio: bytes) -> str:
    """One upload as the operator runs it, with a hook of its own (a task's)."""
    hook = SiroHook()
    try:
        url = hook.upload_audio(lambda: io.BytesIO(audio), len(audio), "mp3", label=f"call-{index}.mp3")
        return hook.create_recording(url, validate_recording_fields("mp3", user_email="rep@example.com"))
    finally:
        hook.close()


@pytest.fixture
def limited_siro(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with OfflineSiro(rate_limit=RATE_LIMIT, rate_window=WINDOW) as server:
        # A private directory for the limiter's state, so no other test shares this credential's budget.
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        import tempfile

        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        yield server


def use(monkeypatch: pytest.MonkeyPatch, server: OfflineSiro, token: str, pace: float) -> dict:
    connection = server.connection(
        token=token, max_requests_per_minute=pace, retry_backoff=0.5, max_retries=6, max_retry_wait=10
    )
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(connection))
    return connection


def test_many_uploads_from_one_worker_stay_within_the_rate_and_hold_no_resources(limited_siro, monkeypatch):
    server = limited_siro
    use(monkeypatch, server, server.issue_access_token(), PACE)
    audio = os.urandom(4_000)
    upload(-1, audio)  # warm up: imports, the connection, the first pool
    fds_before, rss_before = len(os.listdir("/proc/self/fd")), rss_kib()
    server.clear_requests()

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(upload, range(150), [audio] * 150))

    assert len(set(ids)) == 150 and set(ids) <= set(server.recordings)
    assert server.rate_limited == 0  # Siro never had to refuse a request
    busiest = most_in_any_window(paced_times(server), WINDOW)
    # Arrivals are counted at the server: a thread that waited on the GIL after its slot started can
    # arrive with later ones, so a window may hold what a quarter of a second of pace adds.
    assert busiest <= PACE * WINDOW / 60 + BURST + 2 + PACE / 60 * 0.25, busiest
    # Every hook closed its pool and every source was closed: nothing piles up in a long-lived worker.
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2
    record(
        "load_one_worker",
        uploads=150,
        threads=8,
        paced_requests=len(paced_times(server)),
        limit_per_window=RATE_LIMIT,
        window_s=WINDOW,
        pace_per_window=PACE * WINDOW / 60,
        busiest_window=busiest,
        refused_429=server.rate_limited,
        rss_growth_kib=rss_kib() - rss_before,
    )


def test_without_pacing_the_same_load_is_refused_by_siro_and_only_backoff_saves_it(limited_siro, monkeypatch):
    # The control for the test above: the server's limit is real and this load crosses it.
    server = limited_siro
    use(monkeypatch, server, server.issue_access_token(), 0)
    audio = os.urandom(4_000)

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(upload, range(150), [audio] * 150))

    assert server.rate_limited > 0
    assert most_in_any_window(paced_times(server), WINDOW) > PACE * WINDOW / 60 + BURST + 2
    assert len(set(ids)) == 150  # 429 says nothing was done: backing off and retrying is safe
    record("load_unpaced_control", refused_429=server.rate_limited)


WORKER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    from test_rate_limit import upload
    audio = os.urandom(4_000)
    for i in range({count}):
        print("ID", upload(i, audio), flush=True)  # a log line may reach stdout too
    """
)


def test_parallel_task_processes_share_one_budget(limited_siro, monkeypatch, tmp_path):
    # Mapped task instances run as separate processes with the same connection, hence the same token.
    server = limited_siro
    use(monkeypatch, server, server.issue_access_token(), PACE)
    processes, count = 4, 30
    script = WORKER.format(tests=str(Path(__file__).parent), count=count)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    workers = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    outputs = [
        [
            line.split()[1]
            for line in worker.communicate(timeout=240)[0].splitlines()
            if line.startswith("ID ")
        ]
        for worker in workers
    ]

    assert [worker.returncode for worker in workers] == [0] * processes
    ids = [rid for output in outputs for rid in output]
    assert len(set(ids)) == processes * count and set(ids) <= set(server.recordings)
    assert server.rate_limited == 0
    busiest = most_in_any_window(paced_times(server), WINDOW)
    assert busiest <= PACE * WINDOW / 60 + BURST + 2, busiest
    record(
        "load_parallel_processes",
        processes=processes,
        uploads=processes * count,
        busiest_window=busiest,
        pace_per_window=PACE * WINDOW / 60,
        refused_429=server.rate_limited,
    )


def test_the_limiter_spaces_reservations_across_processes(tmp_path):
    # The algorithm alone, without HTTP: four processes reserve slots from one state file.
    script = textwrap.dedent(
        f"""
        import time
        from airflow_provider_siro.utils.rate_limit import RequestRateLimiter
        limiter = RequestRateLimiter("shared", 600, burst=3, directory={str(tmp_path)!r})
        for _ in range(15):
            print(limiter.reserve_slot())
        """
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(4)
    ]
    slots = sorted(float(v) for w in workers for v in w.communicate(timeout=60)[0].split())
    assert len(slots) == 60
    # 600 a minute is one slot every 0.1 s; past the burst of 3, no two slots are closer than that.
    gaps = [b - a for a, b in itertools.pairwise(slots[3:])]
    assert min(gaps) >= 0.1 - 1e-3
    assert most_in_any_window(slots, 1.0) <= 10 + 3


def test_the_limiter_rejects_a_nonsensical_rate(tmp_path):
    with pytest.raises(ValueError, match="per_minute must be > 0"):
        RequestRateLimiter("k", 0, directory=str(tmp_path))
    with pytest.raises(ValueError, match="burst must be >= 1"):
        RequestRateLimiter("k", 60, burst=0, directory=str(tmp_path))
