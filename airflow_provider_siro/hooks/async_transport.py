"""How a call travels from async code: the event-loop twin of :mod:`~airflow_provider_siro.hooks.transport`.

The triggerer runs every deferred wait on one event loop, so nothing here may block it: requests go
through an ``httpx.AsyncClient`` (imported on first use), and the rare blocking steps (reading the
connection, minting a token) run in worker threads. The retry policy is the sync hook's, the same
declaration in :mod:`~airflow_provider_siro.hooks.retries`, for the one kind of call the async hook
makes: idempotent, user-scoped reads. Redirects are not followed, as in the sync hook.
"""

from __future__ import annotations

import asyncio
import functools
import platform
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_siro import __version__

if TYPE_CHECKING:
    from airflow_provider_siro.compat import Logger

from airflow_provider_siro.exceptions import SiroApiError, SiroRejectedError
from airflow_provider_siro.hooks.retries import (
    RetryLater,
    acall_with_retries,
    parse_retry_after,
    retryable_status,
)
from airflow_provider_siro.hooks.settings import SiroConnectionSettings


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The TLS settings of the async client: the system's defaults with certifi's CA bundle, as httpx uses."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class AsyncTransportMixin:
    """The async HTTP half of :class:`~airflow_provider_siro.hooks.siro.SiroAsyncHook` (a mixin)."""

    log: Logger
    _client: Any
    aget_settings: Callable[[], Awaitable[SiroConnectionSettings]]  # SiroAsyncHook's
    aget_access_token: Callable[[], Awaitable[str]]  # SiroAsyncHook's
    _forget_token: Callable[..., None]  # TokenMixin's
    _pace: Callable[[str, str], float]  # TransportMixin's
    rate_limiter: Any  # TransportMixin's
    _error: Callable[..., SiroApiError]  # TransportMixin's
    _redirect_error: Callable[..., SiroRejectedError]  # TransportMixin's

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
        refreshed = False  # one fresh token per call, not per attempt

        async def attempt() -> Any:
            nonlocal refreshed
            while True:
                token = await self.aget_access_token()
                headers = {"x-siro-auth-token": token}
                if wait := await self._apace(method, endpoint):
                    await asyncio.sleep(wait)
                started = time.monotonic()
                try:
                    response = await client.request(method, url, params=params, headers=headers)
                except httpx.TransportError as exc:
                    error = SiroApiError(type(exc).__name__, method=method, endpoint=endpoint)
                    raise RetryLater(error, f"failed ({type(exc).__name__})", no_answer=True) from None
                status = response.status_code
                self.log.debug("%s %s -> %s in %.3f s", method, endpoint, status, time.monotonic() - started)
                if status < 300:
                    return response
                view = _ResponseView(response)
                if status < 400:
                    raise self._redirect_error(view, method, endpoint)
                if status == 401 and settings.uses_oauth and not refreshed:
                    self.log.info("Siro answered 401; minting a new access token and trying once more")
                    # The token cache's lock may be held by a thread: wait for it off the loop.
                    await asyncio.to_thread(self._forget_token, token)
                    refreshed = True
                    continue
                error = self._error(view, method, endpoint, create=False)
                retry_after = response.headers.get("Retry-After")
                if retryable_status(status, create=False, retry_after=retry_after is not None):
                    raise RetryLater(error, f"returned {status}", retry_after=parse_retry_after(retry_after))
                raise error

        return await acall_with_retries(attempt, settings, self.log, method, endpoint)


class _ResponseView:
    """The parts of a ``requests.Response`` that :meth:`SiroHook._error` reads, over an httpx response."""

    def __init__(self, response: Any) -> None:
        self.status_code: int = response.status_code
        self.reason: str = response.reason_phrase
        self.text: str = response.text
        self.headers: Any = response.headers
        self._response = response

    def json(self) -> Any:
        return self._response.json()

    def close(self) -> None:
        """Nothing to release: the body was read in full."""
