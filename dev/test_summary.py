"""`make test`'s last lines: each leg's pytest summary, then all of them added up.

Usage: ``python dev/test_summary.py LABEL=LOG [LABEL=LOG ...]``, each LOG a leg's pytest output.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

COUNTED = ("passed", "failed", "errors", "error", "skipped", "deselected")


def main(argv: list[str]) -> int:
    totals = dict.fromkeys(COUNTED, 0)
    for item in argv:
        label, _, log = item.partition("=")
        lines = [line for line in Path(log).read_text(errors="replace").splitlines() if line.startswith("=")]
        last = lines[-1].strip("= ") if lines else "no pytest summary"
        print(f"{label}: {last}")
        for count, what in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected)", last):
            totals[what] += int(count)
    failed = totals["failed"] + totals["errors"] + totals["error"]
    # One word and a colon before the counts: the plain closing line CI reads.
    print(f"total: {totals['passed']} passed, {failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
