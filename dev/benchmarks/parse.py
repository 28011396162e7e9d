"""DAG parse cost: importing the operator module on top of ``airflow.sdk``."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks.common import Table

PARSE_PROBE = """\
import time
t0 = time.perf_counter()
try:
    import airflow.sdk
except ImportError:  # Airflow 2.11: the operator's base class is where the SDK would be
    import airflow.models.baseoperator
t1 = time.perf_counter()
import airflow_provider_siro.operators.siro
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def bench_parse(runs: int, env: dict[str, str]) -> dict[str, float]:
    """Median of ``runs`` fresh interpreters, after one that compiles the bytecode.

    A scheduler parses DAG files with bytecode already cached (every deployment writes or ships it);
    with ``PYTHONDONTWRITEBYTECODE`` set, as on some build machines, each probe would compile Airflow
    and the provider from source and measure the compiler instead. The cache goes to a private
    ``PYTHONPYCACHEPREFIX``, so the source tree and the venv are left as they were.
    """
    sdk, added = [], []
    with tempfile.TemporaryDirectory(prefix="siro-bench-pycache-") as cache:
        probe_env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        probe_env["PYTHONPYCACHEPREFIX"] = cache
        for attempt in range(runs + 1):
            out = subprocess.run(
                [sys.executable, "-c", PARSE_PROBE], env=probe_env, capture_output=True, text=True, check=True
            ).stdout
            if attempt == 0:
                continue  # the warm-up that writes the bytecode
            first, second = out.split()[-2:]
            sdk.append(float(first))
            added.append(float(second))
    return {
        "runs": runs,
        "added_ms": statistics.median(added) * 1000,
        "sdk_ms": statistics.median(sdk) * 1000,
    }


def add_rows(table: Table, parse: Any) -> None:
    """The table's rows for this measure."""
    row, verdict = table.row, table.verdict
    row(
        "import operator module on top of airflow.sdk (ms)",
        f"{parse['added_ms']:.1f}",
        f"{parse['sdk_ms']:.0f} (import airflow.sdk)",
        parse["added_ms"] / parse["sdk_ms"],
        verdict("< 20 ms added", parse["added_ms"] < 20),
    )
