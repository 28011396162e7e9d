"""The ledger command (``python -m airflow_provider_siro ledger ...``, ``airflow siro ledger ...``) round
trip: real uploads (``dag.test()`` on the SQLite metadata DB) to the offline Siro server with a ledger
in a local folder; the command run as a user runs it, in a subprocess, on the ledger those runs wrote.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pendulum
import pytest
from upload_support import create_lookalike, return_value, task_instances, write_audio

from airflow_provider_siro.cli.ledger import main
from airflow_provider_siro.utils.ledger import UploadLedger
from airflow_provider_siro.utils.sources import locate_source

DAG_ID = "siro_test_ledger_single"


def day(n: int) -> Any:
    return pendulum.datetime(2026, 3, n, tz="UTC")


def ledger_command(*words: str, airflow: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``python -m airflow_provider_siro ledger WORDS`` (or ``airflow siro ledger WORDS``) with this
    session's Airflow home and connections (conftest's environment)."""
    prefix = ["-m", "airflow", "siro"] if airflow else ["-m", "airflow_provider_siro"]
    return subprocess.run(
        [sys.executable, *prefix, "ledger", *words],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )


def entry_location(ledger: Path, audio: Path) -> str:
    from airflow_provider_siro.hooks.siro import SiroHook

    found = UploadLedger(str(ledger), destination=SiroHook().destination())
    return found.entry_location(locate_source(str(audio)))


def listed(ledger: Path, *more: str) -> list[dict[str, Any]]:
    done = ledger_command("list", str(ledger), "--json", *more)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def test_list_settle_by_reconciling_and_forget_round_trip(siro_server, siro_connection, run_dag, tmp_path):
    ledger = tmp_path / "ledger"
    first, second = tmp_path / "call-1.mp3", tmp_path / "call-2.mp3"
    write_audio(first, 40_000)
    write_audio(second, 30_000)

    # A plain upload: `list` shows it created, with its ID, source and entry location.
    first_id = return_value(
        run_dag(DAG_ID, {"source_path": str(first), "ledger_path": str(ledger)}), "upload"
    )
    table = ledger_command("list", str(ledger))
    assert table.returncode == 0, table.stderr
    (header, row) = table.stdout.splitlines()
    assert header.split()[:3] == ["STATUS", "RECORDING", "ID"]
    assert row.split() == ["created", first_id, f"file://{first}", entry_location(ledger, first)]

    # An ambiguous entry: Siro creates the recording and the answer is lost, and Siro's list is down
    # while the task runs, so no try can look it up.
    siro_server.add_fault("create_recording", drop="after")
    siro_server.add_fault("list_recordings", status=400, times=None)
    conf = {"source_path": str(second), "ledger_path": str(ledger)}
    failed = run_dag(DAG_ID, conf, logical_date=day(2))
    assert task_instances(failed)[("upload", -1)].state == "failed"
    (lost,) = [rid for rid in siro_server.recordings if rid != first_id]
    (ambiguous,) = listed(ledger, "--status", "ambiguous")
    assert (ambiguous["status"], ambiguous["recording_id"]) == ("ambiguous", None)
    assert ambiguous["location"] == entry_location(ledger, second)
    assert [row["status"] for row in listed(ledger, "--status", "created")] == ["created"]

    # Siro's list is back: `settle --reconcile` finds the recording the lost call made.
    siro_server.clear_faults()
    settled = ledger_command("settle", str(ledger), str(second), "--reconcile")
    assert settled.returncode == 0, settled.stderr
    assert f"found Siro recording {lost}" in settled.stdout
    rows = {row["source"]: row for row in listed(ledger)}
    assert (rows[f"file://{second}"]["status"], rows[f"file://{second}"]["recording_id"]) == (
        "reconciled",
        lost,
    )

    # A re-run creates nothing and returns that ID.
    siro_server.clear_requests()
    rerun = run_dag(DAG_ID, conf, logical_date=day(3))
    assert return_value(rerun, "upload") == lost
    assert siro_server.requests == [] and len(siro_server.recordings) == 2

    # `forget`: the next run uploads the source again (one new recording).
    forgot = ledger_command("forget", str(ledger), str(first))
    assert forgot.returncode == 0, forgot.stderr
    assert f"Forgot {entry_location(ledger, first)} (created, Siro recording {first_id})" in forgot.stdout
    again = return_value(run_dag(DAG_ID, {"source_path": str(first), "ledger_path": str(ledger)}), "upload")
    assert again not in (first_id, lost) and len(siro_server.recordings) == 3
    assert {row["recording_id"] for row in listed(ledger)} == {again, lost}


def test_two_candidates_are_named_and_settled_with_the_recording_id(
    siro_server, siro_connection, run_dag, tmp_path
):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    write_audio(audio, 30_000)
    conf = {"source_path": str(audio), "ledger_path": str(ledger)}
    # A recording with the same title made a moment ago elsewhere, then the task's create answer is lost.
    earlier = create_lookalike(siro_server, "call.mp3", "rep@example.com")
    siro_server.add_fault("create_recording", drop="after")
    run_dag(DAG_ID, conf, logical_date=day(2))
    (lost,) = [rid for rid in siro_server.recordings if rid != earlier]
    where = entry_location(ledger, audio)

    refused = ledger_command("settle", str(ledger), where, "--reconcile")
    assert refused.returncode == 1
    assert f"{where}: Siro has 2 recordings" in refused.stderr
    assert earlier in refused.stderr and lost in refused.stderr
    # The command it names is one the CLI runs (ID filled in).
    (suggested,) = re.findall(r"`([^`]*)`", refused.stderr)
    words = shlex.split(suggested.replace("--recording-id ID", f"--recording-id {lost}"))
    assert words[:3] == ["python", "-m", "airflow_provider_siro"]
    done = subprocess.run(
        [sys.executable, *words[1:]], capture_output=True, text=True, env=os.environ.copy(), timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert f"Settled {where}: Siro recording {lost}" in done.stdout

    siro_server.clear_requests()
    settled = run_dag(DAG_ID, conf, logical_date=day(3))
    assert return_value(settled, "upload") == lost and siro_server.requests == []


def test_the_command_a_damaged_entrys_failure_prints_resets_it(
    siro_server, siro_connection, run_dag, tmp_path, capfd
):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    write_audio(audio, 30_000)
    conf = {"source_path": str(audio), "ledger_path": str(ledger)}
    first_id = return_value(run_dag(DAG_ID, conf), "upload")
    where = entry_location(ledger, audio)
    Path(where).write_text('{"status": "crea')
    capfd.readouterr()
    failed = run_dag(DAG_ID, conf, logical_date=day(2))
    assert task_instances(failed)[("upload", -1)].state == "failed"
    assert listed(ledger)[0]["status"] == "damaged"

    out = capfd.readouterr().out
    forget = next(c for c in re.findall(r"`([^`]*)`", out) if " ledger forget " in c)
    done = subprocess.run(
        [sys.executable, *shlex.split(forget)[1:]], capture_output=True, text=True, env=os.environ.copy()
    )
    assert done.returncode == 0, done.stderr
    assert listed(ledger) == []

    again = return_value(run_dag(DAG_ID, conf, logical_date=day(3)), "upload")
    assert again != first_id and len(siro_server.recordings) == 2


def test_show_prints_the_entry_without_credentials(siro_server, siro_connection, run_dag, tmp_path, capsys):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    write_audio(audio, 30_000)
    rid = return_value(run_dag(DAG_ID, {"source_path": str(audio), "ledger_path": str(ledger)}), "upload")
    where = entry_location(ledger, audio)
    capsys.readouterr()  # the run's own output

    assert main(["ledger", "show", str(ledger), str(audio)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["location"], shown["status"]) == (where, "created")
    assert shown["entry"]["recording_id"] == rid and shown["entry"]["source"] == f"file://{audio}"

    # An entry naming a signed URL or carrying a token (edited by hand, say) is shown without them.
    data = json.loads(Path(where).read_text())
    data.update(given="https://files.example.com/call.mp3?X-Amz-Signature=abc123", token="tok-123")
    Path(where).write_text(json.dumps(data))
    assert main(["ledger", "show", str(ledger), where]) == 0
    out = capsys.readouterr().out
    assert "abc123" not in out and "tok-123" not in out
    assert "https://files.example.com/call.mp3?<query removed>" in out


def test_a_bad_ledger_path_or_a_missing_entry_exits_non_zero_naming_it(tmp_path, capsys):
    missing = tmp_path / "no-such-ledger"
    done = ledger_command("list", str(missing))
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: no ledger at {missing}: {missing} does not exist"

    a_file = tmp_path / "call.mp3"
    write_audio(a_file, 100)
    with pytest.raises(SystemExit) as exited:
        main(["ledger", "list", str(a_file)])
    assert exited.value.code == f"error: no ledger at {a_file}: {a_file} is not a folder"

    ledger = tmp_path / "ledger"
    ledger.mkdir()
    for verb, more in (("show", []), ("forget", []), ("settle", ["--none"])):
        with pytest.raises(SystemExit) as exited:
            main(["ledger", verb, str(ledger), str(a_file), *more])
        assert str(exited.value.code).startswith(f"error: no entry for {a_file} in the ledger {ledger}")

    with pytest.raises(SystemExit) as exited:
        main(["ledger", "settle", str(ledger), str(a_file)])
    assert "settle needs exactly one of --recording-id ID" in str(exited.value.code)
    with pytest.raises(SystemExit) as exited:
        main(["ledger", "settle", str(ledger), str(a_file), "--none", "--recording-id", "rec_1"])
    assert "got --recording-id, --none" in str(exited.value.code)


@pytest.mark.airflow3
def test_airflow_siro_ledger_lists_and_settles_on_airflow_3(siro_server, siro_connection, run_dag, tmp_path):
    audio, ledger = tmp_path / "call.mp3", tmp_path / "ledger"
    write_audio(audio, 30_000)
    rid = return_value(run_dag(DAG_ID, {"source_path": str(audio), "ledger_path": str(ledger)}), "upload")

    table = ledger_command("list", str(ledger), airflow=True)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[-1].split() == [
        "created",
        rid,
        f"file://{audio}",
        entry_location(ledger, audio),
    ]
    missing = ledger_command("show", str(ledger), str(tmp_path / "other.mp3"), airflow=True)
    assert missing.returncode == 1
    assert f"error: no entry for {tmp_path / 'other.mp3'} in the ledger {ledger}" in missing.stderr
