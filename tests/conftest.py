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

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="siro-tests-airflow-"))
DAGS_FOLDER = AIRFLOW_HOME / "dags"
DAGS_FOLDER.mkdir()
for source in [*(ROOT / "example_dags").glob("*.py"), *(ROOT / "tests" / "dags").glob("*.py")]:
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
os.environ.pop("AIRFLOW_CONN_SIRO_DEFAULT", None)

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
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS_FOLDER))


@pytest.fixture
def run_dag(dagbag: Any) -> Iterator[Any]:
    """Run a DAG of the DAGs folder with ``dag.test()`` and return its DagRun."""

    def run(dag_id: str, conf: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        from airflow.dag_processing.dagbag import DagBag

        assert not dagbag.import_errors, dagbag.import_errors
        known = dagbag.get_dag(dag_id)
        assert known is not None, f"no DAG {dag_id!r} in {DAGS_FOLDER}"
        # dag.test() runs tasks in this process and rendering overwrites a task's templated attributes
        # with their values, so a DAG object serves one run only: parse its file afresh, as a worker
        # does for every task.
        dag = DagBag(known.fileloc).get_dag(dag_id)
        return dag.test(run_conf=conf, **kwargs)

    yield run
