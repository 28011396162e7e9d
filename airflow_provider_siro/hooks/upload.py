"""Getting audio to Siro: signed upload URLs, and the streamed PUT of the bytes.

Siro's upload is three steps: ask for signed URLs (``POST /v1/core/recordings/signed-urls``), PUT the
audio to the upload URL with exactly the signed headers, then create the recording from the download
URL (:meth:`~airflow_provider_siro.hooks.siro.SiroHook.create_recording`). This module does the first
two. The PUT streams from a file object in small chunks, so a 2 GiB call costs no more memory than a
short one, and a failed PUT starts over from a re-opened source, never from a buffer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import requests

from airflow_provider_siro.exceptions import SiroApiError, SiroRejectedError, SiroValidationError
from airflow_provider_siro.hooks.redaction import mask_url_credentials, redact_url
from airflow_provider_siro.hooks.retries import RetryLater, call_with_retries, retryable_status
from airflow_provider_siro.hooks.settings import SiroConnectionSettings
from airflow_provider_siro.payload import CONTENT_TYPES, check_signed_url_request

if TYPE_CHECKING:
    from airflow_provider_siro.compat import Logger

SIGNED_URL_MARGIN = timedelta(seconds=30)
"""A signed URL this close to ``expiresAt`` is replaced before the PUT starts."""


@dataclass(frozen=True)
class SignedUpload:
    """The answer to a signed-URL request. ``repr`` leaves out the URLs' query strings (credentials)."""

    upload_url: str = field(repr=False)
    upload_headers: dict[str, str]
    download_url: str = field(repr=False)
    expires_at: datetime
    file_size: int

    def expires_soon(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at - SIGNED_URL_MARGIN

    def __repr__(self) -> str:
        return (
            f"SignedUpload(upload_url={redact_url(self.upload_url)!r}, file_size={self.file_size}, "
            f"expires_at={self.expires_at.isoformat()})"
        )


class _UploadBody:
    """An iterable request body that streams ``size`` bytes from a file object, chunk by chunk.

    ``requests`` sends an iterable with a ``__len__`` as a plain body with that ``Content-Length``
    (no chunked encoding, which signed GCS URLs refuse), and pulls chunks as the socket drains, so only
    one chunk is ever in memory. Progress is logged on a clock, not per chunk.

    A chunk is at most ``chunk_size`` bytes (see :data:`DEFAULT_UPLOAD_CHUNK`). A stream with ``readinto``
    (a file, an fsspec file) is read into one buffer allocated once per attempt, and each chunk is
    handed on as a view of it: urllib3 passes every chunk to ``sendall``, which has sent all of it
    before the next one is asked for, so reusing the buffer is safe, and a large upload costs no
    allocation (and no fresh pages to fault in) per chunk.
    """

    def __init__(
        self,
        stream: IO[bytes],
        size: int,
        chunk_size: int,
        progress_interval: float,
        label: str,
        logger: Logger,
    ) -> None:
        self._stream = stream
        self._size = size
        self._chunk_size = chunk_size
        self._progress_interval = progress_interval
        self._label = label
        self._log = logger
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes | memoryview]:
        started = last_report = time.monotonic()
        remaining = self._size
        read = self._stream.read
        readinto: Callable[[memoryview], int | None] | None = getattr(self._stream, "readinto", None)
        view = memoryview(bytearray(min(self._chunk_size, self._size))) if readinto else None
        while remaining:
            want = min(self._chunk_size, remaining)
            chunk = (
                view[: readinto(view[:want]) or 0]
                if view is not None and readinto is not None
                else read(want)
            )
            if not chunk:
                raise SiroValidationError(
                    "source_path",
                    f"{self._label} ended after {self.sent} of {self._size} bytes; it changed while uploading",
                )
            remaining -= len(chunk)
            self.sent += len(chunk)
            yield chunk
            now = time.monotonic()
            if now - last_report >= self._progress_interval and remaining:
                last_report = now
                self._log.info(
                    "Uploading %s: %s of %s (%.0f%%) at %.1f MB/s",
                    self._label,
                    _human_bytes(self.sent),
                    _human_bytes(self._size),
                    100 * self.sent / self._size,
                    self.sent / 1e6 / max(now - started, 1e-9),
                )
        if read(1):
            raise SiroValidationError(
                "source_path", f"{self._label} grew past its size of {self._size} bytes while uploading"
            )


def _human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"  # pragma: no cover - loop always returns


class UploadMixin:
    """The upload half of :class:`~airflow_provider_siro.hooks.siro.SiroHook` (a mixin; not used alone)."""

    if TYPE_CHECKING:  # the hook's cached_property

        @property
        def settings(self) -> SiroConnectionSettings: ...

    log: Logger
    _pools: Any  # TransportMixin's
    _send: Callable[..., requests.Response]  # TransportMixin's
    _error: Callable[..., SiroApiError]  # TransportMixin's
    _json: Callable[..., dict[str, Any]]  # TransportMixin's
    _redirect_error: Callable[..., SiroRejectedError]  # TransportMixin's

    def get_signed_urls(self, file_type: str, file_size: int) -> SignedUpload:
        """Ask Siro where to PUT ``file_size`` bytes of ``file_type`` audio (step 1 of an upload)."""
        file_type, file_size = check_signed_url_request(file_type, file_size)
        endpoint = "/v1/core/recordings/signed-urls"
        response = self._send(
            "POST",
            self.settings.api_url + endpoint,
            endpoint=endpoint,
            auth="user",
            json={"fileType": file_type, "fileSize": file_size},
        )
        data = self._json(response, "POST", endpoint).get("data") or {}
        try:
            upload_url, download_url = data["uploadUrl"], data["downloadUrl"]
            headers = {str(k): str(v) for k, v in (data.get("uploadHeaders") or {}).items()}
            expires_at = datetime.fromisoformat(str(data["expiresAt"]).replace("Z", "+00:00"))
        except (KeyError, TypeError, ValueError) as exc:
            raise SiroApiError(
                f"unexpected signed-urls response (missing {exc})", method="POST", endpoint=endpoint
            ) from None
        mask_url_credentials(upload_url)
        mask_url_credentials(download_url)
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        headers.setdefault("Content-Type", CONTENT_TYPES[file_type])
        return SignedUpload(upload_url, headers, download_url, expires_at, file_size)

    def put_audio(self, signed: SignedUpload, stream: IO[bytes], size: int, label: str = "audio") -> None:
        """PUT ``size`` bytes from ``stream`` to a signed URL, once, with exactly its signed headers.

        No Siro credential is sent: the URL's query string is the credential. Raises
        :class:`SiroApiError` (or :class:`SiroRejectedError` for 4xx) on failure; :meth:`upload_audio`
        wraps this with retries and re-signing.
        """
        settings = self.settings
        if size > signed.file_size:
            raise SiroValidationError(
                "source_path", f"is {size} bytes but the signed URL allows {signed.file_size}"
            )
        body = _UploadBody(
            stream, size, settings.upload_chunk_size, settings.progress_interval, label, self.log
        )
        headers = {**signed.upload_headers, "Content-Length": str(size)}
        endpoint = urlsplit(signed.upload_url).path
        try:
            with self._pools.lease() as session:
                response = session.put(
                    signed.upload_url,
                    data=cast(
                        "Iterable[bytes]", body
                    ),  # its chunks are bytes or memoryviews; requests sends both
                    headers=headers,
                    timeout=(min(10.0, settings.timeout), settings.timeout),
                    allow_redirects=False,  # the audio goes where Siro signed, nowhere else
                )
        except requests.RequestException as exc:
            raise SiroApiError(
                f"{type(exc).__name__} after {body.sent} of {size} bytes", method="PUT", endpoint=endpoint
            ) from None
        if 300 <= response.status_code < 400:
            raise self._redirect_error(response, "PUT", endpoint)
        if response.status_code >= 400:
            raise self._error(response, "PUT", endpoint, create=False)

    def upload_audio(
        self,
        open_stream: Callable[[], IO[bytes]],
        size: int,
        file_type: str,
        label: str = "audio",
    ) -> str:
        """Upload audio through signed URLs and return the ``downloadUrl`` to create a recording with.

        :param open_stream: opens the source from its first byte; called again for each retry, so a
            failed PUT starts over from the beginning and nothing is buffered in between.
        :param size: exact byte count of the source (Siro signs it into the URL).
        :param file_type: ``mp3``, ``aac`` or ``wav``.
        :param label: how the source is named in log lines (never a signed URL).

        An expired or rejected (403/400) signed URL is replaced by a fresh one; 429, 5xx and network
        failures back off and retry within the connection's retry budget.
        """
        signed = self.get_signed_urls(file_type, size)

        def attempt() -> str:
            nonlocal signed
            if signed.expires_soon():
                self.log.info(
                    "The signed upload URL expires at %s; asking for a fresh one", signed.expires_at
                )
                signed = self.get_signed_urls(file_type, size)
            try:
                with open_stream() as stream:
                    self.put_audio(signed, stream, size, label)
            except SiroApiError as exc:
                status = exc.status_code
                if status in (400, 401, 403):
                    self.log.warning(
                        "Storage refused the signed URL (%s: %s); asking for a fresh one", status, exc.message
                    )
                    signed = self.get_signed_urls(file_type, size)
                    raise RetryLater(exc, "was refused", retry_after=0.0) from None
                if status is None or retryable_status(status, create=False, retry_after=False):
                    raise RetryLater(
                        exc, f"of {label} failed ({exc.message}); retrying from the start"
                    ) from None
                raise
            return signed.download_url

        return call_with_retries(attempt, self.settings, self.log, "PUT", "the signed upload URL")
