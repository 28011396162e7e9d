"""The `siro` connection as Airflow itself sees it: providers manager, API server form data, CLI test."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from airflow_compat import AIRFLOW_3

UA = {"User-Agent": "siro-provider-tests"}
FORM_EXTRAS = {"org_token", "client_id", "client_secret", "user_id", "scope", "auth_host", "timeout"}
"""Extras the connection form must offer, on either Airflow."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_providers_manager_knows_the_hook_and_connection_type():
    from airflow.providers_manager import ProvidersManager

    assert "airflow-provider-siro" in ProvidersManager().providers
    if AIRFLOW_3:  # where a task's process looks hooks up
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        hook = ProvidersManagerTaskRuntime().hooks["siro"]
    else:
        hook = ProvidersManager().hooks["siro"]
    assert hook is not None
    assert hook.connection_testable
    assert hook.hook_class_name == "airflow_provider_siro.hooks.siro.SiroHook"
    assert hook.connection_id_attribute_name == "siro_conn_id"
    assert hook.hook_name == "Siro"


def test_airflow_providers_list_shows_the_provider(airflow_db: Path):
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    ).stdout
    names = {entry["package_name"] for entry in json.loads(out[out.index("[") :])}
    assert "airflow-provider-siro" in names


@pytest.mark.slow
@pytest.mark.airflow3
def test_api_server_serves_the_labelled_connection_form(airflow_db: Path):
    port = free_port()
    env = {**os.environ, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    log = (airflow_db / "api-server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow",
            "api-server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/ui/connections/hook_meta"
        deadline = time.monotonic() + 600  # a hang guard: the server is polled while it runs
        while True:
            try:
                response = requests.get(url, headers=UA, timeout=5)
                if response.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None, (airflow_db / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "API server did not answer within 600 s"
            time.sleep(0.5)
        siro = next(item for item in response.json() if item["connection_type"] == "siro")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()

    assert siro["hook_name"] == "Siro"
    standard = siro["standard_fields"]
    assert standard["host"]["title"] == "Siro API URL"
    assert standard["password"]["title"] == "Access token"
    assert "api.siro.ai" in standard["host"]["placeholder"]
    for hidden in ("login", "port", "url_schema"):
        assert standard[hidden]["hidden"] is True
    extra = siro["extra_fields"]
    assert extra["org_token"]["schema"]["title"] == "Organization API token"
    assert extra["client_secret"]["schema"]["title"] == "OAuth client secret"
    assert set(extra) >= FORM_EXTRAS
    assert extra["scope"]["schema"]["enum"] == ["write", "read"]


@pytest.mark.airflow2
def test_airflow2_web_ui_builds_the_labelled_connection_form_from_the_hook(airflow_db: Path):
    # Airflow 2's web server builds the connection form from the providers manager's widgets and
    # field behaviours (Airflow 3 reads ``conn-fields`` instead, see the API server test above).
    from airflow.providers_manager import ProvidersManager
    from wtforms import BooleanField, PasswordField, StringField

    manager = ProvidersManager()
    widgets = {
        name.removeprefix("extra__siro__"): widget
        for name, widget in manager.connection_form_widgets.items()
        if name.startswith("extra__siro__")
    }
    assert set(widgets) >= FORM_EXTRAS
    assert widgets["org_token"].field.field_class is PasswordField
    assert widgets["client_secret"].field.field_class is PasswordField
    assert widgets["client_id"].field.field_class is StringField
    assert widgets["newer_field_names"].field.field_class is BooleanField
    assert widgets["org_token"].field.args[0] == "Organization API token"
    behaviour = manager.field_behaviours["siro"]
    assert behaviour["relabeling"] == {"host": "Siro API URL", "password": "Access token"}
    assert {"login", "port", "schema"} <= set(behaviour["hidden_fields"])
    assert "api.siro.ai" in behaviour["placeholders"]["host"]


def test_airflow_connections_test_succeeds_against_the_offline_server(siro_server, airflow_db: Path):
    env = {**os.environ, "AIRFLOW_CONN_SIRO_DEFAULT": json.dumps(siro_server.connection(oauth=True))}
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "connections", "test", "siro_default"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Connection success!" in result.stdout
    # It proves the credential and names the organization, and creates and uploads nothing.
    assert [r.endpoint for r in siro_server.requests] == ["mint_token", "list_recordings", "caller_identity"]
    assert siro_server.objects == {} and siro_server.recordings == {}
    assert siro_server.client_secret not in result.stdout + result.stderr


def test_airflow_connections_test_reports_a_refused_token(siro_server, airflow_db: Path):
    conn = siro_server.connection(token="not-a-token-siro-knows")
    env = {**os.environ, "AIRFLOW_CONN_SIRO_DEFAULT": json.dumps(conn)}
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "connections", "test", "siro_default"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "Connection failed!" in result.stdout
    assert "401" in result.stdout
    assert "not-a-token-siro-knows" not in result.stdout + result.stderr
