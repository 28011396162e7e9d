"""Test DAGs: recording fields from ``default_args``, and the bulk operator mapped with ``partial()``.

``siro_test_default_args``: one single and one bulk upload whose recording fields all come from the
DAG's ``default_args``. ``siro_test_bulk_mapped``: the bulk operator mapped over lists of paths and
over folders, its shared fields in ``partial()``.
"""

from __future__ import annotations

import pendulum

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator, SiroUploadRecordingsOperator

with DAG(
    dag_id="siro_test_default_args",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,
    default_args={
        "user_email": "{{ params.user_email }}",
        "title": "From default_args",
        "conversation_type": "discovery",
    },
    params={"single": "", "many": [], "user_email": "rep@example.com"},
):
    SiroUploadRecordingOperator(task_id="single", source_path="{{ params.single }}")
    SiroUploadRecordingsOperator(task_id="bulk", source_paths="{{ params.many }}")


with DAG(
    dag_id="siro_test_bulk_mapped",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"lists": [], "folders": [], "user_email": "rep@example.com"},
):

    @task
    def lists(params: dict | None = None) -> list[list[str]]:
        return list((params or {})["lists"])

    @task
    def folders(params: dict | None = None) -> list[str]:
        return list((params or {})["folders"])

    SiroUploadRecordingsOperator.partial(
        task_id="by_list", user_email="{{ params.user_email }}", title="Mapped list", max_concurrency=2
    ).expand(source_paths=lists())
    SiroUploadRecordingsOperator.partial(
        task_id="by_folder", user_email="{{ params.user_email }}", title="Mapped folder", pattern="*.mp3"
    ).expand(source_folder=folders())
