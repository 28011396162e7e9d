"""The user-scoped access token: the pasted one, or one minted from an OAuth app and cached.

Siro's user-scoped calls carry an access token that lives 16 hours. A connection either holds one (its
password) or the four OAuth app extras, from which the hook mints tokens through the org API. Minted
tokens are cached per process, keyed by everything that makes them differ, so every hook of a worker
(a mapped task's threads, a triggerer's waits) shares one, and replaced shortly before they expire or
when Siro answers 401.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_siro.compat import mask_secret
from airflow_provider_siro.exceptions import SiroApiError
from airflow_provider_siro.hooks.settings import SiroConnectionSettings

if TYPE_CHECKING:
    from airflow_provider_siro.compat import Logger

TOKEN_LIFETIME = timedelta(hours=16)
"""How long Siro's access tokens live; the mint response does not say, the docs do."""

TOKEN_REFRESH_MARGIN = timedelta(minutes=10)
"""A cached token is replaced this long before it expires, so no request races its expiry."""


@dataclass
class _CachedToken:
    value: str
    expires_at: float  # time.monotonic() based


_TOKEN_CACHE: dict[str, _CachedToken] = {}
_TOKEN_LOCK = threading.Lock()
"""Guards :data:`_TOKEN_CACHE` and :data:`_MINT_LOCKS`; held only for dictionary reads and writes, never
across the network."""

_MINT_LOCKS: dict[str, threading.Lock] = {}
"""One lock per credential (token key): threads needing the same token wait for one mint (single
flight); threads of other credentials mint at the same time."""


def _mint_lock(key: str) -> threading.Lock:
    with _TOKEN_LOCK:
        lock = _MINT_LOCKS.get(key)
        if lock is None:
            lock = _MINT_LOCKS[key] = threading.Lock()
        return lock


def _cached(key: str) -> str | None:
    with _TOKEN_LOCK:
        cached = _TOKEN_CACHE.get(key)
    if cached and time.monotonic() < cached.expires_at:
        return cached.value
    return None


class TokenMixin:
    """The token half of :class:`~airflow_provider_siro.hooks.siro.SiroHook` (a mixin; not used alone)."""

    if TYPE_CHECKING:  # the hook's cached_property

        @property
        def settings(self) -> SiroConnectionSettings: ...

    log: Logger

    _send: Callable[..., Any]  # TransportMixin's
    _json: Callable[..., dict[str, Any]]  # TransportMixin's

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

    def _forget_token(self, token: str | None = None) -> None:
        """Drop the cached token, so the next call mints one.

        :param token: the token Siro refused. Given, only that one is dropped: another thread may have
            minted its replacement already, and dropping that would mint again for nothing.
        """
        key = self._token_key
        with _TOKEN_LOCK:
            cached = _TOKEN_CACHE.get(key)
            if cached is not None and (token is None or cached.value == token):
                del _TOKEN_CACHE[key]

    def _known_secrets(self) -> list[str | None]:
        """Every credential this hook could have sent: scrubbed from whatever a server echoes back."""
        s = self.settings
        with _TOKEN_LOCK:
            cached = _TOKEN_CACHE.get(self._token_key)
        return [s.access_token, s.org_token, s.client_secret, cached.value if cached else None]

    def get_access_token(self) -> str:
        """The user-scoped token: the pasted one, or a cached minted one, minting when needed.

        Minting is single-flight per credential: of the threads that find no token, one mints and the
        others wait for its token; other credentials are not held up.
        """
        settings = self.settings
        if settings.access_token:
            return settings.access_token
        key = self._token_key
        token = _cached(key)
        if token is not None:
            return token
        with _mint_lock(key):
            token = _cached(key)  # minted by the thread this one waited for
            if token is not None:
                return token
            token = self._mint_token()
            lifetime = (TOKEN_LIFETIME - TOKEN_REFRESH_MARGIN).total_seconds()
            with _TOKEN_LOCK:
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
        token = self._json(response, "POST", endpoint).get("accessToken")
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
