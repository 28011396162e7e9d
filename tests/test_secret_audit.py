"""Secrets (issue 5): no access token, org token, client secret or signed-URL signature of any offline Siro
server the suite started shows up in any log line, captured output, rendered template or metadata row.

``test_no_secret_leaked_anywhere_in_the_suite`` runs last (``conftest.pytest_collection_modifyitems``)
and scans what every test before it left behind; the other tests show that the scanner and the servers'
secret ledgers work, so that its zero means something. ``tests/secret_audit.py`` says what is scanned.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
import secret_audit
from conftest import AIRFLOW_HOME, CAPTURED
from reliability_report import record
from secret_audit import CaptureLog, SecretScanner, fernet_keys_near

from airflow_provider_siro.hooks import auth
from airflow_provider_siro.testing.server import SECRETS_LEDGER_ENV, OfflineSiro

USER_AGENT = {"User-Agent": "siro-secret-audit-tests"}
KINDS = {"org_token", "client_secret", "access_token", "upload_url_signature", "download_url_signature"}


def _signature(url: str) -> str:
    return parse_qs(urlsplit(url).query)["X-Goog-Signature"][0]


# --------------------------------------------------------------------------- the servers' ledgers


def test_a_server_lists_every_secret_it_issued_even_after_it_stopped():
    with OfflineSiro(token_lifetime=0.0) as server, requests.Session() as http:
        http.headers.update(USER_AGENT)
        pasted = server.issue_access_token()
        minted = http.post(
            f"{server.auth_url}/v1/core/oauth/apps/{server.client_id}/access-token",
            json={"clientSecret": server.client_secret, "userId": server.user_id},
            headers={"Authorization": f"Bearer {server.org_token}"},
            timeout=10,
        ).json()["accessToken"]
        server.token_lifetime = 900.0
        live = server.issue_access_token()
        signed = http.post(
            f"{server.url}/v1/core/recordings/signed-urls",
            json={"fileType": "mp3", "fileSize": 3},
            headers={"x-siro-auth-token": live},
            timeout=10,
        ).json()["data"]
    expected = {
        server.org_token: "org_token",
        server.client_secret: "client_secret",
        pasted: "access_token",
        minted: "access_token",  # expired at once (token_lifetime=0): still a secret
        live: "access_token",
        _signature(signed["uploadUrl"]): "upload_url_signature",
        _signature(signed["downloadUrl"]): "download_url_signature",
    }
    assert server.issued_secret_kinds() == expected
    assert server.issued_secrets() == set(expected)
    # The process-wide registry keeps a stopped server's secrets, and so does the session's ledger file.
    registry = OfflineSiro.all_issued_secrets()
    assert expected.items() <= registry.items()
    with open(os.environ[SECRETS_LEDGER_ENV], encoding="utf-8") as ledger:
        entries = [json.loads(line) for line in ledger]
    assert expected.items() <= {(e["secret"], e["kind"]) for e in entries if e["pid"] == os.getpid()}


def test_a_server_in_a_subprocess_appends_its_secrets_to_the_session_ledger(tmp_path):
    # The conftest names the ledger in the environment; ``python -m ...server`` inherits it.
    assert os.environ[SECRETS_LEDGER_ENV].endswith("issued-secrets.jsonl")
    # The server writes its connection (here the OAuth app's) to a private file and prints where it is.
    connection_file = tmp_path / "connection.json"  # removed by the server as it stops
    process = subprocess.Popen(
        [
            sys.executable, "-m", "airflow_provider_siro.testing", "serve", "--port", "0", "--oauth",
            "--connection-file", str(connection_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        while "export AIRFLOW_CONN_SIRO_DEFAULT=" not in lines.get(timeout=20):
            pass
        oauth = json.loads(connection_file.read_text())
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
    printed = {
        oauth["extra"]["org_token"]: "org_token",
        oauth["extra"]["client_secret"]: "client_secret",
    }
    with open(os.environ[SECRETS_LEDGER_ENV], encoding="utf-8") as ledger:
        theirs = {(e["secret"], e["kind"]) for e in map(json.loads, ledger) if e["pid"] == process.pid}
    assert theirs == set(printed.items())
    assert printed.items() <= OfflineSiro.all_issued_secrets().items()


# --------------------------------------------------------------------------- the scanner


def test_the_scanner_finds_a_planted_secret_in_every_kind_of_source(tmp_path, monkeypatch):
    from cryptography.fernet import Fernet

    token = secrets.token_urlsafe(32)
    signature = secrets.token_hex(32)
    odd = "planted/client+secret=with&odd chars"  # its URL-encoded forms differ from it
    org = secrets.token_urlsafe(24)
    planted = {
        token: "access_token",
        signature: "download_url_signature",
        odd: "client_secret",
        org: "org_token",
        "short": "org_token",  # under 8 characters: not searched
    }
    home = tmp_path / "home"
    (home / "logs" / "dag_id=d").mkdir(parents=True)
    fernet_key = Fernet.generate_key().decode()
    (home / "airflow.cfg").write_text(f"[core]\nfernet_key = {fernet_key}\n")
    # A file, read in chunks smaller than a secret: the signature straddles two chunks.
    monkeypatch.setattr(secret_audit, "CHUNK", 16)
    task_log = home / "logs" / "dag_id=d" / "attempt=1.log"
    task_log.write_text(f'{{"event": "PUT https://storage/x.mp3?X-Goog-Signature={signature}&a=b"}}\n')
    (home / "clean.log").write_text("Created Siro recording rec_1 for rep@example.com\n" * 50)
    # A symlink is not followed (the DAGs folder links to the sources); its target, outside, is not scanned.
    outside = tmp_path / "outside.txt"
    outside.write_text(token)
    (home / "linked.txt").symlink_to(outside)
    # A metadata DB: credentials may live in connection and variable, nowhere else.
    database = home / "airflow.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE connection (conn_id TEXT, password TEXT, extra TEXT)")
        db.execute("INSERT INTO connection VALUES ('siro_default', ?, ?)", (token, json.dumps({"o": org})))
        db.execute("CREATE TABLE variable (key TEXT, val TEXT)")
        db.execute("INSERT INTO variable VALUES ('k', ?)", (signature,))
        db.execute("CREATE TABLE rendered_task_instance_fields (task_id TEXT, rendered_fields TEXT)")
        db.execute("INSERT INTO rendered_task_instance_fields VALUES ('t', '{\"download_url\": \"x?***\"}')")
        db.execute("INSERT INTO rendered_task_instance_fields VALUES ('t', ?)", (json.dumps({"title": org}),))
        # A run's conf and a user task's XCom hold what the user wrote: reported apart, as user input. The
        # provider's own tasks' XComs get no such pass.
        db.execute("CREATE TABLE dag_run (dag_id TEXT, run_id TEXT, conf TEXT, note TEXT)")
        db.execute("INSERT INTO dag_run VALUES ('d', 'r', ?, ?)", (json.dumps({"url": signature}), org))
        db.execute("CREATE TABLE task_instance (dag_id TEXT, run_id TEXT, task_id TEXT, operator TEXT)")
        db.execute("INSERT INTO task_instance VALUES ('d', 'r', 'urls', '_PythonDecoratedOperator')")
        db.execute("INSERT INTO task_instance VALUES ('d', 'r', 'upload', 'SiroUploadRecordingOperator')")
        db.execute("CREATE TABLE xcom (dag_id TEXT, run_id TEXT, task_id TEXT, key TEXT, value BLOB)")
        db.execute(
            "INSERT INTO xcom VALUES ('d', 'r', 'urls', 'return_value', ?)", (json.dumps([signature]),)
        )
        db.execute(
            "INSERT INTO xcom VALUES ('d', 'r', 'upload', 'return_value', ?)",
            (f"url={quote(odd, safe='')}".encode(),),
        )
        db.execute("CREATE TABLE trigger (id INTEGER, kwargs TEXT)")
        encrypted = Fernet(fernet_key.encode()).encrypt(json.dumps({"token": token}).encode()).decode()
        db.execute("INSERT INTO trigger VALUES (1, ?)", (encrypted,))
    db.close()
    # Captured output, as the conftest records it.
    captured = CaptureLog(tmp_path / "captured.jsonl")
    captured.record("tests/test_x.py::test_y [Captured log call]", f"INFO minted {token[:6]}... ok")
    captured.record("tests/test_x.py::test_y capfd [readouterr() out]", f"Authorization: Bearer {org}\n")

    scanner = SecretScanner(planted)
    scanner.scan_captured(captured.path)
    databases = scanner.scan_tree(home)
    assert databases == [database]
    for found in databases:
        scanner.scan_sqlite(found, fernet_keys_near(found))

    assert {str(hit) for hit in scanner.user_inputs} == {
        f"{database} table dag_run row 1 column conf: download_url_signature (literal)"
        " [user input: the conf of the run, as its trigger gave it]",
        f"{database} table xcom row 1 column value: download_url_signature (literal)"
        " [user input: XCom return_value of the user's task urls (_PythonDecoratedOperator)]",
    }
    assert {str(hit) for hit in scanner.leaks} == {
        f"{database} table dag_run row 1 column note: org_token (literal)",
        "captured tests/test_x.py::test_y capfd [readouterr() out]: org_token (literal)",
        f"{task_log}: download_url_signature (literal)",
        f"{database} table rendered_task_instance_fields row 2 column rendered_fields: org_token (literal)",
        f"{database} table xcom row 2 column value: client_secret (url-encoded)",
        f"{database} table trigger row 1 column kwargs (decrypted): access_token (literal)",
    }
    assert not any(value in str(hit) for hit in scanner.hits for value in planted)
    stats = scanner.stats
    assert (stats.secrets, stats.too_short, stats.texts, stats.files, stats.databases) == (4, 1, 2, 3, 1)
    assert (stats.tables, stats.rows, stats.decrypted) == (5, 8, 1)
    assert all(len(found) == 1 for found in scanner.hits.values())


@pytest.mark.parametrize("fixture", ["capsys", "capfd"])
def test_output_a_test_reads_itself_still_reaches_the_capture_log(fixture, request):
    # What readouterr() returns leaves pytest's capture, and what subprocess.run captures goes to the test
    # alone: the conftest records both on the way.
    capture = request.getfixturevalue(fixture)
    markers = [secrets.token_hex(8) for _ in range(3)]
    print(markers[0])
    assert markers[0] in capture.readouterr().out
    sys.stderr.write(markers[1])
    assert markers[1] in capture.readouterr().err
    out = subprocess.run([sys.executable, "-c", f"print('{markers[2]}')"], capture_output=True, text=True)
    assert markers[2] in out.stdout
    mine = [r for r in CAPTURED.records() if r["where"].startswith(request.node.nodeid)]
    assert [[m in r["text"] for m in markers] for r in mine] == [
        [True, False, False],  # <fixture> [readouterr() out]
        [False, True, False],  # <fixture> [readouterr() err]
        [False, False, True],  # subprocess stdout of ...
    ], [r["where"] for r in mine]


def test_the_scanner_finds_a_secret_in_plain_text_however_it_is_embedded():
    token = secrets.token_urlsafe(32)
    scanner = SecretScanner({token: "access_token"})
    assert scanner.scan_text(f"x-siro-auth-token: {token}", "header")
    assert scanner.scan_text(f"prefix{token}suffix", "glued")  # inside a longer run of token characters
    assert scanner.scan_text(json.dumps({"kwargs": {"t": token}}), "json")
    assert not scanner.scan_text(token[:-1] + "?", "truncated")
    assert not scanner.scan_text(token[:6] + "...", "abbreviated")


# --------------------------------------------------------------------------- the whole suite


def test_no_secret_leaked_anywhere_in_the_suite(
    siro_server, run_dag, monkeypatch, capfd, tmp_path, tmp_path_factory
):
    # A DAG run of its own first, so the audit means something even when it runs alone (``-k``): an
    # OAuth connection (org token, client secret, a minted access token), an upload (signed URLs), and a
    # deferred wait (a trigger row, XComs, rendered fields), all through the provider in this process.
    auth._TOKEN_CACHE.clear()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(siro_server.connection(oauth=True, retry_backoff=0.01))
    )
    audio = tmp_path / "audit-call.mp3"
    audio.write_bytes(b"ID3\x03\x00" + os.urandom(4096))
    dag_run = run_dag("siro_wait_deferrable", conf={"source_path": str(audio)})
    assert dag_run.state == "success"
    capfd.readouterr()  # into the capture log, as every test's output is

    issued = OfflineSiro.all_issued_secrets()
    used = {r.headers["x-siro-auth-token"] for r in siro_server.requests if "x-siro-auth-token" in r.headers}
    used |= {siro_server.org_token, siro_server.client_secret}
    used |= {_signature(r.json["fileUrl"]) for r in siro_server.requests if r.endpoint == "create_recording"}
    assert len(used) >= 4 and used <= issued.keys()

    scanner = SecretScanner(issued)
    scanner.scan_captured(CAPTURED.path)
    basetemp = tmp_path_factory.getbasetemp()  # every test's tmp_path, subprocess clusters' homes too
    databases = scanner.scan_tree(AIRFLOW_HOME) + scanner.scan_tree(basetemp)
    for database in databases:
        scanner.scan_sqlite(database, fernet_keys_near(database))

    stats = scanner.stats
    with open(os.environ[SECRETS_LEDGER_ENV], encoding="utf-8") as ledger:
        other_processes = {e["secret"] for e in map(json.loads, ledger) if e["pid"] != os.getpid()}
    leaks = [f"{hit} x{len(scanner.hits[hit])}" for hit in scanner.leaks]
    user_inputs = [f"{hit} x{len(scanner.hits[hit])}" for hit in scanner.user_inputs]
    summary = {
        **stats.as_dict(),
        "secrets_from_subprocess_servers": len(other_processes),
        "servers_in_this_process": len(OfflineSiro._ledgers),
        "hits": len(leaks),
        "hits_by_kind": dict(Counter(hit.kind for hit in scanner.leaks)),
        "hit_locations": leaks,
        "user_input_occurrences": len(user_inputs),
        "user_input_locations": user_inputs,
    }
    record("secrets", **summary)  # into SIRO_RELIABILITY_REPORT's file, when one is being written
    print(json.dumps(summary, indent=1))

    # Not vacuous: every kind of secret was known, and every kind of place was read.
    assert set(stats.secrets_by_kind) >= KINDS, stats.secrets_by_kind
    assert stats.texts >= 1 and stats.files >= 2 and stats.bytes >= 100_000
    assert AIRFLOW_HOME / "airflow.db" in databases
    assert stats.tables >= 30 and stats.rows >= 50, stats
    for table in ("rendered_task_instance_fields", "xcom", "trigger", "task_instance", "dag_run", "log"):
        assert stats.rows_by_table[table] >= 1, f"no row of {table} was scanned"
    assert not leaks, (
        "secrets found where they do not belong (place: kind x distinct secrets):\n" + "\n".join(leaks)
    )
