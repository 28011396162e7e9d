"""``on_kill`` on the upload operators (issue 22): it stops the uploads in flight, leaves no ledger claim
behind, and never leaves a recording that Siro created without its ledger entry. Against the offline
Siro server over HTTP, with a real ledger folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from upload_support import write_audio

from airflow_provider_siro.compat import AirflowException
from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator, SiroUploadRecordingsOperator


class TaskInstance:
    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


def ledger_state(ledger: Path) -> tuple[list[str], dict[str, str]]:
    """The claim files left in the ledger, and recording ID -> status of its entries."""
    claims = sorted(p.name for p in ledger.rglob("*") if ".claim-" in p.name)
    entries = {}
    for path in ledger.rglob("*.json"):
        data = json.loads(path.read_text())
        entries[str(data["recording_id"])] = str(data["status"])
    return claims, entries


def kill_after_creates(operator: Any, monkeypatch: pytest.MonkeyPatch, creates: int) -> list[str]:
    """Call ``operator.on_kill()`` as the ``creates``-th create call returns (from the upload thread,
    as Airflow's signal handler would, in the middle of the batch). Returns the IDs created so far."""
    hook = operator.hook
    real = hook.create_recording
    created: list[str] = []

    def create_then_kill(*args: Any, **kwargs: Any) -> str:
        recording_id = real(*args, **kwargs)
        created.append(recording_id)
        if len(created) == creates:
            operator.on_kill()
        return recording_id

    monkeypatch.setattr(hook, "create_recording", create_then_kill)
    return created


def test_on_kill_during_a_bulk_upload_leaves_no_claim_and_no_unrecorded_recording(
    siro_server, siro_connection, tmp_path, monkeypatch
):
    paths = [str(tmp_path / f"call-{i:02d}.mp3") for i in range(12)]
    for path in paths:
        write_audio(Path(path), 4000)
    ledger = tmp_path / "ledger"

    def operator() -> SiroUploadRecordingsOperator:
        return SiroUploadRecordingsOperator(
            task_id="bulk",
            source_paths=paths,
            user_email="rep@example.com",
            max_concurrency=3,
            ledger_path=str(ledger),
        )

    killed = operator()
    kill_after_creates(killed, monkeypatch, creates=2)
    with pytest.raises(AirflowException, match="Stopped by on_kill after"):
        killed.execute(context={"ti": TaskInstance()})

    claims, entries = ledger_state(ledger)
    assert claims == []  # every stopped source's claim was released
    created = set(siro_server.recordings)
    assert 2 <= len(created) < len(paths)  # stopped part-way: the rest was never created
    # Every recording Siro made has its ledger entry, "created": none was cut half-way.
    assert entries == {recording_id: "created" for recording_id in created}

    # The retry uploads exactly what the killed try did not, and nothing twice.
    ids = operator().execute(context={"ti": TaskInstance()})
    assert sorted(ids) == paths
    assert len(siro_server.recordings) == len(paths)
    contents = {r.sha256 for r in siro_server.recordings.values()}
    assert contents == {hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}
    assert ledger_state(ledger)[0] == []


def test_on_kill_before_a_single_upload_sends_nothing_and_releases_its_claim(
    siro_server, siro_connection, tmp_path, monkeypatch
):
    source = tmp_path / "call.mp3"
    write_audio(source, 4000)
    ledger = tmp_path / "ledger"
    operator = SiroUploadRecordingOperator(
        task_id="one", source_path=str(source), user_email="rep@example.com", ledger_path=str(ledger)
    )
    # Killed as the signed URLs come back: the bytes never go out.
    hook = operator.hook
    real = hook.get_signed_urls

    def signed_then_kill(*args: Any, **kwargs: Any) -> Any:
        answer = real(*args, **kwargs)
        operator.on_kill()
        return answer

    monkeypatch.setattr(hook, "get_signed_urls", signed_then_kill)
    with pytest.raises(Exception, match="the task is being killed"):
        operator.execute(context={"ti": TaskInstance()})

    assert siro_server.recordings == {}
    assert [r.endpoint for r in siro_server.requests if r.endpoint != "token"] == ["signed_urls"]
    assert ledger_state(ledger) == ([], {})
