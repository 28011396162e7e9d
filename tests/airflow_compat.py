"""What the tests reach into that Airflow 2.11 and 3.x keep in different places.

The provider's own differences live in :mod:`airflow_provider_siro.compat`; these are the test side's
(the DagBag, XCom rows, the secrets masker). Nothing here imports Airflow at import time: the test
harness sets up Airflow's environment first.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

AIRFLOW_VERSION = metadata.version("apache-airflow")
AIRFLOW_3 = int(AIRFLOW_VERSION.split(".", 1)[0]) >= 3
"""Read from the installed distribution, without importing Airflow (which reads its config on import)."""

AIRFLOW_3_ONLY_DAG_FILES = {"siro_asset_audio.py"}
"""DAG files that use what only Airflow 3 has (assets, ``dag_run.run_after``); not parsed on 2.11."""


def DagBag(*args: Any, **kwargs: Any) -> Any:
    """Airflow's DagBag: ``airflow.dag_processing.dagbag`` from 3.1, ``airflow.models.dagbag`` before."""
    try:
        from airflow.dag_processing.dagbag import DagBag as dagbag_class
    except ImportError:
        from airflow.models.dagbag import DagBag as dagbag_class
    return dagbag_class(*args, **kwargs)


def dag_test_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``dag.test()`` arguments for the installed Airflow: 2.11 names the date ``execution_date`` and
    knows no ``run_after`` (a run's due time is its logical date there) nor a run without a date."""
    if AIRFLOW_3:
        return kwargs
    # A second dag.test() on the same date deletes the earlier run, and with it its notes, whose table
    # refers to the web UI's users: their model must be loaded, as the web server and scheduler do.
    import airflow.providers.fab.auth_manager.models  # noqa: F401

    kwargs = dict(kwargs)
    kwargs.pop("run_after", None)
    if "logical_date" in kwargs:
        logical_date = kwargs.pop("logical_date")
        if logical_date is not None:
            kwargs["execution_date"] = logical_date
    return kwargs


def xcom_value(dag_run: Any, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    """What a downstream task would pull: the XCom value stored in the metadata DB, or None."""
    from airflow.utils.session import create_session

    with create_session() as session:
        if not AIRFLOW_3:
            from airflow.models.xcom import XCom

            return XCom.get_one(
                run_id=dag_run.run_id,
                dag_id=dag_run.dag_id,
                task_id=task_id,
                map_index=map_index,
                key=key,
                session=session,
            )
        from airflow.models.xcom import XComModel

        query = XComModel.get_many(
            run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, map_indexes=map_index, key=key
        )
        row = session.execute(query).scalars().first()
        return None if row is None else XComModel.deserialize_value(row)


def serde() -> tuple[Any, Any]:
    """``(serialize, deserialize)``: how the metadata DB stores a trigger's kwargs."""
    if AIRFLOW_3:
        from airflow.sdk.serde import deserialize, serialize
    else:
        from airflow.serialization.serde import deserialize, serialize
    return serialize, deserialize


def secrets_masker() -> tuple[Any, Any]:
    """``(redact, masker)``: the secrets masker's redact function and its process-wide instance."""
    if AIRFLOW_3:
        from airflow.sdk._shared.secrets_masker import _secrets_masker, redact
    else:
        from airflow.utils.log.secrets_masker import _secrets_masker, redact
    return redact, _secrets_masker()


def task_deferred() -> type[BaseException]:
    """The exception a task raises to defer."""
    if AIRFLOW_3:
        from airflow.sdk.exceptions import TaskDeferred
    else:
        from airflow.exceptions import TaskDeferred
    return TaskDeferred


def serialized_dag_for_run(dag_run: Any, session: Any) -> Any:
    """The DAG as the web UI / API server sees it: deserialized from the metadata DB."""
    if AIRFLOW_3:
        from airflow.models.dagbag import DBDagBag

        return DBDagBag().get_dag_for_run(dag_run, session=session)
    # Airflow 2's dag.test() stores no serialized DAG: serialize the DAG file's DAG as the DAG processor
    # would, and read it back as the web server does.
    import os

    from airflow.serialization.serialized_objects import SerializedDAG

    dag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).get_dag(dag_run.dag_id)
    return SerializedDAG.from_dict(SerializedDAG.to_dict(dag))
