"""Benchmark: the Redis rate-limit backend against the local lock file.

Reservations per second and CPU per reservation, from 4 threads of one process, for a budget so large
that nothing waits (the limiter's own cost, not the pace): the local ``RequestRateLimiter`` (flock on a
file) is the reference, the ``RedisRateLimiter`` (one EVALSHA round trip to a redis-server on 127.0.0.1)
the row measured. Ratios are Redis / local, measured in the same run. ``--tiny`` runs a toy size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from airflow_provider_siro.testing.redis_server import RedisServer
from airflow_provider_siro.utils.rate_limit import RequestRateLimiter
from airflow_provider_siro.utils.rate_limit_redis import RedisRateLimiter

THREADS = 4
HUGE_RATE = 1e9  # per minute: every reservation is free at once


def measure(limiter, calls: int) -> tuple[float, float]:
    """Reservations per second and CPU milliseconds per reservation, over ``calls`` from THREADS threads."""
    limiter.reserve()  # warm up: open the file or the connection, load the script
    wall, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda _: limiter.reserve(), range(calls)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return calls / wall, cpu / calls * 1000


def main(argv: list[str] | None = None) -> list[tuple[str, float, float, float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a toy size, to check the benchmark runs")
    args = parser.parse_args(argv)
    calls = 200 if args.tiny else 20_000
    with tempfile.TemporaryDirectory() as directory, RedisServer() as server:
        local = RequestRateLimiter("bench", HUGE_RATE, directory=directory)
        remote = RedisRateLimiter(server.url(0), "bench", HUGE_RATE)
        try:
            local_rate, local_cpu = measure(local, calls)
            redis_rate, redis_cpu = measure(remote, calls)
        finally:
            local.close()
            remote.close()
    rows = [
        ("paced calls reserved (/s)", redis_rate, local_rate, redis_rate / local_rate),
        ("client CPU per reservation (ms)", redis_cpu, local_cpu, redis_cpu / local_cpu),
    ]
    print(f"rate-limit backend, {calls} reservations from {THREADS} threads")
    print(f"| {'measure':<32} | {'redis':>9} | {'local (lock file)':>17} | {'ratio':>6} |")
    print(f"|{'-' * 34}|{'-' * 10}:|{'-' * 18}:|{'-' * 7}:|")
    for name, measured, reference, ratio in rows:
        print(f"| {name:<32} | {measured:>9.3f} | {reference:>17.3f} | {ratio:>6.2f} |")
    print("ratio = redis / local: below 1 for the rate means Redis is slower, above 1 for CPU costlier.")
    return rows


if __name__ == "__main__":
    main()
