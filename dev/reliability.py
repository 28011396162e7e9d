"""`make reliability`: the whole test suite, then one table of what it proved under faults, load and bad input.

The figures come from the tests themselves: each reliability test asserts its invariants and, with
``SIRO_RELIABILITY_REPORT`` set, writes what it counted (``tests/reliability_report.py``); the bad-input
catalogue is counted from pytest's JUnit XML. Running the whole suite, not a subset, is the point: the
secrets scan (the suite's last test) reads every log line, rendered template, XCom and trigger row the
suite produced. Extra arguments are passed to pytest, so a few rows can be measured alone, e.g.
``python dev/reliability.py tests/test_bulk_reconcile_faults.py tests/test_ledger_identity.py`` (the
other rows then read "(not run)", and "whole suite" counts only what ran).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def junit_counts(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Outcomes of the whole run, and of the bad-input catalogue (``tests/test_bad_input.py``)."""
    overall = {"passed": 0, "failed": 0, "skipped": 0}
    bad_input = {"passed": 0, "failed": 0, "skipped": 0}
    for case in ElementTree.parse(path).iter("testcase"):
        outcome = "passed"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif case.find("skipped") is not None:
            outcome = "skipped"
        overall[outcome] += 1
        if case.get("classname", "").endswith("test_bad_input"):
            bad_input[outcome] += 1
    return overall, bad_input


def table(report: dict[str, Any], overall: dict[str, int], bad_input: dict[str, int]) -> str:
    faults = report.get("faults", {})
    secrets = report.get("secrets", {})
    one = report.get("load_one_worker", {})
    parallel = report.get("load_parallel_processes", {})
    control = report.get("load_unpaced_control", {})
    bulk = report.get("bulk_faults", {})
    redirects = report.get("redirects", {})
    echoed = report.get("echoed_errors", {})
    signatures = report.get("bulk_signatures", {})
    reconciling = report.get("reconcile_bulk_faults", {})
    on, off = reconciling.get("on", {}), reconciling.get("off", {})
    identity = report.get("ledger_identity", {})
    missing = "(not run)"

    def get(section: dict[str, Any], key: str) -> Any:
        return section.get(key, missing)

    kinds = ", ".join(f"{k} {v}" for k, v in get(faults, "faults_by_kind").items()) if faults else missing
    rows = [
        ("bad-input cases tried", bad_input["passed"] + bad_input["failed"]),
        ("  refused on try 1, field named, no request sent", bad_input["passed"]),
        ("uploads under faults", get(faults, "uploads")),
        ("faults injected", get(faults, "faults_injected")),
        ("  by kind", kinds),
        (
            "  access tokens expired mid-run / minted again",
            f"{get(faults, 'token_expiries')} / {get(faults, 'tokens_minted')}",
        ),
        (
            "  signed URLs expired / PUTs refused, then re-signed",
            f"{get(faults, 'signed_url_expiries')} / {get(faults, 'refused_puts')}",
        ),
        ("recordings expected", get(faults, "recordings_expected")),
        ("  created on the first pass", get(faults, "succeeded_first_pass")),
        ("  create ambiguous: task failed loudly, not retried", get(faults, "ambiguous_failed_loudly")),
        ("    of which Siro had created the recording", get(faults, "ambiguous_with_recording")),
        ("    re-run after checking Siro", get(faults, "rerun_after_check")),
        ("  other failures (loud)", get(faults, "other_failed_loudly")),
        ("recordings created in the end", get(faults, "recordings_created")),
        ("recordings duplicated", get(faults, "duplicated")),
        ("recordings corrupted (hash differs from source)", get(faults, "corrupted")),
        (
            "bulk task with a ledger under faults: files / faults injected",
            f"{get(bulk, 'files')} / {get(bulk, 'faults_injected')}",
        ),
        (
            "  tries used (retries=3) / ambiguous entries settled",
            f"{get(bulk, 'tries')} / {get(bulk, 'ambiguous_settled')}",
        ),
        (
            "  recordings in the end / duplicated / corrupted",
            f"{get(bulk, 'recordings_created')} / {get(bulk, 'duplicated')} / {get(bulk, 'corrupted')}",
        ),
        (
            "bulk task, 200 files, fault mix: lost create answers, reconcile on / off",
            f"{get(on, 'lost_create_answers')} / {get(off, 'lost_create_answers')}",
        ),
        (
            "  sources failed on ambiguity (waiting for a person), on / off",
            f"{get(on, 'failed_on_ambiguity')} / {get(off, 'failed_on_ambiguity')}",
        ),
        (
            "  found in Siro (entry reconciled) / task state, on; task state, off",
            f"{get(on, 'reconciled')} / {get(on, 'first_run_state')}; {get(off, 'first_run_state')}",
        ),
        (
            "  fault-free re-run: still failed on ambiguity, on / off",
            f"{get(on, 'failed_on_ambiguity_after_rerun')} / {get(off, 'failed_on_ambiguity_after_rerun')}",
        ),
        (
            "  recordings in the end / duplicated, on; off",
            f"{get(on, 'recordings_created')} / {get(on, 'duplicated')}; "
            f"{get(off, 'recordings_created')} / {get(off, 'duplicated')}",
        ),
        ("ledger: one file through two accounts: recordings", get(identity, "two_accounts_recordings")),
        (
            "  one file as path, symlink, //, /./, hard link: names / recordings",
            f"{get(identity, 'one_file_names')} / {get(identity, 'one_file_recordings')}",
        ),
        (
            "  entry write failed after the 201: re-run created / waited claim_timeout",
            f"{get(identity, 'failed_write_rerun_created')} / {get(identity, 'failed_write_rerun_waited_claim_timeout')}",
        ),
        (
            "  corrupt entry: tries / requests to Siro",
            f"{get(identity, 'corrupt_entry_tries')} / {get(identity, 'corrupt_entry_requests')}",
        ),
        (
            "secrets known to the scan (tokens, org token, client secret, signatures)",
            get(secrets, "secrets_known"),
        ),
        (
            "places scanned: captured outputs / files / DB rows / MB",
            f"{get(secrets, 'captured_texts_scanned')} / {get(secrets, 'files_scanned')} / "
            f"{get(secrets, 'rows_scanned')} / "
            + (f"{secrets['bytes_scanned'] / 1e6:.0f}" if "bytes_scanned" in secrets else missing),
        ),
        ("secrets found", get(secrets, "hits")),
        (
            "redirects (mint, signed URLs, PUT, create; 301/302/307/308; other port and host): cases",
            len(redirects) if redirects else missing,
        ),
        (
            "  requests / credentials / recordings at the other host; calls retried",
            " / ".join(
                str(sum(case[key] for case in redirects.values())) if redirects else missing
                for key in ("other_requests", "credentials_sent", "other_recordings")
            )
            + f"; {sum(case['attempts'] - 1 for case in redirects.values()) if redirects else missing}",
        ),
        (
            "Siro echoing the request in 400/401/403/422/500: cases / secrets in exceptions, logs, DB",
            f"{len(echoed) if echoed else missing} / {sum(echoed.values()) if echoed else missing}",
        ),
        (
            "bulk task of 200 files: signatures issued / found in its log, log folder, DB",
            f"{get(signatures, 'signatures')} / {get(signatures, 'found')}",
        ),
        (
            f"one worker, {get(one, 'threads')} threads, {get(one, 'uploads')} uploads: busiest {get(one, 'window_s')} s",
            f"{get(one, 'busiest_window')} requests (pace {get(one, 'pace_per_window')}, Siro's limit {get(one, 'limit_per_window')})",
        ),
        ("  429s from Siro / RSS growth (KiB)", f"{get(one, 'refused_429')} / {get(one, 'rss_growth_kib')}"),
        (
            f"{get(parallel, 'processes')} task processes, {get(parallel, 'uploads')} uploads: busiest window",
            f"{get(parallel, 'busiest_window')} requests, {get(parallel, 'refused_429')} 429s",
        ),
        ("control: same load unpaced, 429s from Siro", get(control, "refused_429")),
        (
            "whole suite",
            f"{overall['passed']} passed, {overall['failed']} failed, {overall['skipped']} skipped",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'check':<{width}} | result |", f"|{'-' * (width + 2)}|--------|"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="siro-reliability-"))
    report_path, junit = work / "report.json", work / "junit.xml"
    env = {**os.environ, "SIRO_RELIABILITY_REPORT": str(report_path)}
    command = [sys.executable, "-m", "pytest", "-q", f"--junitxml={junit}", *sys.argv[1:]]
    print("Running:", " ".join(command[1:]), flush=True)
    result = subprocess.run(command, cwd=ROOT, env=env)
    if not junit.exists():
        print("pytest wrote no results", file=sys.stderr)
        return result.returncode or 1
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    overall, bad_input = junit_counts(junit)
    print()
    print(table(report, overall, bad_input))
    print(f"\nRaw figures: {report_path}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
