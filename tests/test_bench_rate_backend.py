"""`dev/bench_rate_backend.py` keeps working: its toy-size run prints both rows with a ratio. Nothing here
looks at a speed: benchmarks are never timed assertions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "dev" / "bench_rate_backend.py"


def test_the_rate_backend_benchmark_runs_at_a_toy_size():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--tiny"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    for row in ("paced calls reserved (/s)", "client CPU per reservation (ms)"):
        line = next(line for line in out.splitlines() if row in line)
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert all(float(value) > 0 for value in cells[1:]), line
