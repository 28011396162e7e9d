"""How one API call travels: pacing, the retry policy, token refresh, and the error it ends in.

:meth:`TransportMixin._send` runs each call under the provider's one retry policy
(:mod:`~airflow_provider_siro.hooks.retries`: what is retried, how long to wait, when to stop); a 401
on a minted token mints a new one once; a redirect is never followed (the token goes to the
connection's hosts only); every other answer becomes one of the exceptions in
:mod:`airflow_provider_siro.exceptions`, with the endpoint's path and never a query string.
"""

from __future__ import annotations

import contextlib
import platform
import threading
import time
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from airflow_provider_siro import __version__
from airflow_provider_siro.exceptions import SiroAmbiguousCreateError, SiroApiError, SiroRejectedError
from airflow_provider_siro.hooks.pacing import limiter_for
from airflow_provider_siro.hooks.redaction import scrub
from airflow_provider_siro.hooks.retries import (
    RETRY_STATUSES,
    RetryLater,
    call_with_retries,
    parse_retry_after,
    retryable_no_answer,
    retryable_status,
)
from airflow_provider_siro.hooks.settings import SiroConnectionSettings
from airflow_provider_siro.utils.rate_limit import RateLimiter

if TYPE_CHECKING:
    from requests.sessions import _Settings

    from airflow_provider_siro.compat import Logger

__all__ = ["RETRY_STATUSES", "USER_AGENT", "TransportMixin"]

IDLE_POOL_SECONDS = 30.0
"""Pooled API connections idle longer than this are dropped before a create call (see ``_fresh_pool``)."""

USER_AGENT = (
    f"airflow-provider-siro/{__version__} "
    f"({platform.python_implementation()}/{platform.python_version()}; requests/{requests.__version__})"
)


def _content_type(response: Any) -> str:
    return str(response.headers.get("Content-Type") or "no content type").split(";")[0].strip()


def _request_was_not_sent(exc: requests.RequestException) -> bool:
    """True when the failure happened before any byte of the request reached the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


POOL_SIZE = 8
"""Connections per host a hook keeps alive, unless :meth:`TransportMixin.size_pool` asks for more."""


class _Session(requests.Session):
    """A ``requests.Session`` that reads proxy and CA-bundle settings from the environment once per host.

    ``requests`` looks them up again for every request (``HTTPS_PROXY``, ``NO_PROXY``,
    ``REQUESTS_CA_BUNDLE``...), which scans ``os.environ`` several times per call: in a worker's
    environment that was a third of the client's CPU per request in ``make bench``'s bulk upload. The
    answer depends only on the URL's scheme and host and on what the call passed, so it is kept per
    those, for the life of the hook (a task does not change its proxy settings midway).
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[Any, ...], _Settings] = {}
        self._environment_lock = threading.Lock()

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> _Settings:
        parts = urlsplit(str(url))
        given = tuple(sorted(proxies.items())) if proxies else ()
        key = (parts.scheme, parts.netloc, given, stream, verify, repr(cert))
        found = self._environment.get(key)
        if found is None:
            found = super().merge_environment_settings(url, proxies, stream, verify, cert)
            with self._environment_lock:
                if len(self._environment) >= 64:  # many hosts: keep it bounded
                    self._environment.clear()
                self._environment[key] = found
        return {**found, "proxies": dict(found["proxies"])}


def _mount_pool(session: requests.Session, size: int) -> None:
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def _new_session(size: int) -> requests.Session:
    session = _Session()
    session.headers["User-Agent"] = USER_AGENT
    _mount_pool(session, size)
    return session


class _Pool:
    """One session, its pool size, and how many requests are using it right now."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.session = _new_session(size)
        self.users = 0
        self.retired = False


class _Pools:
    """The hook's current session, replaced without cutting a request that uses the one before.

    A request leases the current session (:meth:`lease`); replacing it (a bigger pool, fresh
    connections after a long idle spell, :meth:`TransportMixin.close`) retires the old one, which is
    closed when its last request ends, never under a request in flight (a create cut that way would
    look like an ambiguous create).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: _Pool | None = None

    def current(self) -> _Pool:
        with self._lock:
            if self._current is None:
                self._current = _Pool(POOL_SIZE)
            return self._current

    @contextlib.contextmanager
    def lease(self) -> Iterator[requests.Session]:
        with self._lock:
            if self._current is None:
                self._current = _Pool(POOL_SIZE)
            pool = self._current
            pool.users += 1
        try:
            yield pool.session
        finally:
            with self._lock:
                pool.users -= 1
                done = pool.retired and pool.users == 0
            if done:
                pool.session.close()

    def replace(self, size: int | None) -> None:
        """Retire the current session; the next request gets a new one of ``size`` (None: made lazily
        with the default size)."""
        with self._lock:
            old = self._current
            self._current = _Pool(size) if size is not None else None
            if old is None:
                return
            old.retired = True
            done = old.users == 0
        if done:
            old.session.close()


class TransportMixin:
    """The HTTP half of :class:`~airflow_provider_siro.hooks.siro.SiroHook` (a mixin; not used alone)."""

    siro_conn_id: str
    if TYPE_CHECKING:  # the hook's cached_property

        @property
        def settings(self) -> SiroConnectionSettings: ...

    log: Logger
    _last_api_call: float
    if TYPE_CHECKING:  # TokenMixin's

        @property
        def _token_key(self) -> str: ...

    get_access_token: Callable[[], str]  # TokenMixin's
    _forget_token: Callable[..., None]  # TokenMixin's
    _known_secrets: Callable[[], list[str | None]]  # TokenMixin's

    _pools: _Pools  # made in SiroHook.__init__

    @property
    def session(self) -> requests.Session:
        """The hook's current session (one per hook, so connections are reused across calls)."""
        return self._pools.current().session

    def get_conn(self) -> requests.Session:
        """The hook's ``requests`` session, as Airflow hooks return their client. Calls through it get
        the User-Agent and pooling, not the hook's retries, token or redirect rules."""
        return self.session

    def size_pool(self, connections: int) -> None:
        """Keep up to ``connections`` connections per host alive, for that many threads sharing the hook.

        Past the pool's size each extra request would open a connection and throw it away (a TCP and TLS
        handshake per call). A bigger pool is a new session; requests still using the old one finish on
        it, and it is closed after the last of them. Safe to call while other threads send.
        """
        if connections > self._pools.current().size:
            self._pools.replace(connections)

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
        """Close pooled connections (a request in flight first finishes). The hook stays usable; a new
        pool is made on the next call."""
        self._pools.replace(None)

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
        """Send one API call under the retry policy (:mod:`~airflow_provider_siro.hooks.retries`), with
        one fresh token after a 401 and every failure translated into the provider's exceptions.

        Redirects are never followed: a 3xx fails the call (see :meth:`_redirect_error`).

        :param endpoint: the path shown in errors and logs (never a query string).
        :param auth: ``"user"`` for ``x-siro-auth-token``, ``"org"`` for the Bearer org token, or None.
        :param create: the call creates a recording. It is then repeated only where Siro cannot have
            acted on it (429, 503 with ``Retry-After``, a connection that was never established, or one
            401 with a minted token), never after another 5xx, a timeout or a dropped connection, which
            raise :class:`SiroAmbiguousCreateError`.
        """
        settings = self.settings
        kwargs.setdefault("timeout", (min(10.0, settings.timeout), settings.timeout))
        kwargs["allow_redirects"] = False
        given_headers = dict(kwargs.pop("headers", None) or {})
        refreshed = False  # one fresh token per call, not per attempt

        def attempt() -> requests.Response:
            nonlocal refreshed
            while True:
                headers = dict(given_headers)
                token = None
                if auth == "user":
                    token = headers["x-siro-auth-token"] = self.get_access_token()
                elif auth == "org":
                    headers["Authorization"] = f"Bearer {settings.org_token}"
                if auth == "user" and (wait := self._pace(method, endpoint)):
                    time.sleep(wait)
                started = time.monotonic()
                try:
                    with self._pools.lease() as session:
                        response = session.request(method, url, headers=headers, **kwargs)
                except requests.RequestException as exc:
                    self._last_api_call = time.monotonic()
                    sent = not _request_was_not_sent(exc)
                    if not retryable_no_answer(sent=sent, create=create):
                        raise SiroAmbiguousCreateError(
                            f"{type(exc).__name__} after the request was sent; the recording may or may not "
                            "exist and the call is not repeated, to avoid a duplicate. Check Siro before "
                            "re-running.",
                            method=method,
                            endpoint=endpoint,
                        ) from None
                    error = SiroApiError(type(exc).__name__, method=method, endpoint=endpoint)
                    raise RetryLater(error, f"failed ({type(exc).__name__})", no_answer=True) from None
                self._last_api_call = time.monotonic()
                status = response.status_code
                self.log.debug("%s %s -> %s in %.3f s", method, endpoint, status, time.monotonic() - started)
                if status < 300:
                    return response
                if status < 400:
                    raise self._redirect_error(response, method, endpoint)
                if status == 401 and auth == "user" and settings.uses_oauth and not refreshed:
                    self.log.info("Siro answered 401; minting a new access token and trying once more")
                    self._forget_token(token)
                    refreshed = True
                    response.close()
                    continue
                error = self._error(response, method, endpoint, create)
                retry_after = response.headers.get("Retry-After")
                response.close()
                if retryable_status(status, create=create, retry_after=retry_after is not None):
                    raise RetryLater(error, f"returned {status}", retry_after=parse_retry_after(retry_after))
                raise error

        return call_with_retries(attempt, settings, self.log, method, endpoint)

    def _redirect_error(self, response: Any, method: str, endpoint: str) -> SiroRejectedError:
        """A 3xx is not followed: it could send the token (or a create's body) to another host.

        The message names the status and the host the redirect points at, never its path's query.
        """
        status = response.status_code
        location = str(response.headers.get("Location") or "")
        target = urlsplit(location)
        if target.hostname:
            where = f"{target.scheme}://{target.hostname}" + (f":{target.port}" if target.port else "")
        else:
            where = "another path of the same host" if location else "nowhere (no Location header)"
        response.close()
        return SiroRejectedError(
            f"redirect to {where}, not followed: the provider sends Siro credentials and recordings only "
            "to the hosts of its connection. Point the connection's host (or auth_host) at the final URL",
            status_code=status,
            method=method,
            endpoint=endpoint,
        )

    def _error(self, response: Any, method: str, endpoint: str, create: bool) -> SiroApiError:
        """The exception for an error answer (>= 400): Siro's own message where it gave one, else the
        status, content type and an excerpt of the body; every text scrubbed (:func:`scrub`)."""
        status = response.status_code
        secrets = self._known_secrets()
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
                    issues.append((scrub(path, secrets), scrub(str(issue.get("message", "")), secrets)))
            if issues:
                message = f"{body.get('name', 'validation error')} ({len(issues)} issue(s))"
        elif response.text.strip():
            message = f"{message} ({_content_type(response)}): {response.text}"
        message = scrub(message, secrets)
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

    def _json(self, response: Any, method: str, endpoint: str, *, create: bool = False) -> dict[str, Any]:
        """The JSON object of a successful answer, or an error naming what came instead.

        A proxy's HTML page or an empty body under a 2xx is not Siro's answer: the error names the
        endpoint, status, content type and a scrubbed excerpt. It is retryable only if the status is
        (a 2xx is not); after a create it is ambiguous, since Siro may have created the recording.
        """
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            return body
        status = response.status_code
        excerpt = scrub(response.text, self._known_secrets()) or "an empty body"
        message = f"the answer is not the JSON object expected ({_content_type(response)}): {excerpt}"
        if create:
            return_error: SiroApiError = SiroAmbiguousCreateError(
                f"{message}; the recording may or may not exist",
                status_code=status,
                method=method,
                endpoint=endpoint,
            )
        else:
            return_error = SiroApiError(
                message,
                status_code=status,
                method=method,
                endpoint=endpoint,
                retryable=retryable_status(status, create=False, retry_after=False),
            )
        raise return_error

    def _fresh_pool(self) -> None:
        """Drop pooled connections that sat idle while a long upload ran.

        A server closes idle keep-alive connections; a request written onto such a socket fails only
        after it was sent, which for a create call would be indistinguishable from a lost answer. A new
        connection costs one handshake and keeps the no-duplicate rule from raising false alarms.
        """
        if time.monotonic() - self._last_api_call > IDLE_POOL_SECONDS:
            self._pools.replace(self._pools.current().size)
