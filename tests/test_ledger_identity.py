"""The ledger is right about whose recording it is (issue 18): an entry names its destination (the Siro
account), one file is one identity however it is named, an entry write that fails after Siro answered
loses nothing, and a damaged entry is named instead of guessed around.

Real DAG runs (``dag.test()`` on the SQLite metadata DB) against the offline Siro server over HTTP,
with the ledger in a local folder.
"""

from __future__ import annotations

import json
import os
import threading

import pendulum
from reliability_report import record
from upload_support import endpoints, return_value, task_instances, write_audio

from airflow_provider_siro.hooks.siro import SiroHook
from airflow_provider_siro.utils import ledger as ledger_module
from airflow_provider_siro.utils.ledger import Claim, Holder, UploadLedger
from airflow_provider_siro.utils.sources import locate_source


def day(n: int) -> pendulum.DateTime:
    return pendulum.datetime(2026, 3, n, tz="UTC")


def test_one_file_through_two_accounts_is_two_recordings_and_a_rotated_token_is_the_same_account(
    siro_server, run_dag, tmp_path, monkeypatch
):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    write_audio(audio, 40_000)
    # Account A: a pasted token naming its account; account B: tokens minted for an OAuth app's user;
    # account A again, with a token minted since (the old one rotated out).
    a = siro_server.connection(account="rep-a@example.com")
    a_rotated = siro_server.connection(account="rep-a@example.com")
    assert a["password"] != a_rotated["password"]
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_ACCOUNT_A", json.dumps(a))
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_ACCOUNT_B", json.dumps(siro_server.connection(oauth=True)))
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_ACCOUNT_A_ROTATED", json.dumps(a_rotated))

    dag_run = run_dag(
        "siro_test_ledger_accounts",
        {"source_path": str(audio), "ledger_path": str(ledger)},
        logical_date=day(2),
    )

    assert dag_run.state == "success"
    as_a, as_b, again = (return_value(dag_run, f"as_{name}") for name in ("a", "b", "a_rotated"))
    assert as_a != as_b and again == as_a
    assert sorted(siro_server.recordings) == sorted([as_a, as_b])
    destinations = {SiroHook(f"siro_account_{n}").destination() for n in ("a", "b", "a_rotated")}
    assert len(destinations) == 2
    for destination in destinations:  # no token in what identifies a destination
        assert a["password"] not in destination and a_rotated["password"] not in destination
    record("ledger_identity", two_accounts_recordings=len(siro_server.recordings))


def test_a_symlink_a_double_slash_a_dot_and_a_hard_link_are_one_file_and_one_recording(
    siro_server, siro_connection, run_dag, tmp_path
):
    folder = tmp_path / "calls"
    folder.mkdir()
    audio, ledger = folder / "call.mp3", tmp_path / "ledger"
    digest = write_audio(audio, 30_000)
    (tmp_path / "link.mp3").symlink_to(audio)
    os.link(audio, tmp_path / "hard.mp3")
    names = [
        str(audio),
        str(tmp_path / "link.mp3"),
        "/" + str(audio),  # //tmp/.../call.mp3
        str(folder / "." / "call.mp3"),
        str(tmp_path / "hard.mp3"),
    ]

    ids = [
        return_value(
            run_dag(
                "siro_test_ledger_single",
                {"source_path": name, "ledger_path": str(ledger)},
                logical_date=day(n),
            ),
            "upload",
        )
        for n, name in enumerate(names, start=2)
    ]

    (recording,) = siro_server.recordings.values()
    assert ids == [recording.id] * len(names) and recording.sha256 == digest
    record("ledger_identity", one_file_names=len(names), one_file_recordings=len(siro_server.recordings))


def test_one_file_listed_under_several_names_in_one_bulk_task_is_uploaded_once(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    audio, other, ledger = tmp_path / "call.mp3", tmp_path / "other.mp3", tmp_path / "ledger"
    digest = write_audio(audio, 30_000)
    write_audio(other, 20_000)
    (tmp_path / "link.mp3").symlink_to(audio)
    os.link(audio, tmp_path / "hard.mp3")
    names = [str(audio), str(tmp_path / "link.mp3"), str(tmp_path / "hard.mp3"), str(audio), str(other)]

    dag_run = run_dag("siro_test_ledger_bulk", {"source_paths": names, "ledger_path": str(ledger)})

    ids = return_value(dag_run, "upload_list")
    assert dag_run.state == "success" and len(siro_server.recordings) == 2
    (call,) = [r for r in siro_server.recordings.values() if r.sha256 == digest]
    assert {name: ids[name] for name in names[:4]} == dict.fromkeys(names[:4], call.id)
    assert ids[str(other)] != call.id
    assert "Uploading 2 of 2 files to Siro" in capfd.readouterr().out


def test_a_failed_entry_write_after_the_201_names_the_id_and_leaves_the_claim_saying_the_create_was_sent(
    siro_server, siro_connection, run_dag, tmp_path, monkeypatch, capfd, caplog
):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    write_audio(audio, 30_000)
    conf = {"source_path": str(audio), "ledger_path": str(ledger)}
    writes = []
    real_write = ledger_module._LocalStore.write

    def failing_write(self, rel: str, data: bytes) -> None:
        if rel.endswith(".json"):  # entries only: claims still work
            writes.append(rel)
            raise OSError(5, "Input/output error")
        real_write(self, rel, data)

    monkeypatch.setattr(ledger_module._LocalStore, "write", failing_write)
    first = run_dag("siro_test_ledger_single", conf, logical_date=day(2), run_after=day(2))
    monkeypatch.setattr(ledger_module._LocalStore, "write", real_write)

    (created,) = siro_server.recordings.values()
    ti = task_instances(first)[("upload", -1)]
    assert (ti.state, ti.try_number) == ("failed", 1)  # not retried
    first_tries = ti.try_number
    assert len(writes) == ledger_module.ENTRY_WRITE_ATTEMPTS  # the write was retried first
    out = capfd.readouterr().out
    where = UploadLedger(str(ledger), destination=SiroHook().destination()).entry_location(
        locate_source(str(audio))
    )
    assert (
        f"Siro recording {created.id} is this source's, but its ledger entry {where} could not be written"
        in out
    )

    # The claim stays and says the create call was sent: a later try takes it as ambiguous, never as free.
    (claim,) = [n for n in os.listdir(os.path.dirname(where)) if ".claim-" in n]
    with open(os.path.join(os.path.dirname(where), claim)) as file:
        assert json.load(file)["stage"] == "creating"

    # The same task instance run again (the same run ID: dag.test() on the same dates): it takes that claim at once as
    # ambiguous, not after claim_timeout (an hour), finds the recording in Siro and creates nothing.
    siro_server.clear_requests()
    capfd.readouterr()
    rerun = run_dag("siro_test_ledger_single", conf, logical_date=day(2), run_after=day(2))

    out = capfd.readouterr().out
    assert rerun.state == "success" and return_value(rerun, "upload") == created.id
    assert list(siro_server.recordings) == [created.id]
    assert "create_recording" not in endpoints(siro_server) and "upload_put" not in endpoints(siro_server)
    logged = caplog.text
    assert "waiting for its result" not in logged and "that try is over" in logged
    entry = UploadLedger(str(ledger), destination=SiroHook().destination()).lookup(locate_source(str(audio)))
    assert entry is not None and (entry.status, entry.recording_id) == ("reconciled", created.id)
    record(
        "ledger_identity",
        failed_write_tries=first_tries,
        failed_write_rerun_created=len(siro_server.recordings) - 1,
        failed_write_rerun_waited_claim_timeout="waiting for its result" in logged,
    )


def test_a_try_that_took_an_ambiguous_claim_and_ended_without_an_entry_leaves_the_source_ambiguous(tmp_path):
    # Try 1 sent the create call and could not write its entry; try 2 took its claim as ambiguous and
    # could not write an entry either (the store still failing). Try 3 must still see an ambiguous
    # source (and how to look it up in Siro), never a free one: that would upload the call again.
    audio = tmp_path / "call.mp3"
    write_audio(audio, 1000)
    source = locate_source(str(audio), None)
    sent_at, body = "2026-03-05T10:00:00+00:00", {"title": "call.mp3", "userEmail": "rep@example.com"}

    def ledger_of(number: int) -> UploadLedger:
        holder = Holder("siro_test_ledger_single", "upload", "manual__1", -1, number)
        return UploadLedger(str(tmp_path / "ledger"), holder=holder, claim_timeout=3600)

    def try_(number: int) -> Claim:
        stop = threading.Event()
        ceiling = threading.Timer(60.0, stop.set)  # a try of the same instance must not wait at all
        ceiling.start()
        try:
            claim = ledger_of(number).acquire(source, stop)
        finally:
            ceiling.cancel()
        assert isinstance(claim, Claim)
        return claim

    first = try_(1)
    assert first.prior is None
    ledger_of(1).mark_sending(first, source, body, sent_at)
    assert try_(2).prior is not None

    third = try_(3)

    assert third.prior is not None and third.prior.status == "ambiguous"
    assert (third.prior.sent_at, dict(third.prior.body)) == (sent_at, body)
    records = UploadLedger(str(tmp_path / "ledger")).find(str(audio))
    assert records and {record.status for record in records} == {"ambiguous (claim)"}


def test_a_corrupt_entry_fails_the_task_at_once_naming_it_and_sends_nothing(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    write_audio(audio, 30_000)
    conf = {"source_path": str(audio), "ledger_path": str(ledger)}
    run_dag("siro_test_ledger_single", conf, logical_date=day(2))
    where = UploadLedger(str(ledger), destination=SiroHook().destination()).entry_location(
        locate_source(str(audio))
    )
    with open(where, "w") as file:
        file.write('{"status": "crea')  # a disk that filled up mid-write, an editor, a bad sync
    siro_server.clear_requests()
    capfd.readouterr()

    dag_run = run_dag("siro_test_ledger_single", conf, logical_date=day(3))

    ti = task_instances(dag_run)[("upload", -1)]
    assert (ti.state, ti.try_number) == ("failed", 1)  # retries=3, none taken
    assert siro_server.requests == []
    out = capfd.readouterr().out
    assert f"the upload ledger's entry {where} is damaged: it is not JSON" in out
    assert f"python -m airflow_provider_siro ledger forget {ledger} {where} --conn-id aws_default" in out
    record(
        "ledger_identity", corrupt_entry_tries=ti.try_number, corrupt_entry_requests=len(siro_server.requests)
    )


def test_a_corrupt_entry_in_a_bulk_task_fails_it_before_any_request(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    files = [tmp_path / f"call-{i}.mp3" for i in range(3)]
    for file in files:
        write_audio(file, 20_000)
    ledger = tmp_path / "ledger"
    conf = {"source_paths": [str(f) for f in files], "ledger_path": str(ledger)}
    run_dag("siro_test_ledger_bulk", conf, logical_date=day(2))
    where = UploadLedger(str(ledger), destination=SiroHook().destination()).entry_location(
        locate_source(str(files[1]))
    )
    with open(where, "w") as file:
        json.dump({"status": "created"}, file)  # no recording ID
    siro_server.clear_requests()
    capfd.readouterr()

    dag_run = run_dag("siro_test_ledger_bulk", conf, logical_date=day(3))

    ti = task_instances(dag_run)[("upload_list", -1)]
    assert (ti.state, ti.try_number) == ("failed", 1)
    assert siro_server.requests == []
    assert (
        f"the upload ledger's entry {where} is damaged: it is created without a recording ID"
        in capfd.readouterr().out
    )


def test_a_bulk_rerun_with_every_file_in_the_ledger_logs_no_upload_and_no_rate(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    files = [tmp_path / f"call-{i}.mp3" for i in range(3)]
    for file in files:
        write_audio(file, 200_000)
    conf = {"source_paths": [str(f) for f in files], "ledger_path": str(tmp_path / "ledger")}
    run_dag("siro_test_ledger_bulk", conf, logical_date=day(2))
    first = capfd.readouterr().out
    assert "Uploading 3 of 3 files to Siro (0.6 MB)" in first
    assert "3 of 3 files done: 3 uploaded (0.6 of 0.6 MB" in first

    rerun = run_dag("siro_test_ledger_bulk", conf, logical_date=day(3))
    out = capfd.readouterr().out

    assert rerun.state == "success"
    assert "Nothing to upload: all 3 files are already recorded in the ledger" in out
    assert "Uploading" not in out and "MB/s" not in out
