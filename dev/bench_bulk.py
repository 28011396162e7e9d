"""Bulk upload benchmark: many files through ``SiroUploadRecordingsOperator`` in one task, against a
bare ``requests`` loop on a thread pool of the same width, and against mapped task instances under a
real LocalExecutor.

Every leg runs in a child process of its own against one offline Siro server (in this process, on
127.0.0.1), on the same files; the table reports files/s, CPU and peak RSS, and ratios against the
bare pool, measured in the same run.

* **bare pool**: ``requests.Session`` (pool sized to the width), ``ThreadPoolExecutor(width)``, the three
  calls of an upload by hand (signed URL, PUT streamed from the file, create). No retries, no pacing.
* **bulk operator**: ``SiroUploadRecordingsOperator(max_concurrency=width, ledger_path=<local>)`` run
  with ``execute()``: validation of every file first, the ledger, the hook's retries and pace.
* **in a deployment**: a real LocalExecutor deployment (api-server, dag-processor, scheduler with
  ``parallelism`` = the width; ``dev/benchmarks/deployment.py``) runs the files as one bulk task, and the
  same files as one mapped task instance each, each DAG run timed from trigger to finish. The
  mapped run pays the scheduler, the task supervisor and a Python process per file. It runs every
  file by default (about ten minutes on two cores); ``--mapped-sample N`` runs the first N only, and
  files/s is then measured on them.

The bare and bulk legs run ``--rounds`` times in a rotating order, and the median of each is reported,
so neither gains from going first or last. Their clock covers the uploads only (not a child's
interpreter start-up or ``import airflow``); the deployment legs' clock covers the whole DAG run, which
is the point.

    python dev/bench_bulk.py            # 1,000 files of 1 MiB, width 8, 3 rounds, 1,000 mapped instances
    python dev/bench_bulk.py --tiny     # a toy size, to keep the script working
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "dev"))  # benchmarks.common, benchmarks.deployment

from benchmarks.common import cpu_seconds  # noqa: E402 - needs the path above


def write_files(folder: Path, count: int, size: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"call-{index:04d}.mp3"
        path.write_bytes(os.urandom(size))
        paths.append(str(path))
    return paths


def peak_rss_mib() -> float:
    """This process's peak RSS since exec (``VmHWM``). Not ``ru_maxrss``: a child forked from the parent,
    which holds the offline server's stored uploads, would count the parent's pages from before exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- legs (run in children)
def leg_bare(paths: list[str], width: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from requests.adapters import HTTPAdapter

    conn = json.loads(os.environ["AIRFLOW_CONN_SIRO_DEFAULT"])
    base, token = conn["host"].rstrip("/"), conn["password"]
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=2 * width))
    session.headers["User-Agent"] = "bench-bare-pool/1.0"  # Siro's edge refuses the python-requests default
    auth = {"x-siro-auth-token": token}

    def one(path: str) -> str:
        size = os.path.getsize(path)
        signed = session.post(
            f"{base}/v1/core/recordings/signed-urls", json={"fileType": "mp3", "fileSize": size}, headers=auth
        ).json()["data"]
        with open(path, "rb") as file:
            session.put(signed["uploadUrl"], data=file, headers=signed["uploadHeaders"]).raise_for_status()
        body = {"fileUrl": signed["downloadUrl"], "fileType": "mp3", "title": os.path.basename(path)}
        body["userEmail"] = "rep@example.com"
        answer = session.post(f"{base}/v1/core/recordings/upload", json=body, headers=auth)
        answer.raise_for_status()
        return answer.json()["data"]["recordingId"]

    started, cpu = time.monotonic(), cpu_seconds()
    with ThreadPoolExecutor(width) as pool:
        ids = list(pool.map(one, paths))
    report(len(ids), time.monotonic() - started, cpu_seconds() - cpu)


def leg_bulk(paths: list[str], width: int, ledger: str | None) -> None:
    from airflow_provider_siro.operators.siro import SiroUploadRecordingsOperator

    operator = SiroUploadRecordingsOperator(
        task_id="bench_bulk",
        source_paths=paths,
        ledger_path=ledger,
        user_email="rep@example.com",
        fields_per_source=lambda source: {"title": os.path.basename(source)},
        max_concurrency=width,
    )
    started, cpu = time.monotonic(), cpu_seconds()
    ids = operator.execute(context={})
    report(len(ids), time.monotonic() - started, cpu_seconds() - cpu)


def report(files: int, seconds: float, cpu: float) -> None:
    rss = peak_rss_mib()
    print("RESULT " + json.dumps({"files": files, "seconds": seconds, "cpu": cpu, "rss": rss}), flush=True)


# --------------------------------------------------------------------------- the parent
def child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``bench_bulk.py --leg ...``; return its report (files, seconds, CPU, peak RSS in MiB)."""
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"leg {args[:2]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="6 files of 64 KiB, 1 round, 3 mapped instances")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024 * 1024)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mapped-sample", type=int, default=None)
    parser.add_argument("--leg", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--ledger", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.leg:
        paths = json.loads(Path(args.paths).read_text()) if args.paths else []
        if args.leg == "bare":
            leg_bare(paths, args.width)
        else:
            leg_bulk(paths, args.width, args.ledger)
        return 0
    if args.tiny:
        args.files, args.size, args.rounds, args.mapped_sample = 6, 64 * 1024, 1, 3
    args.mapped_sample = min(args.mapped_sample or args.files, args.files)

    from benchmarks.deployment import run_in_deployment

    from airflow_provider_siro.testing.server import OfflineSiro

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="siro-bench-bulk-"))
    legs = ("bare", "bulk", "bulk-no-ledger")
    with OfflineSiro(rate_limit=None) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
        conn = server.connection(token=server.issue_access_token(), max_requests_per_minute=0)
        env["AIRFLOW_CONN_SIRO_DEFAULT"] = json.dumps(conn)
        env.setdefault("AIRFLOW_HOME", str(work / "airflow"))
        paths = write_files(work / "files", args.files, args.size)
        (work / "paths.json").write_text(json.dumps(paths))
        measured: dict[str, list[dict[str, Any]]] = {leg: [] for leg in legs}
        for round_ in range(args.rounds):
            for leg in legs[round_ % 3 :] + legs[: round_ % 3]:  # each leg goes first in turn
                extra = ["--ledger", str(work / f"ledger-{round_}")] if leg == "bulk" else []
                command = ["--leg", leg.split("-")[0], "--paths", str(work / "paths.json")]
                measured[leg].append(child([*command, "--width", str(args.width), *extra], env))
        rows: dict[str, tuple[float, float, float]] = {
            leg: (
                statistics.median([r["files"] / r["seconds"] for r in results]),
                statistics.median([r["cpu"] / r["files"] * 1000 for r in results]),
                max(r["rss"] for r in results),
            )
            for leg, results in measured.items()
        }
        deployed = run_in_deployment(env, work, paths, paths[: args.mapped_sample], args.width)
        for leg, result in deployed.items():
            rows[leg] = (
                result["files"] / result["seconds"],
                result["cpu"] / result["files"] * 1000,
                result["rss"],
            )
        created = len(server.recordings)
    expected = len(legs) * args.rounds * args.files + args.files + args.mapped_sample
    bare = rows["bare"][0]
    print(
        f"\n{args.files} files of {args.size / 2**20:.2f} MiB, width {args.width}, median of {args.rounds} "
        f"round(s); in the deployment: the {args.files} files as one bulk task, {args.mapped_sample} as "
        f"mapped task instances; {time.monotonic() - started:.0f} s in all"
    )
    print("| leg | files/s | CPU per file (ms) | peak RSS (MiB) | files/s vs bare pool |")
    print("|---|---:|---:|---:|---:|")
    names = {
        "bare": "bare requests pool",
        "bulk": "bulk operator (with ledger)",
        "bulk-no-ledger": "bulk operator (no ledger)",
        "bulk task": "LocalExecutor: one bulk task (no ledger)",
        "mapped tasks": "LocalExecutor: mapped task instances",
    }
    for leg, (rate, cpu_ms, rss) in rows.items():
        print(f"| {names[leg]} | {rate:.1f} | {cpu_ms:.1f} | {rss:.1f} | {rate / bare:.2f} |")
    print(f"\nbulk / bare pool: {rows['bulk'][0] / bare:.2f} (target >= 0.9)")
    print(
        f"bulk task / mapped tasks, both under the LocalExecutor: "
        f"{rows['bulk task'][0] / rows['mapped tasks'][0]:.1f} (target >= 10)"
    )
    print("CPU and RSS of the LocalExecutor rows: the whole deployment (every Airflow and task process)")
    print(f"recordings created: {created} of {expected}")
    return 0 if created == expected else 1


if __name__ == "__main__":
    sys.exit(main())
