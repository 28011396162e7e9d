"""The provider's exceptions: none decides a task's retry policy by itself; each says whether a retry
could help, survives pickling, and the operators' mapping turns the final ones into a failure now."""

from __future__ import annotations

import inspect
import pickle

import pytest

from airflow_provider_siro import exceptions
from airflow_provider_siro.compat import AirflowFailException
from airflow_provider_siro.exceptions import (
    SiroAmbiguousCreateError,
    SiroApiError,
    SiroBulkUploadError,
    SiroBulkUploadFailedError,
    SiroError,
    SiroLedgerError,
    SiroRecordingFailedError,
    SiroRecordingWaitError,
    SiroRejectedError,
    SiroValidationError,
    fail_now_unless_retryable,
    is_final,
)

EXAMPLES: list[tuple[SiroError, bool]] = [
    (SiroValidationError("user_email", "is not an email address"), False),
    (SiroApiError("Bad gateway", status_code=502, method="GET", endpoint="/v1/core/recordings/r"), True),
    (SiroApiError("ConnectionError: no answer", method="GET", endpoint="/v1/x"), True),
    (SiroApiError("not JSON", status_code=200, method="GET", endpoint="/v1/x", retryable=False), False),
    (SiroRejectedError("Forbidden", status_code=403, method="POST", endpoint="/v1/x"), False),
    (
        SiroAmbiguousCreateError(
            "lost", status_code=500, method="POST", endpoint="/v1/core/recordings/upload"
        ),
        False,
    ),
    (SiroRecordingFailedError("rec-1", "Siro reported processingStatus error"), False),
    (SiroRecordingWaitError("rec-1", "the wait timed out"), False),
    (SiroRecordingWaitError("rec-1", "the wait timed out", resumable=True), True),
    (SiroLedgerError("/data/a.wav", "the entry is ambiguous"), False),
    (SiroBulkUploadError({"a.wav": "502"}, 3, "a retry uploads the rest"), True),
    (SiroBulkUploadFailedError({"a.wav": "400"}, 3, "not retried"), False),
]


def test_no_provider_exception_is_an_airflow_fail_exception():
    classes = [c for _, c in inspect.getmembers(exceptions, inspect.isclass) if issubclass(c, SiroError)]
    assert len(classes) >= 10
    assert [c.__name__ for c in classes if issubclass(c, AirflowFailException)] == []


@pytest.mark.parametrize(("error", "retryable"), EXAMPLES, ids=lambda v: type(v).__name__)
def test_each_error_says_whether_a_retry_could_help_and_survives_pickling(error, retryable):
    assert error.retryable is retryable
    assert is_final(error) is (not retryable)

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.retryable is retryable
    assert vars(copy) == vars(error)


def test_a_validation_error_keeps_field_and_problem():
    error = pickle.loads(pickle.dumps(SiroValidationError("title", "is empty")))
    assert (error.field, error.problem) == ("title", "is empty")
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(("error", "retryable"), EXAMPLES, ids=lambda v: type(v).__name__)
def test_the_operator_mapping_fails_final_errors_now_and_lets_the_others_through(error, retryable):
    @fail_now_unless_retryable
    def execute() -> None:
        raise error

    with pytest.raises(Exception) as raised:
        execute()

    if retryable:
        assert raised.value is error
    else:
        assert isinstance(raised.value, AirflowFailException)
        assert raised.value.__cause__ is error
        assert str(error) in str(raised.value)
