"""The upload ledger: a source already uploaded is not uploaded again, across re-runs and concurrent
runs; a changed file under the same path is; an ambiguous create is never guessed at.

Real DAG runs (``dag.test()`` on the SQLite metadata DB) against the offline Siro server over HTTP,
with the ledger in a local folder. The same on moto's S3 is in test_object_storage.py.
"""

from __future__ import annotations

import re
import threading

import pytest
from upload_support import endpoints, race_for_one_source, return_value, task_instances, write_audio

from airflow_provider_siro.utils.ledger import Claim, UploadLedger
from airflow_provider_siro.utils.sources import locate_source


def ledger_of(path, conn_id: str = "siro_default") -> UploadLedger:
    """The ledger at ``path`` as an upload through ``conn_id`` sees it (the destination from the real hook)."""
    from airflow_provider_siro.hooks.siro import SiroHook

    return UploadLedger(str(path), destination=SiroHook(conn_id).destination())


def logical_date():
    import pendulum

    return pendulum.datetime(2026, 3, 2, tz="UTC")


def test_a_cleared_and_rerun_upload_creates_nothing_and_returns_the_same_id(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    write_audio(audio, 60_000)
    conf = {"source_path": str(audio), "ledger_path": str(ledger)}

    first = run_dag("siro_test_ledger_single", conf, logical_date=logical_date())
    first_id = return_value(first, "upload")
    siro_server.clear_requests()
    # dag.test() on the same logical date clears the run's task instances and runs them again.
    again = run_dag("siro_test_ledger_single", conf, logical_date=logical_date())

    assert (first.state, again.state) == ("success", "success")
    assert return_value(again, "upload") == first_id
    assert list(siro_server.recordings) == [first_id]
    assert siro_server.requests == []  # not one request: no token, no signed URL, no bytes
    assert f"is already Siro recording {first_id}" in capfd.readouterr().out


def test_a_changed_file_under_the_same_path_is_uploaded_once_more(
    siro_server, siro_connection, run_dag, tmp_path
):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    write_audio(audio, 60_000)
    conf = {"source_path": str(audio), "ledger_path": str(ledger)}
    first_id = return_value(run_dag("siro_test_ledger_single", conf, logical_date=logical_date()), "upload")

    changed = write_audio(audio, 61_000)  # the sync step delivered a new version of the call
    second_id = return_value(run_dag("siro_test_ledger_single", conf, logical_date=logical_date()), "upload")
    third_id = return_value(run_dag("siro_test_ledger_single", conf, logical_date=logical_date()), "upload")

    assert first_id != second_id == third_id
    assert sorted(siro_server.recordings) == sorted([first_id, second_id])
    assert siro_server.recordings[second_id].sha256 == changed


def test_a_create_whose_answer_is_lost_is_found_in_siro_in_the_same_try_and_not_uploaded_again(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    digest = write_audio(audio, 30_000)
    conf = {"source_path": str(audio), "ledger_path": str(ledger)}
    # The gateway fails after Siro created the recording: the answer is lost.
    siro_server.add_fault("create_recording", drop="after")

    dag_run = run_dag("siro_test_ledger_single", conf, logical_date=logical_date())

    ti = task_instances(dag_run)[("upload", -1)]
    (created,) = siro_server.recordings.values()
    assert (ti.state, ti.try_number) == ("success", 1)
    assert return_value(dag_run, "upload") == created.id and created.sha256 == digest
    entry = ledger_of(ledger).lookup(locate_source(str(audio)))
    assert entry is not None and (entry.status, entry.recording_id) == ("reconciled", created.id)
    assert f"found Siro recording {created.id}, made by that call" in capfd.readouterr().out

    siro_server.clear_requests()
    rerun = run_dag("siro_test_ledger_single", conf, logical_date=logical_date())
    assert return_value(rerun, "upload") == created.id
    assert siro_server.requests == [] and len(siro_server.recordings) == 1


def test_a_create_that_never_reached_siro_is_uploaded_again_in_the_same_try(
    siro_server, siro_connection, run_dag, tmp_path
):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    digest = write_audio(audio, 30_000)
    conf = {"source_path": str(audio), "ledger_path": str(ledger)}
    siro_server.add_fault("create_recording", drop="before")  # Siro never saw it

    dag_run = run_dag("siro_test_ledger_single", conf, logical_date=logical_date())

    (recording,) = siro_server.recordings.values()
    assert task_instances(dag_run)[("upload", -1)].try_number == 1
    assert return_value(dag_run, "upload") == recording.id and recording.sha256 == digest
    assert endpoints(siro_server).count("list_recordings") == 3  # the default settling wait: 3 reads


def test_the_settling_wait_is_the_operators_reconcile_polls(siro_server, siro_connection, run_dag, tmp_path):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    write_audio(audio, 30_000)
    siro_server.add_fault("create_recording", drop="before")  # Siro never saw it

    dag_run = run_dag(
        "siro_test_ledger_single_settle_5", {"source_path": str(audio), "ledger_path": str(ledger)}
    )

    (recording,) = siro_server.recordings.values()
    assert return_value(dag_run, "upload") == recording.id
    calls = endpoints(siro_server)
    assert calls.count("list_recordings") == 5  # reconcile_polls=5, then uploaded again
    assert calls.index("list_recordings") > calls.index("create_recording")
    assert calls.count("create_recording") == 2


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"reconcile_polls": 0}, "reconcile_polls must be a whole number >= 1, got 0"),
        ({"reconcile_polls": 2.5}, "reconcile_polls must be a whole number >= 1, got 2.5"),
        ({"reconcile_interval": -1}, "reconcile_interval must be a number of seconds >= 0, got -1"),
    ],
)
def test_a_bad_settling_wait_is_refused_when_the_dag_is_parsed(arguments, problem):
    from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

    with pytest.raises(ValueError, match=re.escape(problem)):
        SiroUploadRecordingOperator(task_id="upload", source_path="/calls/a.mp3", **arguments)


def test_two_recordings_that_match_a_lost_create_fail_the_task_naming_both(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    from upload_support import create_lookalike

    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    write_audio(audio, 30_000)
    conf = {"source_path": str(audio), "ledger_path": str(ledger)}
    # Someone uploaded a recording with the same title a moment ago (from the Siro app, say).
    earlier = create_lookalike(siro_server, "call.mp3", "rep@example.com")
    siro_server.add_fault("create_recording", drop="after")

    dag_run = run_dag("siro_test_ledger_single", conf, logical_date=logical_date())

    ti = task_instances(dag_run)[("upload", -1)]
    assert (ti.state, ti.try_number) == ("failed", 1)
    assert len(siro_server.recordings) == 2
    (lost,) = [rid for rid in siro_server.recordings if rid != earlier]
    out = capfd.readouterr().out
    assert "Siro has 2 recordings it may have made" in out
    assert earlier in out and lost in out
    entry = ledger_of(ledger).lookup(locate_source(str(audio)))
    assert entry is not None and entry.status == "ambiguous" and set(entry.candidates) == {earlier, lost}

    # Settled by hand with the right one, the next run returns it and sends nothing.
    assert ledger_of(ledger).settle(str(audio), lost) == 1
    siro_server.clear_requests()
    settled = run_dag("siro_test_ledger_single", conf, logical_date=logical_date())
    assert return_value(settled, "upload") == lost and siro_server.requests == []


def test_of_eight_tries_racing_for_one_source_one_uploads_and_seven_wait_for_its_id(tmp_path):
    audio = tmp_path / "call.mp3"
    write_audio(audio, 1000)
    outcomes = race_for_one_source(
        lambda i: UploadLedger(str(tmp_path / "ledger"), owner=f"try {i}", poll_interval=0.01),
        str(audio),
        None,
    )

    assert sorted(outcomes) == ["claimed"] + ["rec-from-the-winner"] * 7


def test_a_claim_whose_write_was_retried_after_a_lost_answer_is_still_this_tries(tmp_path):
    # An object store's client retries a conditional PUT whose answer was lost; the retry meets the
    # object the first attempt wrote and reports "already exists". The try must know its own claim
    # instead of waiting claim_timeout (an hour) for itself. A local folder stands in for the store.
    audio = tmp_path / "call.mp3"
    write_audio(audio, 1000)
    ledger = UploadLedger(str(tmp_path / "ledger"), owner="the only try", claim_timeout=3600)
    write_then_report_conflict = ledger.store.create

    def create(rel: str, data: bytes) -> bool:
        write_then_report_conflict(rel, data)
        return False  # what s3fs / gcsfs say after a retried If-None-Match / ifGenerationMatch PUT

    ledger.store.create = create  # type: ignore[method-assign]
    source = locate_source(str(audio), None)
    claim = ledger.acquire(source, stop=_stop_after(5.0))

    assert isinstance(claim, Claim) and ledger.holds(claim)
    # Another try's claim that exists is still respected: it waits (here: until stopped).
    other = UploadLedger(str(tmp_path / "ledger"), owner="another try", poll_interval=0.01)
    with pytest.raises(TimeoutError):
        other.acquire(source, stop=_stop_after(0.2))


def _stop_after(seconds: float) -> threading.Event:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return stop
