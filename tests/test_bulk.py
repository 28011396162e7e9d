"""The bulk operator's contract outside faults: every value checked before anything is sent, one bad file
does not stop the others, and the task's end names each failure. Plus ``dev/bench_bulk.py --tiny``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from upload_support import fails_now, write_audio

from airflow_provider_siro.exceptions import (
    SiroBulkUploadFailedError,
    SiroValidationError,
)
from airflow_provider_siro.operators.siro import SiroUploadRecordingsOperator

ROOT = Path(__file__).resolve().parents[1]


class TaskInstance:
    """Where a failed batch leaves the IDs it got (what ``ti.xcom_push`` receives)."""

    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


def bulk(paths: list[str], **kwargs: object) -> SiroUploadRecordingsOperator:
    return SiroUploadRecordingsOperator(
        task_id="bulk", source_paths=paths, user_email="rep@example.com", max_concurrency=4, **kwargs
    )


def test_one_bad_field_of_one_source_fails_the_batch_before_any_request(
    siro_server, siro_connection, tmp_path
):
    paths = [str(tmp_path / f"call-{i}.mp3") for i in range(5)]
    for path in paths:
        write_audio(Path(path), 1000)
    operator = bulk(paths, fields_per_source={paths[3]: {"customer_phone": "call me"}})

    with fails_now(SiroValidationError) as raised:
        operator.execute(context={})

    assert str(raised.value) == (
        f"fields_per_source[{paths[3]!r}].customer_phone: 'call me' is not a phone number (7 to 15 digits, "
        f"e.g. +15551234567) (source {paths[3]!r})"
    )
    assert siro_server.requests == []


def test_missing_sources_are_all_named_before_any_request(siro_server, siro_connection, tmp_path):
    present = tmp_path / "here.mp3"
    write_audio(present, 1000)
    missing = [str(tmp_path / "gone-1.mp3"), str(tmp_path / "gone-2.wav")]

    with fails_now(SiroValidationError) as raised:
        bulk([str(present), *missing]).execute(context={})

    assert str(raised.value) == (
        f"source_paths: 2 sources cannot be uploaded:\n  - {missing[0]!r}: source_paths: {missing[0]!r} does "
        f"not exist\n  - {missing[1]!r}: source_paths: {missing[1]!r} does not exist"
    )
    assert siro_server.requests == []


def test_a_failing_file_does_not_stop_the_others_and_a_rerun_uploads_only_it(
    siro_server, siro_connection, tmp_path
):
    paths = [str(tmp_path / f"call-{i}.mp3") for i in range(6)]
    for path in paths:
        write_audio(Path(path), 2000)
    # Siro refuses one create outright (422 is final: not retried inside the try).
    siro_server.add_fault("create_recording", status=422, body={"error": "no such user"})
    ti = TaskInstance()

    with fails_now(SiroBulkUploadFailedError) as raised:
        bulk(paths, ledger_path=str(tmp_path / "ledger")).execute(context={"ti": ti})

    # Every failure is one Siro refused for good: a retry would meet it again, so there is none.
    assert "not retried: a retry would meet the same errors" in str(raised.value)
    (failed,) = raised.value.failures
    assert "1 of 6 sources failed (5 uploaded or already in the ledger)" in str(raised.value)
    assert f"\n  - {failed}: Siro API POST /v1/core/recordings/upload returned 422: no such user" in str(
        raised.value
    )
    assert sorted(ti.pushed["recording_ids"]) == sorted(p for p in paths if p != failed)
    assert len(siro_server.recordings) == 5

    siro_server.clear_requests()
    ids = bulk(paths, ledger_path=str(tmp_path / "ledger")).execute(context={"ti": TaskInstance()})

    assert sorted(ids) == sorted(paths) and len(siro_server.recordings) == 6
    assert [r.endpoint for r in siro_server.requests] == ["signed_urls", "upload_put", "create_recording"]


def test_without_a_ledger_a_failed_batch_is_not_retried(siro_server, siro_connection, tmp_path):
    paths = [str(tmp_path / f"call-{i}.mp3") for i in range(3)]
    for path in paths:
        write_audio(Path(path), 2000)
    siro_server.add_fault("create_recording", status=422, body={"error": "no such user"})

    with fails_now(SiroBulkUploadFailedError) as raised:
        bulk(paths).execute(context={"ti": TaskInstance()})

    assert "not retried: without a ledger_path a retry would upload the other sources again" in str(
        raised.value
    )


@pytest.mark.slow
@pytest.mark.airflow3  # its mapped leg starts an Airflow 3 deployment (API server, scheduler)
def test_the_bulk_benchmark_runs_at_a_toy_size():
    result = subprocess.run(
        [sys.executable, str(ROOT / "dev" / "bench_bulk.py"), "--tiny"],
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # 6 files through each of the three in-process legs, again as one bulk task, and 3 as mapped tasks.
    assert "recordings created: 27 of 27" in result.stdout
    for row in (
        "| bare requests pool |",
        "| bulk operator (with ledger) |",
        "| bulk operator (no ledger) |",
        "| LocalExecutor: one bulk task (no ledger) |",
        "| LocalExecutor: mapped task instances |",
        "bulk task / mapped tasks, both under the LocalExecutor:",
    ):
        assert row in result.stdout, row
