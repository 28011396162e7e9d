"""The upload ledger: which sources are already Siro recordings, kept in storage every worker can reach.

Siro has no idempotency key, so a cleared run, an overlapping daily listing or an asset event that fires
twice would upload a call again. The ledger remembers each uploaded source and the recording ID Siro
gave it, keyed by two things:

* the source: its identity (see :mod:`airflow_provider_siro.utils.sources`: a local file's real path,
  or its device and inode when it has several hard links; an object's URL), its size, and the store's
  version of the content;
* the destination: Siro's API base URL and the account the recording is created in, from
  ``SiroHook.destination()`` (the OAuth app and user a connection mints tokens for, or the account a
  pasted token's connection names), never the token. The same file through two accounts is two
  recordings; the same file through the same account, re-run, is none.

Layout under the ledger's root, one folder per source, one entry per version and destination::

    <ledger_path>/<sha256(identity)[:32]>/<sha256(identity, size, version, destination)[:32]>.json
    <ledger_path>/<sha256(identity)[:32]>/<sha256(identity, size, version, destination)[:32]>.claim-000000

An entry (JSON) holds the source, size, version, destination, ``status`` and the recording ID:

* ``created`` - Siro answered the create call with this recording ID;
* ``reconciled`` - the create call's answer was lost, and a look in Siro's list of recordings found
  exactly one recording it made (see :mod:`airflow_provider_siro.utils.reconcile`);
* ``ambiguous`` - the create call may or may not have made a recording, and nothing settled it yet.
  Such a source is never uploaded again without a decision: a later try reconciles it against Siro,
  or a person settles it with :meth:`UploadLedger.settle`.

A claim is written, with the store's exclusive create, by the try that is uploading that version right
now. It names its holder (dag, task, run, map index, try) and, just before the create call is sent,
records that it was sent and when. A concurrent try of another task instance waits for the entry, up to
``claim_timeout``; a later try of the same task instance knows the earlier try is over and takes the
claim at once. A claim taken over (either way) whose holder had sent its create call is taken as
ambiguous, never as free, and the taker's claim says so too: a taker that also ends without writing an
entry leaves the source ambiguous for the next. A taker writes the next generation (``.claim-000001``), again exclusively, so
two takers cannot both win.

Exclusive create: local paths use ``O_CREAT | O_EXCL``; S3 (s3fs) sends ``PutObject`` with
``If-None-Match: *`` and GCS (gcsfs) ``ifGenerationMatch=0``; any other store falls back to fsspec's
check-then-write, which two simultaneous tries can both pass (logged as a warning).

A damaged entry (unreadable, or not an entry) is never guessed around: the task fails at once naming
the entry and the command that resets it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_provider_siro.exceptions import SiroLedgerError
from airflow_provider_siro.utils.sources import Source, canonical_location, is_local

FINAL_STATUSES = frozenset({"created", "reconciled"})
"""Entry statuses that name the source's recording: a try finding one reuses its ID."""

ENTRY_WRITE_ATTEMPTS = 4
"""Tries at writing an entry after Siro created the recording, before the task fails naming the ID."""

EXCLUSIVE_PROTOCOLS = frozenset({"file", "local", "s3", "s3a", "gs", "gcs"})
"""Stores whose exclusive create is a single conditional write (see the module docstring)."""

log = logging.getLogger(__name__)


def _digest(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:32]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _LocalStore:
    """A ledger in a local (or network-mounted) folder."""

    protocol = "file"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root[len("file://") :] if root.startswith("file://") else root)

    def _path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def where(self, rel: str) -> str:
        return self._path(rel)

    def read(self, rel: str) -> bytes | None:
        try:
            with open(self._path(rel), "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def write(self, rel: str, data: bytes) -> None:
        path = self._path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)  # a reader sees the old entry or the new one, never half of one

    def create(self, rel: str, data: bytes) -> bool:
        path = self._path(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return True

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._path(rel))

    def names(self, folder: str) -> list[str]:
        try:
            return os.listdir(self._path(folder))
        except FileNotFoundError:
            return []


class _ObjectStore:
    """A ledger under any URL Airflow's object storage reaches (``s3://bucket/prefix/``, ``gs://...``)."""

    def __init__(self, root: str, conn_id: str | None) -> None:
        from airflow_provider_siro.compat import ObjectStoragePath

        path = ObjectStoragePath(root, conn_id=conn_id)
        self.protocol = path.protocol
        self.fs = path.fs
        self.base = path.path.rstrip("/")
        self.url = f"{path.protocol}://{self.base}"
        self._warned = False

    def _path(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def where(self, rel: str) -> str:
        return f"{self.url}/{rel}"

    def read(self, rel: str) -> bytes | None:
        try:
            data: bytes = self.fs.cat_file(self._path(rel))
            return data
        except FileNotFoundError:
            return None

    def write(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(rel), data)  # one PUT: readers see the whole object or none

    def create(self, rel: str, data: bytes) -> bool:
        if self.protocol not in EXCLUSIVE_PROTOCOLS and not self._warned:
            self._warned = True
            log.warning(
                "The ledger's store (%s) has no conditional write the provider knows of: two tries that "
                "claim the same source at the same moment may both upload it",
                self.protocol,
            )
        try:
            self.fs.pipe_file(self._path(rel), data, mode="create")
        except FileExistsError:
            return False
        return True

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(rel))

    def names(self, folder: str) -> list[str]:
        path = self._path(folder)
        self.fs.invalidate_cache(path)  # s3fs caches listings; a claim must be seen the moment it exists
        try:
            return [name.rstrip("/").rsplit("/", 1)[-1] for name in self.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []


@dataclass(frozen=True)
class Holder:
    """The task instance and try that holds a claim (or wrote an entry)."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "map_index": self.map_index,
            "try_number": self.try_number,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Holder | None:
        if not isinstance(data, Mapping):
            return None
        try:
            return cls(
                str(data["dag_id"]),
                str(data["task_id"]),
                str(data["run_id"]),
                int(data["map_index"]),
                int(data["try_number"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def is_earlier_try_of(self, other: Holder) -> bool:
        """True if this is an earlier try of ``other``'s task instance (so it is over: Airflow runs one
        try of a task instance at a time), or the same try number of it: a claim ``other`` did not make
        (acquire checks its own first) yet naming its very try was left by an earlier incarnation of the
        run, deleted and created again under the same run ID (as ``dag.test()`` / ``airflow dags test``
        do on the same logical date), whose try is over as well."""
        same = (self.dag_id, self.task_id, self.run_id, self.map_index) == (
            other.dag_id,
            other.task_id,
            other.run_id,
            other.map_index,
        )
        return same and self.try_number <= other.try_number

    def __str__(self) -> str:
        index = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.dag_id}/{self.run_id}/{self.task_id}{index} try {self.try_number}"


@dataclass(frozen=True)
class Entry:
    """What the ledger knows of one version of a source at one destination.

    :param status: ``created``, ``reconciled`` or ``ambiguous`` (see the module docstring).
    :param where: the entry's location in the store, for messages.
    :param body: for an ambiguous create, the fields of the create call that Siro's list of recordings
        can be matched on (title, user, date, result, discoverable; never the audio's URL).
    :param sent_at: for an ambiguous create, when the call was sent (ISO 8601, UTC).
    :param candidates: recordings a reconciliation found more than one of.
    """

    status: str
    recording_id: str | None
    at: str
    where: str
    detail: str = ""
    destination: str = ""
    body: Mapping[str, Any] = field(default_factory=dict)
    sent_at: str | None = None
    candidates: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES and bool(self.recording_id)


@dataclass(frozen=True)
class Claim:
    """This try's right to upload one version of a source.

    :param prior: set when this claim inherits an ambiguous state: an ambiguous entry, or a claim taken
        over from a try that had sent its create call and never recorded the answer. The source must be
        reconciled (or settled by hand) before it is uploaded again.
    """

    folder: str
    key: str
    generation: int
    owner: str
    prior: Entry | None = None

    @property
    def name(self) -> str:
        return f"{self.folder}/{self.key}.claim-{self.generation:06d}"


@dataclass(frozen=True)
class _ClaimInfo:
    age: float
    owner: str
    holder: Holder | None
    stage: str | None
    sent_at: str | None
    body: Mapping[str, Any]


class UploadLedger:
    """The upload ledger at ``path``; see the module docstring for its layout and guarantees.

    :param path: a local folder, ``file://`` URL, or any URL Airflow's object storage reaches.
    :param conn_id: the connection object storage uses for ``path``.
    :param destination: where recordings are created (``SiroHook.destination()``); part of every
        entry's key. Only a ledger that reads or writes entries for uploads needs it; the ledger command
        lists and settles entries of every destination.
    :param claim_timeout: seconds after which another task instance's claim counts as abandoned (its
        worker died) and is taken over (as ambiguous if it had sent its create call). Longer than the
        slowest single upload, or a slow try and its taker both upload. A later try of the same task
        instance does not wait: it knows the earlier try is over.
    :param poll_interval: seconds between looks at a claim held by another try.
    :param owner: names this try in claims and log lines.
    :param holder: this try's task instance and try number, recorded in its claims (``ledger_for``
        fills it from the task's context).
    """

    def __init__(
        self,
        path: str,
        conn_id: str | None = None,
        *,
        destination: str = "",
        claim_timeout: float = 3600.0,
        poll_interval: float = 1.0,
        owner: str = "",
        holder: Holder | None = None,
    ) -> None:
        self.path = path
        self.conn_id = conn_id
        self.store: _LocalStore | _ObjectStore = (
            _LocalStore(path) if is_local(path) else _ObjectStore(path, conn_id)
        )
        self.destination = destination
        self.claim_timeout = claim_timeout
        self.poll_interval = poll_interval
        self.holder = holder
        self.owner = owner or (str(holder) if holder else f"{socket.gethostname()} pid {os.getpid()}")

    # ------------------------------------------------------------------ keys
    @staticmethod
    def _folder(identity: str) -> str:
        return _digest(identity)

    def _key(self, source: Source) -> str:
        return _digest(source.key, source.size, source.version, self.destination)

    def _entry_rel(self, source: Source) -> str:
        return f"{self._folder(source.key)}/{self._key(source)}.json"

    def entry_location(self, source: Source) -> str:
        """Where ``source``'s entry for this ledger's destination is (or will be), for messages."""
        return self.store.where(self._entry_rel(source))

    def command(self, verb: str, target: str, recording_id: str | None = None) -> str:
        """The shell command (:mod:`airflow_provider_siro.cli.ledger`) that does ``verb`` (``forget`` or
        ``settle``) to ``target``, for messages: ``settle`` records ``recording_id``, or with None
        (Siro has no such recording) deletes the entry so the next run uploads the source."""
        words = ["python", "-m", "airflow_provider_siro", "ledger", verb, self.path, target]
        if self.conn_id:
            words += ["--conn-id", self.conn_id]
        if verb == "settle":
            words += ["--recording-id", recording_id] if recording_id else ["--none"]
        return shlex.join(words)

    # ------------------------------------------------------------------ reading
    def _read_entry(self, rel: str, given: str) -> dict[str, Any] | None:
        """The raw entry at ``rel``; raise :class:`SiroLedgerError` (not retried) if it is damaged."""
        where = self.store.where(rel)
        try:
            raw = self.store.read(rel)
        except (IsADirectoryError, NotADirectoryError, PermissionError) as exc:
            raise self._damaged(given, where, f"it cannot be read ({type(exc).__name__}: {exc})") from None
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise self._damaged(given, where, f"it is not JSON ({exc})") from None
        problem = _entry_problem(data)
        if problem:
            raise self._damaged(given, where, problem)
        return dict(data)

    def _damaged(self, given: str, where: str, problem: str) -> SiroLedgerError:
        return SiroLedgerError(
            given,
            f"the upload ledger's entry {where} is damaged: {problem}. The provider will not guess what it "
            f"said. Check Siro for this source's recording, then reset the entry with "
            f"`{self.command('forget', where)}` (the next run uploads the source) or "
            f"`{self.command('settle', where, 'ID')}` (it records that ID)",
        )

    def lookup(self, source: Source) -> Entry | None:
        """The entry for this version of ``source`` at this destination, or None if no try finished it.

        :raises SiroLedgerError: the entry is damaged (not retried).
        """
        rel = self._entry_rel(source)
        data = self._read_entry(rel, source.given)
        return None if data is None else _entry_of(data, self.store.where(rel))

    def _claims(self, folder: str, key: str) -> list[tuple[int, str]]:
        prefix = f"{key}.claim-"
        found = []
        for name in self.store.names(folder):
            if name.startswith(prefix) and name[len(prefix) :].isdigit():
                found.append((int(name[len(prefix) :]), name))
        return sorted(found)

    def _claim_info(self, folder: str, name: str) -> _ClaimInfo:
        raw = self.store.read(f"{folder}/{name}")
        try:
            data = json.loads(raw or b"")
            return _ClaimInfo(
                time.time() - float(data["since"]),
                str(data.get("owner", "?")),
                Holder.from_dict(data.get("holder")),
                data.get("stage"),
                data.get("sent_at"),
                dict(data.get("body") or {}),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            # Being written (local files are created empty, then filled): a fresh claim.
            return _ClaimInfo(0.0, "?", None, "claimed", None, {})

    # ------------------------------------------------------------------ claiming
    def acquire(
        self, source: Source, stop: threading.Event | None = None, *, known_absent: bool = False
    ) -> Entry | Claim:
        """Return the entry if this version is recorded, else claim it, waiting while another try holds it.

        :param known_absent: the caller has just looked the source up and found no entry (a bulk task
            looks every source up first): skip the first look.
        :return: a final entry (``created``/``reconciled``: reuse its ID), or a :class:`Claim`, whose
            ``prior`` is set when the source's state is ambiguous.
        :raises SiroLedgerError: the source's entry is damaged.
        """
        folder, key = self._folder(source.key), self._key(source)
        waited_for = ""
        first = True
        while True:
            entry = None if (first and known_absent) else self.lookup(source)
            first = False
            if entry is not None and entry.final:
                return entry
            prior = entry if entry is not None and entry.status == "ambiguous" else None
            claims = self._claims(folder, key)
            generation = 0
            if claims:
                generation, name = claims[-1]
                info = self._claim_info(folder, name)
                over = bool(self.holder and info.holder and info.holder.is_earlier_try_of(self.holder))
                if not over and info.age < self.claim_timeout:
                    if waited_for != info.owner:
                        waited_for = info.owner
                        log.info(
                            "%s is being uploaded by another try (%s, for %.0f s); waiting for its result",
                            source.label,
                            info.owner,
                            info.age,
                        )
                    if stop is not None and stop.is_set():
                        raise TimeoutError(f"{source.label}: stopped while waiting for {info.owner}")
                    time.sleep(self.poll_interval)
                    continue
                why = (
                    "that try is over"
                    if over
                    else f"it is {info.age:.0f} s old, claim_timeout {self.claim_timeout:.0f} s"
                )
                sent = info.stage != "claimed"  # "creating", or a claim that does not say: sent
                log.warning(
                    "Taking over the claim on %s held by %s (%s); %s",
                    source.label,
                    info.owner,
                    why,
                    "it had sent the create call, so the recording may exist"
                    if sent
                    else "it had not sent the create call",
                )
                if sent and prior is None:
                    prior = Entry(
                        "ambiguous",
                        None,
                        _now(),
                        self.store.where(self._entry_rel(source)),
                        f"{info.owner} sent the create call{' at ' + info.sent_at if info.sent_at else ''} "
                        "and ended without recording Siro's answer",
                        self.destination,
                        info.body,
                        info.sent_at,
                    )
                generation += 1
            claim = Claim(folder, key, generation, self.owner, prior)
            nonce = uuid.uuid4().hex
            # A claim that inherits an ambiguous state says so, with how to look the recording up: if
            # this try too ends without writing an entry, the next taker still knows it is ambiguous.
            body = (
                self._claim_body(source, nonce, "claimed")
                if prior is None
                else self._claim_body(
                    source, nonce, "creating", sent_at=prior.sent_at or prior.at, body=dict(prior.body)
                )
            )
            if self.store.create(claim.name, json.dumps(body).encode()) or self._is_ours(claim, nonce):
                entry = self.lookup(source)  # the holder before us may have finished in between
                if entry is not None and entry.final:
                    self.release(claim)
                    return entry
                if entry is not None and entry.status == "ambiguous" and claim.prior is None:
                    claim = Claim(folder, key, generation, self.owner, entry)
                return claim

    def _source_fields(self, source: Source) -> dict[str, Any]:
        """What a claim and an entry both say of the source and where its recording goes."""
        return {
            "source": source.location,
            "identity": source.key,
            "given": source.given,
            "size": source.size,
            "version": source.version,
            "destination": self.destination,
        }

    def _claim_body(self, source: Source, nonce: str, stage: str, **more: Any) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "holder": self.holder.as_dict() if self.holder else None,
            "since": time.time(),
            **self._source_fields(source),
            "nonce": nonce,
            "stage": stage,
            **more,
        }

    def _is_ours(self, claim: Claim, nonce: str) -> bool:
        """True if the claim that "already exists" is the one this call wrote.

        An object store's client retries a conditional PUT whose answer was lost; the retry then meets
        the object its first attempt created (412) and reports it as existing. Without this check the
        try would wait ``claim_timeout`` for itself.
        """
        try:
            found: bool = json.loads(self.store.read(claim.name) or b"").get("nonce") == nonce
            return found
        except (ValueError, AttributeError):
            return False

    def mark_sending(self, claim: Claim, source: Source, body: Mapping[str, Any], sent_at: str) -> None:
        """Record in the claim that the create call is about to be sent, and what it matches on.

        Call it, then :meth:`holds`, then send: a try that takes the claim over later knows from this
        that the recording may exist (and how to look for it in Siro), and one that took it over before
        this write makes :meth:`holds` answer False, so the create is not sent.
        """
        try:
            raw = json.loads(self.store.read(claim.name) or b"{}")
        except ValueError:
            raw = {}
        nonce = str(raw.get("nonce", "")) if isinstance(raw, dict) else ""
        since = raw.get("since") if isinstance(raw, dict) else None
        data = self._claim_body(source, nonce, "creating", sent_at=sent_at, body=dict(body))
        if since is not None:
            data["since"] = since
        self.store.write(claim.name, json.dumps(data).encode())

    def holds(self, claim: Claim) -> bool:
        """True while no later try has taken the claim over (checked just before the create call)."""
        claims = self._claims(claim.folder, claim.key)
        return bool(claims) and claims[-1][0] == claim.generation

    def release(self, claim: Claim) -> None:
        self.store.delete(claim.name)

    # ------------------------------------------------------------------ writing
    def _write(
        self,
        source: Source,
        status: str,
        recording_id: str | None,
        detail: str = "",
        *,
        body: Mapping[str, Any] | None = None,
        sent_at: str | None = None,
        candidates: tuple[str, ...] = (),
        attempts: int = 1,
    ) -> None:
        data = {
            **self._source_fields(source),
            "status": status,
            "recording_id": recording_id,
            "at": _now(),
            "by": self.owner,
            "detail": detail,
        }
        if body:
            data["body"] = dict(body)
        if sent_at:
            data["sent_at"] = sent_at
        if candidates:
            data["candidates"] = list(candidates)
        encoded = json.dumps(data).encode()
        for attempt in range(1, attempts + 1):
            try:
                self.store.write(self._entry_rel(source), encoded)
                return
            except Exception as exc:
                if attempt == attempts:
                    raise
                log.warning(
                    "Writing the ledger entry of %s failed (%s: %s); trying again",
                    source.label,
                    type(exc).__name__,
                    exc,
                )
                time.sleep(min(0.25 * 2**attempt, 2.0))

    def record_created(self, claim: Claim, source: Source, recording_id: str) -> None:
        """Write the ``created`` entry (retried: Siro has the recording now), then release the claim.

        If every attempt fails this raises, and the claim stays: it says the create call was sent, so a
        later try takes it as ambiguous and reconciles, never uploading blindly.
        """
        self._write(source, "created", recording_id, attempts=ENTRY_WRITE_ATTEMPTS)
        self.release(claim)

    def record_reconciled(self, claim: Claim, source: Source, recording_id: str, detail: str) -> None:
        """Write the ``reconciled`` entry of a recording found in Siro, then release the claim."""
        self._write(source, "reconciled", recording_id, detail, attempts=ENTRY_WRITE_ATTEMPTS)
        self.release(claim)

    def record_ambiguous(
        self,
        claim: Claim,
        source: Source,
        detail: str,
        *,
        body: Mapping[str, Any] | None = None,
        sent_at: str | None = None,
        candidates: tuple[str, ...] = (),
    ) -> None:
        """Write the ``ambiguous`` entry, then release the claim (the entry now says what it said)."""
        self._write(source, "ambiguous", None, detail, body=body, sent_at=sent_at, candidates=candidates)
        self.release(claim)

    # ------------------------------------------------------------------ by hand (the ledger command)
    def records(self) -> Iterator[LedgerRecord]:
        """Every entry in the ledger, and every claim that has no entry (a try that may have been cut
        off), of every destination. Damaged entries are listed with status ``damaged``."""
        for folder in sorted(self.store.names("")):
            if len(folder) == 32 and all(c in "0123456789abcdef" for c in folder):
                yield from self._records_in(folder)

    def _records_in(self, folder: str) -> list[LedgerRecord]:
        names = self.store.names(folder)
        keys_with_entries = {n[: -len(".json")] for n in names if n.endswith(".json")}
        found = []
        for name in sorted(names):
            key, _, generation = name.rpartition(".claim-")
            if name.endswith(".json"):
                found.append(self._record(f"{folder}/{name}"))
            elif key and generation.isdigit() and key not in keys_with_entries:
                found.append(self._claim_record(f"{folder}/{name}"))
        return found

    def _record(self, rel: str) -> LedgerRecord:
        try:
            data = self._read_entry(rel, rel)
        except SiroLedgerError as exc:
            return LedgerRecord(self.store.where(rel), rel, "damaged", {"detail": exc.problem})
        return LedgerRecord(self.store.where(rel), rel, str((data or {}).get("status")), data or {})

    def _claim_record(self, rel: str) -> LedgerRecord:
        try:
            data = json.loads(self.store.read(rel) or b"{}")
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            data = {}
        stage = data.get("stage")
        status = "claimed" if stage == "claimed" else "ambiguous (claim)"
        return LedgerRecord(self.store.where(rel), rel, status, data)

    def find(self, target: str) -> list[LedgerRecord]:
        """The records ``target`` names: an entry or claim by its location (as ``list`` shows it), or a
        source by its path or URL (written as the DAG writes it; ``conn_id`` as for the ledger): every
        entry of that source, at every destination, and its claims without an entry."""
        rel = self._rel_of(target)
        if rel is not None:
            if self.store.read(rel) is None:
                return []
            return [self._record(rel) if rel.endswith(".json") else self._claim_record(rel)]
        return self._records_in(self._folder(canonical_location(target, self.conn_id)))

    def _rel_of(self, target: str) -> str | None:
        """``target`` as a path inside the ledger, if it names an entry or a claim there."""
        base = self.store.where("")
        text = target[len(base) :] if target.startswith(base) else target
        parts = text.strip("/").split("/")
        if len(parts) == 2 and len(parts[0]) == 32 and all(c in "0123456789abcdef" for c in parts[0]):
            name = parts[1]
            if name.endswith(".json") or name.rsplit(".claim-", 1)[-1].isdigit():
                return f"{parts[0]}/{name}"
        return None

    def _siblings(self, rel: str) -> list[str]:
        """The entry at ``rel`` (or the claim) and every claim of the same key."""
        folder, name = rel.split("/", 1)
        key = name[: -len(".json")] if name.endswith(".json") else name.rsplit(".claim-", 1)[0]
        return [
            f"{folder}/{n}"
            for n in self.store.names(folder)
            if n == f"{key}.json" or n.startswith(f"{key}.claim-")
        ]

    def forget(self, target: str) -> int:
        """Delete what ``target`` names (see :meth:`find`) with its claims: the next run uploads it again.

        :return: how many entries (and claims without an entry) were deleted.
        """
        records = self.find(target)
        for record in records:
            for rel in self._siblings(record.rel):
                self.store.delete(rel)
        return len(records)

    def settle(self, target: str, recording_id: str | None = None, *, how: str = "settled by hand") -> int:
        """Resolve the ambiguous records ``target`` names (see :meth:`find`) after checking Siro.

        :param recording_id: the recording Siro did create for it: each becomes ``reconciled`` with this
            ID. ``None`` (Siro has no such recording): each is deleted, so the next run uploads it.
        :param how: recorded in the entry's ``by``.
        :return: how many were settled. Entries already ``created``/``reconciled`` are left alone.
        """
        settled = 0
        for record in self.find(target):
            if not record.needs_decision:
                continue
            settled += 1
            self.settle_record(record, recording_id, how=how)
        return settled

    def settle_record(self, record: LedgerRecord, recording_id: str | None, *, how: str) -> None:
        """Settle one ambiguous (or damaged) record: record ``recording_id``, or delete it if None."""
        if recording_id is None:
            for rel in self._siblings(record.rel):
                self.store.delete(rel)
            return
        data = dict(record.data)
        for transient in ("nonce", "stage", "since", "holder", "owner"):
            data.pop(transient, None)
        data.update(status="reconciled", recording_id=recording_id, at=_now(), by=how)
        data.setdefault("detail", "")
        folder, name = record.rel.split("/", 1)
        key = name[: -len(".json")] if name.endswith(".json") else name.rsplit(".claim-", 1)[0]
        self.store.write(f"{folder}/{key}.json", json.dumps(data).encode())
        for rel in self._siblings(record.rel):
            if ".claim-" in rel:
                self.store.delete(rel)


@dataclass(frozen=True)
class LedgerRecord:
    """One entry (or a claim with no entry) as the ledger command shows it.

    :param where: its location in the store.
    :param rel: its path inside the ledger.
    :param status: ``created``, ``reconciled``, ``ambiguous``, ``ambiguous (claim)`` (a try sent the
        create call and never recorded the answer), ``claimed`` (a try holds it and had not sent the
        create call) or ``damaged``.
    :param data: the stored JSON.
    """

    where: str
    rel: str
    status: str
    data: Mapping[str, Any]

    @property
    def needs_decision(self) -> bool:
        return self.status in ("ambiguous", "ambiguous (claim)", "damaged")


def _entry_problem(data: Any) -> str:
    """What is wrong with a stored entry, or "" if nothing."""
    if not isinstance(data, dict):
        return f"it holds a JSON {type(data).__name__}, not an entry"
    status = data.get("status")
    if status not in ("created", "reconciled", "ambiguous"):
        return f"its status is {status!r}, not created, reconciled or ambiguous"
    rid = data.get("recording_id")
    if status in FINAL_STATUSES and (not isinstance(rid, str) or not rid):
        return f"it is {status} without a recording ID"
    for name in ("body",):
        if name in data and not isinstance(data[name], dict):
            return f"its {name} is not an object"
    return ""


def _entry_of(data: Mapping[str, Any], where: str) -> Entry:
    return Entry(
        str(data["status"]),
        data.get("recording_id"),
        str(data.get("at", "")),
        where,
        str(data.get("detail", "")),
        str(data.get("destination", "")),
        dict(data.get("body") or {}),
        data.get("sent_at"),
        tuple(str(c) for c in data.get("candidates") or ()),
    )


def holder_of(context: Any) -> Holder | None:
    """The running try, from a task's context (None outside a task)."""
    ti: Any = context.get("ti") if context else None
    if not hasattr(ti, "run_id"):
        return None
    map_index = getattr(ti, "map_index", -1)
    return Holder(
        str(ti.dag_id),
        str(ti.task_id),
        str(ti.run_id),
        int(map_index if map_index is not None else -1),
        int(getattr(ti, "try_number", 0) or 0),
    )


def ledger_for(
    ledger_path: Any,
    conn_id: str | None,
    context: Any = None,
    *,
    destination: str = "",
    claim_timeout: float = 3600.0,
) -> UploadLedger | None:
    """The ledger an operator's rendered ``ledger_path`` names, or None for None.

    :param conn_id: the connection object storage uses for ``ledger_path``.
    :param context: the task's context: its claims name the try (dag, task, run, map index, try).
    :param destination: ``SiroHook.destination()`` of the hook that uploads: part of every entry's key
        (required whenever ``ledger_path`` is set).
    :param claim_timeout: the operator's ``claim_timeout`` (see :class:`UploadLedger`).
    """
    if ledger_path is None:
        return None
    from airflow_provider_siro.payload import check_text, is_number

    path = check_text("ledger_path", ledger_path, if_empty="give a folder or URL, or None for no ledger")
    if not destination:
        raise ValueError(
            "ledger_for: a ledger needs the destination (SiroHook.destination()) to key entries on"
        )
    if not is_number(claim_timeout) or claim_timeout <= 0:
        from airflow_provider_siro.exceptions import SiroValidationError

        raise SiroValidationError("claim_timeout", f"must be a number of seconds > 0, got {claim_timeout!r}")
    return UploadLedger(
        path, conn_id, destination=destination, claim_timeout=float(claim_timeout), holder=holder_of(context)
    )
