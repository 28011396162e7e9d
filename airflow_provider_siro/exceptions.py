"""Exceptions raised by the Siro provider.

Two families, chosen by what a retry could achieve:

* :class:`SiroApiError` - Siro (or the network in front of it) failed. A later attempt may succeed, so
  Airflow's task retries apply.
* Subclasses of :class:`~airflow.sdk.exceptions.AirflowFailException` - retrying cannot help (bad
  input, a request Siro rejected, or a create call whose outcome is unknown and must not be repeated),
  so the task fails at once and Airflow does not retry it.

No message built here ever contains a token, a client secret or a signed URL's query string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_siro.compat import AirflowException, AirflowFailException


class SiroValidationError(AirflowFailException, ValueError):
    """A value given to the provider is unusable; raised before any byte leaves the machine.

    :param field: the name the user wrote (operator argument or connection extra), e.g. ``user_email``.
    :param problem: what is wrong with it, in words a DAG author can act on.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class SiroApiError(AirflowException):
    """Siro answered with an error, or could not be reached, after the hook's own retries.

    :param message: the server's own message (``{"error": ...}``), or a description of the failure.
    :param status_code: the HTTP status, or ``None`` when no response arrived.
    :param method: HTTP method of the failed call.
    :param endpoint: the path called, never with a query string (signed URLs carry credentials there).
    :param issues: for a 422, the ZodError issues as ``(path, message)`` pairs.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        method: str = "",
        endpoint: str = "",
        issues: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.message = message
        self.status_code: int | None = status_code  # type: ignore[assignment]  # Airflow's is an HTTPStatus
        self.method = method
        self.endpoint = endpoint
        self.issues = list(issues)
        where = f"{method} {endpoint}".strip()
        status = f" returned {status_code}" if status_code is not None else " failed"
        text = f"Siro API {where}{status}: {message}"
        if self.issues:
            text += "".join(f"\n  - {path or '<body>'}: {msg}" for path, msg in self.issues)
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the exception picklable with its keyword-only arguments (Airflow ships errors around).
        return (
            _rebuild,
            (type(self), self.message, self.status_code, self.method, self.endpoint, self.issues),
        )


def _rebuild(
    cls: type[SiroApiError],
    message: str,
    status_code: int | None,
    method: str,
    endpoint: str,
    issues: list[tuple[str, str]],
) -> SiroApiError:
    return cls(message, status_code=status_code, method=method, endpoint=endpoint, issues=issues)


class SiroRejectedError(SiroApiError, AirflowFailException):
    """Siro rejected the request (400, 401, 403, 404, 409, 422): the same request would fail again."""


class SiroAmbiguousCreateError(SiroApiError, AirflowFailException):
    """A create-recording call failed after Siro may already have acted on it.

    The recording may or may not exist. The provider never repeats such a call, because Siro offers no
    idempotency key and a repeat could create the recording twice; check Siro before running the task
    again.
    """


class SiroRecordingFailedError(AirflowFailException):
    """Siro will not produce a processed recording: it reported ``processingStatus: error``, or the
    recording does not exist (a wrong ID, or it was deleted).

    Waiting longer or retrying cannot change that, so the task fails at once.

    :param recording_id: the recording that was waited for.
    :param problem: what Siro reported, in words a DAG author can act on.
    """

    def __init__(self, recording_id: str, problem: str) -> None:
        self.recording_id = recording_id
        self.problem = problem
        super().__init__(f"Siro recording {recording_id}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.recording_id, self.problem))


class SiroRecordingWaitError(AirflowFailException):
    """An upload task created its recording, then its wait for processing ended without an answer
    (the wait timed out, or Siro could not be asked).

    It is not retried: a retry would upload the audio and create the recording a second time. The
    recording ID is in the task's XCom (key ``siro_recording_id``); wait for it with
    :class:`~airflow_provider_siro.sensors.siro.SiroRecordingSensor` instead.

    :param recording_id: the recording that was created.
    :param problem: why the wait ended.
    """

    def __init__(self, recording_id: str, problem: str) -> None:
        self.recording_id = recording_id
        self.problem = problem
        super().__init__(
            f"Siro recording {recording_id} was created, but {problem}. The task is not retried, because "
            "that would upload the audio again; wait for this recording with SiroRecordingSensor instead."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.recording_id, self.problem))


class SiroLedgerError(AirflowFailException):
    """The upload ledger cannot vouch for a source, and guessing could create a duplicate recording:
    an earlier try's create call was ambiguous, or a created recording's entry could not be written.

    Retrying cannot settle that, so the task fails at once; the message says what to check.

    :param source: the source, as the DAG named it.
    :param problem: what the ledger says, and what to do about it.
    """

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, self.problem))


class SiroBulkUploadError(AirflowException):
    """Some sources of a bulk upload failed; the others were uploaded (or were already in the ledger).

    Retried by Airflow: with a ledger, the next try uploads only the sources the ledger does not have.

    :param failures: source (as the DAG named it) -> why it failed.
    :param total: how many sources the task had.
    :param note: what a retry would do.
    """

    def __init__(self, failures: dict[str, str], total: int, note: str = "") -> None:
        self.failures = dict(failures)
        self.total = total
        self.note = note
        lines = "".join(f"\n  - {source}: {why}" for source, why in self.failures.items())
        super().__init__(
            f"{len(self.failures)} of {total} sources failed ({total - len(self.failures)} uploaded or "
            f"already in the ledger){'; ' + note if note else ''}:{lines}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.failures, self.total, self.note))


class SiroBulkUploadFailedError(SiroBulkUploadError, AirflowFailException):
    """A bulk upload failed where a retry cannot help, or could upload sources a second time (no ledger,
    or only failures a retry would meet again), so the task is not retried."""
