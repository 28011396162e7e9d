"""An offline Siro: a real HTTP server on 127.0.0.1 that behaves like Siro's API, for tests and demos.

Use it to test your own DAGs without a Siro account or a network:

.. code-block:: python

    # conftest.py
    pytest_plugins = ["airflow_provider_siro.testing.pytest_plugin"]


    # test_my_dag.py
    def test_upload(siro_server, siro_connection, dagbag):
        dagbag.get_dag("my_dag").test()
        (recording,) = siro_server.recordings.values()
        assert recording.body["userEmail"] == "rep@example.com"

or from a shell, ``python -m airflow_provider_siro.testing.server --port 8765``, which prints the
``AIRFLOW_CONN_SIRO_DEFAULT`` line to export.

What it emulates (see ``SIRO_API.md`` of the provider for the real API):

* the org API under ``/api-externalApi``: minting access tokens from an OAuth app (Bearer org token),
  reading a token, listing integration connections;
* the user-scoped API (``x-siro-auth-token``): signed upload URLs, creating a recording (the seed's
  body or the newer docs' names, never a mix; unknown keys rejected; ZodError-shaped 422s; the
  identity and integration/CRM rules as 400s), reading a recording, which turns from ``in-progress``
  to ``complete`` after ``processing_polls`` reads;
* Google Cloud Storage signed URLs: the PUT is checked like GCS checks it (signature, expiry, the
  signed headers with exactly their signed values, a ``Content-Length``, the size limit), and a Siro
  credential sent to the storage URL is refused and counted in ``credential_leaks``;
* the edge in front of Siro, which refuses the default ``python-requests/`` User-Agent.

Tests read ``requests`` (the request log), ``recordings`` and ``objects``, and inject failures with
``add_fault`` (a status with or without ``Retry-After``, a dropped connection before or after the
server acted, a delay) or ``random_faults`` (seeded, for soak tests). ``expire_tokens`` and
``expire_signed_urls`` move time forward for credentials. Other processes (an Airflow scheduler, say)
can read the same state over HTTP: ``GET /_offline/requests``, ``GET /_offline/recordings``,
``POST /_offline/faults`` and ``POST /_offline/reset``.

It binds 127.0.0.1 only, uses only the standard library, and never prints a token or a signature.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlencode, urlsplit

FILE_TYPES = ("mp3", "aac", "wav")
CONTENT_TYPES = {"mp3": "audio/mpeg", "aac": "audio/aac", "wav": "audio/wav"}
CRM_OBJECT_TYPES = ("Opportunity", "Account", "Contact", "Lead", "Engagement", "Event", "ServiceAppointment")
SEED_KEYS = [
    "downloadUrl",
    "fileType",
    "title",
    "userId",
    "userEmail",
    "userPhone",
    "organizationId",
    "conversationType",
    "integrationConnectionId",
    "crmObjects",
    "customerPhone",
    "customerName",
    "dateCreated",
]
NEWER_KEYS = [
    "fileUrl",
    "fileType",
    "title",
    "userId",
    "userEmail",
    "userPhone",
    "organizationId",
    "conversationType",
    "integrationConnectionId",
    "crmObjects",
    "contactPhone",
    "contactName",
    "dateCreated",
    "discoverable",
    "result",
]
SEED_ONLY = {"downloadUrl", "customerPhone", "customerName"}
NEWER_ONLY = {"fileUrl", "contactPhone", "contactName", "discoverable", "result"}
ZOD_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
FAULT_KINDS = (
    "429",
    "429-retry-after",
    "500",
    "502",
    "503",
    "503-retry-after",
    "504",
    "drop-before",
    "drop-after",
    "drop-mid",
    "slow",
)
SECRETS_LEDGER_ENV = "SIRO_OFFLINE_SECRETS_FILE"
"""When this environment variable names a file, every ``OfflineSiro`` of every process (a server that a
test started with ``python -m airflow_provider_siro.testing.server``, say) appends each secret it issues
to it, one JSON object a line: ``{"kind": ..., "secret": ..., "pid": ...}``. A test suite reads it back
with :meth:`OfflineSiro.all_issued_secrets` to look for those secrets in logs. Unset: nothing is written."""
KEEP_BYTES_UP_TO = 1024 * 1024
READ_CHUNK = 1024 * 1024

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/api-externalApi/v1/core/oauth/apps/([^/]+)/access-token$"), "mint_token"),
    ("GET", re.compile(r"^/api-externalApi/v1/core/oauth/apps/([^/]+)/access-token/([^/]+)$"), "get_token"),
    ("GET", re.compile(r"^/api-externalApi/v1/core/integrations/connections$"), "list_connections"),
    ("POST", re.compile(r"^/v1/core/recordings/signed-urls$"), "signed_urls"),
    ("POST", re.compile(r"^/v1/core/recordings/upload$"), "create_recording"),
    ("GET", re.compile(r"^/v1/core/recordings/([^/]+)$"), "get_recording"),
    ("PUT", re.compile(r"^/storage/upload/([^/]+)$"), "upload_put"),
    ("GET", re.compile(r"^/storage/download/([^/]+)$"), "download"),
]


class Headers(dict[str, str]):
    """Request headers with case-insensitive lookups (``headers["user-agent"]``)."""

    def __getitem__(self, key: str) -> str:
        for name, value in self.items():
            if name.lower() == key.lower():
                return value
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(name.lower() == key.lower() for name in self)


@dataclass
class RecordedRequest:
    """One request as the server saw it. ``path`` never has the query string (signatures live there)."""

    endpoint: str
    method: str
    path: str
    headers: Headers
    json: Any
    body_size: int
    status: int | None
    fault: str | None
    time: float
    """``time.monotonic()`` when the request arrived."""


@dataclass
class Recording:
    id: str
    body: dict[str, Any]
    object_name: str
    sha256: str
    size: int
    file_type: str
    user_id: str
    created_at: datetime
    status: str = "in-progress"
    polls: int = 0


@dataclass
class StoredObject:
    name: str
    size: int
    sha256: str
    content_type: str
    uploaded: bool = False
    max_size: int = 0
    data: bytes | None = field(default=None, repr=False)
    signatures: list[str] = field(default_factory=list, repr=False)


@dataclass
class Fault:
    """An injected failure; see :meth:`OfflineSiro.add_fault`."""

    endpoint: str
    status: int | None = None
    retry_after: int | None = None
    drop: str | None = None
    delay: float = 0.0
    times: int | None = 1
    body: Any = None
    acted: bool = False
    kind: str = ""


@dataclass
class _Token:
    token_id: str
    user_id: str
    scope: str
    expires_at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen() backlog: read in the constructor, so set on the class


class _Drop(Exception):
    """Raised inside a handler to close the connection without an answer."""


class OfflineSiro:
    """A local Siro server; see the module docstring.

    :param port: TCP port on 127.0.0.1, 0 for any free one.
    :param token_lifetime: seconds an access token lives (Siro: 16 hours).
    :param processing_polls: reads of a recording before it turns ``complete``.
    :param response_id_key: ``id`` (the seed document) or ``recordingId`` (the newer docs).
    :param seed: seeds ids and random faults, for repeatable runs.
    :param signed_url_lifetime: seconds a signed URL lives.
    :param slow_delay: seconds a ``slow`` random fault waits before answering.
    :param rate_limit: requests one access token may make per ``rate_window`` seconds before the
        user-scoped API answers 429 (Siro: 1000 a minute); ``None`` turns the limit off. Refused
        requests are counted in ``rate_limited`` and do not use up the budget.
    :param rate_window: the sliding window of ``rate_limit``, in seconds.
    """

    _ledgers: ClassVar[list[dict[str, str]]] = []
    """The issued secrets (secret -> kind) of every instance ever created in this process, stopped or not."""
    _ledger_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        port: int = 0,
        *,
        token_lifetime: float = 57600.0,
        processing_polls: int = 2,
        response_id_key: str = "id",
        seed: int | None = None,
        signed_url_lifetime: float = 900.0,
        slow_delay: float = 2.0,
        rate_limit: int | None = 1000,
        rate_window: float = 60.0,
    ) -> None:
        self.port = port
        self.token_lifetime = token_lifetime
        self.processing_polls = processing_polls
        self.response_id_key = response_id_key
        self.signed_url_lifetime = signed_url_lifetime
        self.slow_delay = slow_delay
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.rate_limited = 0
        self._calls: dict[str, deque[float]] = {}
        self._rng_ids = random.Random(seed)
        self.org_token = secrets.token_urlsafe(24)
        self.client_id = f"client_{secrets.token_hex(6)}"
        self.client_secret = secrets.token_urlsafe(24)
        self.user_id = f"user_{secrets.token_hex(6)}"
        self.integration_connection_id = f"conn_{secrets.token_hex(6)}"
        self._signing_key = secrets.token_bytes(32)
        self._issued: dict[str, str] = {}
        with OfflineSiro._ledger_lock:
            OfflineSiro._ledgers.append(self._issued)
        self._remember(self.org_token, "org_token")
        self._remember(self.client_secret, "client_secret")
        self._lock = threading.RLock()
        self._tokens: dict[str, _Token] = {}
        self._requests: list[RecordedRequest] = []
        self._recordings: dict[str, Recording] = {}
        self._deleted: set[str] = set()
        self._objects: dict[str, StoredObject] = {}
        self._expired_signatures: set[str] = set()
        self._faults: list[Fault] = []
        self._random: tuple[random.Random, float, tuple[str, ...]] | None = None
        self.fault_counts: Counter[str] = Counter()
        self.credential_leaks = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> OfflineSiro:
        siro = self

        class Handler(_Handler):
            server_state = siro

        httpd = _Server(("127.0.0.1", self.port), Handler)
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, name="offline-siro", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> OfflineSiro:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/api-externalApi"

    # ------------------------------------------------------------------ credentials
    def _new_token(self, user_id: str, scope: str) -> tuple[str, str]:
        token, token_id = secrets.token_urlsafe(32), f"tok_{secrets.token_hex(6)}"
        self._remember(token, "access_token")
        with self._lock:
            self._tokens[token] = _Token(token_id, user_id, scope, time.time() + self.token_lifetime)
        return token, token_id

    def _remember(self, secret: str, kind: str) -> None:
        """Add a secret this server issued to its ledger (and to the ``SIRO_OFFLINE_SECRETS_FILE`` file)."""
        with OfflineSiro._ledger_lock:
            self._issued.setdefault(secret, kind)
            path = os.environ.get(SECRETS_LEDGER_ENV)
            if path:
                line = json.dumps({"kind": kind, "secret": secret, "pid": os.getpid()}) + "\n"
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line.encode())  # one write per line: lines of processes never interleave
                finally:
                    os.close(fd)

    def issued_secrets(self) -> set[str]:
        """Every credential this server ever issued, for scanning logs for leaks: its org token, its client
        secret, each access token minted or issued (expired ones too) and each signed URL's signature."""
        with OfflineSiro._ledger_lock:
            return set(self._issued)

    def issued_secret_kinds(self) -> dict[str, str]:
        """:meth:`issued_secrets` with what each one is: ``org_token``, ``client_secret``,
        ``access_token``, ``upload_url_signature`` or ``download_url_signature``."""
        with OfflineSiro._ledger_lock:
            return dict(self._issued)

    @classmethod
    def all_issued_secrets(cls) -> dict[str, str]:
        """Secret -> kind for every server this process ever created, running or stopped, and for every
        server of any process that appended to the ``SIRO_OFFLINE_SECRETS_FILE`` file."""
        found: dict[str, str] = {}
        path = os.environ.get(SECRETS_LEDGER_ENV)
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as ledger:
                for line in ledger:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        entry = json.loads(line)
                        found.setdefault(str(entry["secret"]), str(entry["kind"]))
        with cls._ledger_lock:
            for issued in cls._ledgers:
                for secret, kind in issued.items():
                    found.setdefault(secret, kind)
        return found

    def issue_access_token(self, scope: str = "write", user_id: str | None = None) -> str:
        """A token as if the user had minted it elsewhere and pasted it into the connection."""
        return self._new_token(user_id or self.user_id, scope)[0]

    def connection(self, *, oauth: bool = False, token: str | None = None, **extras: Any) -> dict[str, Any]:
        """A JSON-form Airflow connection to this server (for ``AIRFLOW_CONN_SIRO_DEFAULT``)."""
        conn: dict[str, Any] = {"conn_type": "siro", "host": self.url}
        extra: dict[str, Any] = {}
        if oauth:
            extra.update(
                org_token=self.org_token,
                client_id=self.client_id,
                client_secret=self.client_secret,
                user_id=self.user_id,
                auth_host=self.auth_url,
            )
        else:
            conn["password"] = token or self.issue_access_token()
        extra.update(extras)
        if extra:
            conn["extra"] = extra
        return conn

    def expire_tokens(self) -> None:
        """Every access token issued so far now answers 401."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = 0.0

    def expire_signed_urls(self) -> None:
        """Every signed URL issued so far is now past its ``expiresAt``."""
        with self._lock:
            self._expired_signatures.update(sig for obj in self._objects.values() for sig in obj.signatures)

    # ------------------------------------------------------------------ state for tests
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def recordings(self) -> dict[str, Recording]:
        with self._lock:
            return dict(self._recordings)

    @property
    def objects(self) -> dict[str, StoredObject]:
        with self._lock:
            return dict(self._objects)

    def set_recording_status(self, recording_id: str, status: str) -> None:
        with self._lock:
            self._recordings[recording_id].status = status

    def delete_recording(self, recording_id: str) -> None:
        with self._lock:
            self._recordings.pop(recording_id, None)
            self._deleted.add(recording_id)

    # ------------------------------------------------------------------ faults
    def add_fault(
        self,
        endpoint: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        drop: str | None = None,
        delay: float = 0.0,
        times: int | None = 1,
        body: Any = None,
        acted: bool = False,
    ) -> Fault:
        """Make the next ``times`` requests to ``endpoint`` fail (``times=None``: all of them).

        :param status: answer this status (Siro-style error body, or ``body``) without acting.
        :param retry_after: send ``Retry-After`` with that many seconds.
        :param drop: close the connection without an answer: ``"before"`` acting, ``"after"`` acting
            (the recording is created, the answer lost), or ``"mid"`` (an upload: half the body read).
        :param delay: seconds to wait before answering (to run past a client's timeout).
        :param acted: with a 5xx ``status`` on ``create_recording``: create the recording first, like a
            gateway that failed after the backend succeeded.
        """
        if drop not in (None, "before", "after", "mid"):
            raise ValueError(f"drop must be before, after or mid, not {drop!r}")
        fault = Fault(endpoint, status, retry_after, drop, delay, times, body, acted, kind="manual")
        with self._lock:
            self._faults.append(fault)
        return fault

    def random_faults(self, seed: int, rate: float, kinds: Sequence[str] | None = None) -> None:
        """Give each request a fault with probability ``rate``, its kind drawn from ``kinds``.

        Counts land in ``fault_counts`` (kind -> n). ``rate=0`` turns it off.
        """
        chosen = tuple(kinds or FAULT_KINDS)
        unknown = set(chosen) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        with self._lock:
            self._random = (random.Random(seed), rate, chosen) if rate > 0 else None

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._random = None

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.endpoint == endpoint and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    self.fault_counts[f"{endpoint}:manual"] += 1
                    return fault
            if self._random is None:
                return None
            rng, rate, kinds = self._random
            if rng.random() >= rate:
                return None
            kind = rng.choice(kinds)
            self.fault_counts[kind] += 1
        return _fault_of_kind(endpoint, kind, self.slow_delay)

    # ------------------------------------------------------------------ signing
    def _sign(self, method: str, name: str, content_type: str, max_size: int, date: str, expires: int) -> str:
        message = f"{method}\n{name}\n{content_type}\n0,{max_size}\n{date}\n{expires}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    def _signed_url(self, method: str, obj: StoredObject) -> str:
        now = datetime.now(UTC)
        date, expires = now.strftime("%Y%m%dT%H%M%SZ"), int(self.signed_url_lifetime)
        signature = self._sign(method, obj.name, obj.content_type, obj.max_size, date, expires)
        obj.signatures.append(signature)
        kind = "upload" if method == "PUT" else "download"
        self._remember(signature, f"{kind}_url_signature")
        query = urlencode(
            {
                "X-Goog-Algorithm": "GOOG4-HMAC-SHA256",
                "X-Goog-Credential": f"offline-siro/{now:%Y%m%d}/auto/storage/goog4_request",
                "X-Goog-Date": date,
                "X-Goog-Expires": str(expires),
                "X-Goog-SignedHeaders": "content-type;x-goog-content-length-range",
                "X-Goog-Signature": signature,
            }
        )
        return f"{self.url}/storage/{kind}/{quote(obj.name)}?{query}"

    def _check_signature(self, method: str, name: str, query: dict[str, str]) -> str | None:
        """None if the signed URL is valid now, else the GCS error code."""
        with self._lock:
            obj = self._objects.get(name)
        signature = query.get("X-Goog-Signature", "")
        if obj is None or not signature:
            return "SignatureDoesNotMatch"
        try:
            expires = int(query.get("X-Goog-Expires", ""))
            issued = datetime.strptime(query.get("X-Goog-Date", ""), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "SignatureDoesNotMatch"
        expected = self._sign(method, name, obj.content_type, obj.max_size, query["X-Goog-Date"], expires)
        if not hmac.compare_digest(expected, signature):
            return "SignatureDoesNotMatch"
        if signature in self._expired_signatures or datetime.now(UTC) > issued + timedelta(seconds=expires):
            return "ExpiredToken"
        return None

    # ------------------------------------------------------------------ request handling
    def _record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    def _user(self, headers: Headers, write: bool) -> tuple[int, str] | _Token:
        value = headers.get("x-siro-auth-token") or ""
        token = self._tokens.get(value)
        if token is None or token.expires_at <= time.time():
            return 401, "Unauthorized"
        if self.rate_limit is not None:
            with self._lock:
                calls = self._calls.setdefault(value, deque())
                now = time.monotonic()
                while calls and calls[0] <= now - self.rate_window:
                    calls.popleft()
                if len(calls) >= self.rate_limit:
                    self.rate_limited += 1
                    return 429, f"Too Many Requests: at most {self.rate_limit} per {self.rate_window:g} s"
                calls.append(now)
        if write and token.scope != "write":
            return 403, "Forbidden: this token has read scope; uploads need write"
        return token

    def _org(self, headers: Headers) -> tuple[int, str] | None:
        if headers.get("Authorization") != f"Bearer {self.org_token}":
            return 401, "Unauthorized: invalid organization API token"
        return None


def _fault_of_kind(endpoint: str, kind: str, slow_delay: float) -> Fault:
    if kind.startswith(("429", "5")):
        status = int(kind[:3])
        return Fault(
            endpoint,
            status=status,
            retry_after=1 if kind.endswith("retry-after") else None,
            acted=status in (500, 502, 504),
            kind=kind,
        )
    if kind == "slow":
        return Fault(endpoint, delay=slow_delay, kind=kind)
    drop = kind.removeprefix("drop-")
    if drop == "mid" and endpoint != "upload_put":
        drop = "after"
    return Fault(endpoint, drop=drop, kind=kind)


def _zod(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "ZodError", "issues": issues}


def _issue(code: str, path: list[Any], message: str) -> dict[str, Any]:
    return {"code": code, "path": path, "message": message}


def _validate_shape(body: Any, allowed: Sequence[str], required: dict[str, str]) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return [_issue("invalid_type", [], "Expected object")]
    issues = []
    extra = [key for key in body if key not in allowed]
    if extra:
        keys = ", ".join(f"'{k}'" for k in extra)
        issues.append(_issue("unrecognized_keys", [], f"Unrecognized key(s) in object: {keys}"))
    for key, kind in required.items():
        if key not in body:
            issues.append(_issue("invalid_type", [key], "Required"))
        elif kind == "string" and not isinstance(body[key], str):
            issues.append(
                _issue("invalid_type", [key], f"Expected string, received {type(body[key]).__name__}")
            )
    return issues


def _validate_recording(body: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """ZodError issues for a create body, and whether it uses the newer docs' names."""
    if not isinstance(body, dict):
        return [_issue("invalid_type", [], "Expected object")], False
    newer = bool(NEWER_ONLY & set(body))
    if newer and SEED_ONLY & set(body):
        mixed = sorted(SEED_ONLY & set(body))
        return [_issue("unrecognized_keys", [], f"Unrecognized key(s) in object: {mixed}")], True
    url_key = "fileUrl" if newer else "downloadUrl"
    issues = _validate_shape(
        body, NEWER_KEYS if newer else SEED_KEYS, {url_key: "string", "fileType": "enum"}
    )
    if "fileType" in body and body["fileType"] not in FILE_TYPES:
        issues.append(
            _issue(
                "invalid_enum_value",
                ["fileType"],
                f"Invalid enum value. Expected 'mp3' | 'aac' | 'wav', received '{body['fileType']}'",
            )
        )
    for key, value in body.items():
        if key in (url_key, "fileType", "crmObjects", "discoverable", "result"):
            continue
        if key in NEWER_KEYS + SEED_KEYS and not isinstance(value, str):
            issues.append(_issue("invalid_type", [key], f"Expected string, received {type(value).__name__}"))
    if isinstance(body.get("dateCreated"), str) and not ZOD_DATETIME.match(body["dateCreated"]):
        issues.append(_issue("invalid_string", ["dateCreated"], "Invalid datetime"))
    if "crmObjects" in body:
        objects = body["crmObjects"]
        if not isinstance(objects, list):
            issues.append(_issue("invalid_type", ["crmObjects"], "Expected array"))
        else:
            for index, item in enumerate(objects):
                if not isinstance(item, dict):
                    issues.append(_issue("invalid_type", ["crmObjects", index], "Expected object"))
                    continue
                if item.get("objectType") not in CRM_OBJECT_TYPES:
                    issues.append(
                        _issue(
                            "invalid_enum_value",
                            ["crmObjects", index, "objectType"],
                            f"Invalid enum value. Expected {' | '.join(CRM_OBJECT_TYPES)}",
                        )
                    )
                object_id = item.get("objectId")
                if not isinstance(object_id, str) or not object_id:
                    issues.append(
                        _issue(
                            "too_small",
                            ["crmObjects", index, "objectId"],
                            "String must contain at least 1 character(s)",
                        )
                    )
    if "discoverable" in body and not isinstance(body["discoverable"], bool):
        issues.append(_issue("invalid_type", ["discoverable"], "Expected boolean"))
    if "result" in body and body["result"] not in ("closed", "not closed", "in progress"):
        issues.append(_issue("invalid_enum_value", ["result"], "Invalid enum value"))
    return issues, newer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "OfflineSiro/1.0"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every small answer.
    disable_nagle_algorithm = True
    timeout = 120
    server_state: OfflineSiro

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the default access log would print signed URLs' query strings."""

    def setup(self) -> None:
        super().setup()
        with self.server_state._lock:
            self.server_state._sockets.add(self.connection)

    def finish(self) -> None:
        with self.server_state._lock:
            self.server_state._sockets.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ------------------------------------------------------------------ plumbing
    def _send(
        self, status: int, payload: Any = None, *, xml: str | None = None, retry_after: int | None = None
    ) -> None:
        if xml is not None:
            data, content_type = xml.encode(), "application/xml; charset=UTF-8"
        elif payload is None:
            data, content_type = b"", "text/plain"
        else:
            data, content_type = json.dumps(payload).encode(), "application/json"
        self._status = status
        self._commit()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        if self.close_connection:
            # Closing after this answer: say so, or a keep-alive client reuses the socket and fails.
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, retry_after: int | None = None) -> None:
        self._send(status, {"error": message}, retry_after=retry_after)

    def _gcs_error(self, status: int, code: str, message: str) -> None:
        xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        self._send(status, xml=xml)

    def _drop(self) -> None:
        self._status = None
        self._commit()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        siro = self.server_state
        parts = urlsplit(self.path)
        path = parts.path
        if path.startswith("/_offline/"):
            self._pending = None  # control requests stay out of the log
            self._control(method, path)
            return
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        endpoint, match = "unknown", None
        for route_method, pattern, name in _ROUTES:
            found = pattern.match(path)
            if found and route_method == method:
                endpoint, match = name, found
                break
        headers = Headers(self.headers.items())
        self._status: int | None = None
        self._json: Any = None
        self._body_size = 0
        fault = siro._take_fault(endpoint) if endpoint != "unknown" else None
        self._pending: RecordedRequest | None = RecordedRequest(
            endpoint=endpoint,
            method=method,
            path=path,
            headers=headers,
            json=None,
            body_size=0,
            status=None,
            fault=fault.kind if fault else None,
            time=time.monotonic(),
        )
        try:
            self._handle(endpoint, match, method, query, headers, fault)
        except _Drop:
            self._drop()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        self._commit()

    def _commit(self) -> None:
        """Log the request, once, before its answer leaves: a client that has the answer must find
        the request in the log."""
        entry, self._pending = getattr(self, "_pending", None), None
        if entry is not None:
            entry.json, entry.body_size, entry.status = self._json, self._body_size, self._status
            self.server_state._record(entry)

    def _handle(
        self,
        endpoint: str,
        match: re.Match[str] | None,
        method: str,
        query: dict[str, str],
        headers: Headers,
        fault: Fault | None,
    ) -> None:
        if endpoint == "unknown":
            self._read_body()
            self._error(404, f"Cannot {method} {urlsplit(self.path).path}")
            return
        storage = endpoint in ("upload_put", "download")
        if not storage and (headers.get("User-Agent") or "").startswith("python-requests/"):
            self._read_body()
            self._error(403, "Forbidden: blocked by the edge (default python-requests User-Agent)")
            return
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop == "before":
                raise _Drop
            if fault.status is not None and not (fault.acted and endpoint == "create_recording"):
                if endpoint == "upload_put":
                    self._discard_body()
                else:
                    self._raw = self._read_body()
                    self._body_size = len(self._raw)
                    self._parse_json_quietly()
                message = fault.body if fault.body is not None else {"error": f"Injected {fault.status}"}
                self._send(fault.status, message, retry_after=fault.retry_after)
                return
        handler = getattr(self, f"_ep_{endpoint}")
        handler(match, query, headers, fault)

    def _discard_body(self) -> None:
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining:
            chunk = self.rfile.read(min(READ_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            self._body_size += len(chunk)

    def _parse_json_quietly(self) -> None:
        try:
            self._json = json.loads(self._raw) if getattr(self, "_raw", b"") else None
        except ValueError:
            self._json = None

    def _json_body(self) -> Any:
        raw = self._read_body()
        self._raw = raw
        self._body_size = len(raw)
        try:
            self._json = json.loads(raw) if raw else None
        except ValueError:
            self._json = None
            raise
        return self._json

    def _finish_fault(self, fault: Fault | None) -> bool:
        """After acting: apply a drop-after or acted-status fault. True if the answer was replaced."""
        if fault is None:
            return False
        if fault.drop in ("after", "mid"):
            raise _Drop
        if fault.status is not None:
            self._send(
                fault.status,
                fault.body or {"error": f"Injected {fault.status}"},
                retry_after=fault.retry_after,
            )
            return True
        return False

    # ------------------------------------------------------------------ org API
    def _ep_mint_token(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        try:
            body = self._json_body()
        except ValueError:
            self._error(400, "Invalid JSON body")
            return
        if (problem := siro._org(headers)) is not None:
            self._error(*problem)
            return
        issues = _validate_shape(
            body, ["clientSecret", "userId", "scope"], {"clientSecret": "string", "userId": "string"}
        )
        if isinstance(body, dict) and body.get("scope", "write") not in ("read", "write"):
            issues.append(
                _issue("invalid_enum_value", ["scope"], "Invalid enum value. Expected 'read' | 'write'")
            )
        if issues:
            self._send(422, _zod(issues))
            return
        if match.group(1) != siro.client_id:
            self._error(404, "OAuth app not found")
            return
        if not hmac.compare_digest(body["clientSecret"], siro.client_secret):
            self._error(401, "Unauthorized: invalid client secret")
            return
        if body["userId"] != siro.user_id:
            self._error(404, "User not found")
            return
        token, token_id = siro._new_token(body["userId"], body.get("scope", "write"))
        if self._finish_fault(fault):
            return
        self._send(201, {"accessTokenId": token_id, "accessToken": token})

    def _ep_get_token(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        if (problem := siro._org(headers)) is not None:
            self._error(*problem)
            return
        with siro._lock:
            found = next((t for t in siro._tokens.values() if t.token_id == match.group(2)), None)
        if found is None or match.group(1) != siro.client_id:
            self._error(404, "Access token not found")
            return
        expires = datetime.fromtimestamp(found.expires_at, UTC).isoformat().replace("+00:00", "Z")
        data = {
            "accessTokenId": found.token_id,
            "userId": found.user_id,
            "scope": found.scope,
            "expiresAt": expires,
        }
        self._send(200, {"data": data})

    def _ep_list_connections(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        if (problem := siro._org(headers)) is not None:
            self._error(*problem)
            return
        self._send(
            200,
            {"data": [{"id": siro.integration_connection_id, "name": "Salesforce", "type": "salesforce"}]},
        )

    # ------------------------------------------------------------------ user-scoped API
    def _ep_signed_urls(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        try:
            body = self._json_body()
        except ValueError:
            self._error(400, "Invalid JSON body")
            return
        user = siro._user(headers, write=True)
        if isinstance(user, tuple):
            self._error(*user)
            return
        issues = _validate_shape(body, ["fileType", "fileSize"], {"fileType": "enum", "fileSize": "int"})
        if isinstance(body, dict):
            if "fileType" in body and body["fileType"] not in FILE_TYPES:
                issues.append(
                    _issue(
                        "invalid_enum_value",
                        ["fileType"],
                        "Invalid enum value. Expected 'mp3' | 'aac' | 'wav'",
                    )
                )
            size = body.get("fileSize")
            if "fileSize" in body and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
                issues.append(_issue("too_small", ["fileSize"], "Number must be a positive integer"))
        if issues:
            self._send(422, _zod(issues))
            return
        file_type = body["fileType"]
        name = f"{uuid.UUID(int=siro._rng_ids.getrandbits(128)).hex}.{file_type}"
        obj = StoredObject(name, 0, "", CONTENT_TYPES[file_type], max_size=body["fileSize"])
        with siro._lock:
            siro._objects[name] = obj
            upload_url, download_url = siro._signed_url("PUT", obj), siro._signed_url("GET", obj)
        expires = datetime.now(UTC) + timedelta(seconds=siro.signed_url_lifetime)
        if self._finish_fault(fault):
            return
        self._send(
            200,
            {
                "data": {
                    "uploadUrl": upload_url,
                    "uploadHeaders": {
                        "Content-Type": obj.content_type,
                        "x-goog-content-length-range": f"0,{obj.max_size}",
                    },
                    "downloadUrl": download_url,
                    "expiresAt": expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
                }
            },
        )

    def _ep_create_recording(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        try:
            body = self._json_body()
        except ValueError:
            self._error(400, "Invalid JSON body")
            return
        user = siro._user(headers, write=True)
        if isinstance(user, tuple):
            self._error(*user)
            return
        issues, newer = _validate_recording(body)
        if issues:
            self._send(422, _zod(issues))
            return
        if not any(
            isinstance(body.get(k), str) and body[k].strip() for k in ("userId", "userEmail", "userPhone")
        ):
            self._error(400, "At least one of userId, userEmail or userPhone is required")
            return
        if ("integrationConnectionId" in body) != ("crmObjects" in body):
            self._error(400, "integrationConnectionId and crmObjects must be provided together")
            return
        url = body["fileUrl" if newer else "downloadUrl"]
        parts = urlsplit(url)
        name = parts.path.rsplit("/", 1)[-1]
        signed_query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with siro._lock:
            obj = siro._objects.get(name)
        valid = (
            parts.path.startswith("/storage/download/")
            and obj is not None
            and siro._check_signature("GET", name, signed_query) in (None, "ExpiredToken")
        )
        if not valid or obj is None or not obj.uploaded:
            self._error(400, "File not found at downloadUrl: upload the audio through the signed URL first")
            return
        if CONTENT_TYPES[body["fileType"]] != obj.content_type:
            self._error(
                400, f"fileType {body['fileType']} does not match the uploaded file ({obj.content_type})"
            )
            return
        recording_id = f"rec_{uuid.UUID(int=siro._rng_ids.getrandbits(128)).hex[:20]}"
        recording = Recording(
            id=recording_id,
            body=body,
            object_name=name,
            sha256=obj.sha256,
            size=obj.size,
            file_type=body["fileType"],
            user_id=user.user_id,
            created_at=datetime.now(UTC),
        )
        with siro._lock:
            siro._recordings[recording_id] = recording
        if self._finish_fault(fault):
            return
        self._send(201, {"data": {siro.response_id_key: recording_id}})

    def _ep_get_recording(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        user = siro._user(headers, write=False)
        if isinstance(user, tuple):
            self._error(*user)
            return
        with siro._lock:
            recording = siro._recordings.get(match.group(1))
            if recording is None or recording.user_id != user.user_id:
                self._error(404, "Recording not found")
                return
            recording.polls += 1
            if recording.status == "in-progress" and recording.polls >= siro.processing_polls:
                recording.status = "complete"
            status = recording.status
        stage = {"in-progress": "processing", "complete": "done", "error": "processing"}[status]
        data: dict[str, Any] = {
            "id": recording.id,
            "title": recording.body.get("title"),
            "processingStatus": status,
            "processingStage": stage,
            "transcriptionStatus": {"complete": "complete", "error": "error"}.get(status, "in-progress"),
            "dateCreated": recording.body.get("dateCreated"),
        }
        if status == "complete":
            if query.get("showSummary") == "true":
                data["summary"] = f"Offline summary of {recording.body.get('title') or recording.id}."
            if query.get("showEntityExtractions") == "true":
                data["entityExtractions"] = [{"type": "nextStep", "value": "Send the proposal"}]
            if query.get("showCrmOpportunities") == "true":
                data["crmOpportunities"] = [
                    {"objectType": o["objectType"], "objectId": o["objectId"]}
                    for o in recording.body.get("crmObjects", [])
                    if o.get("objectType") == "Opportunity"
                ]
        if self._finish_fault(fault):
            return
        self._send(200, {"data": data})

    # ------------------------------------------------------------------ storage (GCS)
    def _ep_upload_put(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        name = match.group(1)
        if "x-siro-auth-token" in headers or "Authorization" in headers:
            with siro._lock:
                siro.credential_leaks += 1
            self.close_connection = True
            self._gcs_error(400, "InvalidArgument", "A Siro credential was sent to the storage URL")
            return
        problem = siro._check_signature("PUT", name, query)
        if problem == "ExpiredToken":
            self.close_connection = True
            self._gcs_error(400, "ExpiredToken", "Invalid argument: the signed URL has expired")
            return
        if problem:
            self.close_connection = True
            self._gcs_error(
                403, problem, "The request signature we calculated does not match the signature you provided"
            )
            return
        with siro._lock:
            obj = siro._objects[name]
        if headers.get("Content-Type") != obj.content_type or headers.get("x-goog-content-length-range") != (
            f"0,{obj.max_size}"
        ):
            self.close_connection = True
            self._gcs_error(403, "SignatureDoesNotMatch", "A signed header is missing or has another value")
            return
        if "chunked" in (headers.get("Transfer-Encoding") or "").lower() or "Content-Length" not in headers:
            self.close_connection = True
            self._gcs_error(411, "MissingContentLength", "Content-Length is required")
            return
        length = int(headers["Content-Length"])
        if length > obj.max_size:
            self.close_connection = True
            self._gcs_error(
                400, "EntityTooLarge", f"Body of {length} bytes exceeds the signed range 0,{obj.max_size}"
            )
            return
        digest = hashlib.sha256()
        keep = bytearray() if length <= KEEP_BYTES_UP_TO else None
        remaining = length
        stop_at = length // 2 if fault is not None and fault.drop == "mid" else -1
        buffer = bytearray(READ_CHUNK)
        view = memoryview(buffer)
        while remaining:
            if stop_at >= 0 and length - remaining >= stop_at:
                self._body_size = length - remaining
                raise _Drop
            want = min(READ_CHUNK, remaining)
            if stop_at >= 0:
                want = min(want, max(1, stop_at - (length - remaining)))  # stop exactly half-way
            n = self.rfile.readinto(view[:want])
            if not n:
                self.close_connection = True
                self._body_size = length - remaining
                return
            digest.update(view[:n])
            if keep is not None:
                keep += view[:n]
            remaining -= n
        self._body_size = length
        with siro._lock:
            obj.size, obj.sha256, obj.uploaded = length, digest.hexdigest(), True
            obj.data = bytes(keep) if keep is not None else None
        if self._finish_fault(fault):
            return
        self._send(200)

    def _ep_download(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        name = match.group(1)
        problem = siro._check_signature("GET", name, query)
        if problem == "ExpiredToken":
            self._gcs_error(400, "ExpiredToken", "Invalid argument: the signed URL has expired")
            return
        if problem:
            self._gcs_error(403, "SignatureDoesNotMatch", "Invalid signature")
            return
        with siro._lock:
            obj = siro._objects[name]
        if not obj.uploaded or obj.data is None:
            self._gcs_error(404, "NoSuchKey", "The object is not stored in full by the offline server")
            return
        self._status = 200
        self._commit()
        self.send_response(200)
        self.send_header("Content-Type", obj.content_type)
        self.send_header("Content-Length", str(len(obj.data)))
        self.end_headers()
        self.wfile.write(obj.data)

    # ------------------------------------------------------------------ control endpoints
    def _control(self, method: str, path: str) -> None:
        siro = self.server_state
        raw = self._read_body()
        if method == "GET" and path == "/_offline/requests":
            entries = []
            for entry in siro.requests:
                item = asdict(entry)
                item["headers"] = {
                    k: ("<redacted>" if k.lower() in ("authorization", "x-siro-auth-token") else v)
                    for k, v in entry.headers.items()
                }
                entries.append(item)
            self._send(200, entries)
        elif method == "GET" and path == "/_offline/recordings":
            self._send(
                200,
                {
                    rid: {**asdict(r), "created_at": r.created_at.isoformat()}
                    for rid, r in siro.recordings.items()
                },
            )
        elif method == "POST" and path == "/_offline/faults":
            args = json.loads(raw or b"{}")
            siro.add_fault(args.pop("endpoint"), **args)
            self._send(201, {"ok": True})
        elif method == "POST" and path == "/_offline/reset":
            siro.clear_requests()
            siro.clear_faults()
            self._send(200, {"ok": True})
        else:
            self._error(404, "unknown control endpoint")


def iter_recordings(server: OfflineSiro) -> Iterator[Recording]:
    """The server's recordings in creation order."""
    return iter(sorted(server.recordings.values(), key=lambda r: r.created_at))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the offline server in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Run an offline Siro server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 for any free port)")
    parser.add_argument("--token", help="an access token to accept (default: a new random one)")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=1000,
        help="requests per token per minute before 429, as Siro (default 1000; 0 turns it off)",
    )
    args = parser.parse_args(argv)
    server = OfflineSiro(port=args.port, rate_limit=args.rate_limit or None).start()
    token = args.token or server.issue_access_token()
    if args.token:
        server._remember(args.token, "access_token")
        with server._lock:
            server._tokens[args.token] = _Token(
                "tok_cli", server.user_id, "write", time.time() + server.token_lifetime
            )
    print(f"Offline Siro listening on {server.url} (Ctrl-C stops it)")
    print("Point Airflow at it with a pasted access token:")
    print(f"  export AIRFLOW_CONN_SIRO_DEFAULT='{json.dumps(server.connection(token=token))}'")
    print("or with the OAuth app it knows:")
    print(f"  export AIRFLOW_CONN_SIRO_DEFAULT='{json.dumps(server.connection(oauth=True))}'", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
