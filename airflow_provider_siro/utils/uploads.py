"""Upload located sources through a hook, consulting the upload ledger; one file, or many at once.

The hook is passed in, so nothing here speaks HTTP itself. :func:`upload_source` is the whole life of
one source: look it up in the ledger, claim it, stream it, create the recording, write the entry. When
the create call's answer is lost (the request went out, no answer came back, or a 5xx after the body
went out), it looks in Siro's list of recordings for the one that call made (see
:mod:`airflow_provider_siro.utils.reconcile`): one found is the recording (entry ``reconciled``); none
after the settling polls, the source is uploaded again; several, the task fails naming them. The same
happens across tries for a source whose ledger entry (or an earlier try's claim) is ambiguous. It is on
wherever a ledger is set and the hook can list recordings.

:func:`upload_many` runs that for many sources on a thread pool through one hook (one token, one
machine-wide pace), logs progress across the batch, and keeps going past a failed file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

from airflow_provider_siro.compat import AirflowException
from airflow_provider_siro.exceptions import SiroAmbiguousCreateError, SiroLedgerError
from airflow_provider_siro.payload import RecordingFields
from airflow_provider_siro.utils.ledger import Claim, Entry, UploadLedger
from airflow_provider_siro.utils.reconcile import RecordingLister
from airflow_provider_siro.utils.sources import Source

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_siro.compat import Logger


class SiroHook(Protocol):
    """What an upload needs of :class:`~airflow_provider_siro.hooks.siro.SiroHook` (a Protocol, so
    ``utils`` never imports ``hooks``): the streamed upload and the create call."""

    def upload_audio(
        self, open_stream: Callable[[], IO[bytes]], size: int, file_type: str, label: str = ...
    ) -> str: ...

    def create_recording(self, download_url: str, fields: RecordingFields) -> str: ...


@dataclass(frozen=True)
class Reconcile:
    """How an ambiguous create is looked up in Siro.

    :param lister: the hook (anything with ``list_recordings``).
    :param settle_polls: looks at the list before concluding that no recording was made (Siro may
        list a new recording a moment after creating it).
    :param settle_interval: seconds between those looks.
    :param uploads_per_try: how many times one try uploads a source again after a look found nothing,
        before it leaves the source ambiguous for the next try.
    """

    lister: RecordingLister
    settle_polls: int = 3
    settle_interval: float = 2.0
    uploads_per_try: int = 2


MATCH_FIELDS: dict[str, str] = {
    "title": "title",
    "user_id": "userId",
    "user_email": "userEmail",
    "user_phone": "userPhone",
    "organization_id": "organizationId",
    "conversation_type": "conversationType",
    "date_created": "dateCreated",
    "result": "result",
    "discoverable": "discoverable",
}
"""Recording fields a lost create can be recognised by (operator argument -> wire name), kept in an
ambiguous ledger entry. Never the audio's URL (a signed URL is a credential) nor the customer's
contact details."""


def match_body(fields: RecordingFields) -> dict[str, Any]:
    """The fields of ``fields``' create call that identify its recording in Siro's list (see
    :data:`MATCH_FIELDS`), by wire name. Accepts values keyed by argument or by wire name."""
    wire_names = set(MATCH_FIELDS.values())
    body: dict[str, Any] = {}
    for name, value in fields.values.items():
        wire = MATCH_FIELDS.get(name, name if name in wire_names else None)
        if wire is not None:
            body[wire] = value
    return body


def default_reconcile(hook: object, ledger: UploadLedger | None) -> Reconcile | None:
    """Reconciling as it is by default: on where a ledger is set and the hook can list recordings."""
    if ledger is None or not callable(getattr(hook, "list_recordings", None)):
        return None
    return Reconcile(hook)  # type: ignore[arg-type]


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _find(reconcile: Reconcile, body: Mapping[str, Any], sent_at: datetime) -> str | None:
    from airflow_provider_siro.utils.reconcile import find_created_recording

    return find_created_recording(
        reconcile.lister,
        body,
        sent_at,
        settle_polls=reconcile.settle_polls,
        settle_interval=reconcile.settle_interval,
    )


def _candidates(exc: BaseException) -> tuple[str, ...] | None:
    """The candidate IDs of a ``SiroReconcileError`` (duck-typed: utils does not pin its class)."""
    found = getattr(exc, "candidates", None)
    if type(exc).__name__ != "SiroReconcileError" or found is None:
        return None
    return tuple(str(c) for c in found)


@dataclass(frozen=True)
class Uploaded:
    recording_id: str
    reused: bool
    """True when nothing was sent for this source in this try: the ledger had it, or an earlier try's
    lost create was found in Siro."""
    reconciled: bool = False
    """True when the recording was found in Siro's list after its create call's answer was lost."""


class _SourceUpload:
    """One source's way through the ledger and Siro (see :func:`upload_source`)."""

    def __init__(
        self,
        hook: SiroHook,
        source: Source,
        fields: RecordingFields,
        ledger: UploadLedger | None,
        log: Logger,
        reconcile: Reconcile | None,
    ) -> None:
        self.hook, self.source, self.fields, self.ledger = hook, source, fields, ledger
        self.log, self.reconcile = log, reconcile
        self.claim: Claim | None = None

    def settle_prior(self, prior: Entry) -> str | None:
        """Decide an ambiguous state inherited from an earlier try: its recording's ID, or None to upload."""
        ledger, claim, source = self.ledger, self.claim, self.source
        assert ledger is not None and claim is not None
        body = dict(prior.body) or match_body(self.fields)
        sent_at = _parse_time(prior.sent_at) or _parse_time(prior.at) or datetime.now(UTC)
        if self.reconcile is None:
            self._keep_ambiguous(prior.detail, body, prior.sent_at)
            raise SiroLedgerError(
                source.given,
                f"an earlier try's create call ({prior.sent_at or prior.at}) failed after Siro may have "
                f"acted on it, so the recording may or may not exist ({prior.detail}). Check Siro for it, "
                f"then settle the ledger entry {prior.where}: `{ledger.command('settle', prior.where, 'ID')}` "
                f"if Siro has it, `{ledger.command('forget', prior.where)}` to upload it again",
            )
        self.log.info(
            "%s: an earlier try's create call (%s) may have made a recording; looking for it in Siro",
            source.label,
            prior.sent_at or prior.at,
        )
        found = self._look_up(body, sent_at, prior.sent_at, prior.detail)
        if found is not None:
            self._record_reconciled(found, f"found in Siro after: {prior.detail}")
            return found
        self.log.info("%s: Siro has no recording from that call; uploading it again", source.label)
        return None

    def _look_up(
        self, body: Mapping[str, Any], sent_at: datetime, sent_text: str | None, why: str
    ) -> str | None:
        """Reconcile; on several candidates or a failed look, keep the state ambiguous and raise."""
        assert self.reconcile is not None
        try:
            return _find(self.reconcile, body, sent_at)
        except Exception as exc:
            candidates = _candidates(exc)
            self._keep_ambiguous(why, body, sent_text, candidates or ())
            if candidates is not None and self.ledger is not None:
                where = self.ledger.entry_location(self.source)
                raise SiroLedgerError(
                    self.source.given,
                    f"its create call's answer was lost, and Siro has {len(candidates)} recordings it may "
                    f"have made: {', '.join(candidates)}. Settle the ledger entry {where} with the right one: "
                    f"`{self.ledger.command('settle', where, 'ID')}`",
                ) from exc
            raise

    def _keep_ambiguous(
        self, detail: str, body: Mapping[str, Any], sent_at: str | None, candidates: tuple[str, ...] = ()
    ) -> None:
        if self.ledger is None or self.claim is None:
            return
        claim, self.claim = self.claim, None
        try:
            self.ledger.record_ambiguous(
                claim, self.source, detail, body=body, sent_at=sent_at, candidates=candidates
            )
        except Exception as exc:  # the claim stays and says the create was sent: still ambiguous
            self.log.error(
                "Could not write the ambiguous ledger entry of %s (%s: %s); its claim says the same",
                self.source.label,
                type(exc).__name__,
                exc,
            )

    def _record_reconciled(self, recording_id: str, detail: str) -> None:
        if self.ledger is None or self.claim is None:
            return
        claim, self.claim = self.claim, None
        try:
            self.ledger.record_reconciled(claim, self.source, recording_id, detail)
        except Exception as exc:
            raise self._entry_not_written(recording_id, exc) from None

    def _entry_not_written(self, recording_id: str, exc: Exception) -> SiroLedgerError:
        assert self.ledger is not None
        where = self.ledger.entry_location(self.source)
        return SiroLedgerError(
            self.source.given,
            f"Siro recording {recording_id} is this source's, but its ledger entry {where} could not be "
            f"written ({type(exc).__name__}: {exc}). Once the store works, record it with "
            f"`{self.ledger.command('settle', where, recording_id)}`; until then a re-run "
            "finds the claim this try left and looks the recording up in Siro instead of uploading it",
        )

    def create_once(self) -> tuple[str, str | None]:
        """Upload the bytes and send the create call: ``("created", ID)``; ``("reconciled", ID)`` when the
        answer was lost and a look in Siro found the recording; ``("again", None)`` when it found none."""
        source, fields, hook, ledger = self.source, self.fields, self.hook, self.ledger
        download_url = hook.upload_audio(source.opener, source.size, fields.file_type, label=source.label)
        body = match_body(fields)
        sent = datetime.now(UTC)
        sent_text = sent.isoformat()
        if ledger is not None and self.claim is not None:
            ledger.mark_sending(self.claim, source, body, sent_text)
            if not ledger.holds(self.claim):
                raise AirflowException(
                    f"{source.label}: another try took over this upload's ledger claim (claim_timeout "
                    "passed); not creating the recording, so it cannot be created twice"
                )
        try:
            return "created", hook.create_recording(download_url, fields)
        except SiroAmbiguousCreateError as exc:
            if self.reconcile is None:
                self._keep_ambiguous(str(exc), body, sent_text)
                raise
            self.log.warning("%s: %s; looking for the recording in Siro", source.label, exc)
            found = self._look_up(body, sent, sent_text, str(exc))
            if found is not None:
                self.log.info("%s: found Siro recording %s, made by that call", source.label, found)
                self._record_reconciled(found, f"found in Siro after: {exc}")
                return "reconciled", found
            return "again", None

    def run(self, *, announce: bool, known_absent: bool) -> Uploaded:
        source, ledger, log = self.source, self.ledger, self.log
        if ledger is not None:
            found = ledger.acquire(source, known_absent=known_absent)
            if isinstance(found, Entry):
                log.info(
                    "%s is already Siro recording %s (ledger entry of %s); not uploading it again",
                    source.label,
                    found.recording_id,
                    found.at,
                )
                return Uploaded(str(found.recording_id), reused=True)
            self.claim = found
        started = time.monotonic()
        try:
            if self.claim is not None and self.claim.prior is not None:
                settled = self.settle_prior(self.claim.prior)
                if settled is not None:
                    log.info("%s is Siro recording %s (found in Siro)", source.label, settled)
                    return Uploaded(settled, reused=True, reconciled=True)
            uploads = 0
            while True:
                log.log(
                    logging.INFO if announce else logging.DEBUG,
                    "Uploading %s (%d bytes, %s) to Siro",
                    source.label,
                    source.size,
                    self.fields.file_type,
                )
                uploads += 1
                outcome, recording_id = self.create_once()
                if outcome == "reconciled" and recording_id is not None:
                    return Uploaded(recording_id, reused=False, reconciled=True)
                if outcome == "created":
                    break
                assert self.reconcile is not None
                if uploads > self.reconcile.uploads_per_try:
                    detail = f"{uploads} create calls lost their answers and none was found in Siro"
                    self._keep_ambiguous(detail, match_body(self.fields), None)
                    raise SiroLedgerError(source.given, f"{detail}; the next try looks again")
                log.info(
                    "%s: Siro has no recording from the lost create call; uploading it again", source.label
                )
        except BaseException:
            if ledger is not None and self.claim is not None:
                ledger.release(self.claim)  # nothing was created: the next try may upload it
            raise
        assert recording_id is not None
        if ledger is not None and self.claim is not None:
            claim, self.claim = self.claim, None
            try:
                ledger.record_created(claim, source, recording_id)
            except Exception as exc:
                raise self._entry_not_written(recording_id, exc) from None
        log.info(
            "Created Siro recording %s for %s from %s (%d bytes) in %.1f s",
            recording_id,
            self.fields.user,
            source.label,
            source.size,
            time.monotonic() - started,
        )
        return Uploaded(recording_id, reused=False)


def upload_source(
    hook: SiroHook,
    source: Source,
    fields: RecordingFields,
    ledger: UploadLedger | None,
    log: Logger,
    *,
    announce: bool = True,
    reconcile: Reconcile | bool = True,
    known_absent: bool = False,
) -> Uploaded:
    """Upload ``source`` and create its recording, unless the ledger says it is one already.

    :param announce: log a line as the upload starts (as well as when it is created). A batch leaves
        it to its progress lines: one line per file is enough in a log of thousands.
    :param reconcile: ``True``: look a lost create up in Siro where a ledger is set
        (:func:`default_reconcile`); ``False``: never; or a :class:`Reconcile` to use.
    :param known_absent: the caller has just found no ledger entry for the source.

    :raises SiroLedgerError: the ledger cannot vouch for the source (its entry is damaged; an ambiguous
        create that reconciling could not settle or is off; several candidate recordings), or the
        recording was created and its entry could not be written. None of them is retried.
    :raises SiroAmbiguousCreateError: the create call's answer was lost and reconciling is off.
    """
    chosen = default_reconcile(hook, ledger) if reconcile is True else reconcile or None
    return _SourceUpload(hook, source, fields, ledger, log, chosen).run(
        announce=announce, known_absent=known_absent
    )


class _Progress:
    """Files done, bytes sent, rate and ETA across a batch, logged on a clock (and at the end).

    Files the ledger already had were counted before the batch started and are not in these numbers:
    the rate is over bytes actually sent, the ETA over bytes still to send.
    """

    def __init__(
        self, total_files: int, total_bytes: int, recorded: int, interval: float, log: Logger
    ) -> None:
        self.total_files, self.total_bytes, self.recorded = total_files, total_bytes, recorded
        self.interval, self.log = interval, log
        self.files = self.uploaded = self.reused = self.failed = self.bytes = 0
        self.started = self.last = time.monotonic()
        self.lock = threading.Lock()

    def done(self, size: int, *, sent: bool = False, reused: bool = False, failed: bool = False) -> None:
        """One file finished: ``sent`` its bytes and created (or found) its recording, ``reused`` an
        entry that appeared while it waited (another try uploaded it), or ``failed``."""
        with self.lock:
            self.files += 1
            self.uploaded += sent
            self.bytes += size if sent else 0
            self.reused += reused
            self.failed += failed
            now = time.monotonic()
            if now - self.last < self.interval and self.files < self.total_files:
                return
            self.last = now
            elapsed = max(now - self.started, 1e-9)
            rate = self.bytes / elapsed
            eta = (self.total_bytes - self.bytes) / rate if rate else 0.0
            self.log.info(
                "Siro bulk upload: %d of %d files done: %d uploaded (%.1f of %.1f MB, %.1f MB/s), "
                "%d recorded by another try meanwhile, %d failed; ETA %.0f s",
                self.files,
                self.total_files,
                self.uploaded,
                self.bytes / 1e6,
                self.total_bytes / 1e6,
                rate / 1e6,
                self.reused,
                self.failed,
                eta,
            )


def map_threads(function: Callable[..., object], items: Sequence[object], width: int) -> list[object]:
    """``function`` over ``items`` on ``width`` threads; each result is the return value or the exception."""

    def run(item: object) -> object:
        try:
            return function(item)
        except Exception as exc:  # collected: one bad file must not stop the others
            return exc

    if width <= 1 or len(items) <= 1:
        return [run(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(width, len(items)), thread_name_prefix="siro-upload") as pool:
        return list(pool.map(run, items))


def upload_many(
    hook: SiroHook,
    work: Sequence[tuple[Source, RecordingFields]],
    ledger: UploadLedger | None,
    width: int,
    log: Logger,
    progress_interval: float,
    *,
    reconcile: Reconcile | bool = True,
) -> tuple[dict[str, str], dict[str, BaseException]]:
    """Upload every source on ``width`` threads through ``hook``.

    Sources that are one file (the same path twice, a symlink and its target, two hard links) are
    uploaded once, and each key gets its ID. With a ledger, every source is looked up first: those it
    has are counted apart and never touch Siro, and a damaged entry fails the task before any request.

    :param work: sources and their fields, as :func:`~airflow_provider_siro.utils.bulk.plan_uploads`
        returns them.
    :param reconcile: as for :func:`upload_source`.
    :return: recording IDs and failures, each keyed by the source as the DAG gave it.
    """
    groups: dict[tuple[str, int, str], list[tuple[Source, RecordingFields]]] = {}
    for source, fields in work:
        groups.setdefault((source.key, source.size, source.version), []).append((source, fields))
    unique = [items[0] for items in groups.values()]
    for items in groups.values():
        (first, fields), others = items[0], items[1:]
        for source, other in others:
            log.warning(
                "%s is the same file as %s: uploaded once, as %s%s",
                source.label,
                first.label,
                first.label,
                "" if other == fields else f" with {first.label}'s recording fields",
            )
    ids: dict[str, str] = {}
    known: dict[int, Entry] = {}
    if ledger is not None:

        def look(item: object) -> Entry | None:
            return ledger.lookup(item[0])  # type: ignore[index]

        looked = map_threads(look, unique, width)
        for outcome in looked:
            if isinstance(outcome, SiroLedgerError):
                raise outcome  # a damaged entry: fail now, before any request, naming it
        for index, outcome in enumerate(looked):
            if isinstance(outcome, BaseException):
                raise outcome  # the ledger's store cannot be reached: Airflow's retries apply
            if isinstance(outcome, Entry) and outcome.final:
                known[index] = outcome
    to_send = [item for index, item in enumerate(unique) if index not in known]
    total_bytes = sum(source.size for source, _ in to_send)
    repeated = len(work) - len(unique)
    also = f"; {repeated} listed again under another name, uploaded once" if repeated else ""
    if to_send:
        log.info(
            "Uploading %d of %d files to Siro (%.1f MB), %d at a time; %d already recorded in the ledger%s",
            len(to_send),
            len(unique),
            total_bytes / 1e6,
            min(width, len(to_send)),
            len(known),
            also,
        )
    else:
        log.info("Nothing to upload: all %d files are already recorded in the ledger%s", len(unique), also)
    for index, entry in known.items():
        source = unique[index][0]
        log.info(
            "%s is already Siro recording %s (ledger entry of %s); not uploading it again",
            source.label,
            entry.recording_id,
            entry.at,
        )
        ids[source.given] = str(entry.recording_id)
    progress = _Progress(len(to_send), total_bytes, len(known), progress_interval, log)
    chosen = default_reconcile(hook, ledger) if reconcile is True else reconcile or None

    def one(item: object) -> Uploaded:
        one_source, one_fields = cast("tuple[Source, RecordingFields]", item)
        try:
            uploaded = _SourceUpload(hook, one_source, one_fields, ledger, log, chosen).run(
                announce=False, known_absent=ledger is not None
            )
        except Exception as exc:
            log.error("Upload of %s failed: %s", one_source.label, exc)
            progress.done(one_source.size, failed=True)
            raise
        progress.done(one_source.size, sent=not uploaded.reused, reused=uploaded.reused)
        return uploaded

    outcomes = map_threads(one, to_send, width)
    failures: dict[str, BaseException] = {}
    for (source, _), outcome in zip(to_send, outcomes, strict=True):
        if isinstance(outcome, Uploaded):
            ids[source.given] = outcome.recording_id
        else:
            failures[source.given] = outcome  # type: ignore[assignment]
    for items in groups.values():
        first_given = items[0][0].given
        for twin, _ in items[1:]:
            if first_given in ids:
                ids[twin.given] = ids[first_given]
            elif first_given in failures:
                failures[twin.given] = failures[first_given]
    return ids, failures
