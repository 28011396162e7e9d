"""Small helpers shared by the upload operator's tests (test_operator, test_bad_input, test_example_dags)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from airflow_provider_siro.testing import OfflineSiro


def task_instances(dag_run: Any) -> dict[tuple[str, int], Any]:
    """A run's task instances by ``(task_id, map_index)``."""
    return {(ti.task_id, ti.map_index): ti for ti in dag_run.get_task_instances()}


def return_value(dag_run: Any, task_id: str, map_index: int = -1) -> Any:
    """What a task pushed as its XCom ``return_value``, read back as a downstream task would."""
    return task_instances(dag_run)[(task_id, map_index)].xcom_pull(task_ids=task_id, map_indexes=map_index)


def write_audio(path: Path, size: int = 50_000) -> str:
    """Fill ``path`` with ``size`` random bytes; return their sha256."""
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def endpoints(server: OfflineSiro) -> list[str]:
    """The server's request log as endpoint names, in arrival order."""
    return [request.endpoint for request in server.requests]


def upload_out_of_band(server: OfflineSiro, data: bytes, file_type: str = "wav") -> str:
    """Upload audio the way a recorder app would, outside Airflow, and return its ``downloadUrl``.

    Plain ``requests`` on purpose: going through the provider's hook would register the URL's
    signature with Airflow's secrets masker in this process, and a test of the operator's own masking
    would then pass without it.
    """
    session = requests.Session()
    session.headers["User-Agent"] = "recorder-app/1.0"
    answer = session.post(
        f"{server.url}/v1/core/recordings/signed-urls",
        json={"fileType": file_type, "fileSize": len(data)},
        headers={"x-siro-auth-token": server.issue_access_token()},
        timeout=10,
    )
    answer.raise_for_status()
    signed = answer.json()["data"]
    session.put(
        signed["uploadUrl"], data=data, headers=signed["uploadHeaders"], timeout=10
    ).raise_for_status()
    server.clear_requests()
    return signed["downloadUrl"]


def create_lookalike(server: OfflineSiro, title: str, user_email: str) -> str:
    """A recording another client made a moment ago with the same title and user as a task's (from the
    Siro app, say): what a lost create's look-up must not mistake for the only match. Returns its ID."""
    from airflow_provider_siro.hooks.siro import SiroHook
    from airflow_provider_siro.payload import validate_recording_fields

    url = upload_out_of_band(server, b"\xff\xfb" * 5000, "mp3")
    return SiroHook().create_recording(
        url, validate_recording_fields("mp3", title=title, user_email=user_email)
    )


def race_for_one_source(
    make_ledger: Callable[[int], Any], source_path: str, conn_id: str | None
) -> list[str]:
    """Eight tries claim one source at the same instant through ledgers from ``make_ledger(i)``.

    The one that gets the claim "uploads" for a while, then records ``rec-from-the-winner``; the others
    must wait and then find that ID. Returns ``"claimed"`` for the winner, the ID each other try found.
    """
    from airflow_provider_siro.utils.ledger import Claim
    from airflow_provider_siro.utils.sources import locate_source

    source = locate_source(source_path, conn_id)
    ledgers = [make_ledger(i) for i in range(8)]
    start = threading.Barrier(len(ledgers))
    outcomes: list[str] = []

    def one(ledger: Any) -> None:
        start.wait()
        found = ledger.acquire(source)
        if isinstance(found, Claim):
            outcomes.append("claimed")
            time.sleep(0.5)  # the others look at the claim meanwhile
            ledger.record_created(found, source, "rec-from-the-winner")
        else:
            outcomes.append(found.recording_id)

    threads = [threading.Thread(target=one, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@contextlib.contextmanager
def fails_now(kind: type[BaseException]) -> Iterator[SimpleNamespace]:
    """Expect an operator's ``execute`` to fail the task at once: an ``AirflowFailException`` whose cause
    is the provider's ``kind`` error (the operators' mapping of ``retryable`` False). ``.value`` is that
    cause, like ``pytest.raises(kind).value``."""
    from airflow_provider_siro.compat import AirflowFailException

    found = SimpleNamespace(value=None)
    with pytest.raises(AirflowFailException) as raised:
        yield found
    assert isinstance(raised.value.__cause__, kind), repr(raised.value.__cause__)
    found.value = raised.value.__cause__
