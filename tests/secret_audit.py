"""Look for the offline Siro servers' secrets everywhere the test suite left text behind.

The secrets are what every ``OfflineSiro`` of the session issued (org tokens, client secrets, access
tokens minted or pasted, expired ones too, and the signature of every signed upload and download URL),
gathered by :meth:`OfflineSiro.all_issued_secrets` from this process and, through the
``SIRO_OFFLINE_SECRETS_FILE`` ledger, from servers that ran in subprocesses.

The places are:

* ``captured``: a JSON-lines file the conftest fills while the suite runs, with every test report's
  captured stdout, stderr and log sections and failure text, what tests read themselves through
  ``capfd``/``capsys``/``caplog``, and the output of ``subprocess.run`` calls that captured it;
* files: every regular file under the given roots (the suite's ``AIRFLOW_HOME`` with its ``logs`` and the
  API server's log, and pytest's base temporary directory, where subprocess clusters keep their own
  Airflow homes, logs and output files); symlinks are not followed (the DAG folder links to sources);
* SQLite databases found among those files (Airflow metadata DBs): every row of every table except
  ``connection`` and ``variable``, where credentials belong. Values that are Fernet tokens (a
  trigger's ``kwargs``) are also decrypted with the ``fernet_key`` of the ``airflow.cfg`` next to the DB.
  The DB's ``-wal``/``-shm``/``-journal`` companions are read through SQLite, not as raw files.

Each secret of 8 characters or more is searched for literally and in its URL-encoded forms
(``quote(secret, safe="")`` and ``quote_plus``), in bytes, without decoding. A hit names its place and the
kind of secret, never the secret.

Two DB places hold what a *user* wrote, stored by Airflow as given, where no provider could mask anything:
a run's ``conf`` and the XCom of a task that is not the provider's (see :func:`user_written`). Tests hand
DAGs signed URLs they obtained themselves, as a recorder app would, through exactly those places. Hits
there are kept apart as user input and reported; a hit anywhere else is a leak.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

MIN_SECRET_LENGTH = 8
EXCLUDED_TABLES = frozenset({"connection", "variable"})
"""Where Airflow keeps credentials on purpose: the scan leaves these tables alone."""
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
CHUNK = 4 * 1024 * 1024
_RUN_CHARS = rb"A-Za-z0-9_%\-"
"""Secrets made only of these bytes (token_urlsafe, hex, percent-encodings) are found through runs of
them; any other secret is searched for with a plain ``find``."""
_SIMPLE = re.compile(rb"[" + _RUN_CHARS + rb"]+\Z")


@dataclass(frozen=True)
class Hit:
    location: str
    kind: str
    form: str
    """``literal`` or ``url-encoded``."""
    user_written: str = ""
    """Why this place holds what a user wrote, not what Airflow or the provider did (see
    :func:`user_written`); empty for every other place, where any hit is a leak."""

    def __str__(self) -> str:
        where = f" [user input: {self.user_written}]" if self.user_written else ""
        return f"{self.location}: {self.kind} ({self.form}){where}"


@dataclass
class ScanStats:
    secrets: int = 0
    secrets_by_kind: Counter[str] = field(default_factory=Counter)
    too_short: int = 0
    texts: int = 0
    files: int = 0
    databases: int = 0
    tables: int = 0
    rows: int = 0
    rows_by_table: Counter[str] = field(default_factory=Counter)
    decrypted: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "secrets_known": self.secrets,
            "secrets_by_kind": dict(sorted(self.secrets_by_kind.items())),
            "secrets_too_short_to_scan": self.too_short,
            "captured_texts_scanned": self.texts,
            "files_scanned": self.files,
            "databases_scanned": self.databases,
            "tables_scanned": self.tables,
            "rows_scanned": self.rows,
            "rows_scanned_by_table": dict(sorted(self.rows_by_table.items())),
            "encrypted_values_decrypted": self.decrypted,
            "bytes_scanned": self.bytes,
        }


class SecretScanner:
    """Search bytes, files and SQLite databases for any of ``secrets`` (secret -> kind)."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self.stats = ScanStats()
        self.hits: dict[Hit, set[bytes]] = {}
        """Each place and kind of secret found, with the distinct secrets found there (never shown)."""
        patterns: dict[bytes, tuple[str, str]] = {}
        for secret, kind in secrets.items():
            if len(secret) < MIN_SECRET_LENGTH:
                self.stats.too_short += 1
                continue
            self.stats.secrets += 1
            self.stats.secrets_by_kind[kind] += 1
            for form, text in (
                ("literal", secret),
                ("url-encoded", quote(secret, safe="")),
                ("url-encoded", quote_plus(secret)),
            ):
                patterns.setdefault(text.encode(), (kind, form))
        self._patterns = patterns
        simple = [p for p in patterns if _SIMPLE.match(p)]
        self._other = [p for p in patterns if not _SIMPLE.match(p)]
        self._k = min((len(p) for p in simple), default=0)
        self._by_prefix: dict[bytes, list[bytes]] = {}
        for pattern in simple:
            self._by_prefix.setdefault(pattern[: self._k], []).append(pattern)
        self._runs = re.compile(rb"[" + _RUN_CHARS + rb"]{%d,}" % max(self._k, 1))
        self.longest = max((len(p) for p in patterns), default=1)

    # ------------------------------------------------------------------ bytes
    def _find(self, data: bytes) -> Iterator[bytes]:
        if self._by_prefix:
            k, by_prefix = self._k, self._by_prefix
            for run in self._runs.finditer(data):
                text = run.group()
                for start in range(len(text) - k + 1):
                    for pattern in by_prefix.get(text[start : start + k], ()):
                        if text.startswith(pattern, start):
                            yield pattern
        for pattern in self._other:
            if pattern in data:
                yield pattern

    def scan_bytes(self, data: bytes, location: str) -> list[Hit]:
        self.stats.bytes += len(data)
        return self._record(set(self._find(data)), location)

    def _record(self, patterns: set[bytes], location: str, user_written: str = "") -> list[Hit]:
        found = []
        for pattern in patterns:
            kind, form = self._patterns[pattern]
            hit = Hit(location, kind, form, user_written)
            self.hits.setdefault(hit, set()).add(pattern)
            found.append(hit)
        return found

    @property
    def leaks(self) -> list[Hit]:
        """Hits anywhere but in what a user wrote."""
        return sorted((hit for hit in self.hits if not hit.user_written), key=str)

    @property
    def user_inputs(self) -> list[Hit]:
        """Hits in a run's conf or a user task's XCom: values a user gave Airflow, stored as given."""
        return sorted((hit for hit in self.hits if hit.user_written), key=str)

    def scan_text(self, text: str, location: str) -> list[Hit]:
        self.stats.texts += 1
        return self.scan_bytes(text.encode("utf-8", "surrogateescape"), location)

    # ------------------------------------------------------------------ files
    def scan_file(self, path: Path, location: str | None = None) -> None:
        """Scan a file in chunks that overlap by the longest pattern, so no occurrence straddles two."""
        location = location or str(path)
        self.stats.files += 1
        overlap = self.longest - 1
        with path.open("rb") as handle:
            tail = b""
            while chunk := handle.read(CHUNK):
                self.scan_bytes(tail + chunk, location)
                self.stats.bytes -= len(tail)
                tail = (tail + chunk)[-overlap:] if overlap else b""

    def scan_tree(self, root: Path) -> list[Path]:
        """Scan every regular file under ``root`` (symlinks not followed); return the SQLite DBs found,
        which are left to :meth:`scan_sqlite`, as are their ``-wal``/``-shm``/``-journal`` files."""
        databases = []
        files = []
        for directory, _dirs, names in os.walk(root, followlinks=False):
            for name in names:
                path = Path(directory, name)
                if path.is_symlink() or not path.is_file():
                    continue
                with path.open("rb") as handle:
                    is_db = handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
                (databases if is_db else files).append(path)
        companions = {Path(f"{db}{suffix}") for db in databases for suffix in SQLITE_COMPANIONS}
        for path in files:
            if path not in companions:
                self.scan_file(path)
        return databases

    # ------------------------------------------------------------------ SQLite
    def scan_sqlite(self, path: Path, fernet_keys: Iterable[str] = ()) -> None:
        """Every value of every table but ``connection`` and ``variable``; Fernet tokens decrypted too."""
        fernet = _fernet(list(fernet_keys))
        self.stats.databases += 1
        with _snapshot(path) as db:
            tables = [
                name
                for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                if name not in EXCLUDED_TABLES
            ]
            for table in tables:
                self.stats.tables += 1
                cursor = db.execute(f'SELECT * FROM "{table}"')
                columns = [description[0] for description in cursor.description]
                for number, row in enumerate(cursor):
                    self.stats.rows += 1
                    self.stats.rows_by_table[table] += 1
                    for column, value in zip(columns, row, strict=True):
                        if value is None or isinstance(value, int | float):
                            continue
                        data = (
                            value
                            if isinstance(value, bytes)
                            else str(value).encode("utf-8", "surrogateescape")
                        )
                        where = f"{path} table {table} row {number + 1} column {column}"
                        self.stats.bytes += len(data)
                        if patterns := set(self._find(data)):
                            values = dict(zip(columns, row, strict=True))
                            self._record(patterns, where, user_written(db, table, column, values))
                        plain = _decrypt(fernet, data)
                        if plain is not None:
                            self.stats.decrypted += 1
                            self.scan_bytes(plain, f"{where} (decrypted)")

    # ------------------------------------------------------------------ captured output
    def scan_captured(self, path: Path) -> None:
        """The conftest's JSON-lines file of captured output (see :class:`CaptureLog`)."""
        for record in CaptureLog(path).records():
            self.scan_text(record["text"], f"captured {record['where']}")


@contextmanager
def _snapshot(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a private copy of the database at ``path`` (with its ``-wal`` and ``-journal``).

    The suite's own metadata DB is in WAL mode and its writer (this process's Airflow) is still open.
    Opening it in place fails on some machines with "disk I/O error" (read-only or not), from SQLite's
    shared-memory index (``-shm``). The copy is opened in exclusive locking mode before its first read,
    in which SQLite keeps the WAL index in its own memory and needs no ``-shm`` at all; SQLite recovers
    the copied WAL into it as it would after a crash, so the scan sees every committed row.
    """
    with tempfile.TemporaryDirectory(prefix="siro-audit-db-") as folder:
        copy = Path(folder, "audited.db")
        shutil.copyfile(path, copy)
        for suffix in ("-wal", "-journal"):
            companion = Path(f"{path}{suffix}")
            if companion.is_file():
                shutil.copyfile(companion, Path(f"{copy}{suffix}"))
        db = sqlite3.connect(copy)
        try:
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            yield db
        finally:
            db.close()


def user_written(db: sqlite3.Connection, table: str, column: str, row: Mapping[str, Any]) -> str:
    """Why a metadata DB value holds what a user wrote (Airflow stores it as given, and no provider can
    mask it), or ``""``. Two places qualify: a run's ``conf``, written by whoever triggered the run, and
    the XCom of a task that is not one of the provider's (operator class not named ``Siro...``): what the
    user's own code returned. A test handing a DAG a signed URL it obtained itself puts it there. The
    provider's own XComs, rendered fields, trigger kwargs, task state and logs get no such pass."""
    if table == "dag_run" and column == "conf":
        return "the conf of the run, as its trigger gave it"
    if table == "xcom" and column == "value":
        found = db.execute(
            "SELECT operator FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ? LIMIT 1",
            (row.get("dag_id"), row.get("run_id"), row.get("task_id")),
        ).fetchone()
        operator = found[0] if found else None
        if operator and not operator.startswith("Siro"):
            return f"XCom {row.get('key')} of the user's task {row.get('task_id')} ({operator})"
    return ""


def _fernet(keys: list[str]) -> Any:
    if not keys:
        return None
    from cryptography.fernet import Fernet, MultiFernet

    return MultiFernet([Fernet(key.encode()) for key in keys])


def _decrypt(fernet: Any, data: bytes) -> bytes | None:
    if fernet is None or not data.startswith(b"gAAAAA"):
        return None
    from cryptography.fernet import InvalidToken

    try:
        return fernet.decrypt(data)
    except (InvalidToken, ValueError, TypeError):
        return None


def fernet_keys_near(database: Path) -> list[str]:
    """The ``fernet_key`` of the ``airflow.cfg`` beside a metadata DB, and ``AIRFLOW__CORE__FERNET_KEY``."""
    keys = []
    config = database.parent / "airflow.cfg"
    if config.is_file():
        for line in config.read_text(errors="replace").splitlines():
            match = re.match(r"\s*fernet_key\s*=\s*(\S+)\s*$", line)
            if match:
                keys.append(match.group(1))
    if os.environ.get("AIRFLOW__CORE__FERNET_KEY"):
        keys.extend(k for k in os.environ["AIRFLOW__CORE__FERNET_KEY"].split(",") if k)
    return keys


class CaptureLog:
    """An append-only JSON-lines file of captured text: ``{"where": ..., "text": ...}`` a line.

    On disk, not in memory: the whole suite's output would otherwise stay in the pytest process.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, where: str, text: str) -> None:
        if not text:
            return
        with self.path.open("a", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(json.dumps({"where": where, "text": text}) + "\n")

    def records(self) -> Iterator[dict[str, str]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                yield json.loads(line)
