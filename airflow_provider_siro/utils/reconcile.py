"""Find the recording an ambiguous create made, by listing the user's recordings in Siro.

A create call whose answer never came (or came as a 5xx after the body went out) may or may not have
made a recording, and Siro has no idempotency key to ask with. Its user-scoped list endpoint can answer
the question instead: list the recordings dated in a narrow window around the create, keep those whose
every listed field the create set has the value it was set to, and count them. One match is the
recording; none (after giving Siro a few polls to settle) means the create did not land and the audio
can be uploaded again; several cannot be told apart, and guessing could lose or duplicate a recording.

Nothing here imports the hook: the lister is anything with a ``list_recordings`` method (a
:class:`RecordingLister`), so this module stays below ``hooks/`` in the package's layering.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from airflow_provider_siro.exceptions import SiroReconcileError

MATCHED_FIELDS: tuple[str, ...] = ("title", "userId", "result", "discoverable")
"""Fields of a create body that Siro's list shows back unchanged: a listed recording matches only if it
has the body's value for each of them that the body set."""

EXACT_SLACK = timedelta(milliseconds=1)
"""Half-width of the window around a ``dateCreated`` the body set (Siro's filters are exclusive and
its dates have millisecond precision)."""

DEFAULT_BEFORE = timedelta(minutes=2)
"""How far before the send time a recording without ``dateCreated`` may be dated: the client's and
Siro's clocks may disagree by this much."""

DEFAULT_AFTER = timedelta(minutes=5)
"""How far after the send time: the create may have been processed up to a client timeout later, plus
clock skew."""


class RecordingLister(Protocol):
    """What :func:`find_created_recording` needs: :meth:`SiroHook.list_recordings`'s signature."""

    def list_recordings(
        self,
        *,
        created_after: datetime | None = ...,
        created_before: datetime | None = ...,
        limit: int = ...,
        order_direction: str = ...,
    ) -> Iterable[Mapping[str, Any]]: ...


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def search_window(
    body: Mapping[str, Any],
    sent_at: datetime,
    *,
    before: timedelta = DEFAULT_BEFORE,
    after: timedelta = DEFAULT_AFTER,
) -> tuple[datetime, datetime]:
    """The ``(created_after, created_before)`` bounds to list: exact around the body's ``dateCreated``
    when it set one (Siro keeps the date it is given), else from ``before`` ahead of ``sent_at`` to
    ``after`` past it."""
    given = _parse(body.get("dateCreated"))
    if given is not None:
        return given - EXACT_SLACK, given + EXACT_SLACK
    if sent_at.tzinfo is None or sent_at.utcoffset() is None:
        raise ValueError("sent_at must be timezone-aware")
    return sent_at - before, sent_at + after


def matches(item: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Whether a listed recording has every value of :data:`MATCHED_FIELDS` the body set.

    A field the list does not show is not evidence either way and is skipped; a ``dateCreated`` the
    body set must be the listed one to the millisecond.
    """
    for name in MATCHED_FIELDS:
        if name in body and name in item and item[name] != body[name]:
            return False
    given = _parse(body.get("dateCreated"))
    if given is not None and "dateCreated" in item:
        listed = _parse(item["dateCreated"])
        if listed is None or abs(listed - given) >= EXACT_SLACK:
            return False
    return True


def find_created_recording(
    lister: RecordingLister,
    body: Mapping[str, Any],
    sent_at: datetime,
    *,
    settle_polls: int,
    settle_interval: float,
    window_before: timedelta = DEFAULT_BEFORE,
    window_after: timedelta = DEFAULT_AFTER,
) -> str | None:
    """The ID of the recording an ambiguous create made, or ``None`` if Siro has none.

    :param lister: a hook (anything with ``list_recordings``), with the credential the create used:
        the list shows that user's recordings.
    :param body: the create body as it was sent (either wire format).
    :param sent_at: when the create was sent (timezone-aware).
    :param settle_polls: how many times to read the list, at most (at least once): a create that was
        still being processed when its answer was lost may show up a moment later.
    :param settle_interval: seconds between two reads.
    :param window_before: how far before ``sent_at`` to look when the body set no ``dateCreated``.
    :param window_after: how far after it.
    :raises SiroReconcileError: more than one recording matches (naming their IDs).
    """
    if settle_polls < 1:
        raise ValueError(f"settle_polls must be at least 1, got {settle_polls}")
    created_after, created_before = search_window(body, sent_at, before=window_before, after=window_after)
    for poll in range(settle_polls):
        if poll:
            time.sleep(settle_interval)
        listed = lister.list_recordings(created_after=created_after, created_before=created_before)
        # dict.fromkeys: one ID once, should a page boundary show a recording twice.
        found: list[str] = list(
            dict.fromkeys(
                str(item["id"]) for item in listed if isinstance(item.get("id"), str) and matches(item, body)
            )
        )
        if len(found) > 1:
            raise SiroReconcileError(sorted(found))
        if found:
            return found[0]
    return None
