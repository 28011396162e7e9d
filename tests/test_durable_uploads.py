"""Durable uploads on Airflow 3.3+ (issue 20): the upload operator keeps the recording ID in the task
state store as Siro answers the create, so a later try returns that recording and resumes waiting on
it instead of uploading again, without a ledger. Below 3.3 (no store in the context) the behaviour is
today's: a failed wait is not retried.

These run the operator against the offline Siro server with a state store of the same interface as
Airflow's (``get``/``set``). A real task process killed after the 201, and killed while waiting, under
a real scheduler, is tests/test_durable_kill.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from upload_support import fails_now, write_audio

from airflow_provider_siro.exceptions import SiroRecordingWaitError
from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator


class StateStore:
    """The task state store's interface, kept in memory across the tries of one test."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.values[key] = value


class TaskInstance:
    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


def upload(source: Path, **kwargs: Any) -> SiroUploadRecordingOperator:
    return SiroUploadRecordingOperator(
        task_id="upload", source_path=str(source), user_email="rep@example.com", poll_interval=0.05, **kwargs
    )


def test_a_retry_after_a_failed_wait_resumes_waiting_on_the_same_recording(
    siro_server, siro_connection, tmp_path
):
    source = tmp_path / "call.mp3"
    write_audio(source, 3000)
    store = StateStore()

    # Try 1: created, then the wait ends (timeout 0): retryable, since the store has the recording.
    try:
        upload(source, wait_for_completion=True, timeout=0).execute(
            context={"ti": TaskInstance(), "task_state_store": store}
        )
    except SiroRecordingWaitError as exc:
        assert exc.retryable
        assert "a retry of this task resumes waiting on it instead of uploading the audio again" in str(exc)
        assert "not retried" not in str(exc)
    else:
        raise AssertionError("the first try's wait should have ended without an answer")
    (first_id,) = siro_server.recordings
    assert store.values == {"siro_recording_id": first_id}
    siro_server.clear_requests()

    # Try 2: the same recording, waited on to the end; nothing uploaded or created again.
    ti = TaskInstance()
    second_id = upload(source, wait_for_completion=True, timeout=60).execute(
        context={"ti": ti, "task_state_store": store}
    )

    assert second_id == first_id
    assert list(siro_server.recordings) == [first_id]
    assert {r.endpoint for r in siro_server.requests} <= {"token", "get_recording"}
    assert ti.pushed["recording"]["processingStatus"] == "complete"


def test_a_retry_after_the_create_returns_the_recording_without_uploading(
    siro_server, siro_connection, tmp_path
):
    source = tmp_path / "call.mp3"
    write_audio(source, 3000)
    store = StateStore()
    first = upload(source).execute(context={"ti": TaskInstance(), "task_state_store": store})
    siro_server.clear_requests()

    again = upload(source).execute(context={"ti": TaskInstance(), "task_state_store": store})

    assert again == first and len(siro_server.recordings) == 1
    assert [r.endpoint for r in siro_server.requests] == []


def test_without_a_state_store_a_failed_wait_fails_at_once_as_before(siro_server, siro_connection, tmp_path):
    source = tmp_path / "call.mp3"
    write_audio(source, 3000)

    with fails_now(SiroRecordingWaitError) as failed:
        upload(source, wait_for_completion=True, timeout=0).execute(context={"ti": TaskInstance()})

    assert "The task is not retried, because that would upload the audio again" in str(failed.value)
