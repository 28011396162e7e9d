"""`dev/bench.py` keeps working: its toy-size run prints the whole table, and its curl-less reference
PUT lands. Nothing here looks at a speed: benchmarks are never timed assertions."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import requests

from airflow_provider_siro.testing import OfflineSiro

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "dev" / "bench.py"

ROWS_WITH_A_RATIO = (
    "upload throughput, 1 MiB file",
    "upload throughput, 4 MiB file",
    "uploader CPU, 4 MiB file",
    "creates through one hook, 20 recordings",
    "client CPU per create",
    "import operator module on top of airflow.sdk",
    "10 deferred waits, 2 polls each: CPU per poll",
    "CPU per wait started",
)
POSITIVE_ROWS = (
    "peak RSS while uploading, 1 MiB file",
    "peak RSS while uploading, 4 MiB file",
    "tokens minted for that batch",
)


def bench_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}


def table_rows(output: str) -> dict[str, list[str]]:
    """Measure -> [provider, reference, ratio, target] of the printed Markdown table."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    assert len(lines) > 2, output
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["measure", "provider", "reference", "ratio", "target"], header
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 5, line
        rows[cells[0]] = cells[1:]
    return rows


def test_tiny_bench_prints_its_table() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--tiny"],
        env=bench_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Machine: " in result.stdout and "Wall time: " in result.stdout
    rows = table_rows(result.stdout)

    def row(prefix: str) -> list[str]:
        found = [cells for name, cells in rows.items() if name.startswith(prefix)]
        assert len(found) == 1, f"no single row {prefix!r} in {list(rows)}"
        return found[0]

    for prefix in ROWS_WITH_A_RATIO:
        provider, reference, ratio, _ = row(prefix)
        assert float(provider) > 0 and reference and float(ratio) > 0, (prefix, provider, reference, ratio)
    for prefix in POSITIVE_ROWS:
        assert float(row(prefix)[0]) > 0, (prefix, row(prefix))
    float(row("peak RSS growth, 4 MiB vs 1 MiB file")[0])  # a difference of two peaks: any sign
    further = row("CPU per further poll")[0]
    assert further == "in the noise" or float(further) >= 0, further
    for name, (_, _, ratio, _) in rows.items():
        assert not ratio or float(ratio) > 0, (name, ratio)
    assert row("tokens minted for that batch")[0] == "1"


def test_sendfile_reference_put_lands(tmp_path: Path) -> None:
    """The reference used where curl is missing: a hand-written PUT that the server accepts in full."""
    audio = os.urandom(300_000)
    path = tmp_path / "call.mp3"
    path.write_bytes(audio)
    with OfflineSiro() as server:
        signed = requests.post(
            f"{server.url}/v1/core/recordings/signed-urls",
            json={"fileType": "mp3", "fileSize": len(audio)},
            headers={"x-siro-auth-token": server.issue_access_token(), "User-Agent": "bench-test"},
            timeout=30,
        ).json()["data"]
        result = subprocess.run(
            [
                sys.executable,
                str(BENCH),
                "--worker",
                "sendfile",
                signed["uploadUrl"],
                json.dumps(signed["uploadHeaders"]),
                str(path),
            ],
            env=bench_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        answer = json.loads(result.stdout.split("BENCH-RESULT ", 1)[1])
        assert answer["status"] == 200 and answer["seconds"] > 0
        (stored,) = [o for o in server.objects.values() if o.uploaded]
        assert stored.size == len(audio) and stored.sha256 == hashlib.sha256(audio).hexdigest()
