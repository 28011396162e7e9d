"""Test harness: a private Airflow home with its own SQLite metadata DB, and the offline Siro server.

Airflow reads its configuration when first imported, so the environment is set here, at collection
time, before any test module imports Airflow. The DAGs folder holds the example DAGs and the test DAGs
(``dag.test()`` in Airflow 3 runs only DAGs that come from the DAGs folder).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_compat import AIRFLOW_3, AIRFLOW_3_ONLY_DAG_FILES, DagBag, dag_test_kwargs
from secret_audit import CaptureLog

from airflow_provider_siro.testing.server import SECRETS_LEDGER_ENV

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="siro-tests-airflow-"))
DAGS_FOLDER = AIRFLOW_HOME / "dags"
DAGS_FOLDER.mkdir()
for source in [*(ROOT / "example_dags").glob("*.py"), *(ROOT / "tests" / "dags").glob("*.py")]:
    if AIRFLOW_3 or source.name not in AIRFLOW_3_ONLY_DAG_FILES:
        (DAGS_FOLDER / source.name).symlink_to(source)

os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
)
if not AIRFLOW_3:
    # Airflow 3's log lines name their logger; Airflow 2's default format does not. The tests tell the
    # provider's lines from others by the logger name, so Airflow 2 is asked for it too.
    os.environ["AIRFLOW__LOGGING__LOG_FORMAT"] = (
        "[%(asctime)s] {%(name)s:%(filename)s:%(lineno)d} %(levelname)s - %(message)s"
    )
os.environ.pop("AIRFLOW_CONN_SIRO_DEFAULT", None)

# The secrets audit (tests/test_secret_audit.py, issue 5). Outside AIRFLOW_HOME and pytest's temporary
# directory, which the audit scans: the ledger holds the secrets themselves. Every offline Siro server,
# in this process or in a subprocess (which inherits the variable), appends what it issues to the ledger;
# the capture log collects the output that never reaches a file the audit scans.
AUDIT_DIR = Path(tempfile.mkdtemp(prefix="siro-tests-secret-audit-"))
os.environ[SECRETS_LEDGER_ENV] = str(AUDIT_DIR / "issued-secrets.jsonl")
CAPTURED = CaptureLog(AUDIT_DIR / "captured.jsonl")
SECRET_AUDIT_TEST = "test_secret_audit.py::test_no_secret_leaked_anywhere_in_the_suite"
_recorded_sections: set[tuple[str, str]] = set()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The secrets audit scans what every other test left behind (output, logs, the metadata DB), so it
    runs after all of them, wherever pytest collected it."""
    items.sort(key=lambda item: item.nodeid.endswith(SECRET_AUDIT_TEST))
    # A test of what the other Airflow major version alone has is deselected (reported as such).
    other = "airflow2" if AIRFLOW_3 else "airflow3"
    deselected = [item for item in items if item.get_closest_marker(other)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker(other)]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Append each test's captured stdout, stderr and log sections, and any failure text, to the capture
    log on disk. A report carries the sections of earlier phases too: each is written once."""
    for title, text in report.sections:
        if (report.nodeid, title) not in _recorded_sections:
            _recorded_sections.add((report.nodeid, title))
            CAPTURED.record(f"{report.nodeid} [{title}]", text)
    if report.failed or report.skipped:
        CAPTURED.record(f"{report.nodeid} [{report.when} {report.outcome}]", report.longreprtext)


def _record_reads(fixture: pytest.CaptureFixture[str], where: str) -> pytest.CaptureFixture[str]:
    """What a test takes with ``readouterr()`` leaves pytest's capture, so it never reaches the report's
    sections: record it in the capture log on the way."""
    read = fixture.readouterr

    def readouterr() -> Any:
        captured = read()
        CAPTURED.record(f"{where} [readouterr() out]", captured.out)
        CAPTURED.record(f"{where} [readouterr() err]", captured.err)
        return captured

    fixture.readouterr = readouterr  # type: ignore[method-assign]
    return fixture


@pytest.fixture
def capfd(capfd: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> pytest.CaptureFixture[str]:
    """pytest's ``capfd``, with what the test reads recorded for the secrets audit."""
    return _record_reads(capfd, f"{request.node.nodeid} capfd")


@pytest.fixture
def capsys(capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> pytest.CaptureFixture[str]:
    """pytest's ``capsys``, with what the test reads recorded for the secrets audit."""
    return _record_reads(capsys, f"{request.node.nodeid} capsys")


@pytest.fixture
def caplog(
    caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> Iterator[pytest.LogCaptureFixture]:
    """pytest's ``caplog``; its records of the setup and call phases go to the capture log afterwards
    (the report's own log section has them as well, unless the test changed levels or handlers)."""
    yield caplog
    for when in ("setup", "call"):
        lines = [caplog.handler.format(record) for record in caplog.get_records(when)]
        CAPTURED.record(f"{request.node.nodeid} caplog [{when}]", "\n".join(lines))


@pytest.fixture(autouse=True)
def _record_subprocess_output(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """``subprocess.run(..., capture_output=True)`` hands a command's output to the test alone: record
    it for the secrets audit. (Output read from a ``Popen`` pipe is not recorded.)"""
    real_run = subprocess.run
    where = request.node.nodeid

    def record(args: Any, stdout: Any, stderr: Any) -> None:
        command = " ".join(str(part) for part in args) if isinstance(args, list | tuple) else str(args)
        for stream, value in (("stdout", stdout), ("stderr", stderr)):
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if value:
                CAPTURED.record(f"{where} subprocess {stream} of {command[:120]}", value)

    def run(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        try:
            result = real_run(*args, **kwargs)
        except subprocess.SubprocessError as exc:
            record(getattr(exc, "cmd", ""), getattr(exc, "stdout", None), getattr(exc, "stderr", None))
            raise
        record(result.args, result.stdout, result.stderr)
        return result

    monkeypatch.setattr(subprocess, "run", run)


@pytest.fixture(autouse=True)
def _airflow2_task_log_to_this_tests_output() -> None:
    """Airflow 2's ``dag.test()`` adds a handler to the ``airflow.task`` logger that writes to the
    ``sys.stdout`` of the test that first ran a DAG, and keeps it: drop it before each test, so that
    ``dag.test()`` adds one writing to this test's output."""
    if AIRFLOW_3:
        return
    import logging

    task_logger = logging.getLogger("airflow.task")
    for handler in list(task_logger.handlers):
        if type(handler) is logging.StreamHandler:
            task_logger.removeHandler(handler)


pytest_plugins = ["airflow_provider_siro.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the session's SQLite metadata DB once (``airflow db migrate``, as a user would)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def dagbag(airflow_db: Path) -> Any:
    """The DAGs folder parsed once; a test asserts no import errors before relying on it."""
    return DagBag(str(DAGS_FOLDER))


@pytest.fixture
def run_dag(dagbag: Any) -> Iterator[Any]:
    """Run a DAG of the DAGs folder with ``dag.test()`` and return its DagRun."""

    def run(dag_id: str, conf: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        assert not dagbag.import_errors, dagbag.import_errors
        known = dagbag.get_dag(dag_id)
        assert known is not None, f"no DAG {dag_id!r} in {DAGS_FOLDER}"
        # dag.test() runs tasks in this process and rendering overwrites a task's templated attributes
        # with their values, so a DAG object serves one run only: parse its file afresh, as a worker
        # does for every task.
        dag = DagBag(known.fileloc).get_dag(dag_id)
        return dag.test(run_conf=conf, **dag_test_kwargs(kwargs))

    yield run
