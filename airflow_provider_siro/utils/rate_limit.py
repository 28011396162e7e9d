"""A request-rate limiter shared by every thread and process of one machine.

Siro allows 1000 requests per access token per minute and answers 429 past that. Backing off after a 429
works, but a pipeline that fans out (a mapped upload task with many instances, a triggerer with many
deferred waits) would spend its time being refused. The hook therefore spaces its own requests.

A limit kept in one process would not do: every mapped task instance is its own process, and all of
them share the connection's token. The state here is a single number, the *theoretical arrival time*
of the generic cell rate algorithm (GCRA), kept in a small file under the temporary directory and
updated under an exclusive ``flock``. Each request reserves the next free slot and learns how long to
wait for it; nothing polls and nothing runs in the background. Over any window of ``w`` seconds at
most ``rate * w / 60 + burst`` requests start.

Processes on other machines (Celery or Kubernetes workers) keep their own state: there, point the
connection's ``rate_limit_backend`` at a Redis server (:mod:`~airflow_provider_siro.utils.rate_limit_redis`),
or divide the rate by the number of machines. :func:`~airflow_provider_siro.hooks.pacing.limiter_for`
picks the backend.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
import tempfile
import threading
import time
from typing import Protocol

_STATE = struct.Struct("<d")

STALE_AFTER = 3600.0
"""A slot reserved this far ahead can only come from a monotonic clock of an earlier boot: start over."""


class RequestRateLimiter:
    """Space requests to at most ``per_minute`` on this machine, for everyone sharing ``key``.

    :param key: what shares one budget (the hook uses the API URL and the credential's identity); it is
        hashed into the state file's name, so it may hold secrets.
    :param per_minute: the sustained rate; requests are spaced ``60 / per_minute`` seconds apart.
    :param burst: how many requests may start back to back after a quiet spell.
    :param directory: where the state file lives; the system's temporary directory by default.
    """

    def __init__(self, key: str, per_minute: float, burst: int = 10, directory: str | None = None) -> None:
        if per_minute <= 0:
            raise ValueError(f"per_minute must be > 0, got {per_minute!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self.per_minute = float(per_minute)
        self.burst = int(burst)
        self.interval = 60.0 / self.per_minute
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        self.path = os.path.join(directory or tempfile.gettempdir(), f"airflow-provider-siro-rate-{digest}")
        # flock() excludes other open files, not other threads sharing this one: a lock for those, and a
        # descriptor per process (a forked child gets its own, or it would share the parent's lock).
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        return self._fd

    def reserve(self) -> float:
        """Take the next free slot; return the seconds to wait before sending (0 when one is free now)."""
        return max(0.0, self.reserve_slot() - time.monotonic())

    def reserve_slot(self) -> float:
        """Take the next free slot; return when it starts, on the ``time.monotonic()`` clock."""
        # time.monotonic() is CLOCK_MONOTONIC on Linux and macOS: one clock for every process of the machine.
        with self._thread_lock:
            fd = self._descriptor()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                return self._take(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _take(self, fd: int) -> float:
        """Under the lock: read the arrival time, book the next slot, write it back; return its start."""
        now = time.monotonic()
        raw = os.pread(fd, _STATE.size, 0)
        arrival = _STATE.unpack(raw)[0] if len(raw) == _STATE.size else now
        if arrival > now + STALE_AFTER:
            arrival = now
        arrival = max(arrival, now)
        os.pwrite(fd, _STATE.pack(arrival + self.interval), 0)
        return max(now, arrival - (self.burst - 1) * self.interval)

    def close(self) -> None:
        """Close the state file's descriptor (it is opened again on the next reservation)."""
        with self._thread_lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None


class RateLimiter(Protocol):
    """What the hook needs of a limiter: this module's lock file, or a Redis server's key."""

    per_minute: float

    def reserve(self) -> float: ...

    def reserve_slot(self) -> float: ...

    def close(self) -> None: ...
