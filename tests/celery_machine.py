"""The host name a CeleryExecutor test worker reports for its task instances (``[core] hostname_callable``).

The test's two Celery workers run on one machine but stand for two: each gets its own ``TMPDIR``,
``HOME`` and, through this callable, its own name in the task instances' ``hostname``.
"""

from __future__ import annotations

import os


def hostname() -> str:
    return os.environ["SIRO_TEST_MACHINE"]
