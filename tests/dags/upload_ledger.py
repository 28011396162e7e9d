"""Test DAGs for the upload ledger: one source through the single operator, a batch through the bulk
operator. Sources, ledger and width come from the run's conf (native rendering), so one DAG serves local
folders and moto's S3 alike. Retries are on, with no delay: a retry is the ledger's business."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator, SiroUploadRecordingsOperator

RETRIES = 3


def title_of(source: str) -> dict[str, str]:
    """Each recording is titled by its file's name, so a test can match recordings to sources."""
    return {"title": os.path.basename(source)}


common = {
    "schedule": None,
    "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
    "catchup": False,
    "render_template_as_native_obj": True,
    "default_args": {"retries": RETRIES, "retry_delay": timedelta(seconds=0)},
}

# "_no_reconcile": the same with reconcile=False, the behaviour before ambiguous creates were looked up in
# Siro (a lost create fails the task and leaves the ledger entry for a person to settle); "_settle_5": a
# look-up that reads Siro's list 5 times, 50 ms apart, before it concludes that nothing was created.
VARIANTS: dict[str, dict[str, Any]] = {
    "": {},
    "_no_reconcile": {"reconcile": False},
    "_settle_5": {"reconcile_polls": 5, "reconcile_interval": 0.05},
}
for suffix, reconciling in VARIANTS.items():
    with DAG(
        dag_id=f"siro_test_ledger_single{suffix}",
        params={"source_path": None, "ledger_path": None},
        **common,
    ):
        SiroUploadRecordingOperator(
            task_id="upload",
            source_path="{{ params.source_path }}",
            source_conn_id="aws_default",
            ledger_path="{{ params.ledger_path }}",
            title="{{ params.source_path.rsplit('/', 1)[-1] }}",
            user_email="rep@example.com",
            **reconciling,
        )

    with DAG(
        dag_id=f"siro_test_ledger_bulk{suffix}",
        params={"source_paths": None, "ledger_path": None},
        **common,
    ):
        SiroUploadRecordingsOperator(
            task_id="upload_list",
            source_paths="{{ params.source_paths }}",
            source_conn_id="aws_default",
            ledger_path="{{ params.ledger_path }}",
            fields_per_source=title_of,
            user_email="rep@example.com",
            date_created="{{ data_interval_end | default(dag_run.run_after) }}",
            max_concurrency=8,
            **reconciling,
        )
