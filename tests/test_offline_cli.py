"""``siro-offline``: the offline server from a shell, and a file uploaded to it for a manual DAG run.

As a user tries the example DAG by hand: ``siro-offline serve`` in one terminal, ``siro-offline upload
call.wav`` in another, then a run of ``siro_upload_from_download_url`` with the download URL it gave.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from upload_support import return_value, write_audio

from airflow_provider_siro.testing import cli

SIRO_OFFLINE = Path(sys.executable).parent / "siro-offline"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``siro-offline serve --port 0`` running, with its own temporary directory; stopped by SIGTERM."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [str(SIRO_OFFLINE), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    assert process.stdout is not None
    while not lines or not lines[-1].startswith("  siro-offline upload"):
        line = process.stdout.readline()
        assert line, f"serve stopped: {process.stderr.read() if process.stderr else ''}"
        lines.append(line.rstrip("\n"))
    url = lines[0].split(" listening on ")[1].split(" ")[0]
    port = int(url.rsplit(":", 1)[1])
    (where,) = [line for line in lines if " is in " in line]
    connection_file = Path(where.split(" is in ", 1)[1].split(" (readable", 1)[0])
    info = {"process": process, "lines": lines, "url": url, "port": port, "env": env, "file": connection_file}
    try:
        yield info
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def test_serve_prints_where_the_connection_is_never_the_token(served: dict[str, Any], tmp_path: Path):
    path = served["file"]
    # A folder of the user's own under the temporary directory, one file per port.
    assert path == tmp_path / f"siro-offline-{os.getuid()}" / f"{served['port']}.json"
    connection = json.loads(path.read_text())
    printed = "\n".join(served["lines"])
    assert connection["host"] == served["url"]
    assert connection["password"] not in printed
    assert "password" not in printed
    assert f'export AIRFLOW_CONN_SIRO_DEFAULT="$(cat {path})"' in printed
    assert f"siro-offline upload --port {served['port']} call.wav" in printed
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    # The connection in the file works: Siro's API answers with it.
    answer = requests.post(
        f"{served['url']}/v1/core/recordings/signed-urls",
        json={"fileType": "mp3", "fileSize": 1},
        headers={"x-siro-auth-token": connection["password"], "User-Agent": "siro-provider-tests"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text

    served["process"].send_signal(signal.SIGTERM)
    assert served["process"].wait(timeout=30) == 0
    assert not path.exists()  # the credential does not outlive the server


def test_upload_then_a_manual_run_of_the_example_dag(
    served: dict[str, Any], tmp_path: Path, run_dag: Any, monkeypatch: pytest.MonkeyPatch
):
    audio = tmp_path / "call.wav"
    digest = write_audio(audio, 24_000)
    conf_file = tmp_path / "run.json"
    result = subprocess.run(
        [
            str(SIRO_OFFLINE),
            "upload",
            str(audio),
            "--port",
            str(served["port"]),
            "--conf-file",
            str(conf_file),
        ],
        capture_output=True,
        text=True,
        env=served["env"],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    conf = json.loads(conf_file.read_text())
    assert stat.S_IMODE(conf_file.stat().st_mode) == 0o600
    # The file holds a signed URL, a credential, on purpose (mode 0600, as a connection file): remove it as
    # a user would after the run, so that the suite's secrets audit finds only what leaked by accident.
    conf_file.unlink()
    assert conf["download_url"].split("?")[0] not in result.stdout + result.stderr  # no URL, no signature
    assert f'airflow dags trigger siro_upload_from_download_url --conf "$(cat {conf_file})"' in result.stdout

    # The user points siro_default at the server, as serve said, and runs the DAG with that conf.
    connection = served["file"].read_text()
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", connection)
    dag_run = run_dag("siro_upload_from_download_url", conf)

    assert dag_run.state == "success"
    recording_id = return_value(dag_run, "upload_recording")
    recordings = requests.get(f"{served['url']}/_offline/recordings", timeout=10).json()
    assert recordings[recording_id]["sha256"] == digest


def test_upload_prints_the_download_url_alone_on_stdout(siro_server: Any, tmp_path: Path):
    # The command's product is the URL a user pastes into the Trigger DAG form. It is read here the way a
    # shell's $(...) reads it, and kept out of pytest's captured output: its signature is a credential of
    # the server, which the suite's secrets audit looks for in everything pytest captures.
    connection_file = tmp_path / "connection.json"
    cli.write_private(connection_file, json.dumps(siro_server.connection()))
    audio = tmp_path / "call.mp3"
    digest = write_audio(audio, 12_345)
    out, err = io.StringIO(), io.StringIO()
    before = set(os.environ)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["upload", str(audio), "--connection-file", str(connection_file)])
    finally:
        for name in set(os.environ) - before:
            del os.environ[name]
        connection_file.unlink()  # a credential on purpose, as serve's file, which serve removes on exit
    assert code == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("http://127.0.0.1:") and "?" in lines[0]
    assert "Uploaded call.mp3 (12345 bytes)" in err.getvalue()
    assert "credential" in err.getvalue()
    (stored,) = siro_server.objects.values()
    assert stored.sha256 == digest


def test_upload_without_a_server_says_what_to_start(tmp_path: Path):
    audio = tmp_path / "call.mp3"
    write_audio(audio, 1_000)
    result = subprocess.run(
        [str(SIRO_OFFLINE), "upload", str(audio), "--port", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        timeout=60,
    )
    assert result.returncode == 2
    assert "is `siro-offline serve` running on port 1?" in result.stderr


def test_the_old_entry_point_serves_the_same_way(tmp_path: Path):
    # `make siro-server` and `python -m airflow_provider_siro.testing serve` run `siro-offline serve`.
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_siro.testing", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        second = process.stdout.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert first.startswith("Offline Siro listening on http://127.0.0.1:")
    assert "Its Airflow connection, with an access token, is in" in second
    assert process.returncode == 0
