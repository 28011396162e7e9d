"""Test DAGs: a wide mapped upload paced through one of two rate-limit backends.

``siro_upload_mapped_redis_budget`` uses the connection ``siro_redis_budget`` (budget kept in Redis),
``siro_upload_mapped_local_budget`` the connection ``siro_local_budget`` (each machine's lock file); the
CeleryExecutor test defines both. Trigger with ``{"source_paths": [...]}``.
"""

from __future__ import annotations

from typing import Any

import pendulum

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

for backend in ("redis", "local"):
    with DAG(
        dag_id=f"siro_upload_mapped_{backend}_budget",
        description=f"Upload several calls, one mapped task instance each, paced by the {backend} budget",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["siro", "test"],
        params={"source_paths": Param(type="array", items={"type": "string"})},
    ):

        @task
        def source_paths(**context: Any) -> list[str]:
            return list(context["params"]["source_paths"])

        SiroUploadRecordingOperator.partial(
            task_id="upload",
            siro_conn_id=f"siro_{backend}_budget",
            user_email="rep@example.com",
            retries=0,  # a 429 is retried inside the hook; a task retry would hide a failure here
        ).expand(source_path=source_paths())
