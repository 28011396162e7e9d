"""Exceptions raised by the Siro provider.

Every one of them is a :class:`SiroError`, and each says whether a later attempt could succeed in its
``retryable`` attribute:

* ``retryable`` True - Siro (or the network in front of it) failed (429, 5xx, a connection error:
  :class:`SiroApiError`). A later attempt may succeed, so Airflow's task retries apply.
* ``retryable`` False - retrying cannot help (bad input, a request Siro rejected, a create call whose
  outcome is unknown and must not be repeated...).

None of them is an ``AirflowFailException``: the hook does not decide a task's retry policy, so a hook
used from a ``@task`` or another operator raises the same errors. The provider's operators and sensors
map them (:func:`fail_now_unless_retryable`): ``retryable`` False fails the task at once.

No message built here ever contains a token, a client secret or a signed URL's query string.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from airflow_provider_siro.compat import AirflowException


class SiroError(AirflowException):
    """Base of every exception the provider raises.

    :attr retryable: whether the same call, made again later, could succeed. Class-level by default,
        overridden per instance where the answer depends on what happened (see :class:`SiroApiError`).
    """

    retryable: bool = False


class SiroValidationError(SiroError, ValueError):
    """A value given to the provider is unusable; raised before any byte leaves the machine.

    :param field: the name the user wrote (operator argument or connection extra), e.g. ``user_email``.
    :param problem: what is wrong with it, in words a DAG author can act on.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.problem))


class SiroApiError(SiroError):
    """Siro answered with an error, or could not be reached, after the hook's own retries.

    ``retryable`` is True: a 429, a 5xx or a connection error may go away. Subclasses that a retry
    cannot change set it False.

    :param message: the server's own message (``{"error": ...}``), or a description of the failure.
    :param status_code: the HTTP status, or ``None`` when no response arrived.
    :param method: HTTP method of the failed call.
    :param endpoint: the path called, never with a query string (signed URLs carry credentials there).
    :param issues: for a 422, the ZodError issues as ``(path, message)`` pairs.
    :param retryable: overrides the class's answer, for an error whose kind alone does not settle it
        (an answer that is not the JSON expected is retryable only if its status is).
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        method: str = "",
        endpoint: str = "",
        issues: Sequence[tuple[str, str]] = (),
        retryable: bool | None = None,
    ) -> None:
        if retryable is not None:
            self.retryable = retryable
        self.message = message
        self.status_code = status_code  # type: ignore[assignment]  # Siro's status, not the API server's
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
            (
                type(self),
                self.message,
                self.status_code,
                self.method,
                self.endpoint,
                self.issues,
                self.__dict__.get("retryable"),  # only an instance's own override
            ),
        )


def _rebuild(
    cls: type[SiroApiError],
    message: str,
    status_code: int | None,
    method: str,
    endpoint: str,
    issues: list[tuple[str, str]],
    retryable: bool | None,
) -> SiroApiError:
    return cls(
        message, status_code=status_code, method=method, endpoint=endpoint, issues=issues, retryable=retryable
    )


class SiroRejectedError(SiroApiError):
    """Siro rejected the request (400, 401, 403, 404, 409, 422, or a redirect the provider will not
    follow): the same request would fail again."""

    retryable = False


class SiroAmbiguousCreateError(SiroApiError):
    """A create-recording call failed after Siro may already have acted on it.

    The recording may or may not exist. The provider never repeats such a call, because Siro offers no
    idempotency key and a repeat could create the recording twice; check Siro before running the task
    again.
    """

    retryable = False


class SiroRecordingFailedError(SiroError):
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


class SiroRecordingWaitError(SiroError):
    """An upload task created its recording, then its wait for processing ended without an answer
    (the wait timed out, or Siro could not be asked).

    Whether a retry is safe depends on where the recording ID is kept. Without Airflow 3.3's task
    state store a retry would upload the audio and create the recording a second time, so the error is
    final: the recording ID is in the task's XCom (key ``siro_recording_id``); wait for it with
    :class:`~airflow_provider_siro.sensors.siro.SiroRecordingSensor` instead. With the store
    (``resumable``), a retry of the task finds the recording there and resumes waiting on it, so the
    error is retryable, and its message says so.

    :param recording_id: the recording that was created.
    :param problem: why the wait ended.
    :param resumable: the recording ID is in the task state store, so a retry resumes the wait.
    """

    def __init__(self, recording_id: str, problem: str, *, resumable: bool = False) -> None:
        self.recording_id = recording_id
        self.problem = problem
        self.resumable = resumable
        self.retryable = resumable
        if resumable:
            then = (
                "Its ID is in the task state store, so a retry of this task resumes waiting on it "
                "instead of uploading the audio again; once no retries are left, wait for this recording "
                "with SiroRecordingSensor."
            )
        else:
            then = (
                "The task is not retried, because that would upload the audio again; wait for this "
                "recording with SiroRecordingSensor instead."
            )
        super().__init__(f"Siro recording {recording_id} was created, but {problem}. {then}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_wait_error, (type(self), self.recording_id, self.problem, self.resumable))


def _rebuild_wait_error(
    cls: type[SiroRecordingWaitError], recording_id: str, problem: str, resumable: bool
) -> SiroRecordingWaitError:
    return cls(recording_id, problem, resumable=resumable)


class SiroLedgerError(SiroError):
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


class SiroBulkUploadError(SiroError):
    """Some sources of a bulk upload failed; the others were uploaded (or were already in the ledger).

    Retried by Airflow: with a ledger, the next try uploads only the sources the ledger does not have.

    :param failures: source (as the DAG named it) -> why it failed.
    :param total: how many sources the task had.
    :param note: what a retry would do.
    """

    retryable = True

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


class SiroBulkUploadFailedError(SiroBulkUploadError):
    """A bulk upload failed where a retry cannot help, or could upload sources a second time (no ledger,
    or only failures a retry would meet again), so the task is not retried."""

    retryable = False


class SiroReconcileError(SiroError):
    """An ambiguous create was looked up in Siro and more than one recording matches it.

    Which one the create made cannot be told apart from what Siro lists, and uploading again could add
    one more; the task fails at once (``retryable`` is False) naming the candidates, so a person can
    keep the right one and settle the ledger entry with it.

    :param candidates: the IDs of the matching recordings.
    """

    retryable = False

    def __init__(self, candidates: Sequence[str]) -> None:
        self.candidates = list(candidates)
        super().__init__(
            f"the ambiguous create matches {len(self.candidates)} recordings in Siro "
            f"({', '.join(self.candidates)}); it cannot tell which one it made. Check them in Siro, delete "
            "any duplicate, and settle the upload with the one to keep."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.candidates,))


def is_final(exc: BaseException) -> bool:
    """True for an error a retry cannot help: a :class:`SiroError` whose ``retryable`` is False, or
    Airflow's own ``AirflowFailException``."""
    from airflow_provider_siro.compat import AirflowFailException

    if isinstance(exc, AirflowFailException):
        return True
    return isinstance(exc, SiroError) and not exc.retryable


_F = TypeVar("_F", bound=Callable[..., Any])


def fail_now_unless_retryable(method: _F) -> _F:
    """Decorate an operator's ``execute``: a :class:`SiroError` with ``retryable`` False fails the task
    at once (as ``AirflowFailException``, the original chained as its cause); others propagate as they
    are, for Airflow's retries."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except SiroError as exc:
            if exc.retryable:
                raise
            from airflow_provider_siro.compat import AirflowFailException

            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper  # type: ignore[return-value]
