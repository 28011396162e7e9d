"""Figures the reliability tests found, gathered for ``make reliability``'s table.

A test calls :func:`record` with what it counted; when ``SIRO_RELIABILITY_REPORT`` names a file (as
``dev/reliability.py`` sets it), the figures are merged into that JSON file under the section's name.
Without it, nothing is written: the tests assert their invariants either way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV = "SIRO_RELIABILITY_REPORT"


def record(section: str, **figures: Any) -> None:
    """Merge ``figures`` into ``section`` of the report file, if one is being written."""
    target = os.environ.get(ENV)
    if not target:
        return
    path = Path(target)
    report = json.loads(path.read_text()) if path.exists() and path.stat().st_size else {}
    report.setdefault(section, {}).update(figures)
    path.write_text(json.dumps(report, indent=2, sort_keys=True))
