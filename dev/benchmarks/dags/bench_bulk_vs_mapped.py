"""Benchmark DAGs for ``dev/bench_bulk.py``: the same files as one bulk task, or one mapped task each.

Both take ``{"source_paths": [...]}`` as conf and use the connection ``siro_default``.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator, SiroUploadRecordingsOperator

PARAMS = {"source_paths": Param(type="array", items={"type": "string"})}
START = pendulum.datetime(2026, 1, 1, tz="UTC")

with DAG(
    "siro_bench_bulk_task",
    schedule=None,
    start_date=START,
    catchup=False,
    params=PARAMS,
    render_template_as_native_obj=True,  # source_paths renders to the list itself
):
    SiroUploadRecordingsOperator(
        task_id="upload",
        source_paths="{{ params.source_paths }}",
        user_email="rep@example.com",
        fields_per_source=lambda source: {"title": os.path.basename(source)},
        max_concurrency=int(os.environ.get("SIRO_BENCH_WIDTH", "8")),
    )

with DAG("siro_bench_mapped_tasks", schedule=None, start_date=START, catchup=False, params=PARAMS):

    @task
    def source_paths(**context: Any) -> list[str]:
        return list(context["params"]["source_paths"])

    SiroUploadRecordingOperator.partial(
        task_id="upload", user_email="rep@example.com", title="bench mapped"
    ).expand(source_path=source_paths())
