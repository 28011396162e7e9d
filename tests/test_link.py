"""SiroRecordingLink: the "Siro recording" extra link, resolved as Airflow 3 resolves it.

In Airflow 3 the worker computes a task's extra links when the task instance finishes and stores them in
XCom; the API server (the UI) reads them back through the serialized DAG. These tests run real DAGs
with ``dag.test()`` and then read the links both ways.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests
from airflow_compat import AIRFLOW_3, serialized_dag_for_run, xcom_value

from airflow_provider_siro.hooks import auth
from airflow_provider_siro.hooks.siro import SiroHook
from airflow_provider_siro.links.siro import SiroRecordingLink
from airflow_provider_siro.payload import validate_recording_fields
from airflow_provider_siro.sensors.siro import SiroRecordingSensor

AUDIO = b"ID3\x03\x00" + bytes(range(256)) * 8
APP_URL = "https://siro.example.test/app"


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    auth._TOKEN_CACHE.clear()
    yield
    auth._TOKEN_CACHE.clear()


@pytest.fixture
def app_url_connection(siro_server, monkeypatch) -> dict[str, Any]:
    """``siro_default`` with its own ``app_url``, as a company on a dedicated Siro tenant would set it."""
    conn = siro_server.connection(retry_backoff=0.01, app_url=APP_URL + "/")
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    return conn


def create_recording(title: str) -> str:
    hook = SiroHook()
    download_url = hook.upload_audio(lambda: io.BytesIO(AUDIO), len(AUDIO), "mp3", label="call.mp3")
    return hook.create_recording(
        download_url, validate_recording_fields("mp3", user_email="rep@example.com", title=title)
    )


def xcom(dag_run: Any, task_id: str, key: str, map_index: int = -1) -> Any:
    return xcom_value(dag_run, task_id, key, map_index)


def ui_links(dag_run: Any, task_id: str) -> dict[int, dict[str, str | None]]:
    """Each task instance's extra links as the API server computes them: from the serialized DAG."""
    from airflow.utils.session import create_session

    with create_session() as session:
        dag = serialized_dag_for_run(dag_run, session)
        task = dag.get_task(task_id)
        return {
            ti.map_index: {name: task.get_extra_links(ti, name) or None for name in task.extra_links}
            for ti in dag_run.get_task_instances(session=session)
            if ti.task_id == task_id
        }


def test_each_mapped_sensor_links_to_its_own_recording(run_dag, app_url_connection, capfd):
    recording_ids = [create_recording(f"Call {n}") for n in range(3)]
    capfd.readouterr()

    dag_run = run_dag("siro_sensor_mapped", conf={"recording_ids": recording_ids})

    assert dag_run.state == "success"
    expected = {index: f"{APP_URL}/recordings/{rid}" for index, rid in enumerate(recording_ids)}
    assert {index: links["Siro recording"] for index, links in ui_links(dag_run, "wait").items()} == expected
    for index, url in expected.items():
        assert xcom(dag_run, "wait", "siro_recording_id", index) == recording_ids[index]
        if AIRFLOW_3:  # Airflow 3's worker resolves the link when the task finishes, for the UI
            assert xcom(dag_run, "wait", "_link_SiroRecordingLink", index) == url
    # The same URL is in each task instance's log.
    output = capfd.readouterr().out
    for index, url in expected.items():
        assert f"Siro recording {recording_ids[index]}: {url}" in output


def test_each_mapped_upload_links_to_the_recording_it_created(run_dag, app_url_connection, tmp_path, capfd):
    paths = []
    for n in range(2):
        path = tmp_path / f"call-{n}.mp3"
        path.write_bytes(AUDIO + bytes([n]))
        paths.append(str(path))
    capfd.readouterr()

    dag_run = run_dag("siro_upload_mapped", conf={"source_paths": paths})

    assert dag_run.state == "success"
    created = {index: xcom(dag_run, "upload", "return_value", index) for index in range(2)}
    assert len(set(created.values())) == 2
    expected = {index: f"{APP_URL}/recordings/{rid}" for index, rid in created.items()}
    assert {
        index: links["Siro recording"] for index, links in ui_links(dag_run, "upload").items()
    } == expected
    output = capfd.readouterr().out
    for index, url in expected.items():
        assert f"Siro recording {created[index]}: {url}" in output


def test_against_the_offline_server_the_link_opens_its_own_page_of_the_recording(
    run_dag, siro_server, siro_connection
):
    recording_id = create_recording("Offline page")

    dag_run = run_dag("siro_sensor_poke", conf={"recording_id": recording_id})

    link = ui_links(dag_run, "wait")[-1]["Siro recording"]
    assert link == f"{siro_server.url}/_offline/recordings/{recording_id}"
    page = requests.get(link, timeout=10)  # what a click opens
    assert page.status_code == 200
    assert page.json()["id"] == recording_id and page.json()["title"] == "Offline page"


def test_a_connection_to_siro_links_to_the_web_app_by_default(siro_server, monkeypatch):
    from airflow_provider_siro.links.siro import recording_page

    # The same connection, aimed at Siro itself (nothing is sent: the link needs no request).
    conn = {**siro_server.connection(), "host": "https://api.siro.ai"}
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))

    assert recording_page(SiroHook(), "rec-1") == "https://app.siro.ai/recordings/rec-1"
    assert siro_server.requests == []


def test_a_task_that_never_named_a_recording_shows_no_link(run_dag, siro_server, siro_connection):
    dag_run = run_dag("siro_sensor_poke", conf={"recording_id": ""})

    assert dag_run.state == "failed"
    assert ui_links(dag_run, "wait") == {-1: {"Siro recording": None}}


def test_the_recording_id_is_escaped_into_one_path_segment(siro_server, siro_connection):
    assert SiroHook().recording_url("a/b c?d") == "https://app.siro.ai/recordings/a%2Fb%20c%3Fd"


def test_the_sensor_and_the_upload_operator_declare_the_link():
    from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

    for operator in (SiroRecordingSensor, SiroUploadRecordingOperator):
        assert [link.name for link in operator.operator_extra_links] == ["Siro recording"]
    if AIRFLOW_3:  # where Airflow 3's worker stores the resolved link for the UI
        assert SiroRecordingLink().xcom_key == "_link_SiroRecordingLink"


def test_the_provider_registers_its_sensor_trigger_and_link():
    """Airflow's providers manager loads the provider's metadata (and validates it against its schema)."""
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-siro" in manager.providers
    assert "airflow_provider_siro.links.siro.SiroRecordingLink" in manager.extra_links_class_names
    assert [
        (t.trigger_class_name, t.package_name) for t in manager.trigger if t.integration_name == "Siro"
    ] == [("airflow_provider_siro.triggers.siro", "airflow-provider-siro")]
    from airflow_provider_siro.get_provider_info import get_provider_info

    info = get_provider_info()
    assert info["sensors"] == [
        {"integration-name": "Siro", "python-modules": ["airflow_provider_siro.sensors.siro"]}
    ]
    assert info["triggers"] == [
        {"integration-name": "Siro", "python-modules": ["airflow_provider_siro.triggers.siro"]}
    ]
