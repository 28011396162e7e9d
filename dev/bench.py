"""`make bench`: what the provider costs, each row a ratio against a reference measured in the same run.

Everything talks to the offline Siro server on 127.0.0.1 (proxies are bypassed for it), and every
measured side runs in a fresh process: ours and the reference alternate which goes first, and the
best of several runs counts. The rows:

* **upload throughput**: ``SiroHook.upload_audio`` over ``open(path, "rb")``, as the operator uploads a
  local ``source_path`` (the signed-URL request is inside the clock; the OAuth token is minted before
  it, once per process), against ``curl -T`` PUTting the same file to a fresh signed URL with the same
  headers (where curl is missing, or with ``--reference sendfile``: a hand-written PUT whose body goes
  out with ``sendfile(2)``). Each PUT is checked on the server: 200, every byte, the file's sha256. The
  uploader's CPU time per GiB is shown too (the upload alone for ours, the whole process for curl): on
  loopback both sides share the server's speed (it hashes every byte), so CPU is where a wasteful
  client would show;
* **peak RSS** of the uploading process during the upload (the high-water mark is reset just before
  it starts), per file size: the provider streams, so it should be flat;
* **per-recording overhead**: creating recordings through one hook (download_url mode, OAuth
  connection, so the batch includes minting its token) against a bare ``requests.Session`` loop that
  mints a token by hand and POSTs the same bodies (the server checks they are the same). Both run in
  one process with Airflow imported, as a loop inside a task would, taking turns in blocks of 100 so
  that a busy machine slows both alike;
* **DAG parse cost**: importing the operator module on top of ``import airflow.sdk``, timed inside
  fresh interpreters, median of many;
* **waiting at scale**: many ``SiroRecordingTrigger`` runs in one event loop against a bare ``httpx``
  loop doing the same reads (a client per wait, all sharing one TLS context), CPU seconds per poll;
  the server runs in another process. Measured on recordings done at the first read (each wait's
  set-up plus one poll) and on recordings that take several reads, which tells a wait's start from a
  further poll.

The bench connections set ``max_requests_per_minute`` so high that the hook's rate limiter runs but
never waits; the offline server's own per-token limit is switched off (both batches are larger than
Siro's 1000 requests a minute).

``--tiny`` runs every row at a toy size so ``make test`` keeps the script working; its numbers mean
nothing. The targets shown are the issue's; nothing here is a test assertion.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import creates, parse, uploads, waits
from benchmarks.common import ROOT, MiB, Table, curl_version, machine

SECTIONS = ("uploads", "creates", "parse", "waits")
MODULES = {"uploads": uploads, "creates": creates, "parse": parse, "waits": waits}


def worker(kind: str, rest: list[str]) -> None:
    if kind == "upload":
        uploads.worker_upload(rest[0])
    elif kind == "sendfile":
        uploads.worker_sendfile(rest[0], json.loads(rest[1]), rest[2])
    elif kind == "creates":
        creates.worker_creates(rest[0], rest[1])
    elif kind == "negotiation":
        creates.worker_negotiation(rest[0], rest[1])
    elif kind == "server":
        waits.worker_server(int(rest[0]))
    elif kind == "waits":
        waits.worker_waits(rest[0], rest[1], float(rest[2]))
    else:
        raise SystemExit(f"unknown worker {kind!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes, to keep the script working in tests")
    parser.add_argument(
        "--reference",
        choices=("auto", "curl", "sendfile"),
        default="auto",
        help="the upload reference: curl -T (auto: when curl is installed) or a sendfile(2) PUT",
    )
    parser.add_argument("--only", help=f"comma-separated sections to run, of {', '.join(SECTIONS)}")
    parser.add_argument("--sizes", help="comma-separated upload sizes in MiB (default 16,256,1024)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1:])
        return 0
    sections = set(args.only.split(",")) if args.only else set(SECTIONS)
    if sections - set(SECTIONS):
        parser.error(f"unknown sections {sorted(sections - set(SECTIONS))}")
    curl = shutil.which("curl") if args.reference in ("auto", "curl") else None
    if args.reference == "curl" and not curl:
        parser.error("curl is not installed")

    wall = time.perf_counter()
    load = os.getloadavg()
    build = ROOT / ".build"
    build.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="siro-bench-", dir=build))
    # Loopback only: no proxy may stand between the bench and the offline server.
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    os.environ.update(
        {
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            "AIRFLOW_HOME": str(work / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
    )
    tiny = args.tiny
    sizes = [1 * MiB, 4 * MiB] if tiny else [16 * MiB, 256 * MiB, 1024 * MiB]
    if args.sizes:
        sizes = [int(float(mib) * MiB) for mib in args.sizes.split(",")]
    env = dict(os.environ)
    jobs: dict[str, Callable[[], Any]] = {
        "uploads": functools.partial(uploads.bench_uploads, env, sizes, 1 if tiny else 5, work, curl),
        "creates": functools.partial(
            creates.bench_creates, env, 20 if tiny else 1000, 1 if tiny else 3, work
        ),
        "parse": functools.partial(parse.bench_parse, 1 if tiny else 15, env),
        "waits": functools.partial(
            waits.bench_waits, 10 if tiny else 1000, 2 if tiny else 5, 1 if tiny else 2, env, work
        ),
    }
    results: dict[str, Any] = dict.fromkeys(SECTIONS)
    try:
        if tiny:
            # Toy sizes only keep the script working: run the sections side by side, to be quick.
            with concurrent.futures.ThreadPoolExecutor(len(sections)) as pool:
                futures = {name: pool.submit(jobs[name]) for name in SECTIONS if name in sections}
                results.update({name: future.result() for name, future in futures.items()})
        else:
            for name in SECTIONS:
                if name in sections:
                    results[name] = jobs[name]()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"Machine: {machine()}")
    print(f"Upload reference: {curl_version(curl)}")
    print(f"Load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    command = (
        "make bench"
        if not (tiny or args.only or args.sizes or args.reference != "auto")
        else " ".join(sys.argv)
    )
    print(f"Command: {command}" + (" (--tiny: toy sizes, the numbers mean nothing)" if tiny else ""))
    print()
    targets = not tiny and sizes == [16 * MiB, 256 * MiB, 1024 * MiB]
    table = Table(targets)
    for name in SECTIONS:
        if results[name]:
            MODULES[name].add_rows(table, results[name])
    table.print()
    print()
    print(
        "ratio = provider / reference: above 1 is better for throughput and rates, below 1 for CPU and time."
    )
    if results["uploads"]:
        print(
            "Upload times: the provider's include asking for the signed URL, the reference's are the PUT"
            " alone; best of the runs."
        )
    print(f"Wall time: {time.perf_counter() - wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
