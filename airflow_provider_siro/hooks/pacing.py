"""Which rate limiter paces a hook: one per budget and process, on this machine or on a Redis server.

The limiters themselves live in :mod:`~airflow_provider_siro.utils.rate_limit` (a lock file) and
:mod:`~airflow_provider_siro.utils.rate_limit_redis` (a Redis key); choosing between them, and reading
the Redis server's credentials from an Airflow connection, is the hook's business, so it lives here
and neither utils module imports the other back.
"""

from __future__ import annotations

import threading

from airflow_provider_siro.utils.rate_limit import RateLimiter, RequestRateLimiter
from airflow_provider_siro.utils.rate_limit_redis import RedisRateLimiter  # imports redis only when used

_LIMITERS: dict[tuple[str, ...], RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def limiter_for(
    key: str,
    per_minute: float,
    backend: str = "local",
    *,
    redis_conn_id: str | None = None,
    on_error: str = "fail",
) -> RateLimiter | None:
    """The limiter of one budget, made once per process and shared by every hook in it.

    :param key: what shares the budget (API URL and credential); only ever hashed.
    :param per_minute: the pace; 0 means none (returns None).
    :param backend: ``local`` (this machine's lock file) or a Redis URL (every machine reaching it).
    :param redis_conn_id: an Airflow connection holding the Redis server's password (and ACL user name,
        as its login); its password is registered with the secrets masker before it is used.
    :param on_error: what a Redis limiter does when the server cannot be reached: ``fail`` or ``local``.
    """
    if not per_minute:
        return None
    cache_key = (key, repr(float(per_minute)), backend, redis_conn_id or "", on_error)
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(cache_key)
        if limiter is None:
            if backend == "local":
                limiter = RequestRateLimiter(key, per_minute)
            else:
                username = password = None
                if redis_conn_id:
                    from airflow_provider_siro.compat import BaseHook, mask_secret

                    conn = BaseHook.get_connection(redis_conn_id)
                    username, password = conn.login or None, conn.password or None
                    if password:
                        mask_secret(password)
                limiter = RedisRateLimiter(
                    backend, key, per_minute, username=username, password=password, on_error=on_error
                )
            _LIMITERS[cache_key] = limiter
        return limiter
