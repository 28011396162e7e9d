"""The request budget kept in a Redis (or Valkey) server, shared by every machine that can reach it.

:class:`~airflow_provider_siro.utils.rate_limit.RequestRateLimiter` keeps its state in a file, so every
task process of one machine shares one budget, but each Celery or Kubernetes worker machine would take
the whole budget again. Here the same state, the GCRA *theoretical arrival time*, lives in one Redis key
and is read and advanced by one Lua script, which Redis runs atomically: every worker, the triggerer and
every machine reserve their slots from one budget, one round trip per request.

The script reads the server's clock (``TIME``), so the machines' clocks need not agree; it answers how
far in the future the slot starts, and the limiter turns that into a ``time.monotonic()`` time of the
calling machine. The ``redis`` client is imported only here, when a connection asks for this backend.

When the server cannot be reached, the ``on_error`` policy decides: ``fail`` raises
:class:`RateLimitBackendError` (the task fails and Airflow's retries apply); ``local`` logs a warning and
paces through the machine's own lock file until the server answers again. Nothing runs unpaced.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_siro.exceptions import SiroApiError
from airflow_provider_siro.utils.rate_limit import STALE_AFTER, RequestRateLimiter

log = logging.getLogger(__name__)

SCHEMES = ("redis", "rediss", "unix")
"""URL schemes of ``rate_limit_backend`` that name a Redis/Valkey server (``rediss`` is TLS)."""

KEY_PREFIX = "airflow-provider-siro:rate:"

RETRY_BACKEND_AFTER = 30.0
"""With ``on_error="local"``, seconds of local pacing before the server is asked again."""

# KEYS[1]: the budget's key. ARGV: interval between slots (s), burst, stale-after (s).
# Returns the slot's start relative to the server's clock now, in seconds, as a string (Redis turns a Lua
# number into an integer). The key expires once its arrival time lies in the past: an idle budget is
# indistinguishable from a fresh one, so nothing is left behind.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local arrival = tonumber(redis.call('GET', KEYS[1])) or now
if arrival < now or arrival > now + tonumber(ARGV[3]) then
  arrival = now
end
local following = arrival + interval
redis.call('SET', KEYS[1], string.format('%.6f', following), 'PX', math.ceil((following - now) * 1000) + 1000)
local start = arrival - (burst - 1) * interval
if start < now then
  start = now
end
return string.format('%.6f', start - now)
"""
GCRA_SHA = hashlib.sha1(GCRA_SCRIPT.encode()).hexdigest()


class RateLimitBackendError(SiroApiError):
    """The rate-limit backend could not be asked for a slot; the request was not sent."""


def redact(url: str) -> str:
    """``url`` with any user name or password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def check_backend(field: str, value: Any) -> str:
    """Validate the ``rate_limit_backend`` extra: ``local`` or a password-free Redis URL.

    A password in the URL would sit in the connection's extra, which Airflow neither encrypts as a
    password nor masks; it belongs in the connection named by ``rate_limit_redis_conn_id``.
    """
    from airflow_provider_siro.exceptions import SiroValidationError

    text = str(value).strip()
    if text == "local":
        return text
    parts = urlsplit(text)
    if parts.scheme not in SCHEMES or not (parts.hostname or parts.path):
        raise SiroValidationError(field, f"must be local or a redis://host:port/db URL, got {redact(text)!r}")
    if parts.password is not None:
        raise SiroValidationError(
            field,
            "must not hold a password: put it in a redis connection and name that connection in the "
            "extra rate_limit_redis_conn_id",
        )
    return text


class RedisRateLimiter:
    """Space requests to at most ``per_minute``, for every process on every machine sharing ``key``.

    The same surface as :class:`~airflow_provider_siro.utils.rate_limit.RequestRateLimiter`, and the same
    budget: over any window of ``w`` seconds at most ``per_minute * w / 60 + burst`` requests start.

    :param url: the server, ``redis://host:port/db`` (``rediss://`` for TLS, ``unix:///path.sock``).
    :param key: what shares one budget; hashed into the Redis key, so it may hold secrets.
    :param per_minute: the sustained rate.
    :param burst: how many requests may start back to back after a quiet spell.
    :param username: ACL user name, if the server wants one.
    :param password: the server's password; the caller has registered it with Airflow's secrets masker.
    :param on_error: ``fail`` raises :class:`RateLimitBackendError` when the server cannot be asked;
        ``local`` paces through the machine's lock file instead, and asks the server again later.
    :param timeout: seconds to connect and for each answer, so a lost server fails fast.
    """

    remote = True
    """Reserving a slot is a network round trip: async callers run it in a thread."""

    def __init__(
        self,
        url: str,
        key: str,
        per_minute: float,
        burst: int = 10,
        *,
        username: str | None = None,
        password: str | None = None,
        on_error: str = "fail",
        timeout: float = 2.0,
    ) -> None:
        if per_minute <= 0:
            raise ValueError(f"per_minute must be > 0, got {per_minute!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        if on_error not in ("fail", "local"):
            raise ValueError(f"on_error must be fail or local, got {on_error!r}")
        import redis

        self.url = url
        self.per_minute = float(per_minute)
        self.burst = int(burst)
        self.interval = 60.0 / self.per_minute
        self.on_error = on_error
        self.redis_key = KEY_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:32]
        self._key = key
        self._errors: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
        self._no_script = redis.exceptions.NoScriptError
        # The client's pool is thread-safe and notices a fork: a child opens connections of its own.
        self._client = redis.Redis.from_url(
            url,
            username=username,
            password=password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )
        self._args = (repr(self.interval), str(self.burst), repr(STALE_AFTER))
        self._lock = threading.Lock()
        self._fallback: RequestRateLimiter | None = None
        self._down_until = 0.0

    def _eval(self) -> bytes:
        try:
            return cast(bytes, self._client.evalsha(GCRA_SHA, 1, self.redis_key, *self._args))
        except self._no_script:  # a new, restarted or flushed server: load the script with the call
            return cast(bytes, self._client.eval(GCRA_SCRIPT, 1, self.redis_key, *self._args))

    def reserve_slot(self) -> float:
        """Take the next free slot; return when it starts, on this machine's ``time.monotonic()`` clock."""
        if self._down_until and time.monotonic() < self._down_until:
            return self._local().reserve_slot()
        try:
            ahead = float(self._eval())
        except self._errors as exc:
            return self._unreachable(exc)
        # The server measured ``ahead`` when it ran the script, before the answer travelled back: counting
        # from now errs by the return trip, towards starting later, never earlier.
        now = time.monotonic()
        if self._down_until:
            self._down_until = 0.0
            log.warning("Rate-limit backend %s answers again; pacing through it", redact(self.url))
        return now + ahead

    def _unreachable(self, exc: BaseException) -> float:
        problem = f"{type(exc).__name__}: {exc}"
        if self.on_error == "fail":
            raise RateLimitBackendError(
                f"rate-limit backend {redact(self.url)} cannot be reached ({problem}); no request was sent. "
                "Set the connection extra rate_limit_on_backend_error to local to pace by this machine's "
                "own budget while it is down"
            ) from None
        with self._lock:
            first = not self._down_until
            self._down_until = time.monotonic() + RETRY_BACKEND_AFTER
        if first:
            log.warning(
                "Rate-limit backend %s cannot be reached (%s); pacing by this machine's own budget "
                "(%g requests per minute) and trying it again in %g s",
                redact(self.url),
                problem,
                self.per_minute,
                RETRY_BACKEND_AFTER,
            )
        return self._local().reserve_slot()

    def _local(self) -> RequestRateLimiter:
        with self._lock:
            if self._fallback is None:
                self._fallback = RequestRateLimiter(self._key, self.per_minute, self.burst)
            return self._fallback

    def reserve(self) -> float:
        """Take the next free slot; return the seconds to wait before sending (0 when one is free now)."""
        return max(0.0, self.reserve_slot() - time.monotonic())

    def close(self) -> None:
        """Close pooled connections (new ones are opened on the next reservation)."""
        self._client.connection_pool.disconnect()
        if self._fallback is not None:
            self._fallback.close()
