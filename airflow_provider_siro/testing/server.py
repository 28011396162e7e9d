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

or from a shell, ``siro-offline serve [--api original]`` (``python -m airflow_provider_siro.testing serve``
runs the same),
which writes the ``AIRFLOW_CONN_SIRO_DEFAULT`` connection to a private file and prints the command that
exports it.

What it emulates (see ``SIRO_API.md`` of the provider for the real API):

* the org API under ``/api-externalApi``: minting access tokens from an OAuth app (Bearer org token),
  reading a token, listing integration connections;
* the org API's ``GET /v1/core/auth/caller-identity`` (which organization a Bearer token belongs to);
* the user-scoped API (``x-siro-auth-token``): signed upload URLs, creating a recording in the wire
  format the server speaks (``api="current"``, the default: ``fileUrl``, ``contactPhone``,
  ``contactName``, ``discoverable``, ``result``, answered with ``data.recordingId``; or
  ``api="original"``: the seed document's ``downloadUrl``, ``customerPhone``, ``customerName``,
  answered with ``data.id``; unknown keys, the other format's included, rejected; ZodError-shaped
  422s; the identity and integration/CRM rules as 400s), listing the user's recordings
  (``GET /v1/core/recordings`` with ``dateCreated:gt``/``dateCreated:lt``, ``limit`` up to 100,
  ``cursor``, ``orderBy``/``orderDirection``), and reading a recording, which turns from
  ``in-progress`` to ``complete`` after ``processing_polls`` reads;
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

import contextlib
import random
import secrets
import socket
import threading
from collections import Counter, deque
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

from airflow_provider_siro.testing.credentials import SECRETS_LEDGER_ENV, CredentialsMixin
from airflow_provider_siro.testing.faults import FAULT_KINDS, Fault, FaultsMixin
from airflow_provider_siro.testing.handler import _Handler, _Server
from airflow_provider_siro.testing.rules import APIS, ID_KEY
from airflow_provider_siro.testing.state import Headers, RecordedRequest, Recording, StoredObject, _Token

__all__ = [
    "FAULT_KINDS",
    "SECRETS_LEDGER_ENV",
    "Fault",
    "Headers",
    "OfflineSiro",
    "RecordedRequest",
    "Recording",
    "StoredObject",
    "iter_recordings",
]


class OfflineSiro(FaultsMixin, CredentialsMixin):
    """A local Siro server; see the module docstring.

    :param port: TCP port on 127.0.0.1, 0 for any free one.
    :param token_lifetime: seconds an access token lives (Siro: 16 hours).
    :param processing_polls: reads of a recording before it turns ``complete``.
    :param api: the wire format of the create call this server speaks, as one Siro deployment does:
        ``current`` (Siro's published reference today) or ``original`` (the seed document). A body in
        the other format is refused with a 422 naming its unknown keys.
    :param response_id_key: where the 201 answer puts the recording ID; by default where ``api`` puts it
        (``recordingId`` for ``current``, ``id`` for ``original``).
    :param seed: seeds ids and random faults, for repeatable runs.
    :param signed_url_lifetime: seconds a signed URL lives.
    :param slow_delay: seconds a ``slow`` random fault waits before answering.
    :param rate_limit: requests one access token may make per ``rate_window`` seconds before the
        user-scoped API answers 429 (Siro: 1000 a minute); ``None`` turns the limit off. Refused
        requests are counted in ``rate_limited`` and do not use up the budget.
    :param rate_window: the sliding window of ``rate_limit``, in seconds.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        token_lifetime: float = 57600.0,
        processing_polls: int = 2,
        api: str = "current",
        response_id_key: str | None = None,
        seed: int | None = None,
        signed_url_lifetime: float = 900.0,
        slow_delay: float = 2.0,
        rate_limit: int | None = 1000,
        rate_window: float = 60.0,
    ) -> None:
        self.port = port
        self.token_lifetime = token_lifetime
        self.processing_polls = processing_polls
        if api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}, got {api!r}")
        self.api = api
        self.response_id_key = response_id_key or ID_KEY[api]
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
        self.organization_id = f"org_{secrets.token_hex(6)}"
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
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)

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

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no request is being handled.

        A client that gives up on a slow answer (its read timeout) has not stopped the server: the
        create it sent still lands a moment later, as it would on Siro. Look at :attr:`recordings`
        after this when deciding what such an ambiguous create did.

        :raises TimeoutError: requests were still being handled after ``timeout`` seconds.
        """
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout):
                raise TimeoutError(f"{self._in_flight} request(s) still being handled after {timeout} s")

    def _handling(self, delta: int) -> None:
        with self._idle:
            self._in_flight += delta
            if self._in_flight == 0:
                self._idle.notify_all()

    def _record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(entry)


def iter_recordings(server: OfflineSiro) -> Iterator[Recording]:
    """The server's recordings in creation order."""
    return iter(sorted(server.recordings.values(), key=lambda r: r.created_at))
