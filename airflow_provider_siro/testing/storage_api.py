"""The offline server's storage: GCS-style signed PUT and GET of the audio."""

from __future__ import annotations

import hashlib
import re

from airflow_provider_siro.testing.base_handler import KEEP_BYTES_UP_TO, READ_CHUNK, BaseHandler, _Drop
from airflow_provider_siro.testing.faults import Fault
from airflow_provider_siro.testing.state import Headers


class StorageEndpoints(BaseHandler):
    """The signed URLs' endpoints; a Siro credential sent here is refused and counted as a leak."""

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
