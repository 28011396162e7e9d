"""The provider's one retry policy: what is retried, how long to wait, when to stop.

Every HTTP call the hooks make, sync (``requests``) and async (``httpx``), and the PUT of the audio,
runs one attempt at a time through :func:`call_with_retries` or :func:`acall_with_retries`, both built
on ``tenacity`` (an Airflow dependency). An attempt that failed in a way worth repeating raises
:class:`RetryLater`; any other exception ends the call at once.

What is worth repeating is declared here once (:func:`retryable_status`, :func:`retryable_no_answer`):

* 429 and any 5xx, for a call that is safe to repeat;
* for a create call, only where Siro cannot have acted on the body: 429, a 503 that says when to come
  back (``Retry-After``), or a connection that was never established. Any other 5xx, a timeout or a
  connection dropped after sending ends as
  :class:`~airflow_provider_siro.exceptions.SiroAmbiguousCreateError`, never repeated;
* never a redirect (3xx): the provider sends credentials to the configured hosts only.

The wait before retry ``n`` is ``Retry-After`` when the answer gave one, capped at ``max_retry_wait``;
otherwise "equal jitter" exponential backoff: uniformly between half and all of
``min(max_retry_wait, retry_backoff * 2**(n-1))``, so it is never zero and concurrent clients do not
retry in lockstep. ``max_retries`` retries at most, after the first attempt.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)
from tenacity.wait import wait_base

from airflow_provider_siro.exceptions import SiroApiError

if TYPE_CHECKING:
    from airflow_provider_siro.compat import Logger
from airflow_provider_siro.hooks.settings import SiroConnectionSettings

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, *range(500, 600)})
"""Statuses after which the same (repeatable) request may succeed: rate limiting and server failures."""


def retryable_status(status: int, *, create: bool, retry_after: bool) -> bool:
    """Whether an answer with ``status`` is worth the same request again.

    :param create: the call creates a recording: then only a refusal that says Siro did nothing
        (429, or 503 with ``Retry-After``) is retried.
    :param retry_after: the answer carried a ``Retry-After`` header.
    """
    if create:
        return status == 429 or (status == 503 and retry_after)
    return status in RETRY_STATUSES


def retryable_no_answer(*, sent: bool, create: bool) -> bool:
    """Whether a call that got no answer is worth repeating: always, unless a create's body may have
    arrived (``sent``), since a repeat could then create the recording twice."""
    return not (create and sent)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


class RetryLater(Exception):
    """Raised by one attempt that failed in a way the policy repeats.

    :param error: what the call raises if no retry is left.
    :param what: how the attempt failed, for the retry's log line (``returned 503``...).
    :param retry_after: seconds the server asked to wait (capped at ``max_retry_wait``), or 0 for a
        retry that needs no wait (a fresh signed URL); None for the backoff.
    :param no_answer: no answer arrived; the final error then says after how many attempts.
    """

    def __init__(
        self, error: SiroApiError, what: str, *, retry_after: float | None = None, no_answer: bool = False
    ) -> None:
        super().__init__(what)
        self.error = error
        self.what = what
        self.retry_after = retry_after
        self.no_answer = no_answer


class _Wait(wait_base):
    """``Retry-After`` up to the cap, else equal-jitter exponential backoff (see the module's text)."""

    def __init__(self, backoff: float, cap: float) -> None:
        self.backoff = backoff
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        failure = outcome.exception() if outcome is not None else None
        retry_after = failure.retry_after if isinstance(failure, RetryLater) else None
        if retry_after is not None:
            return min(retry_after, self.cap)
        ceiling = min(self.cap, self.backoff * 2 ** (retry_state.attempt_number - 1))
        return random.uniform(ceiling / 2, ceiling)


def _policy(settings: SiroConnectionSettings, log: Logger, method: str, endpoint: str) -> dict[str, object]:
    def before_sleep(retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        failure = outcome.exception() if outcome is not None else None
        what = failure.what if isinstance(failure, RetryLater) else "failed"
        wait = retry_state.next_action.sleep if retry_state.next_action is not None else 0.0
        log.warning(
            "%s %s %s; retry %d of %d in %.2f s",
            method,
            endpoint,
            what,
            retry_state.attempt_number,
            settings.max_retries,
            wait,
        )

    return {
        "stop": stop_after_attempt(settings.max_retries + 1),
        "wait": _Wait(settings.retry_backoff, settings.max_retry_wait),
        "retry": retry_if_exception_type(RetryLater),
        "before_sleep": before_sleep,
        "reraise": True,
    }


def _final(failure: RetryLater, attempts: int) -> SiroApiError:
    error = failure.error
    if failure.no_answer:
        return type(error)(
            f"{error.message}: no answer after {attempts} attempts",
            method=error.method,
            endpoint=error.endpoint,
        )
    return error


def call_with_retries(
    attempt: Callable[[], T],
    settings: SiroConnectionSettings,
    log: Logger,
    method: str,
    endpoint: str,
) -> T:
    """Run ``attempt`` until it returns, raises something other than :class:`RetryLater`, or the
    retries are spent (then the last :attr:`RetryLater.error` is raised)."""
    attempts = 0

    def counted() -> T:
        nonlocal attempts
        attempts += 1
        return attempt()

    try:
        return Retrying(**_policy(settings, log, method, endpoint))(counted)  # type: ignore[arg-type]
    except RetryLater as failure:
        raise _final(failure, attempts) from None


async def acall_with_retries(
    attempt: Callable[[], Awaitable[T]],
    settings: SiroConnectionSettings,
    log: Logger,
    method: str,
    endpoint: str,
) -> T:
    """:func:`call_with_retries` for a coroutine function; waits with ``asyncio.sleep``."""
    attempts = 0

    async def counted() -> T:
        nonlocal attempts
        attempts += 1
        return await attempt()

    try:
        return await AsyncRetrying(**_policy(settings, log, method, endpoint))(counted)  # type: ignore[arg-type]
    except RetryLater as failure:
        raise _final(failure, attempts) from None
