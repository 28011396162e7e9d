"""Upload throughput and memory: ``SiroHook.upload_audio`` against ``curl -T`` (or a sendfile(2) PUT)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import socket
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import (
    NO_THROTTLE,
    Api,
    MiB,
    Table,
    cpu_seconds,
    emit,
    offline_siro,
    proc_status_kib,
    reset_peak_rss,
    run_child,
)


def worker_upload(path: str) -> None:
    """Child: one upload through the provider's path. Seconds, CPU seconds and peak RSS."""
    from airflow_provider_siro.hooks.siro import SiroHook

    size = os.stat(path).st_size
    hook = SiroHook()
    hook.settings  # noqa: B018 - the connection is read, and the token minted, before the clock starts
    hook.get_access_token()
    rss_before = proc_status_kib("VmRSS")
    exact_peak = reset_peak_rss()
    cpu = cpu_seconds()
    started = time.perf_counter()
    hook.upload_audio(functools.partial(open, path, "rb"), size, "mp3", label=Path(path).name)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    peak = proc_status_kib("VmHWM") if exact_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    emit({"seconds": seconds, "cpu": cpu, "peak_kib": peak, "before_kib": rss_before})


def worker_sendfile(url: str, headers: dict[str, str], path: str) -> None:
    """Child: the same PUT written by hand, its body sent with sendfile(2): no copy through user space."""
    size = os.stat(path).st_size
    parts = urlsplit(url)
    head = [f"PUT {parts.path}?{parts.query} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {size}"]
    head += [f"{key}: {value}" for key, value in headers.items()]
    head.append("Connection: close")
    cpu = cpu_seconds()
    started = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port)) as sock, open(path, "rb") as source:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.sendfile(source)
        reply = b""
        while b"\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    seconds = time.perf_counter() - started
    emit({"seconds": seconds, "cpu": cpu_seconds() - cpu, "status": int(reply.split(b" ", 2)[1])})


def reference_put(api: Api, path: Path, env: dict[str, str], curl: str | None) -> dict[str, float]:
    """The reference PUT of ``path`` to a fresh signed URL: seconds and CPU seconds."""
    signed = api.signed_urls(path.stat().st_size)
    if not curl:
        result = run_child(
            ["sendfile", signed["uploadUrl"], json.dumps(signed["uploadHeaders"]), str(path)], env
        )
        assert result["status"] == 200, result
        return result
    command = [curl, "-sS", "--noproxy", "*", "-T", str(path), "-o", "/dev/null"]
    command += ["-w", "%{http_code} %{time_total}", "-H", "Expect:"]  # no 100-continue round trip
    for key, value in signed["uploadHeaders"].items():
        command += ["-H", f"{key}: {value}"]
    code, out, cpu = run_with_cpu([*command, signed["uploadUrl"]])
    status, seconds = out.split()
    assert code == 0 and status == "200", (code, out)
    return {"seconds": float(seconds), "cpu": cpu}


def run_with_cpu(command: list[str]) -> tuple[int, str, float]:
    """Run a command; its exit code, its stdout, and the CPU seconds of that one process (wait4)."""
    with tempfile.TemporaryFile() as out, open(os.devnull, "wb") as null:
        actions = [(os.POSIX_SPAWN_DUP2, out.fileno(), 1), (os.POSIX_SPAWN_DUP2, null.fileno(), 2)]
        pid = os.posix_spawn(command[0], command, os.environ, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        out.seek(0)
        return os.waitstatus_to_exitcode(status), out.read().decode(), usage.ru_utime + usage.ru_stime


def check_put(server: Any, since: int, size: int, sha256: str) -> None:
    """Exactly one PUT since ``since``: 200, all ``size`` bytes, stored with the file's sha256."""
    puts = [r for r in server.requests[since:] if r.endpoint == "upload_put"]
    assert len(puts) == 1 and puts[0].status == 200 and puts[0].body_size == size, puts
    stored = server.objects[puts[0].path.rsplit("/", 1)[1]]
    assert stored.uploaded and stored.size == size and stored.sha256 == sha256, stored


def write_file(path: Path, size: int) -> str:
    """Random bytes (a fresh MiB repeated); returns their sha256."""
    digest = hashlib.sha256()
    block = os.urandom(MiB)
    with path.open("wb") as out:
        remaining = size
        while remaining:
            piece = block[: min(MiB, remaining)]
            out.write(piece)
            digest.update(piece)
            remaining -= len(piece)
    return digest.hexdigest()


def bench_uploads(
    env: dict[str, str], sizes: list[int], repeats: int, work: Path, curl: str | None
) -> list[dict[str, Any]]:
    with offline_siro() as server:
        # A long timeout: the server hashes every byte, and a 1 GiB PUT on a busy machine takes a while.
        conn = server.connection(oauth=True, timeout=300, progress_interval=3600, **NO_THROTTLE)
        env = {**env, "AIRFLOW_CONN_SIRO_DEFAULT": json.dumps(conn)}
        return [upload_row(server, env, size, repeats, work, curl) for size in sizes]


def upload_row(
    server: Any, env: dict[str, str], size: int, repeats: int, work: Path, curl: str | None
) -> dict[str, Any]:
    """Best of ``repeats`` uploads of one file by the provider and by the reference, taking turns."""
    api = Api(server.url, server.issue_access_token())
    path = work / f"call-{size // MiB}MiB.mp3"
    sha256 = write_file(path, size)
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, float]] = []
    for attempt in range(repeats):
        for which in ("ours", "ref") if attempt % 2 == 0 else ("ref", "ours"):
            since = len(server.requests)
            if which == "ours":
                ours.append(run_child(["upload", str(path)], env))
            else:
                theirs.append(reference_put(api, path, env, curl))
            check_put(server, since, size, sha256)
    path.unlink()
    return {
        "size": size,
        "ours_mb_s": size / 1e6 / min(r["seconds"] for r in ours),
        "ref_mb_s": size / 1e6 / min(r["seconds"] for r in theirs),
        "ours_cpu_per_gib": min(r["cpu"] for r in ours) * 1024 * MiB / size,
        "ref_cpu_per_gib": min(r["cpu"] for r in theirs) * 1024 * MiB / size,
        "peak_mib": max(r["peak_kib"] for r in ours) / 1024,
        "before_mib": max(r["before_kib"] or 0 for r in ours) / 1024,
        "reference": "curl -T" if curl else "sendfile PUT",
    }


def add_rows(table: Table, uploads: Any) -> None:
    """The table's rows for this measure."""
    row, verdict = table.row, table.verdict
    largest, smallest = uploads[-1], uploads[0]
    for item in uploads:
        mib = item["size"] // MiB
        ratio = item["ours_mb_s"] / item["ref_mb_s"]
        target = verdict(">= 0.95", ratio >= 0.95) if item is largest else ""
        ref = f"{item['ref_mb_s']:.0f} ({item['reference']})"
        row(f"upload throughput, {mib} MiB file (MB/s)", f"{item['ours_mb_s']:.0f}", ref, ratio, target)
    row(
        f"uploader CPU, {largest['size'] // MiB} MiB file (s per GiB)",
        f"{largest['ours_cpu_per_gib']:.2f}",
        f"{largest['ref_cpu_per_gib']:.2f} ({largest['reference']})",
        largest["ours_cpu_per_gib"] / largest["ref_cpu_per_gib"] if largest["ref_cpu_per_gib"] else None,
    )
    for item in uploads:
        row(
            f"peak RSS while uploading, {item['size'] // MiB} MiB file (MiB)",
            f"{item['peak_mib']:.1f}",
            f"{item['before_mib']:.1f} (before the upload)",
        )
    growth = largest["peak_mib"] - smallest["peak_mib"]
    row(
        f"peak RSS growth, {largest['size'] // MiB} MiB vs {smallest['size'] // MiB} MiB file (MiB)",
        f"{growth:.1f}",
        target=verdict("<= 32 MiB", growth <= 32),
    )
