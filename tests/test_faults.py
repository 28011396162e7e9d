"""Uploads under faults: nothing lost, nothing created twice, no byte changed.

Two hundred audio files go through the provider's upload path (``SiroHook.upload_audio``, then
``create_recording``, as the operator runs them) from eight worker threads, each file a "task" with
Airflow's semantics: a :class:`~airflow_provider_siro.exceptions.SiroApiError` is retried as a new
try (up to three), anything that is an ``AirflowFailException`` fails the task at once. Meanwhile the
offline server injects, at random but from a fixed seed, every fault it knows (429 with and without
``Retry-After``, 500, 502, 503 with and without ``Retry-After``, 504, connections dropped before,
during and after a request, answers slower than the client's timeout), and a chaos thread expires every
access token and every signed URL again and again, so tokens run out mid-upload and signed URLs expire
before their PUT.

Afterwards the server's records are checked against the sources: a task that succeeded has exactly one
recording, holding exactly its bytes; a task that failed did so loudly, and only where the create call
became ambiguous may a recording exist without a task that knows its ID. Those ambiguous ones are then
settled the way the error message tells a user to (look in Siro, re-run only what is missing), after
which every source has exactly one recording.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from reliability_report import record

from airflow_provider_siro.exceptions import SiroAmbiguousCreateError, SiroApiError
from airflow_provider_siro.testing import OfflineSiro
from airflow_provider_siro.testing.server import FAULT_KINDS

SEED = 20261125
UPLOADS = 200
WORKERS = 8
TASK_TRIES = 3
FAULT_RATE = 0.12
TIMEOUT = 1.0  # the client's per-request timeout; a "slow" fault answers after 1.5 s


@dataclass
class Source:
    path: Path
    sha256: str


@dataclass
class Outcome:
    source: Source
    recording_id: str | None = None
    error: BaseException | None = None
    tries: int = 0


def make_sources(folder: Path, count: int, rng: random.Random) -> list[Source]:
    """``count`` files of random bytes, mostly small, every tenth over 1 MiB (a PUT of several reads)."""
    sources = []
    for index in range(count):
        size = rng.randint(1_500_000, 2_500_000) if index % 10 == 0 else rng.randint(2_000, 200_000)
        data = rng.randbytes(size)
        path = folder / f"call-{index:03d}.mp3"
        path.write_bytes(data)
        sources.append(Source(path, hashlib.sha256(data).hexdigest()))
    return sources


def run_task(source: Source) -> Outcome:
    """One upload task: what ``SiroUploadRecordingOperator.execute`` does, with Airflow's retry rules."""
    from airflow_provider_siro.hooks.siro import SiroHook
    from airflow_provider_siro.payload import validate_recording_fields

    outcome = Outcome(source)
    fields = validate_recording_fields("mp3", title=source.path.name, user_email="rep@example.com")
    size = source.path.stat().st_size
    for _ in range(TASK_TRIES):
        outcome.tries += 1
        hook = SiroHook()  # a new try is a new worker process: a new hook, a new connection pool
        try:
            download_url = hook.upload_audio(
                lambda: source.path.open("rb"), size, "mp3", label=source.path.name
            )
            outcome.recording_id = hook.create_recording(download_url, fields)
            outcome.error = None
            return outcome
        except SiroApiError as exc:
            outcome.error = exc
            if _fails_without_retry(exc):
                return outcome
        finally:
            hook.close()
    return outcome


def _fails_without_retry(exc: BaseException) -> bool:
    from airflow_provider_siro.exceptions import is_final

    return is_final(exc)


class Chaos(threading.Thread):
    """Expires every access token and every signed URL over and over while the uploads run."""

    def __init__(self, server: OfflineSiro) -> None:
        super().__init__(name="chaos", daemon=True)
        self.server = server
        self.done = threading.Event()
        self.token_expiries = 0
        self.url_expiries = 0

    def run(self) -> None:
        tick = 0
        while not self.done.wait(0.2):
            tick += 1
            self.server.expire_signed_urls()
            self.url_expiries += 1
            if tick % 3 == 0:
                self.server.expire_tokens()
                self.token_expiries += 1


def recordings_by_source(server: OfflineSiro, sources: list[Source]) -> dict[str, list]:
    """Each source's recordings, matched by the title the task gave them."""
    found: dict[str, list] = {source.path.name: [] for source in sources}
    for recording in server.recordings.values():
        found.setdefault(recording.body.get("title", "?"), []).append(recording)
    return found


@pytest.fixture
def faulty_siro(monkeypatch: pytest.MonkeyPatch):
    # Rate limits are their own test (test_rate_limit.py): here, neither side paces, so faults dominate.
    with OfflineSiro(seed=SEED, slow_delay=1.5, rate_limit=None) as server:
        monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(faulty_connection(server, TIMEOUT)))
        yield server


def faulty_connection(server: OfflineSiro, timeout: float) -> dict[str, Any]:
    return server.connection(
        oauth=True,
        timeout=timeout,
        retry_backoff=0.02,
        max_retry_wait=1.0,
        max_retries=6,
        max_requests_per_minute=0,
    )


def test_two_hundred_uploads_under_faults_lose_nothing_and_create_nothing_twice(
    faulty_siro, tmp_path, monkeypatch
):
    server = faulty_siro
    sources = make_sources(tmp_path, UPLOADS, random.Random(SEED))
    server.random_faults(seed=SEED, rate=FAULT_RATE)
    chaos = Chaos(server)
    chaos.start()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            outcomes = list(pool.map(run_task, sources))
    finally:
        chaos.done.set()
        chaos.join()
    injected = Counter(server.fault_counts)
    server.clear_faults()
    log = server.requests

    # The run really was hostile: every kind of fault was injected, tokens and signed URLs expired
    # mid-run, and the provider minted and signed again because of it.
    assert set(injected) == set(FAULT_KINDS), injected
    assert chaos.token_expiries >= 3 and chaos.url_expiries >= 3
    mints = sum(1 for r in log if r.endpoint == "mint_token" and r.status == 201)
    refused_puts = sum(1 for r in log if r.endpoint == "upload_put" and r.status in (400, 403))
    assert mints > chaos.token_expiries // 2
    assert refused_puts > 0  # PUTs to signed URLs that had expired, each followed by a fresh URL

    found = recordings_by_source(server, sources)
    assert set(found) == {s.path.name for s in sources}, "a recording that belongs to no source"
    succeeded = [o for o in outcomes if o.recording_id is not None]
    ambiguous = [o for o in outcomes if isinstance(o.error, SiroAmbiguousCreateError)]
    other_failures = [o for o in outcomes if o.recording_id is None and o not in ambiguous]

    for outcome in succeeded:
        (recording,) = found[outcome.source.path.name]  # exactly one
        assert recording.id == outcome.recording_id
        assert recording.sha256 == outcome.source.sha256  # the bytes Siro holds are the source's
    for outcome in ambiguous:
        # Failed loudly and for good (Airflow does not retry it), saying why; a recording may exist,
        # but never two.
        assert _fails_without_retry(outcome.error)
        assert "may or may not exist" in str(outcome.error)
        assert len(found[outcome.source.path.name]) <= 1
    for outcome in other_failures:
        # Any other failure is loud too (Airflow marks the task failed), and created nothing.
        assert outcome.error is not None
        assert found[outcome.source.path.name] == []
    duplicated = sum(1 for recordings in found.values() if len(recordings) > 1)
    corrupted = sum(
        1 for source in sources for recording in found[source.path.name] if recording.sha256 != source.sha256
    )
    assert duplicated == 0 and corrupted == 0
    assert len(succeeded) + len(ambiguous) + len(other_failures) == UPLOADS

    # Settle what failed the way the error tells a user to: look in Siro, re-run what is missing. No
    # faults now, and a timeout no loaded machine reaches: a slow answer here is not one of the faults.
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(faulty_connection(server, 60.0)))
    rerun = [o.source for o in ambiguous + other_failures if not found[o.source.path.name]]
    settled = [run_task(source) for source in rerun]
    assert all(o.recording_id for o in settled), [repr(o.error) for o in settled if not o.recording_id]
    final = recordings_by_source(server, sources)
    assert all(len(final[s.path.name]) == 1 for s in sources), "a source without exactly one recording"
    assert all(final[s.path.name][0].sha256 == s.sha256 for s in sources)

    record(
        "faults",
        uploads=UPLOADS,
        workers=WORKERS,
        seed=SEED,
        fault_rate=FAULT_RATE,
        faults_injected=sum(injected.values()),
        faults_by_kind=dict(sorted(injected.items())),
        token_expiries=chaos.token_expiries,
        signed_url_expiries=chaos.url_expiries,
        tokens_minted=mints,
        refused_puts=refused_puts,
        requests=len(log),
        task_retries=sum(o.tries - 1 for o in outcomes),
        succeeded_first_pass=len(succeeded),
        ambiguous_failed_loudly=len(ambiguous),
        ambiguous_with_recording=sum(1 for o in ambiguous if found[o.source.path.name]),
        other_failed_loudly=len(other_failures),
        rerun_after_check=len(rerun),
        recordings_expected=UPLOADS,
        recordings_created=sum(len(r) for r in final.values()),
        duplicated=duplicated,
        corrupted=corrupted,
    )
