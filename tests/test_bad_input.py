"""Bad input fails the upload task on its first try, with a message naming the argument, before a single
request reaches Siro.

Each case is a real DAG run (``dag.test()``) of a test DAG whose tasks have ``retries=2``: a task that
ends ``failed`` with ``try_number == 1`` was not retried. The message is asserted whole, as the task's
log shows it. The offline server's request log shows that nothing left the machine; every connection
points at that server, so a request that did go out would be in its log.

Values arrive through the run's conf and native rendering, so a case hands the operator exactly the
value it names: an ``int``, a ``list``, a blank string. A lone surrogate cannot arrive that way (Airflow's
execution API cannot encode the run's conf to UTF-8 and the task dies before rendering), so it is
covered by ``test_payload.py`` instead.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from upload_support import endpoints, return_value, task_instances, upload_out_of_band, write_audio

CRM = [{"objectType": "Opportunity", "objectId": "006xx1"}]
PAIR = {"integration_connection_id": "conn-1"}
CRM_TYPES = "Opportunity, Account, Contact, Lead, Engagement, Event, ServiceAppointment"
NOT_RFC3339 = "is not an RFC 3339 date-time with a time zone (e.g. 2024-05-01T14:03:00Z)"


def make_source(tmp_path: Path, kind: str) -> str | None:
    """The ``source_path`` a case uploads from: a real file, or one that is wrong in some way."""
    if kind in ("mp3", "m4a"):
        write_audio(tmp_path / f"call.{kind}")
        return str(tmp_path / f"call.{kind}")
    if kind == "empty":
        (tmp_path / "call.mp3").write_bytes(b"")
        return str(tmp_path / "call.mp3")
    if kind == "directory":
        (tmp_path / "calls.mp3").mkdir()
        return str(tmp_path / "calls.mp3")
    if kind in ("ogg", "noext"):
        name = "call.ogg" if kind == "ogg" else "call"
        write_audio(tmp_path / name)
        return str(tmp_path / name)
    if kind == "missing":
        return str(tmp_path / "nowhere" / "call.mp3")
    assert kind == "none"
    return None


def output(capfd: pytest.CaptureFixture[str]) -> str:
    captured = capfd.readouterr()
    return captured.out + captured.err


def validation_errors(log: str) -> set[str]:
    """The messages of the SiroValidationErrors the task log shows (its traceback's last line)."""
    return set(re.findall(r"\bSiroValidationError: (.*)$", log, flags=re.MULTILINE))


def assert_failed_once(dag_run: Any, *task_ids: str) -> None:
    assert dag_run.state == "failed"
    tis = task_instances(dag_run)
    for task_id in task_ids:
        ti = tis[(task_id, -1)]
        assert (ti.state, ti.try_number) == ("failed", 1), task_id  # retries=2, yet not retried


def case(source: str, conf: dict[str, Any], message: str, case_id: str) -> Any:
    return pytest.param(source, conf, message, id=case_id)


@pytest.mark.parametrize(
    ("source", "conf", "message"),
    [
        # -- file types and extensions
        case(
            "mp3", {"file_type": "flac"}, "file_type: must be one of mp3, aac, wav, got 'flac'", "type-flac"
        ),
        case(
            "mp3",
            {"file_type": "wav"},
            "file_type: is 'wav' but source_path '{source}' has a .mp3 extension",
            "type-vs-ext",
        ),
        case(
            "m4a",
            {"file_type": "wav"},
            "file_type: is 'wav' but source_path '{source}' has a .m4a extension, which is aac",
            "type-vs-m4a",
        ),
        case(
            "ogg",
            {"file_type": "mp3"},
            "source_path: has extension .ogg, which does not match file_type 'mp3'",
            "ext-ogg",
        ),
        case(
            "noext",
            {},
            "file_type: is required: source_path '{source}' has no .mp3, .aac or .wav extension",
            "no-ext",
        ),
        # -- sources
        case("missing", {}, "source_path: '{source}' does not exist", "src-missing"),
        case("empty", {}, "source_path: '{source}' is empty (0 bytes)", "src-0-bytes"),
        case("directory", {}, "source_path: '{source}' is not a file", "src-dir"),
        case("none", {}, "source_path: give exactly one of download_url and source_path", "src-none"),
        case("none", {"source_path": ""}, "source_path: is empty; give the audio's path or URL", "src-blank"),
        case(
            "none",
            {"source_path": "s4://calls/call.mp3"},
            "source_path: 's4://calls/call.mp3' cannot be opened by Airflow's object storage: "
            "Unsupported filesystem: 's4'",
            "src-scheme",
        ),
        # -- wrong types, as native rendering produces them
        case("mp3", {"title": 42}, "title: must be a string, got int", "title-int"),
        case("mp3", {"user_id": ["u-1"]}, "user_id: must be a string, got list", "user_id-list"),
        case("mp3", {"user_email": True}, "user_email: must be a string, got bool", "user_email-bool"),
        case(
            "mp3",
            {"organization_id": {"id": "org-1"}},
            "organization_id: must be a string, got dict",
            "org-dict",
        ),
        case(
            "mp3", {"customer_phone": 15550102001}, "customer_phone: must be a string, got int", "phone-int"
        ),
        case(
            "mp3",
            {"integration_connection_id": 7.5, "crm_objects": CRM},
            "integration_connection_id: must be a string, got float",
            "conn-id-float",
        ),
        case("mp3", {"source_path": 42}, "source_path: must be a string, got int", "src-int"),
        # -- empty and whitespace-only strings
        case("mp3", {"title": ""}, "title: is empty; leave it unset (None) to omit it", "title-empty"),
        case(
            "mp3",
            {"customer_name": " \t "},
            "customer_name: is empty; leave it unset (None) to omit it",
            "name-blank",
        ),
        # -- the identity rule, email and phone
        case(
            "mp3",
            {"user_email": None},
            "user_id: Siro needs to know whose recording this is: set user_id, user_email or user_phone",
            "no-user",
        ),
        case(
            "mp3",
            {"user_email": "rep.example.com"},
            "user_email: 'rep.example.com' is not an email address",
            "email",
        ),
        case(
            "mp3",
            {"user_phone": "call me"},
            "user_phone: 'call me' is not a phone number (7 to 15 digits, e.g. +15551234567)",
            "phone-text",
        ),
        # -- the integration/CRM pair and the CRM objects
        case(
            "mp3",
            PAIR,
            "crm_objects: is required when integration_connection_id is set (Siro takes the two together)",
            "pair-no-crm",
        ),
        case(
            "mp3",
            {"crm_objects": CRM},
            "integration_connection_id: is required when crm_objects is set (Siro takes the two together)",
            "pair-no-conn",
        ),
        case(
            "mp3",
            {**PAIR, "crm_objects": "Opportunity:006xx1"},
            "crm_objects: must be a list of objects, got str (with a template, set render_template_as_native_obj=True)",
            "crm-str",
        ),
        case(
            "mp3",
            {**PAIR, "crm_objects": CRM[0]},
            "crm_objects: must be a list of objects, got dict",
            "crm-dict",
        ),
        case(
            "mp3",
            {**PAIR, "crm_objects": []},
            "crm_objects: is an empty list; leave it unset (None) to link no CRM objects",
            "crm-empty",
        ),
        case(
            "mp3",
            {**PAIR, "crm_objects": ["006xx1"]},
            "crm_objects[0]: must be an object, got str",
            "crm-item-str",
        ),
        case(
            "mp3",
            {**PAIR, "crm_objects": [{**CRM[0], "name": "Acme renewal"}]},
            "crm_objects[0]: has unknown keys ['name']; only objectType and objectId",
            "crm-unknown-key",
        ),
        case(
            "mp3",
            {**PAIR, "crm_objects": [{"objectType": "Deal", "objectId": "1"}]},
            f"crm_objects[0].objectType: must be one of {CRM_TYPES}, got 'Deal'",
            "crm-type",
        ),
        case(
            "mp3",
            {**PAIR, "crm_objects": [CRM[0], {"objectType": "Lead"}]},
            "crm_objects[1].objectId: is missing",
            "crm-no-id",
        ),
        case(
            "mp3",
            {**PAIR, "crm_objects": [{"objectType": "Lead", "objectId": "  "}]},
            "crm_objects[0].objectId: is empty; every CRM object needs the id of its record",
            "crm-blank-id",
        ),
        # -- dates and time zones
        case(
            "mp3",
            {"date_created": "2026-03-01 09:30"},
            f"date_created: '2026-03-01 09:30' {NOT_RFC3339}",
            "date-no-s",
        ),
        case(
            "mp3",
            {"date_created": "2026-03-01T09:30:00"},
            f"date_created: '2026-03-01T09:30:00' {NOT_RFC3339}",
            "date-naive",
        ),
        case("mp3", {"date_created": "2026-03-01"}, f"date_created: '2026-03-01' {NOT_RFC3339}", "date-only"),
        case(
            "mp3",
            {"date_created": "2026-02-30T10:00:00Z"},
            "date_created: '2026-02-30T10:00:00Z' is not a valid date-time: day is out of range for month",
            "date-feb-30",
        ),
        case(
            "mp3",
            {"date_created": "9999-12-31T23:30:00-01:00"},
            "date_created: 9999-12-31T23:30:00-01:00 is outside the years 1 to 9999 in UTC",
            "date-year-10000",
        ),
        case(
            "mp3",
            {"date_created": "last Tuesday 3pm"},
            f"date_created: 'last Tuesday 3pm' {NOT_RFC3339}",
            "date-garbage",
        ),
        case(
            "mp3",
            {"date_created": 1772357400},
            "date_created: must be a datetime or an RFC 3339 string, got int",
            "date-epoch",
        ),
        # -- unrendered Jinja, huge strings, odd Unicode
        case(
            "mp3",
            {"title": "Call {{ params.missing }"},
            "title: contains an unrendered Jinja expression ('{{', '{%' or '{#')",
            "jinja-title",
        ),
        case(
            "none",
            {"source_path": "/data/calls/{{ ds }}/call.mp3"},
            "source_path: contains an unrendered Jinja expression ('{{', '{%' or '{#')",
            "jinja-src",
        ),
        case("mp3", {"title": "x" * 2049}, "title: is 2049 characters long; at most 2048", "huge-title"),
        case(
            "mp3",
            {"customer_name": "Ada\x00Lovelace"},
            "customer_name: contains the character U+0000 (Cc), which is not printable text",
            "nul",
        ),
        case(
            "mp3",
            {"title": "Renewal for \u202efdp.exe"},
            "title: contains the character U+202E (RIGHT-TO-LEFT OVERRIDE), which reorders how the text after "
            "it is displayed",
            "bidi-override",
        ),
    ],
)
def test_bad_value_fails_on_the_first_try_with_its_name_and_sends_nothing(
    siro_server, siro_connection, run_dag, tmp_path, capfd, source, conf, message
):
    conf = {"source_path": make_source(tmp_path, source), "user_email": "ae@acme.io", **conf}
    output(capfd)

    dag_run = run_dag("siro_test_upload_params", conf)

    assert_failed_once(dag_run, "upload")
    log = output(capfd)
    assert validation_errors(log) == {message.replace("{source}", str(conf["source_path"]))}, log[-4000:]
    assert siro_server.requests == []


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        pytest.param(
            {"download_url": 42},
            "download_url: must be a string, got int",
            id="url-int",
        ),
        pytest.param(
            {"download_url": "https://storage.example/uploads/7f3a9c"},
            "file_type: is required: download_url has no .mp3, .aac or .wav extension to infer it from",
            id="url-no-type",
        ),
        pytest.param(
            {"call_started": "2026-03-01T09:30:00"},
            "date_created: 2026-03-01 09:30:00 has no time zone; give an offset or use UTC",
            id="naive-datetime",
        ),
    ],
)
def test_bad_download_url_or_datetime_object_fails_on_the_first_try(
    siro_server, siro_connection, run_dag, capfd, conf, message
):
    output(capfd)

    dag_run = run_dag("siro_test_upload_url_params", conf)

    assert_failed_once(dag_run, "upload")
    log = output(capfd)
    assert validation_errors(log) == {message}, log[-4000:]
    assert siro_server.requests == []


def test_a_download_url_that_is_not_http_fails_both_tasks_and_sends_nothing(
    siro_server, siro_connection, run_dag, capfd
):
    output(capfd)

    dag_run = run_dag("siro_test_upload_templated", {"download_url": "gs://siro-uploads/call.wav"})

    assert_failed_once(dag_run, "from_url", "dated_by_logical_date")
    assert validation_errors(output(capfd)) == {"download_url: must be an absolute http(s) URL"}
    assert siro_server.requests == []


def test_a_bad_value_inside_a_templated_list_is_caught_after_rendering(
    siro_server, siro_connection, run_dag, capfd
):
    download_url = upload_out_of_band(siro_server, os.urandom(8_000))
    output(capfd)

    dag_run = run_dag(
        "siro_test_upload_templated",
        {
            "download_url": download_url,
            "integration_connection_id": siro_server.integration_connection_id,
            "object_type": "Deal",  # rendered into crm_objects[0].objectType
        },
    )

    assert_failed_once(dag_run, "from_url")
    assert validation_errors(output(capfd)) == {
        f"crm_objects[0].objectType: must be one of {CRM_TYPES}, got 'Deal'"
    }
    # Only the other task, which has no CRM objects, reached Siro.
    assert task_instances(dag_run)[("dated_by_logical_date", -1)].state == "success"
    assert endpoints(siro_server) == ["create_recording"]
    (recording,) = siro_server.recordings.values()
    assert recording.id == return_value(dag_run, "dated_by_logical_date")
    assert "crmObjects" not in recording.body


def test_names_in_any_script_and_emoji_are_text_not_bad_input(
    siro_server, siro_connection, run_dag, tmp_path
):
    """The other side of the Unicode rules: accents, right-to-left names, emoji sequences (joined by
    U+200D) and emoji newer than this Python's Unicode database (U+1FAE8, Unicode 15) all go through."""
    text = {
        "title": "Discovery call 🫨 with José Müller — 👩\u200d💼 Ürün demosu",
        "customer_name": "\u200fשירה כהן",  # noqa: RUF001 - a Hebrew name, after a right-to-left mark
        "conversation_type": "Découverte",
    }
    dag_run = run_dag(
        "siro_test_upload_params",
        {"source_path": make_source(tmp_path, "mp3"), "user_email": "ae@acme.io", **text},
    )

    assert dag_run.state == "success"
    (recording,) = siro_server.recordings.values()
    assert {key: recording.body[key] for key in ("title", "contactName", "conversationType")} == {
        "title": text["title"],
        "contactName": text["customer_name"],
        "conversationType": text["conversation_type"],
    }


# ------------------------------------------------------------------------------------------ connections
def _without_password(conn: dict[str, Any], server: Any) -> dict[str, Any]:
    conn.pop("password")
    return conn


def _with_pasted_token(conn: dict[str, Any], server: Any) -> dict[str, Any]:
    return {**conn, "password": server.issue_access_token()}


def _plain_http_remote_host(conn: dict[str, Any], server: Any) -> dict[str, Any]:
    return {**conn, "host": f"http://siro.example.com:{server.port}"}


@pytest.mark.parametrize(
    ("oauth", "extras", "change", "message"),
    [
        pytest.param(
            False,
            {},
            _without_password,
            "siro_default: has no access token (password) and cannot mint one: missing extra org_token, "
            "client_id, client_secret, user_id",
            id="no-credentials",
        ),
        pytest.param(
            True,
            {"client_secret": ""},  # the connection form sends an emptied field as ""
            None,
            "siro_default: has no access token (password) and cannot mint one: missing extra client_secret",
            id="oauth-incomplete",
        ),
        pytest.param(
            True,
            {"org_token": None, "client_secret": None},
            _with_pasted_token,
            "siro_default: has both an access token (password) and OAuth app extras (client_id, user_id): "
            "give one or the other",
            id="token-and-oauth",
        ),
        pytest.param(
            False,
            {"timeout": "abc"},
            None,
            "siro_default.extra.timeout: must be a number, got 'abc'",
            id="timeout-abc",
        ),
        pytest.param(
            True,
            {"scope": "admin"},
            None,
            "siro_default.extra.scope: must be read or write, got 'admin'",
            id="scope-admin",
        ),
        pytest.param(
            True,
            {"scope": "read"},
            None,
            "siro_default.extra.scope: is 'read', but uploads need 'write'",
            id="scope-read",
        ),
        pytest.param(
            False,
            {},
            _plain_http_remote_host,
            "siro_default.host: uses plain http:// to siro.example.com, which would send credentials "
            "unencrypted; use https:// or set the extra allow_insecure_http to true",
            id="http-remote-host",
        ),
    ],
)
def test_a_broken_connection_fails_on_the_first_try_and_sends_nothing(
    siro_server, run_dag, tmp_path, capfd, monkeypatch, oauth, extras, change, message
):
    conn = siro_server.connection(oauth=oauth, retry_backoff=0.01, **extras)
    conn["extra"] = {key: value for key, value in conn.get("extra", {}).items() if value is not None}
    if change is not None:
        conn = change(conn, siro_server)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    # siro.example.com resolves to the offline server, here and nowhere else: were the plain-http host let
    # through, its request would land in the server's log instead of leaving the machine.
    resolve = socket.getaddrinfo

    def offline_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        return resolve("127.0.0.1" if host == "siro.example.com" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", offline_dns)
    source_path = make_source(tmp_path, "mp3")
    output(capfd)

    dag_run = run_dag("siro_test_upload_params", {"source_path": source_path, "user_email": "ae@acme.io"})

    assert_failed_once(dag_run, "upload")
    log = output(capfd)
    assert validation_errors(log) == {message}, log[-4000:]
    assert siro_server.requests == []
