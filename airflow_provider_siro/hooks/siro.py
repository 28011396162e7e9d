"""SiroHook: the one place that speaks HTTP to Siro.

The hook owns the ``siro`` connection (base URL, credentials, tunables), the user-scoped access token
(pasted, or minted from an OAuth app and refreshed before it expires), and every call the provider
makes: signed upload URLs, the streamed PUT of the audio, creating and reading recordings, listing
integration connections. It retries what is safe to retry, never repeats a create call whose outcome
is unknown, sends its own User-Agent, and masks every secret before it could first reach a log line.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import platform
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import cached_property
from typing import IO, Any
from urllib.parse import parse_qsl, quote, urlsplit

import requests
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from airflow_provider_siro import __version__
from airflow_provider_siro.exceptions import (
    SiroAmbiguousCreateError,
    SiroApiError,
    SiroRejectedError,
    SiroValidationError,
)
from airflow_provider_siro.payload import CONTENT_TYPES, RecordingFields, check_signed_url_request
from airflow_provider_siro.utils.rate_limit import RateLimiter, limiter_for
from airflow_provider_siro.utils.rate_limit_redis import check_backend

DEFAULT_API_URL = "https://api.siro.ai"
DEFAULT_AUTH_URL = "https://functions.siro.ai/api-externalApi"
DEFAULT_APP_URL = "https://app.siro.ai"

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Statuses after which the same request may succeed: rate limiting and gateway failures."""

DEFAULT_MAX_REQUESTS_PER_MINUTE = 900.0
"""The hook's own pace for user-scoped calls: below Siro's 1000 per token per minute, bursts included."""

TOKEN_LIFETIME = timedelta(hours=16)
"""How long Siro's access tokens live; the mint response does not say, the docs do."""

TOKEN_REFRESH_MARGIN = timedelta(minutes=10)
"""A cached token is replaced this long before it expires, so no request races its expiry."""

SIGNED_URL_MARGIN = timedelta(seconds=30)
"""A signed URL this close to ``expiresAt`` is replaced before the PUT starts."""

IDLE_POOL_SECONDS = 30.0
"""Pooled API connections idle longer than this are dropped before a create call (see ``_fresh_pool``)."""

USER_AGENT = (
    f"airflow-provider-siro/{__version__} "
    f"({platform.python_implementation()}/{platform.python_version()}; requests/{requests.__version__})"
)

log = logging.getLogger(__name__)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redact_url(url: str) -> str:
    """``scheme://host/path`` without the query string, which for a signed URL is a credential."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


MASKED_SIGNATURES_PER_PROCESS = 32
"""Signed URLs whose signature one process registers with Airflow's secrets masker.

The masker compiles one regular expression over every secret it knows, again on each registration, so
registering grows quadratically: 750 signatures cost 79 s in one process (measured on this project's
machine). A task uploads one file, re-signing a few times at most, and stays far below the cap; a
process that uploads hundreds of files (a loop in a ``@task``, the triggerer) stops registering there
and relies on the two guards that cover every URL: the provider never logs a query string, and
:class:`_SignedUrlRedactor` removes signatures from the HTTP client's own debug lines.
"""

_SIGNED_PARAMS = re.compile(r"(?i)([?&][^=&\s\"']*(?:signature|credential)[^=&\s\"']*=)[^&\s\"']+")
_mask_lock = threading.Lock()
_masked_signatures: set[str] = set()
_masked_urls: set[str] = set()


class _SignedUrlRedactor(logging.Filter):
    """Blanks signed-URL signatures in ``urllib3``'s debug lines (it logs each request's full URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SIGNED_PARAMS.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


@functools.cache
def _redact_http_client_logs() -> None:
    """Install :class:`_SignedUrlRedactor` once per process, on the logger that writes request lines."""
    logging.getLogger("urllib3.connectionpool").addFilter(_SignedUrlRedactor())


def _mask_url_credentials(url: str) -> None:
    """Keep a signed URL's signature out of logs: register it with Airflow's secrets masker.

    Only the signature is registered, not the whole query string: it is what makes the URL a
    credential, and one secret per URL keeps the masker's cost down. See
    :data:`MASKED_SIGNATURES_PER_PROCESS` for the cap.
    """
    _redact_http_client_logs()
    if url in _masked_urls or len(_masked_signatures) >= MASKED_SIGNATURES_PER_PROCESS:
        return  # every create call passes its download URL again: no parsing twice
    for key, value in parse_qsl(urlsplit(url).query):
        if "signature" not in key.lower() or len(value) < 8:
            continue
        with _mask_lock:
            if value in _masked_signatures or len(_masked_signatures) >= MASKED_SIGNATURES_PER_PROCESS:
                continue
            _masked_signatures.add(value)
            _masked_urls.add(url)
        mask_secret(value)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _request_was_not_sent(exc: requests.RequestException) -> bool:
    """True when the failure happened before any byte of the request reached the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


@dataclass(frozen=True)
class SiroConnectionSettings:
    """Everything read from a ``siro`` connection, validated; built by :meth:`SiroHook.settings`."""

    conn_id: str
    api_url: str
    auth_url: str
    app_url: str
    access_token: str | None
    org_token: str | None
    client_id: str | None
    client_secret: str | None
    user_id: str | None
    scope: str
    timeout: float
    max_retries: int
    retry_backoff: float
    max_retry_wait: float
    newer_field_names: bool
    upload_chunk_size: int
    progress_interval: float
    max_requests_per_minute: float
    rate_limit_backend: str = "local"
    rate_limit_redis_conn_id: str | None = None
    rate_limit_on_backend_error: str = "fail"

    @property
    def uses_oauth(self) -> bool:
        return self.access_token is None


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
            f"SignedUpload(upload_url={_redact_url(self.upload_url)!r}, file_size={self.file_size}, "
            f"expires_at={self.expires_at.isoformat()})"
        )


@dataclass
class _CachedToken:
    value: str
    expires_at: float  # time.monotonic() based


_TOKEN_CACHE: dict[str, _CachedToken] = {}
_TOKEN_LOCK = threading.Lock()


DEFAULT_UPLOAD_CHUNK = 1024 * 1024
"""Bytes read per chunk of an upload. A chunk this small is still in the CPU cache when the socket copies
it out: in ``make bench``, a 1 GiB upload in 8 MiB chunks took about twice curl's CPU time, in 1 MiB
chunks no more than curl's."""


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
        logger: logging.Logger,
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
        readinto = getattr(self._stream, "readinto", None)
        view = memoryview(bytearray(min(self._chunk_size, self._size))) if readinto else None
        while remaining:
            want = min(self._chunk_size, remaining)
            chunk = view[: readinto(view[:want]) or 0] if view is not None else read(want)
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


class SiroHook(BaseHook):
    """
    Interact with Siro's API: upload audio, create recordings, read them back.

    The connection's ``host`` is the user-scoped API (empty means ``https://api.siro.ai``). Its
    ``password`` is a pasted user-scoped access token; leave it empty to have the hook mint one from an
    OAuth app with the ``org_token``, ``client_id``, ``client_secret`` and ``user_id`` extras. Minted
    tokens are cached per process and connection and replaced shortly before their 16 hours run out or
    when Siro answers 401.

    Other extras, all optional: ``scope`` (``write``), ``auth_host`` (the org API), ``timeout`` (seconds
    per request, 30), ``max_retries`` (5), ``retry_backoff`` (first backoff in seconds, 1.0),
    ``max_retry_wait`` (cap on one wait, including ``Retry-After``, 120), ``newer_field_names`` (send the
    field names of Siro's newer public docs), ``allow_insecure_http`` (plain ``http://`` to a
    non-loopback host), ``app_url`` (the Siro web app, for links), ``upload_chunk_size`` (bytes, 1 MiB),
    ``progress_interval`` (seconds between upload progress lines, 30) and ``max_requests_per_minute``
    (900; the pace of user-scoped calls, shared by every task process on the machine that uses the same
    credential, so a wide mapped task stays under Siro's 1000 per token per minute; 0 turns it off).

    :param siro_conn_id: the Airflow connection to use.
    """

    conn_name_attr = "siro_conn_id"
    default_conn_name = "siro_default"
    conn_type = "siro"
    hook_name = "Siro"

    def __init__(self, siro_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.siro_conn_id = siro_conn_id
        self._last_api_call = 0.0

    # ------------------------------------------------------------------ connection form
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form layout (also declared in ``get_provider_info`` for Airflow 3's UI)."""
        from airflow_provider_siro.get_provider_info import UI_FIELD_BEHAVIOUR

        return UI_FIELD_BEHAVIOUR

    # ------------------------------------------------------------------ settings
    @cached_property
    def settings(self) -> SiroConnectionSettings:
        """The connection, read once and validated. Secrets are masked here, before anything logs."""
        conn = self.get_connection(self.siro_conn_id)
        extras: Mapping[str, Any] = conn.extra_dejson or {}

        def extra(name: str, default: Any = None) -> Any:
            for key in (name, f"extra__siro__{name}"):
                value = extras.get(key)
                if value not in (None, ""):
                    return value
            return default

        def number(name: str, default: float, kind: type, minimum: float) -> Any:
            raw = extra(name, default)
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise SiroValidationError(
                    f"{self.siro_conn_id}.extra.{name}", f"must be a number, got {raw!r}"
                ) from None
            if value < minimum:
                raise SiroValidationError(
                    f"{self.siro_conn_id}.extra.{name}", f"must be >= {minimum}, got {raw!r}"
                )
            return value

        def flag(name: str) -> bool:
            raw = extra(name, False)
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise SiroValidationError(
                f"{self.siro_conn_id}.extra.{name}", f"must be true or false, got {raw!r}"
            )

        for secret_name in ("org_token", "client_secret"):
            if extra(secret_name):
                mask_secret(str(extra(secret_name)))
        # A token holds no whitespace: a pasted one may bring a line break along, and a blank one is none
        # (sent as it is, requests would refuse the header and the call would be retried as a network error).
        access_token = (conn.password or "").strip() or None
        if access_token:
            mask_secret(access_token)

        allow_http = flag("allow_insecure_http")
        api_url = self._base_url("host", conn.host, conn.schema, conn.port, DEFAULT_API_URL, allow_http)
        auth_url = self._base_url("auth_host", extra("auth_host"), None, None, DEFAULT_AUTH_URL, allow_http)
        app_url = str(extra("app_url", DEFAULT_APP_URL)).rstrip("/")

        oauth = {name: extra(name) for name in ("org_token", "client_id", "client_secret", "user_id")}
        if access_token is None:
            missing = [name for name, value in oauth.items() if not value]
            if missing:
                raise SiroValidationError(
                    f"{self.siro_conn_id}",
                    "has no access token (password) and cannot mint one: missing extra " + ", ".join(missing),
                )
        elif given := [name for name, value in oauth.items() if value]:
            # Which one would the user want? Guessing could upload as the wrong Siro user.
            raise SiroValidationError(
                f"{self.siro_conn_id}",
                f"has both an access token (password) and OAuth app extras ({', '.join(given)}): "
                "give one or the other",
            )
        scope = str(extra("scope", "write"))
        if scope not in ("read", "write"):
            raise SiroValidationError(
                f"{self.siro_conn_id}.extra.scope", f"must be read or write, got {scope!r}"
            )
        on_backend_error = str(extra("rate_limit_on_backend_error", "fail"))
        if on_backend_error not in ("fail", "local"):
            raise SiroValidationError(
                f"{self.siro_conn_id}.extra.rate_limit_on_backend_error",
                f"must be fail or local, got {on_backend_error!r}",
            )
        return SiroConnectionSettings(
            conn_id=self.siro_conn_id,
            api_url=api_url,
            auth_url=auth_url,
            app_url=app_url,
            access_token=access_token,
            org_token=oauth["org_token"],
            client_id=oauth["client_id"],
            client_secret=oauth["client_secret"],
            user_id=oauth["user_id"],
            scope=scope,
            timeout=number("timeout", 30.0, float, 0.1),
            max_retries=number("max_retries", 5, int, 0),
            retry_backoff=number("retry_backoff", 1.0, float, 0.0),
            max_retry_wait=number("max_retry_wait", 120.0, float, 0.0),
            newer_field_names=flag("newer_field_names"),
            upload_chunk_size=number("upload_chunk_size", DEFAULT_UPLOAD_CHUNK, int, 64 * 1024),
            progress_interval=number("progress_interval", 30.0, float, 0.0),
            max_requests_per_minute=number(
                "max_requests_per_minute", DEFAULT_MAX_REQUESTS_PER_MINUTE, float, 0.0
            ),
            rate_limit_backend=check_backend(
                f"{self.siro_conn_id}.extra.rate_limit_backend", extra("rate_limit_backend", "local")
            ),
            rate_limit_redis_conn_id=extra("rate_limit_redis_conn_id"),
            rate_limit_on_backend_error=on_backend_error,
        )

    def _base_url(
        self,
        name: str,
        host: str | None,
        schema: str | None,
        port: int | None,
        default: str,
        allow_http: bool,
    ) -> str:
        """Normalise ``host`` (with or without scheme) into a base URL, refusing plain remote HTTP."""
        field_name = f"{self.siro_conn_id}.{name}" if name == "host" else f"{self.siro_conn_id}.extra.{name}"
        if not host:
            return default
        text = str(host).strip().rstrip("/")
        if "://" not in text:
            scheme = schema if schema in ("http", "https") else "https"
            text = f"{scheme}://{text}"
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SiroValidationError(field_name, f"{host!r} is not an http(s) URL")
        if port and not parts.port:
            text = f"{parts.scheme}://{parts.netloc}:{port}{parts.path}"
        if parts.scheme == "http" and not _is_loopback(parts.hostname) and not allow_http:
            raise SiroValidationError(
                field_name,
                f"uses plain http:// to {parts.hostname}, which would send credentials unencrypted; use https:// "
                "or set the extra allow_insecure_http to true",
            )
        return text.rstrip("/")

    # ------------------------------------------------------------------ HTTP plumbing
    @cached_property
    def session(self) -> requests.Session:
        """One session per hook, so connections are reused across calls."""
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    @cached_property
    def rate_limiter(self) -> RateLimiter | None:
        """The pace of this credential's user-scoped calls (machine- or Redis-wide), or None when off."""
        s = self.settings
        return limiter_for(  # the key is only ever hashed: a pasted token may stand in it as is
            f"{s.api_url}\0{s.access_token or self._token_key}",
            s.max_requests_per_minute,
            s.rate_limit_backend,
            redis_conn_id=s.rate_limit_redis_conn_id,
            on_error=s.rate_limit_on_backend_error,
        )

    def _pace(self, method: str, endpoint: str) -> float:
        """Reserve a slot for one user-scoped call; return the seconds to wait before sending it."""
        limiter = self.rate_limiter
        wait = limiter.reserve() if limiter is not None else 0.0
        if wait >= 1.0:
            self.log.info(
                "Pacing %s %s by %.1f s to stay within %g requests per minute",
                method,
                endpoint,
                wait,
                self.settings.max_requests_per_minute,
            )
        return wait

    def close(self) -> None:
        """Close pooled connections. The hook stays usable; a new pool is made on the next call."""
        if "session" in self.__dict__:
            self.session.close()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        settings = self.settings
        if retry_after is not None:
            return min(retry_after, settings.max_retry_wait)
        ceiling = min(settings.max_retry_wait, settings.retry_backoff * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter": never zero, never in lockstep

    def _send(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        auth: str | None,
        create: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one API call with retries, token refresh and error translation.

        :param endpoint: the path shown in errors and logs (never a query string).
        :param auth: ``"user"`` for ``x-siro-auth-token``, ``"org"`` for the Bearer org token, or None.
        :param create: the call creates a recording. It is then repeated only where Siro cannot have
            acted on it (429, 401, 503 with ``Retry-After``, or a connection that was never
            established), never after another 5xx, a timeout or a dropped connection, which raise
            :class:`SiroAmbiguousCreateError`.
        """
        settings = self.settings
        kwargs.setdefault("timeout", (min(10.0, settings.timeout), settings.timeout))
        refreshed = False
        attempt = 0
        while True:
            headers = dict(kwargs.pop("headers", None) or {})
            if auth == "user":
                headers["x-siro-auth-token"] = self.get_access_token()
            elif auth == "org":
                headers["Authorization"] = f"Bearer {settings.org_token}"
            kwargs["headers"] = headers
            if auth == "user" and (wait := self._pace(method, endpoint)):
                time.sleep(wait)
            started = time.monotonic()
            try:
                response = self.session.request(method, url, **kwargs)
            except requests.RequestException as exc:
                self._last_api_call = time.monotonic()
                not_sent = _request_was_not_sent(exc)
                if create and not not_sent:
                    raise SiroAmbiguousCreateError(
                        f"{type(exc).__name__} after the request was sent; the recording may or may not exist "
                        "and the call is not repeated, to avoid a duplicate. Check Siro before re-running.",
                        method=method,
                        endpoint=endpoint,
                    ) from None
                if attempt >= settings.max_retries:
                    raise SiroApiError(
                        f"{type(exc).__name__}: no answer after {attempt + 1} attempts",
                        method=method,
                        endpoint=endpoint,
                    ) from None
                wait = self._backoff(attempt, None)
                self.log.warning(
                    "%s %s failed (%s); retry %d of %d in %.2f s",
                    method,
                    endpoint,
                    type(exc).__name__,
                    attempt + 1,
                    settings.max_retries,
                    wait,
                )
                time.sleep(wait)
                attempt += 1
                continue
            self._last_api_call = time.monotonic()
            status = response.status_code
            self.log.debug("%s %s -> %s in %.3f s", method, endpoint, status, time.monotonic() - started)
            if status < 400:
                return response
            if status == 401 and auth == "user" and settings.uses_oauth and not refreshed:
                self.log.info("Siro answered 401; minting a new access token and trying once more")
                self._forget_token()
                refreshed = True
                continue
            if create:
                # 429, and a 503 that says when to come back, are refusals: nothing was processed.
                retryable = status == 429 or (status == 503 and "Retry-After" in response.headers)
            else:
                retryable = status in RETRY_STATUSES
            if retryable and attempt < settings.max_retries:
                wait = self._backoff(attempt, _parse_retry_after(response.headers.get("Retry-After")))
                self.log.warning(
                    "%s %s returned %d; retry %d of %d in %.2f s",
                    method,
                    endpoint,
                    status,
                    attempt + 1,
                    settings.max_retries,
                    wait,
                )
                response.close()
                time.sleep(wait)
                attempt += 1
                continue
            raise self._error(response, method, endpoint, create)

    def _error(self, response: requests.Response, method: str, endpoint: str, create: bool) -> SiroApiError:
        status = response.status_code
        message = response.reason or "error"
        issues: list[tuple[str, str]] = []
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            if isinstance(body.get("error"), str):
                message = body["error"]
            elif isinstance(body.get("message"), str):
                message = body["message"]
            for issue in body.get("issues") or []:
                if isinstance(issue, dict):
                    path = ".".join(str(part) for part in issue.get("path") or [])
                    issues.append((path, str(issue.get("message", ""))))
            if issues:
                message = f"{body.get('name', 'validation error')} ({len(issues)} issue(s))"
        elif response.text and len(response.text) < 500 and "<" not in response.text:
            message = response.text.strip()
        if status == 401 and not self.settings.uses_oauth:
            message += (
                f" - the access token in connection {self.siro_conn_id!r} (password) was refused; tokens expire "
                "16 hours after they are minted: paste a fresh one, or configure the OAuth app extras"
            )
        if create and status >= 500:
            return SiroAmbiguousCreateError(
                f"{message}; the recording may or may not exist and the call is not repeated, to avoid a "
                "duplicate. Check Siro before re-running.",
                status_code=status,
                method=method,
                endpoint=endpoint,
            )
        kind = SiroRejectedError if 400 <= status < 500 and status not in (408, 429) else SiroApiError
        return kind(message, status_code=status, method=method, endpoint=endpoint, issues=issues)

    # ------------------------------------------------------------------ tokens
    @cached_property
    def _token_key(self) -> str:
        s = self.settings
        material = "\0".join(
            [
                s.conn_id,
                s.auth_url,
                s.client_id or "",
                s.user_id or "",
                s.scope,
                s.org_token or "",
                s.client_secret or "",
            ]
        )
        return hashlib.sha256(material.encode()).hexdigest()

    def _forget_token(self) -> None:
        with _TOKEN_LOCK:
            _TOKEN_CACHE.pop(self._token_key, None)

    def get_access_token(self) -> str:
        """The user-scoped token: the pasted one, or a cached minted one, minting when needed."""
        settings = self.settings
        if settings.access_token:
            return settings.access_token
        key = self._token_key
        with _TOKEN_LOCK:
            cached = _TOKEN_CACHE.get(key)
            if cached and time.monotonic() < cached.expires_at:
                return cached.value
            token = self._mint_token()
            lifetime = (TOKEN_LIFETIME - TOKEN_REFRESH_MARGIN).total_seconds()
            _TOKEN_CACHE[key] = _CachedToken(token, time.monotonic() + lifetime)
            return token

    def _mint_token(self) -> str:
        settings = self.settings
        client = quote(str(settings.client_id), safe="")
        endpoint = f"/v1/core/oauth/apps/{client}/access-token"
        response = self._send(
            "POST",
            settings.auth_url + endpoint,
            endpoint=endpoint,
            auth="org",
            json={
                "clientSecret": settings.client_secret,
                "userId": settings.user_id,
                "scope": settings.scope,
            },
        )
        token = response.json().get("accessToken")
        if not isinstance(token, str) or not token:
            raise SiroApiError("the mint response has no accessToken", method="POST", endpoint=endpoint)
        mask_secret(token)
        self.log.info(
            "Minted a Siro access token for user %s (scope %s) from OAuth app %s",
            settings.user_id,
            settings.scope,
            settings.client_id,
        )
        return token

    # ------------------------------------------------------------------ API calls
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
        data = (response.json() or {}).get("data") or {}
        try:
            upload_url, download_url = data["uploadUrl"], data["downloadUrl"]
            headers = {str(k): str(v) for k, v in (data.get("uploadHeaders") or {}).items()}
            expires_at = datetime.fromisoformat(str(data["expiresAt"]).replace("Z", "+00:00"))
        except (KeyError, TypeError, ValueError) as exc:
            raise SiroApiError(
                f"unexpected signed-urls response (missing {exc})", method="POST", endpoint=endpoint
            ) from None
        _mask_url_credentials(upload_url)
        _mask_url_credentials(download_url)
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
            response = self.session.put(
                signed.upload_url,
                data=body,
                headers=headers,
                timeout=(min(10.0, settings.timeout), settings.timeout),
            )
        except requests.RequestException as exc:
            raise SiroApiError(
                f"{type(exc).__name__} after {body.sent} of {size} bytes", method="PUT", endpoint=endpoint
            ) from None
        if response.status_code >= 300:
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
        settings = self.settings
        signed = self.get_signed_urls(file_type, size)
        attempt = 0
        while True:
            if signed.expires_soon():
                self.log.info(
                    "The signed upload URL expires at %s; asking for a fresh one", signed.expires_at
                )
                signed = self.get_signed_urls(file_type, size)
            try:
                with open_stream() as stream:
                    self.put_audio(signed, stream, size, label)
                return signed.download_url
            except SiroApiError as exc:
                if attempt >= settings.max_retries:
                    raise
                status = exc.status_code
                if status in (400, 401, 403):
                    self.log.warning(
                        "Storage refused the signed URL (%s: %s); asking for a fresh one", status, exc.message
                    )
                    signed = self.get_signed_urls(file_type, size)
                    wait = 0.0
                elif status is None or status == 429 or status >= 500:
                    wait = self._backoff(attempt, None)
                    self.log.warning(
                        "Upload of %s failed (%s); retrying from the start in %.2f s",
                        label,
                        exc.message,
                        wait,
                    )
                else:
                    raise
                time.sleep(wait)
                attempt += 1

    def _fresh_pool(self) -> None:
        """Drop pooled connections that sat idle while a long upload ran.

        A server closes idle keep-alive connections; a request written onto such a socket fails only
        after it was sent, which for a create call would be indistinguishable from a lost answer. A new
        connection costs one handshake and keeps the no-duplicate rule from raising false alarms.
        """
        if time.monotonic() - self._last_api_call > IDLE_POOL_SECONDS:
            self.close()

    def create_recording(self, download_url: str, fields: RecordingFields) -> str:
        """Create a recording from uploaded audio (step 3) and return its ID.

        :param download_url: the ``downloadUrl`` of an upload's signed URLs.
        :param fields: validated metadata from :func:`~airflow_provider_siro.payload.validate_recording_fields`.
        :raises SiroAmbiguousCreateError: the call failed after Siro may have acted on it; never retried.
        """
        body = fields.to_body(download_url, newer_field_names=self.settings.newer_field_names)
        _mask_url_credentials(download_url)
        endpoint = "/v1/core/recordings/upload"
        self._fresh_pool()
        response = self._send(
            "POST", self.settings.api_url + endpoint, endpoint=endpoint, auth="user", json=body, create=True
        )
        try:
            data = response.json().get("data") or {}
            recording_id = data.get("id") or data.get("recordingId")
        except (ValueError, AttributeError):
            recording_id = None
        if not isinstance(recording_id, str) or not recording_id:
            raise SiroAmbiguousCreateError(
                f"Siro answered {response.status_code} without a recording id; the recording may exist",
                status_code=response.status_code,
                method="POST",
                endpoint=endpoint,
            )
        return recording_id

    def get_recording(
        self,
        recording_id: str,
        *,
        show_summary: bool = False,
        show_entity_extractions: bool = False,
        show_crm_opportunities: bool = False,
    ) -> dict[str, Any]:
        """Read a recording (its ``data`` object), optionally with summary, entities and opportunities."""
        if not isinstance(recording_id, str) or not recording_id.strip():
            raise SiroValidationError("recording_id", f"must be a non-empty string, got {recording_id!r}")
        params = {
            name: "true"
            for name, wanted in (
                ("showSummary", show_summary),
                ("showEntityExtractions", show_entity_extractions),
                ("showCrmOpportunities", show_crm_opportunities),
            )
            if wanted
        }
        endpoint = f"/v1/core/recordings/{quote(recording_id, safe='')}"
        response = self._send(
            "GET", self.settings.api_url + endpoint, endpoint=endpoint, auth="user", params=params or None
        )
        data = (response.json() or {}).get("data")
        if not isinstance(data, dict):
            raise SiroApiError("the recording response has no data object", method="GET", endpoint=endpoint)
        return data

    def list_integration_connections(self) -> list[dict[str, Any]]:
        """Integration connections of the organization (org API; needs the ``org_token`` extra)."""
        if not self.settings.org_token:
            raise SiroValidationError(
                f"{self.siro_conn_id}.extra.org_token", "is needed to list integration connections"
            )
        endpoint = "/v1/core/integrations/connections"
        response = self._send("GET", self.settings.auth_url + endpoint, endpoint=endpoint, auth="org")
        data = (response.json() or {}).get("data")
        return list(data) if isinstance(data, list) else []

    def recording_url(self, recording_id: str) -> str:
        """Where a person opens the recording in the Siro web app."""
        return f"{self.settings.app_url}/recordings/{quote(recording_id, safe='')}"

    def test_connection(self) -> tuple[bool, str]:
        """Check credentials the cheapest way that proves uploads will work: ask for a 1-byte signed URL."""
        try:
            settings = self.settings
            self.get_access_token()
            self.get_signed_urls("mp3", 1)
        except Exception as exc:
            return False, str(exc)
        how = "a minted OAuth token" if settings.uses_oauth else "the pasted access token"
        return True, f"Connected to Siro at {settings.api_url} with {how}; uploads are allowed"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS settings of the async client: the system's defaults with certifi's CA bundle, as httpx uses."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class SiroAsyncHook(SiroHook):
    """
    Read Siro recordings from async code, such as a trigger, without blocking the event loop.

    The triggerer runs every deferred task's trigger on one event loop, so a blocking call here would
    stall all of them. This hook keeps :class:`SiroHook`'s connection handling, retry policy, token
    cache and error types, and changes only how a request travels:

    * the connection is read, and an OAuth access token minted, by :class:`SiroHook`'s own code in a
      worker thread (both may wait on the Airflow supervisor, a secrets backend or the org API, and
      both happen rarely: once per hook, and once per 16 hours per token);
    * API calls go through an ``httpx.AsyncClient`` (httpx ships with Airflow, and is imported only
      here, so DAG files that merely name a sensor do not pay for it), with the same backoff on 429,
      502, 503, 504 and network errors, ``Retry-After`` honoured up to ``max_retry_wait``, and one
      fresh token after a 401.

    Call :meth:`aclose` when done (a trigger does so in ``finally``).

    :param siro_conn_id: the Airflow connection to use.
    """

    def __init__(self, siro_conn_id: str = SiroHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(siro_conn_id=siro_conn_id, **kwargs)
        self._client: Any = None  # an httpx.AsyncClient, made on first use

    async def aget_settings(self) -> SiroConnectionSettings:
        """:attr:`settings`, read in a worker thread the first time and cached on the hook."""
        if "settings" not in self.__dict__:
            await asyncio.to_thread(getattr, self, "settings")
        return self.settings

    async def aget_access_token(self) -> str:
        """The user-scoped token; a mint, when one is due, runs in a worker thread."""
        settings = await self.aget_settings()
        if settings.access_token:
            return settings.access_token
        return await asyncio.to_thread(self.get_access_token)

    async def _aclient(self) -> Any:
        if self._client is None:
            import httpx

            settings = await self.aget_settings()
            # The CA bundle is read from disk once per process, in a thread, and shared by every
            # trigger's client (loading it per client cost a triggerer ~30 ms of CPU per deferred wait).
            tls = await asyncio.to_thread(_tls_context)
            self._client = httpx.AsyncClient(
                verify=tls,
                headers={
                    "User-Agent": f"airflow-provider-siro/{__version__} ({platform.python_implementation()}/"
                    f"{platform.python_version()}; httpx/{httpx.__version__})"
                },
                timeout=httpx.Timeout(settings.timeout, connect=min(10.0, settings.timeout)),
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client's pooled connections. The hook stays usable."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _apace(self, method: str, endpoint: str) -> float:
        """:meth:`_pace` without blocking the event loop on a Redis round trip (or on building the limiter)."""
        if "rate_limiter" not in self.__dict__ or getattr(self.rate_limiter, "remote", False):
            return await asyncio.to_thread(self._pace, method, endpoint)
        return self._pace(method, endpoint)

    async def _asend(
        self, method: str, url: str, *, endpoint: str, params: dict[str, str] | None = None
    ) -> Any:
        """Send one idempotent, user-scoped API call; the async twin of :meth:`SiroHook._send`.

        :param endpoint: the path shown in errors and logs (never a query string).
        :return: the ``httpx.Response`` of a successful (< 400) answer.
        """
        import httpx

        settings = await self.aget_settings()
        client = await self._aclient()
        refreshed = False
        attempt = 0
        while True:
            headers = {"x-siro-auth-token": await self.aget_access_token()}
            if wait := await self._apace(method, endpoint):
                await asyncio.sleep(wait)
            started = time.monotonic()
            try:
                response = await client.request(method, url, params=params, headers=headers)
            except httpx.TransportError as exc:
                if attempt >= settings.max_retries:
                    raise SiroApiError(
                        f"{type(exc).__name__}: no answer after {attempt + 1} attempts",
                        method=method,
                        endpoint=endpoint,
                    ) from None
                wait = self._backoff(attempt, None)
                self.log.warning(
                    "%s %s failed (%s); retry %d of %d in %.2f s",
                    method,
                    endpoint,
                    type(exc).__name__,
                    attempt + 1,
                    settings.max_retries,
                    wait,
                )
                await asyncio.sleep(wait)
                attempt += 1
                continue
            status = response.status_code
            self.log.debug("%s %s -> %s in %.3f s", method, endpoint, status, time.monotonic() - started)
            if status < 400:
                return response
            if status == 401 and settings.uses_oauth and not refreshed:
                self.log.info("Siro answered 401; minting a new access token and trying once more")
                # The token cache's lock may be held by a thread that is minting: wait for it off the loop.
                await asyncio.to_thread(self._forget_token)
                refreshed = True
                continue
            if status in RETRY_STATUSES and attempt < settings.max_retries:
                wait = self._backoff(attempt, _parse_retry_after(response.headers.get("Retry-After")))
                self.log.warning(
                    "%s %s returned %d; retry %d of %d in %.2f s",
                    method,
                    endpoint,
                    status,
                    attempt + 1,
                    settings.max_retries,
                    wait,
                )
                await asyncio.sleep(wait)
                attempt += 1
                continue
            raise self._error(_ResponseView(response), method, endpoint, create=False)

    async def aget_recording(
        self,
        recording_id: str,
        *,
        show_summary: bool = False,
        show_entity_extractions: bool = False,
        show_crm_opportunities: bool = False,
    ) -> dict[str, Any]:
        """Read a recording (its ``data`` object); the async twin of :meth:`SiroHook.get_recording`."""
        if not isinstance(recording_id, str) or not recording_id.strip():
            raise SiroValidationError("recording_id", f"must be a non-empty string, got {recording_id!r}")
        params = {
            name: "true"
            for name, wanted in (
                ("showSummary", show_summary),
                ("showEntityExtractions", show_entity_extractions),
                ("showCrmOpportunities", show_crm_opportunities),
            )
            if wanted
        }
        settings = await self.aget_settings()
        endpoint = f"/v1/core/recordings/{quote(recording_id, safe='')}"
        response = await self._asend(
            "GET", settings.api_url + endpoint, endpoint=endpoint, params=params or None
        )
        try:
            data = (response.json() or {}).get("data")
        except (ValueError, AttributeError):
            data = None
        if not isinstance(data, dict):
            raise SiroApiError("the recording response has no data object", method="GET", endpoint=endpoint)
        return data


class _ResponseView:
    """The parts of a ``requests.Response`` that :meth:`SiroHook._error` reads, over an httpx response."""

    def __init__(self, response: Any) -> None:
        self.status_code: int = response.status_code
        self.reason: str = response.reason_phrase
        self.text: str = response.text
        self._response = response

    def json(self) -> Any:
        return self._response.json()
