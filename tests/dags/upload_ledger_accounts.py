"""Test DAG for the ledger's destinations: one source uploaded through two Siro accounts, then through the
first account again with another (rotated) token. Connections ``siro_account_a``, ``siro_account_b`` and
``siro_account_a_rotated`` come from the test's environment."""

from __future__ import annotations

import pendulum

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow import DAG

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

with DAG(
    dag_id="siro_test_ledger_accounts",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"source_path": None, "ledger_path": None},
    render_template_as_native_obj=True,
):
    steps = [
        SiroUploadRecordingOperator(
            task_id=f"as_{name}",
            siro_conn_id=f"siro_account_{name}",
            source_path="{{ params.source_path }}",
            ledger_path="{{ params.ledger_path }}",
            title=f"call as {name}",
            user_email="rep@example.com",
        )
        for name in ("a", "b", "a_rotated")
    ]
    steps[0] >> steps[1] >> steps[2]
