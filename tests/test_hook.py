"""SiroHook against the offline Siro server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow_compat import secrets_masker

from airflow_provider_siro.exceptions import (
    SiroAmbiguousCreateError,
    SiroApiError,
    SiroRejectedError,
    SiroValidationError,
)
from airflow_provider_siro.hooks import auth, redaction
from airflow_provider_siro.hooks import siro as siro_hook_module
from airflow_provider_siro.hooks.siro import SiroHook
from airflow_provider_siro.payload import validate_recording_fields

AUDIO = b"ID3\x03\x00" + bytes(range(256)) * 64


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    auth._TOKEN_CACHE.clear()
    siro_hook_module._NEGOTIATED.clear()
    yield
    auth._TOKEN_CACHE.clear()
    siro_hook_module._NEGOTIATED.clear()


def use_connection(monkeypatch, server, **kwargs: Any) -> dict[str, Any]:
    extras = {"retry_backoff": 0.01, **kwargs.pop("extras", {})}
    conn = server.connection(**kwargs, **extras)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    return conn


def upload_and_create(hook: SiroHook, audio: bytes = AUDIO, **fields: Any) -> str:
    download_url = hook.upload_audio(lambda: _BytesOpener(audio), len(audio), "mp3", label="test.mp3")
    return hook.create_recording(
        download_url, validate_recording_fields("mp3", **{"user_email": "rep@example.com", **fields})
    )


class _BytesOpener:
    """A context-managed binary stream, like open(path, 'rb')."""

    def __init__(self, data: bytes) -> None:
        import io

        self._io = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._io.read(n)

    def __enter__(self) -> _BytesOpener:
        return self

    def __exit__(self, *exc: object) -> None:
        self._io.close()


def endpoints(server) -> list[str]:
    return [r.endpoint for r in server.requests]


# --------------------------------------------------------------------------- tokens


def test_pasted_token_uploads_and_creates(siro_server, monkeypatch):
    conn = use_connection(monkeypatch, siro_server)
    hook = SiroHook()
    recording_id = upload_and_create(hook, title="Pasted token")

    recording = siro_server.recordings[recording_id]
    assert recording.body["title"] == "Pasted token"
    assert recording.size == len(AUDIO)
    import hashlib

    assert recording.sha256 == hashlib.sha256(AUDIO).hexdigest()
    assert endpoints(siro_server) == ["signed_urls", "upload_put", "create_recording"]
    signed, put, create = siro_server.requests
    assert signed.headers["x-siro-auth-token"] == conn["password"]
    assert create.headers["x-siro-auth-token"] == conn["password"]
    # The storage URL gets no Siro credential: its own query string is the credential.
    assert "x-siro-auth-token" not in {k.lower() for k in put.headers}
    assert "authorization" not in {k.lower() for k in put.headers}
    for request in siro_server.requests:
        assert request.headers["User-Agent"].startswith("airflow-provider-siro/")


def test_minted_token_is_reused_across_calls_and_hooks(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, oauth=True)
    first = upload_and_create(SiroHook())
    second = upload_and_create(SiroHook())
    assert first != second
    assert endpoints(siro_server).count("mint_token") == 1
    mint = siro_server.requests[0]
    assert mint.headers["Authorization"] == f"Bearer {siro_server.org_token}"
    assert mint.json == {
        "clientSecret": siro_server.client_secret,
        "userId": siro_server.user_id,
        "scope": "write",
    }


def test_minted_token_is_replaced_before_it_expires(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, oauth=True)
    # Pretend tokens live just past the refresh margin, so the cached one is already "due".
    monkeypatch.setattr(auth, "TOKEN_LIFETIME", auth.TOKEN_REFRESH_MARGIN)
    hook = SiroHook()
    hook.get_signed_urls("mp3", 10)
    hook.get_signed_urls("mp3", 10)
    assert endpoints(siro_server).count("mint_token") == 2
    assert all(r.status == 200 for r in siro_server.requests if r.endpoint == "signed_urls")


def test_minted_token_refreshed_once_on_401(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, oauth=True)
    hook = SiroHook()
    hook.get_signed_urls("mp3", 10)
    siro_server.expire_tokens()
    hook.get_signed_urls("mp3", 10)
    assert endpoints(siro_server) == ["mint_token", "signed_urls", "signed_urls", "mint_token", "signed_urls"]
    assert [r.status for r in siro_server.requests if r.endpoint == "signed_urls"] == [200, 401, 200]


def test_pasted_token_401_is_a_clear_error_without_the_token(siro_server, monkeypatch):
    conn = use_connection(monkeypatch, siro_server)
    siro_server.expire_tokens()
    with pytest.raises(SiroRejectedError) as info:
        SiroHook().get_signed_urls("mp3", 10)
    message = str(info.value)
    assert "401" in message
    assert "password" in message and "16 hours" in message
    assert conn["password"] not in message
    assert endpoints(siro_server) == ["signed_urls"]  # no mint, no blind retry


def test_oauth_connection_missing_extras_fails_before_any_request(siro_server, monkeypatch):
    conn = siro_server.connection(oauth=True)
    del conn["extra"]["client_secret"]
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    with pytest.raises(SiroValidationError, match="client_secret"):
        SiroHook().get_signed_urls("mp3", 10)
    assert siro_server.requests == []


def test_a_pasted_token_with_oauth_extras_is_contradictory(siro_server, monkeypatch):
    conn = siro_server.connection(org_token=siro_server.org_token, user_id=siro_server.user_id)
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    with pytest.raises(SiroValidationError) as info:
        SiroHook().get_signed_urls("mp3", 10)
    assert str(info.value) == (
        "siro_default: has both an access token (password) and OAuth app extras (org_token, user_id): "
        "give one or the other"
    )
    assert siro_server.requests == []
    # Fields the connection form sent back empty are not given: the pasted token alone is used.
    conn["extra"] = dict.fromkeys(("org_token", "client_id", "client_secret", "user_id"), "")
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    assert not SiroHook().settings.uses_oauth


def test_a_pasted_token_loses_surrounding_whitespace_and_a_blank_one_is_none(siro_server, monkeypatch):
    conn = siro_server.connection(retry_backoff=0.01)
    token = conn["password"]
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps({**conn, "password": f" {token}\n"}))
    hook = SiroHook()
    assert hook.settings.access_token == token
    hook.get_signed_urls("mp3", 10)
    assert [r.headers["x-siro-auth-token"] for r in siro_server.requests] == [token]
    siro_server.clear_requests()
    # Sent as it is, "  " would be refused by requests as a header value and retried as a network error.
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps({**conn, "password": "  "}))
    with pytest.raises(SiroValidationError, match=r"^siro_default: has no access token \(password\)"):
        SiroHook().get_signed_urls("mp3", 10)
    assert siro_server.requests == []


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_statuses_are_retried(siro_server, monkeypatch, status):
    use_connection(monkeypatch, siro_server)
    siro_server.add_fault("signed_urls", status=status, times=2)
    signed = SiroHook().get_signed_urls("wav", 100)
    assert signed.upload_headers["Content-Type"] == "audio/wav"
    assert [r.status for r in siro_server.requests] == [status, status, 200]


def test_retry_budget_is_respected(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, extras={"max_retries": 2})
    siro_server.add_fault("signed_urls", status=503, times=None)
    with pytest.raises(SiroApiError) as info:
        SiroHook().get_signed_urls("mp3", 100)
    assert info.value.status_code == 503
    assert len(siro_server.requests) == 3


def test_retry_after_is_honoured(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    siro_server.add_fault("signed_urls", status=429, retry_after=1)
    SiroHook().get_signed_urls("mp3", 100)
    first, second = siro_server.requests
    assert first.status == 429 and second.status == 200
    # retry_backoff is 0.01 s in these tests, so only Retry-After explains a wait of a second.
    assert second.time - first.time >= 0.9


def test_connection_drop_is_retried_for_safe_calls(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    siro_server.add_fault("signed_urls", drop="before")
    SiroHook().get_signed_urls("mp3", 100)
    assert [r.status for r in siro_server.requests] == [None, 200]


def test_failed_put_restarts_from_the_first_byte(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    siro_server.add_fault("upload_put", drop="mid")
    recording_id = upload_and_create(SiroHook())
    import hashlib

    assert siro_server.recordings[recording_id].sha256 == hashlib.sha256(AUDIO).hexdigest()
    puts = [r for r in siro_server.requests if r.endpoint == "upload_put"]
    assert len(puts) == 2 and puts[-1].body_size == len(AUDIO)


def test_expired_signed_url_is_replaced(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    hook = SiroHook()
    original = hook.get_signed_urls

    def sign_then_expire(file_type: str, file_size: int):
        signed = original(file_type, file_size)
        siro_server.expire_signed_urls()  # expires between signing and the PUT
        hook.get_signed_urls = original  # only the first one
        return signed

    hook.get_signed_urls = sign_then_expire
    recording_id = upload_and_create(hook)
    assert recording_id in siro_server.recordings
    assert [(r.endpoint, r.status) for r in siro_server.requests] == [
        ("signed_urls", 200),
        ("upload_put", 400),
        ("signed_urls", 200),
        ("upload_put", 200),
        ("create_recording", 201),
    ]


# --------------------------------------------------------------------------- no duplicates


@pytest.mark.parametrize(
    ("fault", "recordings_after"),
    [
        ({"status": 500, "acted": True}, 1),
        ({"status": 502, "acted": True}, 1),
        ({"status": 504, "acted": True}, 1),
        ({"status": 503}, 0),
        ({"drop": "after"}, 1),
        ({"drop": "before"}, 0),
    ],
)
def test_create_is_never_repeated_when_siro_may_have_acted(siro_server, monkeypatch, fault, recordings_after):
    use_connection(monkeypatch, siro_server)
    siro_server.add_fault("create_recording", **fault)
    with pytest.raises(SiroAmbiguousCreateError) as info:
        upload_and_create(SiroHook())
    assert "may or may not exist" in str(info.value)
    assert endpoints(siro_server).count("create_recording") == 1
    assert len(siro_server.recordings) == recordings_after


@pytest.mark.parametrize(("status", "retry_after"), [(429, None), (429, 0), (503, 0)])
def test_create_is_retried_after_a_refusal(siro_server, monkeypatch, status, retry_after):
    use_connection(monkeypatch, siro_server)
    siro_server.add_fault("create_recording", status=status, retry_after=retry_after)
    recording_id = upload_and_create(SiroHook())
    assert list(siro_server.recordings) == [recording_id]
    assert [r.status for r in siro_server.requests if r.endpoint == "create_recording"] == [status, 201]


def test_create_is_retried_when_the_connection_was_never_made(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, extras={"max_retries": 1})
    hook = SiroHook()
    download_url = hook.upload_audio(lambda: _BytesOpener(AUDIO), len(AUDIO), "mp3")
    siro_server.stop()
    with pytest.raises(SiroApiError) as info:
        hook.create_recording(download_url, validate_recording_fields("mp3", user_id="u1"))
    assert not isinstance(info.value, SiroAmbiguousCreateError)
    assert "2 attempts" in str(info.value)


# --------------------------------------------------------------------------- errors


def test_422_lists_each_zod_issue(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    hook = SiroHook()
    download_url = hook.upload_audio(lambda: _BytesOpener(AUDIO), len(AUDIO), "mp3")
    fields = validate_recording_fields("mp3", user_id="u1")
    # Bypass the provider's own validation to see how a server-side 422 is reported.
    object.__setattr__(
        fields, "values", {**fields.values, "crm_objects": [{"objectType": "Planet", "objectId": ""}]}
    )
    with pytest.raises(SiroRejectedError) as info:
        hook.create_recording(download_url, fields)
    assert info.value.status_code == 422
    message = str(info.value)
    assert "POST /v1/core/recordings/upload returned 422" in message
    assert "crmObjects.0.objectType" in message
    assert "?" not in message  # no signed URL query string


def test_server_error_message_is_surfaced(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    with pytest.raises(SiroRejectedError) as info:
        SiroHook().get_recording("does-not-exist")
    assert info.value.status_code == 404
    assert "Recording not found" in str(info.value)


def test_plain_http_to_a_remote_host_is_refused(siro_server, monkeypatch):
    conn = siro_server.connection()
    conn["host"] = "http://siro.example.com"
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    with pytest.raises(SiroValidationError, match=r"siro_default\.host: uses plain http://"):
        SiroHook().get_signed_urls("mp3", 1)
    conn["extra"] = {"allow_insecure_http": True}
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", json.dumps(conn))
    assert SiroHook().settings.api_url == "http://siro.example.com"


def test_uri_form_connection(siro_server, monkeypatch):
    token = siro_server.issue_access_token()
    host_port = siro_server.url.removeprefix("http://")
    monkeypatch.setenv("AIRFLOW_CONN_SIRO_DEFAULT", f"siro://:{token}@{host_port}/http?retry_backoff=0.01")
    hook = SiroHook()
    assert hook.settings.api_url == siro_server.url
    assert hook.get_signed_urls("aac", 5).upload_headers["Content-Type"] == "audio/aac"


def test_newer_field_names_still_works_with_a_deprecation_warning(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, extras={"newer_field_names": True})
    hook = SiroHook()
    with pytest.warns(
        DeprecationWarning, match="newer_field_names is deprecated; it now means api_fields='current'"
    ):
        assert hook.settings.api_fields == "current"
    recording_id = upload_and_create(hook, customer_name="Ada", customer_phone="+15551234567")
    body = siro_server.recordings[recording_id].body
    assert "fileUrl" in body and "downloadUrl" not in body
    assert body["contactName"] == "Ada" and body["contactPhone"] == "+15551234567"
    assert "customerName" not in body


def test_newer_field_names_false_pins_the_original_names(monkeypatch):
    from airflow_provider_siro.testing import OfflineSiro

    with OfflineSiro(api="original") as server:
        use_connection(monkeypatch, server, extras={"newer_field_names": "false"})
        hook = SiroHook()
        with pytest.warns(DeprecationWarning, match="api_fields='original'"):
            recording_id = upload_and_create(hook, customer_name="Ada")
        assert server.recordings[recording_id].body["customerName"] == "Ada"
        assert [r.status for r in server.requests if r.endpoint == "create_recording"] == [201]


@pytest.mark.parametrize(
    ("extras", "field", "problem"),
    [
        ({"api_fields": "newest"}, "siro_default.extra.api_fields", "must be one of auto, current, original"),
        (
            {"api_fields": "original", "newer_field_names": True},
            "siro_default.extra.newer_field_names",
            "says current field names but api_fields says original",
        ),
    ],
)
def test_bad_api_fields_are_named(siro_server, monkeypatch, extras, field, problem):
    use_connection(monkeypatch, siro_server, extras=extras)
    with pytest.raises(SiroValidationError, match=re.escape(f"{field}: ") + ".*" + re.escape(problem)):
        _ = SiroHook().settings
    assert siro_server.requests == []


# --------------------------------------------------------------------------- both wire formats


def creates(server) -> list[int | None]:
    return [r.status for r in server.requests if r.endpoint == "create_recording"]


@pytest.mark.parametrize("api_fields", [None, "auto", "current"])
def test_current_names_against_a_current_siro_take_one_call(siro_server, monkeypatch, api_fields):
    use_connection(monkeypatch, siro_server, extras={"api_fields": api_fields} if api_fields else {})
    recording_id = upload_and_create(SiroHook(), customer_name="Ada", discoverable=True, result="in progress")
    assert creates(siro_server) == [201]
    body = siro_server.recordings[recording_id].body
    assert {k: body[k] for k in ("contactName", "discoverable", "result")} == {
        "contactName": "Ada",
        "discoverable": True,
        "result": "in progress",
    }
    assert "fileUrl" in body


def test_auto_falls_back_to_the_original_names_once_and_remembers(monkeypatch):
    from airflow_provider_siro.testing import OfflineSiro

    with OfflineSiro(api="original") as server:
        use_connection(monkeypatch, server)
        first = upload_and_create(SiroHook(), customer_name="Ada")
        # The first create cost one refused call (422, nothing created), the rest cost none.
        assert creates(server) == [422, 201]
        assert list(server.recordings) == [first]
        assert server.recordings[first].body["customerName"] == "Ada"
        second = upload_and_create(SiroHook(), title="Second")  # a new hook: the same process and connection
        assert creates(server) == [422, 201, 201]
        assert set(server.recordings) == {first, second}


@pytest.mark.parametrize(
    ("server_api", "pinned"),
    [("original", "current"), ("current", "original")],
)
def test_a_pinned_connection_against_the_other_siro_fails_once_and_clearly(monkeypatch, server_api, pinned):
    from airflow_provider_siro.testing import OfflineSiro

    with OfflineSiro(api=server_api) as server:
        use_connection(monkeypatch, server, extras={"api_fields": pinned})
        with pytest.raises(SiroRejectedError) as info:
            upload_and_create(SiroHook())
        assert info.value.status_code == 422
        assert f"pinned to (extra api_fields={pinned}); set api_fields to auto" in str(info.value)
        assert creates(server) == [422]
        assert server.recordings == {}


def test_the_original_siro_cannot_carry_discoverable_or_result(monkeypatch):
    from airflow_provider_siro.testing import OfflineSiro

    with OfflineSiro(api="original") as server:
        use_connection(monkeypatch, server)
        with pytest.raises(SiroValidationError, match=r"^result: is a field of Siro's current API only"):
            upload_and_create(SiroHook(), result="closed")
        assert creates(server) == [422] and server.recordings == {}
        # Learnt: the next such create is refused before any call.
        with pytest.raises(SiroValidationError, match=r"^discoverable: .*it speaks the original ones"):
            upload_and_create(SiroHook(), discoverable=False)
        assert creates(server) == [422] and server.recordings == {}


def test_a_pinned_original_connection_refuses_result_before_the_create(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, extras={"api_fields": "original"})
    with pytest.raises(SiroValidationError, match=r"^result: .*pinned to its original field names"):
        upload_and_create(SiroHook(), result="not closed")
    assert creates(siro_server) == []


@pytest.mark.parametrize(
    ("server_api", "fault", "created"),
    [
        ("current", {"drop": "after"}, 1),  # created, answer lost
        ("current", {"status": 500, "acted": True}, 1),  # created, then a 5xx
        ("current", {"status": 502}, 0),  # a 5xx before acting: still ambiguous to the client
        # Against an original Siro, the first (current) body would have been refused; the client
        # cannot know that from a lost answer, so it must not try the other names either.
        ("original", {"drop": "before"}, 0),
        ("original", {"status": 502}, 0),
    ],
)
def test_an_ambiguous_answer_never_triggers_a_second_format(monkeypatch, server_api, fault, created):
    from airflow_provider_siro.testing import OfflineSiro

    with OfflineSiro(api=server_api) as server:
        use_connection(monkeypatch, server)
        server.add_fault("create_recording", **fault)
        with pytest.raises(SiroAmbiguousCreateError):
            upload_and_create(SiroHook())
        server.wait_idle()
        assert len(creates(server)) == 1
        assert len(server.recordings) == created


def test_a_422_about_a_value_is_not_sent_again(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server)
    hook = SiroHook()
    download_url = hook.upload_audio(lambda: _BytesOpener(AUDIO), len(AUDIO), "mp3")
    fields = validate_recording_fields("mp3", user_id="u1")
    object.__setattr__(fields, "values", {**fields.values, "date_created": "2024-05-01"})  # bypass the check
    with pytest.raises(SiroRejectedError, match="dateCreated: Invalid datetime"):
        hook.create_recording(download_url, fields)
    assert creates(siro_server) == [422]


# --------------------------------------------------------------------------- listing recordings


def _make_recordings(server, token: str, stamps: list[str]) -> list[str]:
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = "hook-tests/1.0"
    made = []
    for stamp in stamps:
        signed = session.post(
            f"{server.url}/v1/core/recordings/signed-urls",
            json={"fileType": "mp3", "fileSize": len(AUDIO)},
            headers={"x-siro-auth-token": token},
            timeout=10,
        ).json()["data"]
        session.put(signed["uploadUrl"], data=AUDIO, headers=signed["uploadHeaders"], timeout=10)
        answer = session.post(
            f"{server.url}/v1/core/recordings/upload",
            json={"fileUrl": signed["downloadUrl"], "fileType": "mp3", "userId": "u1", "dateCreated": stamp},
            headers={"x-siro-auth-token": token},
            timeout=10,
        )
        made.append(answer.json()["data"]["recordingId"])
    session.close()
    return made


def test_list_recordings_follows_the_cursor_within_the_window(siro_server, monkeypatch):
    from datetime import UTC, datetime

    token = siro_server.issue_access_token()
    use_connection(monkeypatch, siro_server, token=token)
    made = _make_recordings(siro_server, token, [f"2024-05-01T10:00:{s:02d}Z" for s in range(7)])
    hook = SiroHook()

    listed = list(hook.list_recordings(limit=2, order_direction="asc"))
    assert [item["id"] for item in listed] == made
    assert [r.endpoint for r in siro_server.requests].count("list_recordings") == 4  # 2+2+2+1

    window = hook.list_recordings(
        created_after=datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC),
        created_before=datetime(2024, 5, 1, 10, 0, 4, tzinfo=UTC),
    )
    assert [item["id"] for item in window] == [made[3], made[2]]  # newest first by default


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"order_direction": "newest"}, "order_direction"),
        ({"created_after": datetime(2024, 5, 1)}, "created_after"),
    ],
)
def test_list_recordings_checks_its_arguments_before_any_call(siro_server, monkeypatch, kwargs, field):
    use_connection(monkeypatch, siro_server)
    with pytest.raises(SiroValidationError, match=rf"^{field}: "):
        next(SiroHook().list_recordings(**kwargs))
    assert siro_server.requests == []


# --------------------------------------------------------------------------- test_connection


def test_test_connection_names_the_user_and_creates_nothing(siro_server, monkeypatch):
    token = siro_server.issue_access_token()
    use_connection(monkeypatch, siro_server, token=token)
    _make_recordings(siro_server, token, ["2024-05-01T10:00:00Z"])
    siro_server.clear_requests()
    objects = set(siro_server.objects)

    ok, message = SiroHook().test_connection()

    assert ok, message
    assert "with the pasted access token" in message and "user u1" in message
    assert "Nothing was uploaded or created" in message
    assert [r.endpoint for r in siro_server.requests] == ["list_recordings"]
    assert len(siro_server.recordings) == 1 and set(siro_server.objects) == objects
    assert token not in message


def test_test_connection_with_an_oauth_app_names_user_and_organization(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, oauth=True)

    ok, message = SiroHook().test_connection()

    assert ok, message
    assert f"user {siro_server.user_id}" in message
    assert f"organization {siro_server.organization_id}" in message
    assert sorted(r.endpoint for r in siro_server.requests) == [
        "caller_identity",
        "list_recordings",
        "mint_token",
    ]
    assert siro_server.recordings == {} and siro_server.objects == {}
    assert siro_server.org_token not in message and siro_server.client_secret not in message


def test_test_connection_reports_a_refused_token(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, token="not-a-token")
    ok, message = SiroHook().test_connection()
    assert not ok
    assert "401" in message and "not-a-token" not in message
    assert siro_server.objects == {}


def test_recording_id_from_newer_response_shape(monkeypatch):
    from airflow_provider_siro.testing import OfflineSiro

    with OfflineSiro(response_id_key="recordingId") as server:
        use_connection(monkeypatch, server)
        recording_id = upload_and_create(SiroHook())
        assert recording_id in server.recordings


def test_list_integration_connections(siro_server, monkeypatch):
    use_connection(monkeypatch, siro_server, oauth=True)
    connections = SiroHook().list_integration_connections()
    assert siro_server.integration_connection_id in [c["id"] for c in connections]


# --------------------------------------------------------------------------- secrets


def test_secrets_are_registered_with_airflows_masker(siro_server, monkeypatch):
    redact, _ = secrets_masker()
    use_connection(monkeypatch, siro_server, oauth=True)
    # As in a task's own process: no signed URL handled before this one.
    monkeypatch.setattr(redaction, "_masked_signatures", set())
    hook = SiroHook()
    signed = hook.get_signed_urls("mp3", 10)
    token = hook.get_access_token()
    signature = dict(pair.split("=", 1) for pair in signed.upload_url.split("?", 1)[1].split("&"))[
        "X-Goog-Signature"
    ]
    line = f"token={token} org={siro_server.org_token} secret={siro_server.client_secret} url={signed.upload_url}"
    redacted = redact(line)
    for secret in (token, siro_server.org_token, siro_server.client_secret, signature):
        assert secret not in redacted
    assert "X-Goog-Signature" not in repr(signed)


def test_a_process_handling_many_signed_urls_keeps_them_out_of_logs_without_slowing_down(
    siro_server, monkeypatch, caplog
):
    import logging

    use_connection(monkeypatch, siro_server)
    monkeypatch.setattr(redaction, "_masked_signatures", set())
    patterns_before = len(secrets_masker()[1].patterns)
    hook = SiroHook()
    signed = [hook.get_signed_urls("mp3", 10) for _ in range(3 * redaction.MASKED_SIGNATURES_PER_PROCESS)]
    # Airflow's masker recompiles over every secret on each registration: a process stops at the cap.
    added = len(secrets_masker()[1].patterns) - patterns_before
    assert redaction.MASKED_SIGNATURES_PER_PROCESS <= added <= 3 * redaction.MASKED_SIGNATURES_PER_PROCESS
    # Past it, the HTTP client's own debug line for a request still never carries a signature.
    late = signed[-1].upload_url
    signature = late.split("X-Goog-Signature=")[1].split("&")[0]
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    with open(__file__, "rb") as body:
        hook.session.put(late, data=body.read(10), headers=signed[-1].upload_headers, timeout=10)
    lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert any("/storage/upload/" in line and "X-Goog-Signature=***" in line for line in lines), lines
    assert not any(signature in line for line in lines)


def test_upload_streams_a_file_from_disk(siro_server, monkeypatch, tmp_path: Path):
    use_connection(monkeypatch, siro_server, extras={"upload_chunk_size": 65536})
    audio = tmp_path / "call.wav"
    audio.write_bytes(b"RIFF" + bytes(range(251)) * 4000)
    hook = SiroHook()
    download_url = hook.upload_audio(lambda: audio.open("rb"), audio.stat().st_size, "wav")
    recording_id = hook.create_recording(
        download_url, validate_recording_fields("wav", user_phone="+1 555 123 4567")
    )
    import hashlib

    assert siro_server.recordings[recording_id].sha256 == hashlib.sha256(audio.read_bytes()).hexdigest()


@pytest.mark.parametrize(("interval", "expect_lines"), [(0.0, True), (3600.0, False)])
def test_upload_progress_is_logged_on_a_clock_not_per_chunk(
    siro_server, monkeypatch, capfd, interval, expect_lines
):
    use_connection(
        monkeypatch, siro_server, extras={"upload_chunk_size": 65536, "progress_interval": interval}
    )
    audio = bytes(range(256)) * 4096  # 1 MiB: 16 chunks
    capfd.readouterr()
    SiroHook().upload_audio(lambda: _BytesOpener(audio), len(audio), "mp3", label="big-call.mp3")
    out = capfd.readouterr().out
    lines = [line for line in out.splitlines() if "Uploading big-call.mp3:" in line]
    if expect_lines:  # an interval of 0 reports after every chunk but the last
        assert len(lines) == 15
        assert "64.0 KiB of 1.0 MiB (6%) at " in lines[0] and "MB/s" in lines[0]
    else:  # a fast upload inside one interval reports nothing, however many chunks it has
        assert lines == []


def test_proxy_settings_in_the_environment_still_apply(siro_server, monkeypatch):
    # The hook's session reads HTTP_PROXY / NO_PROXY once per host instead of on every request.
    from airflow_provider_siro.testing import OfflineSiro

    use_connection(monkeypatch, siro_server)
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with OfflineSiro() as proxy:  # another server stands for the proxy: it refuses the token it never issued
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        hook = SiroHook()
        for _ in range(2):  # the second call is answered from the session's kept settings
            with pytest.raises(SiroRejectedError):
                hook.get_signed_urls("mp3", len(AUDIO))
        assert [r.endpoint for r in proxy.requests] == ["signed_urls", "signed_urls"]
        assert siro_server.requests == []

        monkeypatch.setenv("no_proxy", "127.0.0.1")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert SiroHook().get_signed_urls("mp3", len(AUDIO)).file_size == len(AUDIO)
        assert len(proxy.requests) == 2
        assert endpoints(siro_server) == ["signed_urls"]
