"""Waiting at scale: many ``SiroRecordingTrigger`` runs in one event loop against a bare httpx loop."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import (
    NO_THROTTLE,
    RESULT,
    RUNNER,
    UA,
    Api,
    Table,
    cpu_seconds,
    emit,
    offline_siro,
    run_child,
)


def worker_server(processing_polls: int) -> None:
    """Child: an offline Siro for the waits, until stdin closes."""
    from http.server import ThreadingHTTPServer

    # A thousand waits connect at once: a listen backlog that takes them (the class default is 5).
    ThreadingHTTPServer.request_queue_size = 2048
    server = offline_siro(processing_polls=processing_polls).start()
    emit({"url": server.url, "token": server.issue_access_token()})
    sys.stdin.read()
    server.stop()


def _control(base: str, method: str, path: str) -> Any:
    """The offline server's control endpoints, over a plain connection (never a proxy)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request(method, path, headers=UA)
        return json.loads(conn.getresponse().read() or b"null")
    finally:
        conn.close()


def worker_waits(kind: str, spec_file: str, interval: float) -> None:
    """Child: the waits of each phase in one event loop; CPU seconds and polls per phase."""
    spec = json.loads(Path(spec_file).read_text())
    base, token, ids = spec["base"], spec["token"], spec["ids"]
    run: Callable[[list[str]], Any]
    if kind == "ours":
        from airflow_provider_siro.triggers.siro import SiroRecordingTrigger

        async def run(rids: list[str]) -> None:
            async def one(trigger: SiroRecordingTrigger) -> Any:
                async for event in trigger.run():
                    return event.payload
                return None

            triggers = [SiroRecordingTrigger(r, "siro_default", time.time() + 900, interval) for r in rids]
            events = await asyncio.gather(*(one(t) for t in triggers))
            failed = [e for e in events if not e or e["status"] != "success"]
            if failed:
                raise SystemExit(f"{len(failed)} waits did not succeed, e.g. {failed[0]}")

    else:
        import httpx

        async def run(rids: list[str]) -> None:
            # A client, so a connection, per wait: one client shared by a thousand waits costs far more
            # CPU, as httpx's pool scans its connections and its queue of waiting requests for each
            # request. They share one TLS context, which would otherwise load the CA bundle for each.
            tls = httpx.create_ssl_context()
            headers = {**UA, "x-siro-auth-token": token}

            async def one(rid: str) -> None:
                async with httpx.AsyncClient(headers=headers, timeout=60, verify=tls) as client:
                    while True:
                        response = await client.get(f"{base}/v1/core/recordings/{rid}")
                        response.raise_for_status()
                        if response.json()["data"]["processingStatus"] == "complete":
                            return
                        await asyncio.sleep(interval)

            await asyncio.gather(*(one(rid) for rid in rids))

    asyncio.run(run(ids["warm"]))  # imports and first-use costs, outside the measurement
    result = {}
    for phase in ("first", "many"):
        _control(base, "POST", "/_offline/reset")
        cpu, started = cpu_seconds(), time.perf_counter()
        asyncio.run(run(ids[phase]))
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - started
        log = _control(base, "GET", "/_offline/requests")
        polls = sum(1 for e in log if e["endpoint"] == "get_recording" and e["status"] == 200)
        result[phase] = {"cpu": cpu, "wall": wall, "polls": polls, "waits": len(ids[phase])}
    emit(result)


def bench_waits(count: int, polls: int, repeats: int, env: dict[str, str], work: Path) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, str(RUNNER), "--worker", "server", str(polls)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith(RESULT):
            raise RuntimeError(f"the waits' server did not start: {line!r}")
        info = json.loads(line[len(RESULT) :])
        base, token = info["url"], info["token"]
        api = Api(base, token)
        download_url = api.small_upload()
        conn = {
            "conn_type": "siro",
            "host": base,
            "password": token,
            "extra": {"retry_backoff": 0.05, **NO_THROTTLE},
        }
        child_env = {**env, "AIRFLOW_CONN_SIRO_DEFAULT": json.dumps(conn)}
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "bare": []}
        for attempt in range(repeats):
            for kind in ("ours", "bare") if attempt % 2 == 0 else ("bare", "ours"):
                ids = {
                    "warm": api.create(download_url, min(count, 20), reads=polls - 1),
                    "first": api.create(download_url, count, reads=polls - 1),  # done at the next read
                    "many": api.create(download_url, count),  # done at the polls-th read
                }
                spec_file = work / f"waits-{kind}.json"  # not on the command line: it holds the token
                spec_file.write_text(json.dumps({"base": base, "token": token, "ids": ids}))
                result = run_child(["waits", kind, str(spec_file), "0.2"], child_env)
                assert result["first"]["polls"] == count, result
                assert result["many"]["polls"] == count * polls, result
                runs[kind].append(result)
    finally:
        if server.stdin:
            server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    def measures(result: dict[str, Any]) -> dict[str, float | None]:
        first, many = result["first"], result["many"]
        further = (many["cpu"] - first["cpu"]) / (many["polls"] - first["polls"])
        return {
            "per_poll": 1000 * many["cpu"] / many["polls"],
            "start": 1000 * first["cpu"] / first["waits"],
            "further": 1000 * further if further > 0 else None,  # None: lost in the noise
        }

    def best(results: list[dict[str, Any]]) -> dict[str, float | None]:
        values = [measures(r) for r in results]
        return {
            key: min((v[key] for v in values if v[key] is not None), default=None)
            for key in ("per_poll", "start", "further")
        }

    return {"count": count, "polls": polls, "ours": best(runs["ours"]), "bare": best(runs["bare"])}


def add_rows(table: Table, waits: Any) -> None:
    """The table's rows for this measure."""
    row = table.row
    ours, bare = waits["ours"], waits["bare"]
    row(
        f"{waits['count']} deferred waits, {waits['polls']} polls each: CPU per poll (ms)",
        f"{ours['per_poll']:.2f}",
        f"{bare['per_poll']:.2f} (bare httpx loop)",
        ours["per_poll"] / bare["per_poll"],
    )
    row(
        "  CPU per wait started: set-up and first poll (ms)",
        f"{ours['start']:.2f}",
        f"{bare['start']:.2f} (bare httpx loop)",
        ours["start"] / bare["start"],
    )

    def ms(value: float | None) -> str:
        return "in the noise" if value is None else f"{value:.2f}"

    row(
        "  CPU per further poll (ms)",
        ms(ours["further"]),
        f"{ms(bare['further'])} (bare httpx loop)",
        ours["further"] / bare["further"] if ours["further"] and bare["further"] else None,
    )
