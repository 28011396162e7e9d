"""Per-recording overhead: creates through one hook against a bare ``requests.Session`` loop."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks.common import NO_THROTTLE, UA, Api, Table, emit, offline_siro, run_child


def recording_specs(count: int) -> list[dict[str, Any]]:
    """The operator's keyword arguments for ``count`` recordings."""
    return [
        {
            "title": f"Discovery call {i}",
            "user_email": "rep@example.com",
            "customer_name": "Ada Lovelace",
            "customer_phone": "+1 555 0100",
            "date_created": "2026-01-15T10:30:00Z",
        }
        for i in range(count)
    ]


def body_by_hand(download_url: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The create body a user would write for ``spec``; the server checks the hook sent the same."""
    names = {"user_email": "userEmail", "customer_name": "contactName", "customer_phone": "contactPhone"}
    names["date_created"] = "dateCreated"
    body = {"fileUrl": download_url, "fileType": "mp3"}
    body.update({names.get(key, key): value for key, value in spec.items()})
    return body


BLOCK = 100
"""Creates per turn in the interleaved batches."""


def worker_creates(spec_file: str, first: str) -> None:
    """Child: both batches of creates, interleaved in blocks so both see the same machine.

    The hook and the bare loop each create every recording of the spec, in blocks of ``BLOCK``, taking
    turns (``first`` starts); each side's clock and CPU time add up over its blocks. Both run in this
    one process, with Airflow imported, as a loop written by hand inside a task would be. Each side
    mints its token inside its first block: the hook on its first call, the bare loop by hand.
    """
    import requests

    from airflow_provider_siro.hooks.siro import SiroHook
    from airflow_provider_siro.payload import validate_recording_fields

    spec = json.loads(Path(spec_file).read_text())
    download_url, bodies = spec["download_url"], spec["bodies"]
    hook = SiroHook()
    hook.settings  # noqa: B018 - the connection is read before the clock
    fields = [validate_recording_fields("mp3", **item) for item in spec["specs"]]

    session = requests.Session()
    session.headers.update(UA)
    url = f"{spec['api_url']}/v1/core/recordings/upload"
    auth: dict[str, str] = {}

    def ours(block: slice) -> list[str]:
        return [hook.create_recording(download_url, item) for item in fields[block]]

    def bare(block: slice) -> list[str]:
        if not auth:
            minted = session.post(
                spec["mint_url"],
                json=spec["mint_body"],
                headers={"Authorization": f"Bearer {spec['org_token']}"},
                timeout=30,
            )
            minted.raise_for_status()
            auth["x-siro-auth-token"] = minted.json()["accessToken"]
        ids = []
        for body in bodies[block]:
            response = session.post(url, json=body, headers=auth, timeout=30)
            if response.status_code != 201:
                raise SystemExit(f"create answered {response.status_code}: {response.text}")
            ids.append(response.json()["data"]["recordingId"])
        return ids

    loops = {"ours": ours, "bare": bare}
    order = [first, "bare" if first == "ours" else "ours"]
    totals = {kind: {"seconds": 0.0, "cpu": 0.0, "ids": 0} for kind in loops}
    for start in range(0, len(bodies), BLOCK):
        block = slice(start, start + BLOCK)
        for kind in order:
            cpu, started = time.process_time(), time.perf_counter()
            ids = loops[kind](block)
            totals[kind]["seconds"] += time.perf_counter() - started
            totals[kind]["cpu"] += time.process_time() - cpu
            totals[kind]["ids"] += len(set(ids))
        order.reverse()
    emit(totals)


NEGOTIATION_CASES = (
    ("original", "original"),
    ("original", "auto"),
    ("current", "current"),
    ("current", "auto"),
)
"""(the server's wire format, the connection's api_fields) for the negotiation rows."""


def worker_negotiation(download_url: str, follow: str) -> None:
    """Child: a fresh process's first create and the ``follow`` creates after it, through one hook.

    A fresh interpreter per run: the format ``api_fields=auto`` learns is remembered per process, so
    only a process's first create can pay for it.
    """
    from airflow_provider_siro.hooks.siro import SiroHook
    from airflow_provider_siro.payload import validate_recording_fields

    hook = SiroHook()
    hook.settings  # noqa: B018 - the connection is read before the clock
    hook.get_access_token()  # the token too: the rows compare create calls, not the mint
    fields = validate_recording_fields("mp3", **recording_specs(1)[0])
    started = time.perf_counter()
    hook.create_recording(download_url, fields)
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(int(follow)):
        hook.create_recording(download_url, fields)
    emit({"first_ms": 1000 * first, "rest_ms": 1000 * (time.perf_counter() - started) / max(1, int(follow))})


def bench_negotiation(env: dict[str, str], repeats: int, follow: int = 20) -> dict[str, Any]:
    """What ``api_fields=auto`` costs against a pinned connection: round trips and time of the first
    create of a process, and of the creates after it, for a server of either format."""
    results: dict[str, Any] = {}
    for server_api, api_fields in NEGOTIATION_CASES:
        with offline_siro(api=server_api) as server:
            conn = server.connection(api_fields=api_fields, **NO_THROTTLE)
            child_env = {**env, "AIRFLOW_CONN_SIRO_DEFAULT": json.dumps(conn)}
            download_url = Api(server.url, server.issue_access_token()).small_upload()
            firsts, rests, trips = [], [], []
            for _ in range(repeats):
                since = len(server.requests)
                run = run_child(["negotiation", download_url, str(follow)], child_env)
                creates = [r for r in server.requests[since:] if r.endpoint == "create_recording"]
                assert sum(r.status == 201 for r in creates) == follow + 1, (server_api, api_fields)
                trips.append(len(creates) - follow)
                firsts.append(run["first_ms"])
                rests.append(run["rest_ms"])
        results[f"{server_api}/{api_fields}"] = {
            "first_ms": sorted(firsts)[len(firsts) // 2],
            "rest_ms": sorted(rests)[len(rests) // 2],
            "first_trips": max(trips),
        }
    return results


def bench_creates(env: dict[str, str], count: int, repeats: int, work: Path) -> dict[str, Any]:
    with offline_siro() as server:
        conn = server.connection(oauth=True, **NO_THROTTLE)
        env = {**env, "AIRFLOW_CONN_SIRO_DEFAULT": json.dumps(conn)}
        download_url = Api(server.url, server.issue_access_token()).small_upload()
        specs = recording_specs(count)
        bodies = [body_by_hand(download_url, item) for item in specs]
        spec_file = work / "creates.json"
        spec_file.write_text(
            json.dumps(
                {
                    "download_url": download_url,
                    "specs": specs,
                    "bodies": bodies,
                    "api_url": server.url,
                    "mint_url": f"{server.auth_url}/v1/core/oauth/apps/{server.client_id}/access-token",
                    "mint_body": {
                        "clientSecret": server.client_secret,
                        "userId": server.user_id,
                        "scope": "write",
                    },
                    "org_token": server.org_token,
                }
            )
        )
        runs: list[dict[str, Any]] = []
        mints: list[int] = []
        for attempt in range(repeats):
            since = len(server.requests)
            runs.append(run_child(["creates", str(spec_file), "ours" if attempt % 2 == 0 else "bare"], env))
            log = server.requests[since:]
            for kind in ("ours", "bare"):
                mine = [
                    r
                    for r in log
                    if r.headers.get("User-Agent", "").startswith(UA["User-Agent"]) == (kind == "bare")
                ]
                creates = [r for r in mine if r.endpoint == "create_recording"]
                assert len(creates) == count and all(r.status == 201 for r in creates), (
                    f"{kind}: failed or retried"
                )
                assert [r.json for r in creates] == bodies, f"{kind} did not send the expected bodies"
                assert runs[-1][kind]["ids"] == count, runs[-1]
                if kind == "ours":
                    mints.append(sum(1 for r in mine if r.endpoint == "mint_token"))
    best = {kind: min(runs, key=lambda run: run[kind]["seconds"])[kind] for kind in ("ours", "bare")}
    return {
        "count": count,
        "ours_per_s": count / best["ours"]["seconds"],
        "bare_per_s": count / best["bare"]["seconds"],
        "ours_cpu_ms": 1000 * min(run["ours"]["cpu"] for run in runs) / count,
        "bare_cpu_ms": 1000 * min(run["bare"]["cpu"] for run in runs) / count,
        "mints": mints,
        "negotiation": bench_negotiation(env, repeats),
    }


def add_rows(table: Table, creates: Any) -> None:
    """The table's rows for this measure."""
    row, verdict = table.row, table.verdict
    ratio = creates["ours_per_s"] / creates["bare_per_s"]
    row(
        f"creates through one hook, {creates['count']} recordings (/s)",
        f"{creates['ours_per_s']:.0f}",
        f"{creates['bare_per_s']:.0f} (bare requests.Session)",
        ratio,
        verdict(">= 0.90", ratio >= 0.9),
    )
    row(
        "  client CPU per create (ms)",
        f"{creates['ours_cpu_ms']:.2f}",
        f"{creates['bare_cpu_ms']:.2f} (bare requests.Session)",
        creates["ours_cpu_ms"] / creates["bare_cpu_ms"],
    )
    most = max(creates["mints"])
    row("  tokens minted for that batch", str(most), "1 (minted by hand)", target=verdict("1", most == 1))
    negotiation = creates.get("negotiation")
    if negotiation:
        for server_api in ("original", "current"):
            auto, pinned = negotiation[f"{server_api}/auto"], negotiation[f"{server_api}/{server_api}"]
            extra = auto["first_trips"] - pinned["first_trips"]
            row(
                f"first create of a process, api_fields=auto vs pinned, {server_api} Siro (ms)",
                f"{auto['first_ms']:.1f} ({auto['first_trips']} round trip(s))",
                f"{pinned['first_ms']:.1f} ({pinned['first_trips']} round trip, api_fields={server_api})",
                auto["first_ms"] / pinned["first_ms"],
                verdict("<= 1 extra round trip", extra <= 1),
            )
            row(
                f"  later creates, api_fields=auto vs pinned, {server_api} Siro (ms each)",
                f"{auto['rest_ms']:.2f}",
                f"{pinned['rest_ms']:.2f} (api_fields={server_api})",
                auto["rest_ms"] / pinned["rest_ms"],
            )
