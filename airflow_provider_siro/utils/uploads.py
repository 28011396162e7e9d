"""Upload located sources through a hook, consulting the upload ledger; one file, or many at once.

The hook is passed in, so nothing here speaks HTTP itself. :func:`upload_source` is the whole life of
one source: look it up in the ledger, claim it, stream it, create the recording, write the entry.
:func:`upload_many` runs that for many sources on a thread pool through one hook (one token, one
machine-wide pace), logs progress across the batch, and keeps going past a failed file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_siro.compat import AirflowException
from airflow_provider_siro.exceptions import SiroAmbiguousCreateError, SiroLedgerError
from airflow_provider_siro.payload import RecordingFields
from airflow_provider_siro.utils.ledger import Claim, UploadLedger
from airflow_provider_siro.utils.sources import Source

if TYPE_CHECKING:
    from airflow_provider_siro.compat import Logger
    from airflow_provider_siro.hooks.siro import SiroHook


@dataclass(frozen=True)
class Uploaded:
    recording_id: str
    reused: bool
    """True when the ledger already had the source and nothing was sent."""


def upload_source(
    hook: SiroHook,
    source: Source,
    fields: RecordingFields,
    ledger: UploadLedger | None,
    log: Logger,
    *,
    announce: bool = True,
) -> Uploaded:
    """Upload ``source`` and create its recording, unless the ledger says it is one already.

    :param announce: log a line as the upload starts (as well as when it is created). A batch leaves
        it to its progress lines: one line per file is enough in a log of thousands.

    :raises SiroLedgerError: the ledger has an ambiguous entry for this version of the source (an
        earlier create call may have succeeded), or the recording was created and its entry could not
        be written. Neither is retried.
    """
    claim: Claim | None = None
    if ledger is not None:
        found = ledger.acquire(source)
        if not isinstance(found, Claim):
            if found.status == "created" and found.recording_id:
                log.info(
                    "%s is already Siro recording %s (ledger entry of %s); not uploading it again",
                    source.label,
                    found.recording_id,
                    found.at,
                )
                return Uploaded(str(found.recording_id), reused=True)
            raise SiroLedgerError(
                source.given,
                f"an earlier try's create call ({found.at}) failed after Siro may have acted on it, so "
                "the recording may or may not exist. Check Siro for it, then settle the ledger entry "
                f"{found.where}: UploadLedger(ledger_path).settle(source, recording_id) if Siro has it, "
                f"settle(source) to upload it again if not. The error was: {found.detail}",
            )
        claim = found
    try:
        log.log(
            logging.INFO if announce else logging.DEBUG,
            "Uploading %s (%d bytes, %s) to Siro",
            source.label,
            source.size,
            fields.file_type,
        )
        started = time.monotonic()
        download_url = hook.upload_audio(source.opener, source.size, fields.file_type, label=source.label)
        if ledger is not None and claim is not None and not ledger.holds(claim):
            raise AirflowException(
                f"{source.label}: another try took over this upload's ledger claim (claim_timeout passed); "
                "not creating the recording, so it cannot be created twice"
            )
        try:
            recording_id = hook.create_recording(download_url, fields)
        except SiroAmbiguousCreateError as exc:
            if ledger is not None and claim is not None:
                ledger.record_ambiguous(claim, source, str(exc))
                claim = None
            raise
    except BaseException:
        if ledger is not None and claim is not None:
            ledger.release(claim)  # nothing was created: the next try may upload it
        raise
    if ledger is not None and claim is not None:
        try:
            ledger.record_created(claim, source, recording_id)
        except Exception as exc:
            raise SiroLedgerError(
                source.given,
                f"Siro created recording {recording_id}, but its ledger entry "
                f"{ledger.entry_location(source)} could not be written ({type(exc).__name__}: {exc}). "
                f"Settle it with UploadLedger(ledger_path).settle(source, {recording_id!r}) once the "
                "store works, or a re-run uploads the file again",
            ) from None
    log.info(
        "Created Siro recording %s for %s from %s (%d bytes) in %.1f s",
        recording_id,
        fields.user,
        source.label,
        source.size,
        time.monotonic() - started,
    )
    return Uploaded(recording_id, reused=False)


class _Progress:
    """Files done, bytes, rate and ETA across a batch, logged on a clock (and at the end)."""

    def __init__(self, total_files: int, total_bytes: int, interval: float, log: Logger) -> None:
        self.total_files, self.total_bytes = total_files, total_bytes
        self.interval, self.log = interval, log
        self.files = self.reused = self.failed = self.bytes = 0
        self.started = self.last = time.monotonic()
        self.lock = threading.Lock()

    def done(self, size: int, *, reused: bool = False, failed: bool = False) -> None:
        with self.lock:
            self.files += 1
            self.bytes += size
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
                "Siro bulk upload: %d of %d files (%d already in the ledger, %d failed), %.1f of %.1f MB, "
                "%.1f MB/s, %.1f files/s, ETA %.0f s",
                self.files,
                self.total_files,
                self.reused,
                self.failed,
                self.bytes / 1e6,
                self.total_bytes / 1e6,
                rate / 1e6,
                self.files / elapsed,
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
) -> tuple[dict[str, str], dict[str, BaseException]]:
    """Upload every source on ``width`` threads through ``hook``.

    :return: recording IDs and failures, each keyed by the source as the DAG gave it.
    """
    progress = _Progress(len(work), sum(source.size for source, _ in work), progress_interval, log)

    def one(item: tuple[Source, RecordingFields]) -> Uploaded:
        source, fields = item
        try:
            uploaded = upload_source(hook, source, fields, ledger, log, announce=False)
        except Exception as exc:
            log.error("Upload of %s failed: %s", source.label, exc)
            progress.done(source.size, failed=True)
            raise
        progress.done(source.size, reused=uploaded.reused)
        return uploaded

    outcomes = map_threads(one, list(work), width)
    ids: dict[str, str] = {}
    failures: dict[str, BaseException] = {}
    for (source, _), outcome in zip(work, outcomes, strict=True):
        if isinstance(outcome, Uploaded):
            ids[source.given] = outcome.recording_id
        else:
            failures[source.given] = outcome  # type: ignore[assignment]
    return ids, failures
