"""Test DAGs: only the sensor, for a recording ID given in the run's conf, with a short timeout.

``siro_sensor_poke``, ``siro_sensor_reschedule`` and ``siro_sensor_deferrable`` exercise the ways a
wait can end badly (Siro reports an error, the recording is gone, the timeout runs out).
``siro_sensor_mapped`` waits for several recordings at once, one mapped task instance each.

The sensors may retry twice, at once: a test that sees one try only knows the failure was final.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum

try:
    from airflow.sdk import DAG, Param, task
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models.param import Param

from airflow_provider_siro.sensors.siro import SiroRecordingSensor

TIMEOUT = 3.0
"""Seconds the sensors wait: long enough for a few polls, short enough for a test of the timeout."""

for mode in ("poke", "reschedule", "deferrable"):
    with DAG(
        dag_id=f"siro_sensor_{mode}",
        description=f"Wait for one Siro recording ({mode}), at most {TIMEOUT:.0f} s",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["siro", "test"],
        params={"recording_id": Param(type="string")},
        default_args={"retries": 2, "retry_delay": timedelta(0)},
    ):
        SiroRecordingSensor(
            task_id="wait",
            recording_id="{{ params.recording_id }}",
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
            poke_interval=0.5,
            timeout=TIMEOUT,
        )

with DAG(
    dag_id="siro_sensor_mapped",
    description="Wait for several Siro recordings, one mapped sensor each",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["siro", "test"],
    params={"recording_ids": Param(type="array", items={"type": "string"})},
):

    @task
    def recording_ids(**context: object) -> list[str]:
        return list(context["params"]["recording_ids"])  # type: ignore[index]

    SiroRecordingSensor.partial(task_id="wait", poke_interval=0.2, timeout=300).expand(
        recording_id=recording_ids()
    )
