"""Size a :class:`~airflow_provider_siro.hooks.siro.SiroHook`'s connection pool for threads sharing it.

The hook's session keeps 8 connections per host. A bulk upload that runs more threads than that through
one hook would open a connection per extra request and throw it away afterwards ("connection pool is
full"): a TCP (and TLS) handshake per call. The pool is resized once, before the threads start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from requests.adapters import HTTPAdapter

if TYPE_CHECKING:
    from airflow_provider_siro.hooks.siro import SiroHook


def size_connection_pool(hook: SiroHook, connections: int) -> None:
    """Let ``connections`` requests of ``hook`` run at once, each on a kept-alive connection.

    Call it before the threads start: ``Session.mount`` is not meant to race with requests.
    """
    if connections <= 8:
        return
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=connections, max_retries=0)
    hook.session.mount("https://", adapter)
    hook.session.mount("http://", adapter)
