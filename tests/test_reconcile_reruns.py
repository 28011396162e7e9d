"""Ambiguous creates reconciled in Siro through the operators (issue 19): within one try and across a
re-run, for the single and the bulk operator.

The offline server makes the ambiguity the way a gateway does: it creates the recording, then drops the
connection before answering (``drop="after"``). Across a re-run, the first run cannot look the recording
up because Siro's list endpoint is down (every list call answers 503) for all of that run's tries; the
ledger keeps the source ``ambiguous``. The list is back for a second ``dag.test()`` run, which finds the
recording from the ledger's entry and records it ``reconciled``, uploading nothing.

Real DAG runs (``dag.test()`` on the SQLite metadata DB) against the offline Siro server over HTTP, with
the ledger in a local folder.
"""

from __future__ import annotations

import os

import pendulum
from test_ledger import ledger_of
from upload_support import endpoints, return_value, task_instances, write_audio

from airflow_provider_siro.utils.sources import locate_source


def day(n: int) -> pendulum.DateTime:
    return pendulum.datetime(2026, 3, n, tz="UTC")


def status_of(ledger: object, path: str) -> tuple[str, str | None]:
    entry = ledger_of(ledger).lookup(locate_source(path))
    assert entry is not None, path
    return entry.status, entry.recording_id


def test_a_lost_create_is_reconciled_by_a_rerun_when_siro_could_not_be_asked_in_the_first(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    digest = write_audio(audio, 30_000)
    conf = {"source_path": str(audio), "ledger_path": str(ledger)}
    siro_server.add_fault("create_recording", drop="after")  # created, answer lost
    siro_server.add_fault("list_recordings", status=503, times=None)  # the list is down all run long

    first = run_dag("siro_test_ledger_single", conf, logical_date=day(2))

    ti = task_instances(first)[("upload", -1)]
    (created,) = siro_server.recordings.values()
    assert created.sha256 == digest
    assert ti.state == "failed" and ti.try_number == 4  # retries=3: each try asked Siro again, in vain
    assert endpoints(siro_server).count("create_recording") == 1  # never uploaded blindly again
    assert status_of(ledger, str(audio))[0] == "ambiguous"

    siro_server.clear_faults()
    siro_server.clear_requests()
    capfd.readouterr()
    second = run_dag("siro_test_ledger_single", conf, logical_date=day(3))

    assert second.state == "success"
    assert return_value(second, "upload") == created.id
    assert list(siro_server.recordings) == [created.id]  # exactly one recording in the end
    assert "create_recording" not in endpoints(siro_server) and "upload_put" not in endpoints(siro_server)
    assert status_of(ledger, str(audio)) == ("reconciled", created.id)
    assert f"call.mp3 is Siro recording {created.id} (found in Siro)" in capfd.readouterr().out


def make_calls(folder, count: int) -> dict[str, str]:
    """``count`` audio files; returns path -> sha256."""
    return {
        str(folder / f"call-{i}.mp3"): write_audio(folder / f"call-{i}.mp3", 20_000 + i) for i in range(count)
    }


def by_title(server) -> dict[str, list]:
    found: dict[str, list] = {}
    for recording in server.recordings.values():
        found.setdefault(recording.body["title"], []).append(recording)
    return found


def test_bulk_lost_creates_are_reconciled_within_the_same_try(
    siro_server, siro_connection, run_dag, tmp_path
):
    files = make_calls(tmp_path, 5)
    ledger = tmp_path / "ledger"
    siro_server.add_fault("create_recording", drop="after", times=2)

    dag_run = run_dag("siro_test_ledger_bulk", {"source_paths": list(files), "ledger_path": str(ledger)})

    ti = task_instances(dag_run)[("upload_list", -1)]
    assert (ti.state, ti.try_number) == ("success", 1)
    ids = return_value(dag_run, "upload_list")
    found = by_title(siro_server)
    assert len(siro_server.recordings) == len(files)
    for path, digest in files.items():
        (recording,) = found[os.path.basename(path)]  # exactly one each
        assert ids[path] == recording.id and recording.sha256 == digest
    statuses = sorted(status_of(ledger, path)[0] for path in files)
    assert statuses == ["created"] * 3 + ["reconciled"] * 2
    assert endpoints(siro_server).count("create_recording") == len(files)


def test_bulk_lost_create_is_reconciled_by_a_rerun_when_siro_could_not_be_asked_in_the_first(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    files = make_calls(tmp_path, 4)
    ledger = tmp_path / "ledger"
    conf = {"source_paths": list(files), "ledger_path": str(ledger)}
    siro_server.add_fault("create_recording", drop="after")
    siro_server.add_fault("list_recordings", status=503, times=None)

    first = run_dag("siro_test_ledger_bulk", conf, logical_date=day(2))

    ti = task_instances(first)[("upload_list", -1)]
    assert ti.state == "failed" and ti.try_number == 4
    assert len(siro_server.recordings) == len(files)
    assert endpoints(siro_server).count("create_recording") == len(files)  # the lost one: sent once
    (lost,) = [path for path in files if status_of(ledger, path)[0] == "ambiguous"]
    out = capfd.readouterr().out
    assert f"  - {lost}: " in out  # the task's failure names the source

    siro_server.clear_faults()
    siro_server.clear_requests()
    second = run_dag("siro_test_ledger_bulk", conf, logical_date=day(3))

    assert second.state == "success"
    ids = return_value(second, "upload_list")
    found = by_title(siro_server)
    assert len(siro_server.recordings) == len(files)
    for path, digest in files.items():
        (recording,) = found[os.path.basename(path)]
        assert ids[path] == recording.id and recording.sha256 == digest
    assert "create_recording" not in endpoints(siro_server) and "upload_put" not in endpoints(siro_server)
    assert status_of(ledger, lost) == ("reconciled", ids[lost])
    assert all(status_of(ledger, path)[0] == "created" for path in files if path != lost)


def test_with_reconcile_off_a_lost_create_fails_the_task_and_waits_for_a_person(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    write_audio(audio, 30_000)
    conf = {"source_path": str(audio), "ledger_path": str(ledger)}
    siro_server.add_fault("create_recording", drop="after")

    first = run_dag("siro_test_ledger_single_no_reconcile", conf, logical_date=day(2))
    rerun = run_dag("siro_test_ledger_single_no_reconcile", conf, logical_date=day(3))

    assert [task_instances(run)[("upload", -1)].state for run in (first, rerun)] == ["failed", "failed"]
    assert task_instances(first)[("upload", -1)].try_number == 1  # not retried
    assert len(siro_server.recordings) == 1  # never uploaded again
    assert "list_recordings" not in endpoints(siro_server)  # Siro was not asked
    assert status_of(ledger, str(audio))[0] == "ambiguous"
    assert "may or may not exist" in capfd.readouterr().out
