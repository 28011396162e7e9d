"""The offline server's request handler: routing, the request log, and the control endpoints."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from airflow_provider_siro.testing.base_handler import _Drop
from airflow_provider_siro.testing.faults import Fault
from airflow_provider_siro.testing.org_api import OrgEndpoints
from airflow_provider_siro.testing.recordings_api import RecordingEndpoints
from airflow_provider_siro.testing.state import Headers, RecordedRequest
from airflow_provider_siro.testing.storage_api import StorageEndpoints

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/api-externalApi/v1/core/oauth/apps/([^/]+)/access-token$"), "mint_token"),
    ("GET", re.compile(r"^/api-externalApi/v1/core/oauth/apps/([^/]+)/access-token/([^/]+)$"), "get_token"),
    ("GET", re.compile(r"^/api-externalApi/v1/core/integrations/connections$"), "list_connections"),
    ("POST", re.compile(r"^/v1/core/recordings/signed-urls$"), "signed_urls"),
    ("GET", re.compile(r"^/api-externalApi/v1/core/auth/caller-identity$"), "caller_identity"),
    ("POST", re.compile(r"^/v1/core/recordings/upload$"), "create_recording"),
    ("GET", re.compile(r"^/v1/core/recordings$"), "list_recordings"),
    ("GET", re.compile(r"^/v1/core/recordings/([^/]+)$"), "get_recording"),
    ("PUT", re.compile(r"^/storage/upload/([^/]+)$"), "upload_put"),
    ("GET", re.compile(r"^/storage/download/([^/]+)$"), "download"),
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen() backlog: read in the constructor, so set on the class


class _Handler(OrgEndpoints, RecordingEndpoints, StorageEndpoints):
    """Routes each request to its endpoint family's ``_ep_<name>`` method."""

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
        self._status = None
        self._json: Any = None
        self._body_size = 0
        fault = siro._take_fault(endpoint) if endpoint != "unknown" else None
        self._pending = RecordedRequest(
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
        siro._handling(+1)
        try:
            self._handle(endpoint, match, method, query, headers, fault)
        except _Drop:
            self._drop()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        finally:
            siro._handling(-1)
        self._commit()

    def _commit(self) -> None:
        """Log the request, once, before its answer leaves: a client that has the answer must find
        the request in the log."""
        entry, self._pending = getattr(self, "_pending", None), None
        if entry is not None:
            entry.json, entry.body_size, entry.status = self._json, self._body_size, self._status
            self.server_state._record(entry)

    def _send_answer(self, status: int, data: bytes, content_type: str, extra: dict[str, str]) -> None:
        """Answer a redirect, echo or raw-body fault (see :meth:`Fault.answer`)."""
        self._status = status
        self._commit()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

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
                answer = fault.answer(headers, getattr(self, "_raw", b""))
                if answer is not None:
                    self._send_answer(fault.status, *answer)
                    return
                message = fault.body if fault.body is not None else {"error": f"Injected {fault.status}"}
                self._send(fault.status, message, retry_after=fault.retry_after)
                return
        handler = getattr(self, f"_ep_{endpoint}")
        handler(match, query, headers, fault)

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
        elif method == "GET" and path.startswith("/_offline/recordings/"):
            # The recording's own page, where the provider's extra link points for this server (no
            # audio URL on it: a signed one is a credential).
            found = siro.recordings.get(unquote(path.rsplit("/", 1)[1]))
            if found is None:
                self._error(404, "no such recording")
            else:
                page = {k: found.body.get(k) for k in ("title", "userEmail", "userId", "dateCreated")}
                self._send(200, {"id": found.id, "status": found.status, "fileType": found.file_type, **page})
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
