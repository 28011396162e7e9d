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


class TokenMixin:
    """The token half of :class:`~airflow_provider_siro.hooks.siro.SiroHook` (a mixin; not used alone)."""

    if TYPE_CHECKING:  # the hook's cached_property

        @property
        def settings(self) -> SiroConnectionSettings: ...

    log: Logger

    _send: Callable[..., Any]  # TransportMixin's

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
