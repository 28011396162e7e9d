"""Reconciling ambiguous creates pays off under faults (issue 19): one bulk task of 200 files under the
reliability suite's fault mix, with reconcile on (the default) and off (the provider before it).

Each mode gets a fresh offline server with every fault kind it knows injected into 12 % of requests
(seeded), among them creates whose answer is lost: Siro created the recording and the connection
dropped (``drop-after``), a 500/502/504 after it acted, an answer slower than the client's timeout, or a
connection dropped before Siro saw the call (the client cannot tell these apart). The bulk task runs
in a real DAG run (``dag.test()``, ``retries=3``). Counted afterwards, from the server's records and the
ledger: the lost create answers, the sources that ended the run failed on ambiguity (their ledger entry
waits for a person), the recordings and their duplicates. Then the same DAG runs once more without
faults, as a user's re-run would: with reconcile on it settles what is left by itself; with it off the
ambiguous sources fail again until someone settles them by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pendulum
import pytest
from reliability_report import record
from test_bulk_faults import by_title, duplicated, make_files
from test_faults import FAULT_RATE, SEED, TIMEOUT, faulty_connection
from upload_support import return_value, task_instances

from airflow_provider_siro.testing import OfflineSiro
from airflow_provider_siro.testing.server import FAULT_KINDS
from airflow_provider_siro.utils.ledger import UploadLedger

FILES = 200
LOST_ANSWER_KINDS = frozenset({"drop-after", "drop-before", "drop-mid", "500", "502", "504", "slow"})
"""Fault kinds that leave a create call without an answer that says whether Siro created it."""


def run_mode(reconcile: bool, folder: Any, run_dag: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """One 200-file bulk task under faults, then a fault-free re-run; what each left behind."""
    dag_id = "siro_test_ledger_bulk" if reconcile else "siro_test_ledger_bulk_no_reconcile"
    folder.mkdir()
    files = make_files(folder, FILES, SEED)
    ledger_path = str(folder / "ledger")
    conf = {"source_paths": list(files), "ledger_path": ledger_path}
    with OfflineSiro(seed=SEED, slow_delay=1.5, rate_limit=None) as server:
        monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(faulty_connection(server, TIMEOUT)))
        server.random_faults(seed=SEED, rate=FAULT_RATE, kinds=FAULT_KINDS)
        first = run_dag(dag_id, conf, logical_date=pendulum.datetime(2026, 3, 2, tz="UTC"))
        injected = dict(server.fault_counts)
        server.clear_faults()
        server.wait_idle()  # a create the client gave up on has landed by now, if it was going to
        ti = task_instances(first)[("upload_list", -1)]
        lost = sum(
            1 for r in server.requests if r.endpoint == "create_recording" and r.fault in LOST_ANSWER_KINDS
        )
        ledger = UploadLedger(ledger_path)
        statuses = {path: [r.status for r in ledger.find(path)] for path in files}
        waiting = [p for p in files if any(r.needs_decision for r in ledger.find(p))]
        after_first = by_title(server)
        first_duplicated = duplicated(after_first)

        # The user's next run, faults gone. A fresh connection with a timeout no loaded machine reaches.
        monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(faulty_connection(server, 60.0)))
        second = run_dag(dag_id, conf, logical_date=pendulum.datetime(2026, 3, 3, tz="UTC"))
        server.wait_idle()
        waiting_after_rerun = [p for p in files if any(r.needs_decision for r in ledger.find(p))]
        final = by_title(server)
        corrupted = sum(
            1
            for path, data in files.items()
            for r in final.get(os.path.basename(path), [])
            if r.sha256 != hashlib.sha256(data).hexdigest()
        )
        ids = return_value(second, "upload_list") if second.state == "success" else None
        return {
            "files": FILES,
            "faults_injected": sum(injected.values()),
            "fault_kinds": sorted(injected),
            "lost_create_answers": lost,
            "reconciled": sum(1 for s in statuses.values() if "reconciled" in s),
            "first_run_state": str(ti.state),
            "first_run_tries": ti.try_number,
            "failed_on_ambiguity": len(waiting),
            "duplicated_after_first_run": len(first_duplicated),
            "rerun_state": str(second.state),
            "failed_on_ambiguity_after_rerun": len(waiting_after_rerun),
            "recordings_created": sum(len(r) for r in final.values()),
            "duplicated": len(duplicated(final)),
            "corrupted": corrupted,
            "rerun_ids_match": ids is not None
            and all(ids[p] == final[os.path.basename(p)][0].id for p in files),
        }


def test_two_hundred_files_under_faults_with_reconcile_on_leave_fewer_failed_on_ambiguity_than_off(
    run_dag, tmp_path, monkeypatch
):
    on = run_mode(True, tmp_path / "on", run_dag, monkeypatch)
    off = run_mode(False, tmp_path / "off", run_dag, monkeypatch)
    record("reconcile_bulk_faults", on=on, off=off)

    for mode in (on, off):
        # The run was hostile, creates lost their answers, and still nothing was created twice.
        assert set(mode["fault_kinds"]) == set(FAULT_KINDS), mode
        assert mode["lost_create_answers"] > 0, mode
        assert mode["duplicated_after_first_run"] == 0 and mode["duplicated"] == 0, mode
        assert mode["corrupted"] == 0, mode
    # Today's behaviour (reconcile off) leaves sources failed on ambiguity; reconcile leaves fewer, and
    # what it leaves a plain re-run settles, with every source exactly once.
    assert off["failed_on_ambiguity"] > 0, off
    assert on["failed_on_ambiguity"] < off["failed_on_ambiguity"], (on, off)
    assert on["reconciled"] > 0, on
    assert on["rerun_state"] == "success" and on["failed_on_ambiguity_after_rerun"] == 0, on
    assert on["recordings_created"] == FILES and on["rerun_ids_match"], on
    # Off, a re-run does not guess: the ambiguous sources fail again until a person settles them.
    assert off["rerun_state"] == "failed", off
    assert off["failed_on_ambiguity_after_rerun"] == off["failed_on_ambiguity"], off
    assert off["reconciled"] == 0, off
