"""Test DAG: a single and a bulk upload, each from the run's conf, each updating a Siro asset.

tests/test_lineage.py runs it with the OpenLineage provider's file transport, and reads the COMPLETE
events and the asset events it left.
"""

from __future__ import annotations

import pendulum

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator, SiroUploadRecordingsOperator
from airflow_provider_siro.utils.assets import siro_asset

with DAG(
    dag_id="siro_test_lineage_uploads",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    params={"source_path": None, "source_paths": None},
):
    SiroUploadRecordingOperator(
        task_id="upload",
        source_path="{{ params.source_path }}",
        source_conn_id="aws_default",
        title="single call",
        user_email="rep@example.com",
        outlets=[siro_asset("lineage-single", host="127.0.0.1")],
    )
    SiroUploadRecordingsOperator(
        task_id="upload_many",
        source_paths="{{ params.source_paths }}",
        source_conn_id="aws_default",
        title="bulk call",
        user_email="rep@example.com",
        outlets=[siro_asset("lineage-bulk", host="127.0.0.1")],
    )
