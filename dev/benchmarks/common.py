"""What every benchmark shares: the offline server, child processes, CPU and memory readings, the table."""

from __future__ import annotations

import inspect
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "dev" / "bench.py"
MiB = 1024 * 1024
UA = {"User-Agent": "siro-bench-reference/1.0"}
RESULT = "BENCH-RESULT "
NO_THROTTLE = {"max_requests_per_minute": 1_000_000}
"""The hook's rate limiter runs on every call but never makes one wait."""


def emit(result: dict[str, Any]) -> None:
    """A worker's answer: one marked line on stdout (log lines may go there too)."""
    print(RESULT + json.dumps(result), flush=True)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / MiB:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    versions = ", ".join(
        f"{name} {metadata.version(dist)}"
        for name, dist in (("Airflow", "apache-airflow"), ("requests", "requests"), ("httpx", "httpx"))
    )
    return (
        f"{model}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; {versions}"
    )


def curl_version(curl: str | None) -> str:
    if not curl:
        return "curl not found: the upload reference is a sendfile(2) PUT"
    first = subprocess.run([curl, "--version"], capture_output=True, text=True).stdout.splitlines()
    return first[0].split(" (")[0] if first else "curl"


def offline_siro(**kwargs: Any) -> Any:
    """An OfflineSiro with its per-token rate limit off, where the server has one."""
    from airflow_provider_siro.testing.server import OfflineSiro

    if "rate_limit" in inspect.signature(OfflineSiro).parameters:
        kwargs.setdefault("rate_limit", None)
    return OfflineSiro(**kwargs)


def run_child(args: list[str], env: dict[str, str], timeout: float = 1800) -> dict[str, Any]:
    """Run ``bench.py --worker ARGS`` in a fresh interpreter and return its result."""
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.run(
            [sys.executable, str(RUNNER), "--worker", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            timeout=timeout,
        )
        results = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
        if proc.returncode or not results:
            errors.seek(0)
            raise RuntimeError(
                f"worker {args[0]} failed ({proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{errors.read()[-6000:]}"
            )
    return json.loads(results[-1][len(RESULT) :])


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux), so VmHWM measures what comes next."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return proc_status_kib("VmHWM") is not None


class Api:
    """Setup calls made by hand (no hook): a token, signed URLs, a small uploaded object, recordings."""

    def __init__(self, base: str, token: str) -> None:
        import requests

        self.base = base
        self.session = requests.Session()
        self.session.headers.update({**UA, "x-siro-auth-token": token})

    def signed_urls(self, size: int) -> dict[str, Any]:
        response = self.session.post(
            f"{self.base}/v1/core/recordings/signed-urls",
            json={"fileType": "mp3", "fileSize": size},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["data"]

    def small_upload(self) -> str:
        """Upload a few bytes of audio; return the downloadUrl to create recordings from."""
        audio = b"ID3" + os.urandom(2000)
        signed = self.signed_urls(len(audio))
        put = self.session.put(
            signed["uploadUrl"],
            data=audio,
            headers={**signed["uploadHeaders"], "x-siro-auth-token": None},  # no credential to storage
            timeout=30,
        )
        put.raise_for_status()
        return signed["downloadUrl"]

    def create(self, download_url: str, count: int, reads: int = 0) -> list[str]:
        """``count`` recordings, each read ``reads`` times already."""
        ids = []
        for _ in range(count):
            response = self.session.post(
                f"{self.base}/v1/core/recordings/upload",
                json={"fileUrl": download_url, "fileType": "mp3", "userEmail": "rep@example.com"},
                timeout=30,
            )
            response.raise_for_status()
            ids.append(response.json()["data"]["recordingId"])
        for rid in ids:
            for _ in range(reads):
                self.session.get(f"{self.base}/v1/core/recordings/{rid}", timeout=30).raise_for_status()
        return ids


def ratio_text(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"  # two significant digits, never "0.00"


class Table:
    """The Markdown table of a run; ``targets``: judge the issue's targets (a run at the issue's sizes)."""

    def __init__(self, targets: bool = True) -> None:
        self.targets = targets
        self.rows: list[tuple[str, str, str, str, str]] = []

    def row(self, name: str, ours: str, ref: str = "", ratio: float | None = None, target: str = "") -> None:
        self.rows.append((name, ours, ref, "" if ratio is None else ratio_text(ratio), target))

    def verdict(self, text: str, ok: bool) -> str:
        return f"{text} ({'met' if ok else 'MISSED'})" if self.targets else ""

    def print(self) -> None:
        rows = self.rows
        header = ("measure", "provider", "reference", "ratio", "target")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
        left = (0, 4)  # measure and target read left to right; numbers line up on the right
        print(
            "| "
            + " | ".join(
                h.ljust(w) if i in left else h.rjust(w)
                for i, (h, w) in enumerate(zip(header, widths, strict=True))
            )
            + " |"
        )
        print("|" + "|".join("-" * (w + 1) + ("-" if i in left else ":") for i, w in enumerate(widths)) + "|")
        for r in rows:
            cells = [
                r[0].ljust(widths[0]),
                *(c.rjust(w) for c, w in zip(r[1:4], widths[1:4], strict=True)),
                r[4].ljust(widths[4]),
            ]
            print("| " + " | ".join(cells) + " |")
