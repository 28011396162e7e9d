"""Reading a ``siro`` connection into validated settings.

Every field and extra of the connection is checked here, once per hook, before any request is made: a
bad value fails the task with a :class:`~airflow_provider_siro.exceptions.SiroValidationError` naming
the field. The secrets the connection holds are registered with Airflow's secrets masker on the way,
before anything could log them.
"""

from __future__ import annotations

import difflib
import ipaddress
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_siro.compat import mask_secret
from airflow_provider_siro.exceptions import SiroValidationError
from airflow_provider_siro.utils.rate_limit_redis import check_backend

DEFAULT_API_URL = "https://api.siro.ai"
DEFAULT_AUTH_URL = "https://functions.siro.ai/api-externalApi"
DEFAULT_APP_URL = "https://app.siro.ai"

DEFAULT_MAX_REQUESTS_PER_MINUTE = 900.0
"""The hook's own pace for user-scoped calls: below Siro's 1000 per token per minute, bursts included."""

DEFAULT_UPLOAD_CHUNK = 1024 * 1024
"""Bytes read per chunk of an upload. A chunk this small is still in the CPU cache when the socket copies
it out: in ``make bench``, a 1 GiB upload in 8 MiB chunks took about twice curl's CPU time, in 1 MiB
chunks no more than curl's."""


KNOWN_EXTRAS: tuple[str, ...] = (
    "auth_host",
    "app_url",
    "org_token",
    "client_id",
    "client_secret",
    "user_id",
    "scope",
    "timeout",
    "max_retries",
    "retry_backoff",
    "max_retry_wait",
    "api_fields",
    "newer_field_names",
    "allow_insecure_http",
    "upload_chunk_size",
    "progress_interval",
    "max_requests_per_minute",
    "rate_limit_backend",
    "rate_limit_redis_conn_id",
    "rate_limit_on_backend_error",
)
"""Every connection extra the hook reads (also accepted with the ``extra__siro__`` prefix of older
connection forms). Add a new extra here, in the one place, or it is warned about as unknown."""


def unknown_extras(extras: Mapping[str, Any]) -> list[str]:
    """One warning per extra the hook does not know, naming the closest known name, if any."""
    lines = []
    for key in extras:
        name = key.removeprefix("extra__siro__")
        if name in KNOWN_EXTRAS:
            continue
        close = difflib.get_close_matches(name, KNOWN_EXTRAS, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known extras: {', '.join(KNOWN_EXTRAS)}"
        lines.append(f"unknown extra {key!r} is ignored{hint}")
    return lines


@dataclass(frozen=True)
class SiroConnectionSettings:
    """Everything read from a ``siro`` connection, validated; built by :func:`read_settings` for :attr:`SiroHook.settings`."""

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
    api_fields: str = "auto"
    """The create call's wire format: ``auto`` (current names first, the original ones if Siro refuses
    them), ``current`` or ``original``; see :mod:`airflow_provider_siro.payload`."""

    @property
    def uses_oauth(self) -> bool:
        return self.access_token is None


def read_settings(
    conn_id: str, conn: Any, warn: Callable[[str], None] | None = None
) -> SiroConnectionSettings:
    """Validate the Airflow connection ``conn`` (named ``conn_id`` in errors) into settings.

    Secrets are masked here, before anything logs.

    :param warn: called with one line per unknown extra (a typo such as ``max_retires`` would
        otherwise be ignored in silence); the hook passes its logger, so the line is in the task log.
    """
    extras: Mapping[str, Any] = conn.extra_dejson or {}
    if warn is not None:
        for line in unknown_extras(extras):
            warn(f"Connection {conn_id!r}: {line}")

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
            raise SiroValidationError(f"{conn_id}.extra.{name}", f"must be a number, got {raw!r}") from None
        if value < minimum:
            raise SiroValidationError(f"{conn_id}.extra.{name}", f"must be >= {minimum}, got {raw!r}")
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
        raise SiroValidationError(f"{conn_id}.extra.{name}", f"must be true or false, got {raw!r}")

    for secret_name in ("org_token", "client_secret"):
        if extra(secret_name):
            mask_secret(str(extra(secret_name)))
    # A token holds no whitespace: a pasted one may bring a line break along, and a blank one is none
    # (sent as it is, requests would refuse the header and the call would be retried as a network error).
    access_token = (conn.password or "").strip() or None
    if access_token:
        mask_secret(access_token)

    allow_http = flag("allow_insecure_http")
    api_url = _base_url(conn_id, "host", conn.host, conn.schema, conn.port, DEFAULT_API_URL, allow_http)
    auth_url = _base_url(conn_id, "auth_host", extra("auth_host"), None, None, DEFAULT_AUTH_URL, allow_http)
    app_url = str(extra("app_url", DEFAULT_APP_URL)).rstrip("/")

    oauth = {name: extra(name) for name in ("org_token", "client_id", "client_secret", "user_id")}
    if access_token is None:
        missing = [name for name, value in oauth.items() if not value]
        if missing:
            raise SiroValidationError(
                f"{conn_id}",
                "has no access token (password) and cannot mint one: missing extra " + ", ".join(missing),
            )
    elif given := [name for name, value in oauth.items() if value]:
        # Which one would the user want? Guessing could upload as the wrong Siro user.
        raise SiroValidationError(
            f"{conn_id}",
            f"has both an access token (password) and OAuth app extras ({', '.join(given)}): "
            "give one or the other",
        )
    scope = str(extra("scope", "write"))
    if scope not in ("read", "write"):
        raise SiroValidationError(f"{conn_id}.extra.scope", f"must be read or write, got {scope!r}")
    on_backend_error = str(extra("rate_limit_on_backend_error", "fail"))
    if on_backend_error not in ("fail", "local"):
        raise SiroValidationError(
            f"{conn_id}.extra.rate_limit_on_backend_error", f"must be fail or local, got {on_backend_error!r}"
        )
    api_fields = _api_fields(conn_id, extra("api_fields"), extras, flag)
    return SiroConnectionSettings(
        conn_id=conn_id,
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
            f"{conn_id}.extra.rate_limit_backend", extra("rate_limit_backend", "local")
        ),
        rate_limit_redis_conn_id=extra("rate_limit_redis_conn_id"),
        rate_limit_on_backend_error=on_backend_error,
        api_fields=api_fields,
    )


API_FIELDS = ("auto", "current", "original")


def _api_fields(conn_id: str, raw: Any, extras: Mapping[str, Any], flag: Any) -> str:
    """The ``api_fields`` extra, or what the deprecated ``newer_field_names`` meant (with a warning)."""
    chosen = None if raw is None else str(raw).strip().lower()
    if chosen is not None and chosen not in API_FIELDS:
        raise SiroValidationError(
            f"{conn_id}.extra.api_fields", f"must be one of {', '.join(API_FIELDS)}, got {raw!r}"
        )
    if not any(
        extras.get(key) not in (None, "") for key in ("newer_field_names", "extra__siro__newer_field_names")
    ):
        return chosen or "auto"
    legacy = "current" if flag("newer_field_names") else "original"
    if chosen is not None and chosen != legacy:
        raise SiroValidationError(
            f"{conn_id}.extra.newer_field_names",
            f"says {legacy} field names but api_fields says {chosen}: remove newer_field_names",
        )
    warnings.warn(
        f"Connection {conn_id!r}: the extra newer_field_names is deprecated; it now means "
        f"api_fields={legacy!r}. Remove it, and set api_fields only to pin a format (the default, auto, "
        "speaks both).",
        DeprecationWarning,
        stacklevel=3,
    )
    return legacy


def _base_url(
    conn_id: str,
    name: str,
    host: str | None,
    schema: str | None,
    port: int | None,
    default: str,
    allow_http: bool,
) -> str:
    """Normalise ``host`` (with or without scheme) into a base URL, refusing plain remote HTTP."""
    field_name = f"{conn_id}.{name}" if name == "host" else f"{conn_id}.extra.{name}"
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


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
