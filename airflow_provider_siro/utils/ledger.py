"""The upload ledger: which sources are already Siro recordings, kept in storage every worker can reach.

Siro has no idempotency key, so a cleared run, an overlapping daily listing or an asset event that fires
twice would upload a call again. The ledger remembers each uploaded source by its identity (canonical
location, size, and the store's version of the content) and the recording ID Siro gave it.

Layout under the ledger's root, one folder per source location, one entry per version of its content::

    <ledger_path>/<sha256(location)[:32]>/<sha256(location, size, version)[:32]>.json
    <ledger_path>/<sha256(location)[:32]>/<sha256(location, size, version)[:32]>.claim-000000

An entry (JSON) holds the location, size, version, ``status`` (``created`` or ``ambiguous``), the
recording ID and when. A claim is written, with the store's exclusive create, by the try that is
uploading that version right now; a concurrent try waits for the entry instead of uploading too. A
claim older than ``claim_timeout`` is taken over by writing the next generation (``.claim-000001``),
again exclusively, so two takers cannot both win.

Exclusive create: local paths use ``O_CREAT | O_EXCL``; S3 (s3fs) sends ``PutObject`` with
``If-None-Match: *`` and GCS (gcsfs) ``ifGenerationMatch=0``; any other store falls back to fsspec's
check-then-write, which two simultaneous tries can both pass (logged as a warning).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow_provider_siro.utils.sources import Source, canonical_location, is_local

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
class Entry:
    """What the ledger knows of one version of a source."""

    status: str  # "created" or "ambiguous"
    recording_id: str | None
    at: str
    where: str
    detail: str = ""


@dataclass(frozen=True)
class Claim:
    """This try's right to upload one version of a source."""

    folder: str
    key: str
    generation: int
    owner: str

    @property
    def name(self) -> str:
        return f"{self.folder}/{self.key}.claim-{self.generation:06d}"


class UploadLedger:
    """The upload ledger at ``path``; see the module docstring for its layout and guarantees.

    :param path: a local folder, ``file://`` URL, or any URL Airflow's object storage reaches.
    :param conn_id: the connection object storage uses for ``path``.
    :param claim_timeout: seconds after which another try's claim counts as abandoned (its worker died)
        and is taken over. Longer than the slowest single upload, or a slow try and its taker both
        upload.
    :param poll_interval: seconds between looks at a claim held by another try.
    :param owner: names this try in claims and log lines (the operator passes dag/run/task/try).
    """

    def __init__(
        self,
        path: str,
        conn_id: str | None = None,
        *,
        claim_timeout: float = 3600.0,
        poll_interval: float = 1.0,
        owner: str = "",
    ) -> None:
        self.path = path
        self.conn_id = conn_id
        self.store: _LocalStore | _ObjectStore = (
            _LocalStore(path) if is_local(path) else _ObjectStore(path, conn_id)
        )
        self.claim_timeout = claim_timeout
        self.poll_interval = poll_interval
        self.owner = owner or f"{socket.gethostname()} pid {os.getpid()}"

    # ------------------------------------------------------------------ keys
    @staticmethod
    def _folder(location: str) -> str:
        return _digest(location)

    @staticmethod
    def _key(source: Source) -> str:
        return _digest(source.location, source.size, source.version)

    def entry_location(self, source: Source) -> str:
        """Where ``source``'s entry is (or will be), for messages."""
        return self.store.where(f"{self._folder(source.location)}/{self._key(source)}.json")

    # ------------------------------------------------------------------ reading
    def lookup(self, source: Source) -> Entry | None:
        """The entry for this version of ``source``, or None if no try has finished with it."""
        rel = f"{self._folder(source.location)}/{self._key(source)}.json"
        raw = self.store.read(rel)
        if raw is None:
            return None
        data = json.loads(raw)
        return Entry(
            str(data["status"]),
            data.get("recording_id"),
            str(data.get("at", "")),
            self.store.where(rel),
            str(data.get("detail", "")),
        )

    def _claims(self, folder: str, key: str) -> list[tuple[int, str]]:
        prefix = f"{key}.claim-"
        found = []
        for name in self.store.names(folder):
            if name.startswith(prefix) and name[len(prefix) :].isdigit():
                found.append((int(name[len(prefix) :]), name))
        return sorted(found)

    def _claim_age(self, folder: str, name: str) -> tuple[float, str]:
        raw = self.store.read(f"{folder}/{name}")
        try:
            data = json.loads(raw or b"")
            return time.time() - float(data["since"]), str(data.get("owner", "?"))
        except (ValueError, KeyError, TypeError):
            return 0.0, "?"  # being written (local files are created empty, then filled): a fresh claim

    # ------------------------------------------------------------------ claiming
    def acquire(self, source: Source, stop: threading.Event | None = None) -> Entry | Claim:
        """Return the entry if this version is known, else claim it, waiting while another try holds it."""
        folder, key = self._folder(source.location), self._key(source)
        waited_for = ""
        while True:
            entry = self.lookup(source)
            if entry is not None:
                return entry
            claims = self._claims(folder, key)
            generation = 0
            if claims:
                generation, name = claims[-1]
                age, holder = self._claim_age(folder, name)
                if age < self.claim_timeout:
                    if waited_for != holder:
                        waited_for = holder
                        log.info(
                            "%s is being uploaded by another try (%s, for %.0f s); waiting for its result",
                            source.label,
                            holder,
                            age,
                        )
                    if stop is not None and stop.is_set():
                        raise TimeoutError(f"{source.label}: stopped while waiting for {holder}")
                    time.sleep(self.poll_interval)
                    continue
                log.warning(
                    "The claim on %s by %s is %.0f s old (claim_timeout %.0f s); taking it over",
                    source.label,
                    holder,
                    age,
                    self.claim_timeout,
                )
                generation += 1
            claim = Claim(folder, key, generation, self.owner)
            nonce = uuid.uuid4().hex
            body = {"owner": self.owner, "since": time.time(), "source": source.location, "nonce": nonce}
            if self.store.create(claim.name, json.dumps(body).encode()) or self._is_ours(claim, nonce):
                entry = self.lookup(source)  # the holder before us may have finished in between
                if entry is not None:
                    self.release(claim)
                    return entry
                return claim

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

    def holds(self, claim: Claim) -> bool:
        """True while no later try has taken the claim over (checked just before the create call)."""
        claims = self._claims(claim.folder, claim.key)
        return bool(claims) and claims[-1][0] == claim.generation

    def release(self, claim: Claim) -> None:
        self.store.delete(claim.name)

    # ------------------------------------------------------------------ writing
    def _write(self, source: Source, status: str, recording_id: str | None, detail: str = "") -> None:
        body = {
            "source": source.location,
            "given": source.given,
            "size": source.size,
            "version": source.version,
            "status": status,
            "recording_id": recording_id,
            "at": _now(),
            "by": self.owner,
            "detail": detail,
        }
        rel = f"{self._folder(source.location)}/{self._key(source)}.json"
        self.store.write(rel, json.dumps(body).encode())

    def record_created(self, claim: Claim, source: Source, recording_id: str) -> None:
        self._write(source, "created", recording_id)
        self.release(claim)

    def record_ambiguous(self, claim: Claim, source: Source, detail: str) -> None:
        self._write(source, "ambiguous", None, detail)
        self.release(claim)

    # ------------------------------------------------------------------ by hand
    def _entries_of(self, source_path: str) -> list[tuple[str, dict[str, Any]]]:
        folder = self._folder(canonical_location(source_path, self.conn_id))
        found = []
        for name in self.store.names(folder):
            if name.endswith(".json"):
                raw = self.store.read(f"{folder}/{name}")
                if raw is not None:
                    found.append((f"{folder}/{name}", json.loads(raw)))
        return found

    def forget(self, source_path: str) -> int:
        """Delete every entry (and claim) of ``source_path``: the next run uploads it again.

        :param source_path: written as the DAG writes it (local path or URL; ``conn_id`` as for the ledger).
        :return: how many entries were deleted.
        """
        folder = self._folder(canonical_location(source_path, self.conn_id))
        names = self.store.names(folder)
        for name in names:
            self.store.delete(f"{folder}/{name}")
        return sum(1 for name in names if name.endswith(".json"))

    def settle(self, source_path: str, recording_id: str | None = None) -> int:
        """Resolve ``source_path``'s ambiguous entries after checking Siro.

        :param recording_id: the recording Siro did create for it: the entries become ``created`` with
            this ID. ``None`` (Siro has no such recording): the entries are deleted, so the next run
            uploads the source.
        :return: how many entries were settled.
        """
        settled = 0
        for rel, data in self._entries_of(source_path):
            if data.get("status") != "ambiguous":
                continue
            settled += 1
            if recording_id is None:
                self.store.delete(rel)
            else:
                data.update(status="created", recording_id=recording_id, at=_now(), by="settled by hand")
                self.store.write(rel, json.dumps(data).encode())
        return settled


def ledger_for(ledger_path: Any, conn_id: str | None, context: Any) -> UploadLedger | None:
    """The ledger an operator's rendered ``ledger_path`` names, its claims naming the try; None for None."""
    if ledger_path is None:
        return None
    from airflow_provider_siro.payload import check_text

    path = check_text("ledger_path", ledger_path, if_empty="give a folder or URL, or None for no ledger")
    ti = context.get("ti") if context else None
    owner = ""
    if ti is not None and hasattr(ti, "run_id"):
        owner = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}[{ti.map_index}] try {ti.try_number}"
    return UploadLedger(path, conn_id, owner=owner)
