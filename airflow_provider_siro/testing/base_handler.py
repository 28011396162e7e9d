"""The offline server's HTTP plumbing, shared by every endpoint family.

Answers go out with an exact ``Content-Length`` and ``Connection: close`` when the server closes; a
fault can drop the connection instead of answering. Nothing here logs: the default access log would
print signed URLs' query strings.
"""

from __future__ import annotations

import contextlib
import json
import socket
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from airflow_provider_siro.testing.faults import Fault
from airflow_provider_siro.testing.protocol import ServerState

if TYPE_CHECKING:
    from typing_extensions import TypeIs

KEEP_BYTES_UP_TO = 1024 * 1024
READ_CHUNK = 1024 * 1024


class _Drop(Exception):
    """Raised inside a handler to close the connection without an answer."""


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "OfflineSiro/1.0"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every small answer.
    disable_nagle_algorithm = True
    timeout = 120
    server_state: ServerState
    _status: int | None
    """The answer's status, for the request log (None: the connection was dropped)."""

    def _dispatch(self, method: str) -> None:
        """Route one request; the server's handler class does (``handler._Handler``)."""
        raise NotImplementedError

    def _commit(self) -> None:
        """Write the request to the server's log; the server's handler class does."""
        raise NotImplementedError

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

    def _json_or_refuse(self) -> tuple[bool, Any]:
        """``(True, body)``; or ``(False, None)`` once a body that is not JSON has been answered 400."""
        try:
            return True, self._json_body()
        except ValueError:
            self._error(400, "Invalid JSON body")
            return False, None

    def _refused(self, problem: object) -> TypeIs[tuple[int, str]]:
        """True once an auth check's ``(status, message)`` has been answered; False if it passed."""
        if isinstance(problem, tuple):
            self._error(*problem)
            return True
        return False

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
