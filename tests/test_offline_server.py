"""The offline Siro server itself, over real HTTP on 127.0.0.1 with plain ``requests``.

Users test their DAGs against this server, so it has to be a strict oracle: it must accept what Siro
accepts and refuse what Siro (and GCS, for the signed URLs) refuses, with the same statuses and
shapes. These tests talk to it the way any client would, not through the provider's hook.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import random
import re
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from airflow_provider_siro.testing import OfflineSiro

USER_AGENT = "siro-server-tests/1.0"
AUDIO = b"ID3\x03\x00" + bytes(range(256)) * 40
CONTENT_TYPES = {"mp3": "audio/mpeg", "aac": "audio/aac", "wav": "audio/wav"}
MiB = 1024 * 1024


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def shared_siro() -> Iterator[OfflineSiro]:
    """The module's server speaks the original API (the seed document's body); the tests of the
    current API's body use ``current_siro``. Everything but the create body is the same in both."""
    with OfflineSiro(api="original") as server:
        yield server


@pytest.fixture(scope="module")
def shared_current_siro() -> Iterator[OfflineSiro]:
    with OfflineSiro() as server:
        yield server


@pytest.fixture
def current_siro(shared_current_siro: OfflineSiro) -> Iterator[OfflineSiro]:
    """A server speaking Siro's current API (the default), looking fresh to each test."""
    shared_current_siro.clear_faults()
    shared_current_siro.clear_requests()
    yield shared_current_siro
    for recording_id in shared_current_siro.recordings:
        shared_current_siro.delete_recording(recording_id)


@pytest.fixture
def siro(shared_siro: OfflineSiro) -> Iterator[OfflineSiro]:
    """One server for the module (stopping one takes half a second), looking fresh to each test:
    an empty request log, no faults, no recordings. Objects and ``credential_leaks`` accumulate."""
    shared_siro.clear_faults()
    shared_siro.clear_requests()
    shared_siro.fault_counts.clear()
    yield shared_siro
    shared_siro.clear_faults()
    for recording_id in shared_siro.recordings:
        shared_siro.delete_recording(recording_id)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    yield session
    session.close()


def mint(http, server, *, client_id=None, org_token=None, **body: Any) -> requests.Response:
    return http.post(
        f"{server.auth_url}/v1/core/oauth/apps/{client_id or server.client_id}/access-token",
        json=body,
        headers={"Authorization": f"Bearer {org_token or server.org_token}"},
        timeout=10,
    )


def token_details(http, server, token_id: str, *, client_id=None) -> requests.Response:
    return http.get(
        f"{server.auth_url}/v1/core/oauth/apps/{client_id or server.client_id}/access-token/{token_id}",
        headers={"Authorization": f"Bearer {server.org_token}"},
        timeout=10,
    )


def sign(http, server, body: Any, token: str | None = None) -> requests.Response:
    return http.post(
        f"{server.url}/v1/core/recordings/signed-urls",
        json=body,
        headers={"x-siro-auth-token": token or server.issue_access_token()},
        timeout=10,
    )


def signed_urls(http, server, file_type: str = "mp3", size: int = len(AUDIO)) -> dict[str, Any]:
    answer = sign(http, server, {"fileType": file_type, "fileSize": size})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def put(http, signed: dict[str, Any], data: Any, **headers: str) -> requests.Response:
    """PUT to the upload URL with the signed headers, as modified by ``headers`` (None drops one)."""
    sent = {**signed["uploadHeaders"], **headers}
    return http.put(
        signed["uploadUrl"], data=data, headers={k: v for k, v in sent.items() if v is not None}, timeout=30
    )


def upload(http, server, file_type: str = "mp3", data: bytes = AUDIO) -> str:
    """Sign, PUT and return the ``downloadUrl``, as a client does before creating a recording."""
    signed = signed_urls(http, server, file_type, len(data))
    answer = put(http, signed, data)
    assert answer.status_code == 200, answer.text
    return signed["downloadUrl"]


def create(http, server, body: Any, token: str | None = None) -> requests.Response:
    return http.post(
        f"{server.url}/v1/core/recordings/upload",
        json=body,
        headers={"x-siro-auth-token": token or server.issue_access_token()},
        timeout=10,
    )


def get_recording(http, server, recording_id: str, token: str, **flags: str) -> requests.Response:
    return http.get(
        f"{server.url}/v1/core/recordings/{recording_id}",
        params=flags,
        headers={"x-siro-auth-token": token},
        timeout=10,
    )


def gcs_code(answer: requests.Response) -> str | None:
    """The ``<Code>`` of a GCS XML error body."""
    return ET.fromstring(answer.content).findtext("Code")


def object_name(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def zod_issues(answer: requests.Response) -> list[tuple[str, list[Any]]]:
    """Assert a ZodError-shaped 422 and return its issues as ``(code, path)``."""
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["name"] == "ZodError"
    assert body["issues"]
    for issue in body["issues"]:
        assert set(issue) >= {"code", "path", "message"}
        assert isinstance(issue["path"], list) and isinstance(issue["message"], str)
    return [(issue["code"], issue["path"]) for issue in body["issues"]]


def assert_error(answer: requests.Response, status: int) -> str:
    """Assert a Siro-style ``{"error": "..."}`` answer and return the message."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


# --------------------------------------------------------------------------- the edge


def test_default_python_requests_user_agent_is_refused_by_the_edge(siro):
    objects_before = set(siro.objects)
    plain = requests.Session()  # python-requests/x.y, as the edge in front of Siro sees it
    assert plain.headers["User-Agent"].startswith("python-requests/")
    token = siro.issue_access_token()
    answers = [
        plain.post(
            f"{siro.url}/v1/core/recordings/signed-urls",
            json={"fileType": "mp3", "fileSize": 10},
            headers={"x-siro-auth-token": token},
            timeout=10,
        ),
        plain.post(
            f"{siro.auth_url}/v1/core/oauth/apps/{siro.client_id}/access-token",
            json={"clientSecret": siro.client_secret, "userId": siro.user_id},
            headers={"Authorization": f"Bearer {siro.org_token}"},
            timeout=10,
        ),
        plain.get(f"{siro.url}/v1/core/recordings/rec_x", headers={"x-siro-auth-token": token}, timeout=10),
    ]
    for answer in answers:
        assert "User-Agent" in assert_error(answer, 403)
    assert set(siro.objects) == objects_before


def test_storage_urls_are_not_behind_siros_edge(siro, http):
    signed = signed_urls(http, siro)
    plain = requests.Session()
    answer = plain.put(signed["uploadUrl"], data=AUDIO, headers=signed["uploadHeaders"], timeout=10)
    assert answer.status_code == 200
    assert plain.get(signed["downloadUrl"], timeout=10).content == AUDIO


# --------------------------------------------------------------------------- access tokens


def test_mint_access_token(siro, http):
    answer = mint(http, siro, clientSecret=siro.client_secret, userId=siro.user_id, scope="write")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert set(body) == {"accessTokenId", "accessToken"}
    assert body["accessToken"] and body["accessTokenId"]
    # The minted token works on the user-scoped API.
    assert sign(http, siro, {"fileType": "mp3", "fileSize": 10}, body["accessToken"]).status_code == 200


def test_mint_rejections(siro, http):
    good = {"clientSecret": siro.client_secret, "userId": siro.user_id, "scope": "write"}
    assert "organization" in assert_error(mint(http, siro, org_token="wrong-org-token", **good), 401)
    assert_error(mint(http, siro, client_id="client_unknown", **good), 404)
    assert "secret" in assert_error(mint(http, siro, **{**good, "clientSecret": "wrong"}), 401)
    assert_error(mint(http, siro, **{**good, "userId": "user_unknown"}), 404)

    assert ("invalid_type", ["clientSecret"]) in zod_issues(mint(http, siro, userId=siro.user_id))
    assert ("invalid_enum_value", ["scope"]) in zod_issues(mint(http, siro, **{**good, "scope": "admin"}))
    assert ("unrecognized_keys", []) in zod_issues(mint(http, siro, **good, expiresIn=60))
    assert ("invalid_type", ["userId"]) in zod_issues(mint(http, siro, **{**good, "userId": 7}))


def test_token_details(siro, http):
    minted = mint(http, siro, clientSecret=siro.client_secret, userId=siro.user_id, scope="read").json()
    answer = token_details(http, siro, minted["accessTokenId"])
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["accessTokenId"] == minted["accessTokenId"]
    assert data["userId"] == siro.user_id
    assert data["scope"] == "read"
    # Siro's access tokens live 16 hours.
    expires = parse_time(data["expiresAt"])
    now = datetime.now(UTC)
    assert now + timedelta(hours=15, minutes=59) < expires <= now + timedelta(hours=16)

    assert_error(token_details(http, siro, "tok_unknown"), 404)
    assert_error(token_details(http, siro, minted["accessTokenId"], client_id="client_other"), 404)
    no_org_token = http.get(answer.url, timeout=10)
    assert_error(no_org_token, 401)


def test_token_expires_after_its_lifetime(http):
    with OfflineSiro(token_lifetime=1.0) as server:
        minted = mint(
            http, server, clientSecret=server.client_secret, userId=server.user_id, scope="write"
        ).json()
        body = {"fileType": "mp3", "fileSize": 10}
        assert sign(http, server, body, minted["accessToken"]).status_code == 200
        expires = parse_time(token_details(http, server, minted["accessTokenId"]).json()["data"]["expiresAt"])
        wait = (expires - datetime.now(UTC)).total_seconds() + 0.2
        threading.Event().wait(max(wait, 0))
        assert_error(sign(http, server, body, minted["accessToken"]), 401)


def test_expire_tokens_expires_pasted_and_minted_tokens(siro, http):
    pasted = siro.issue_access_token()
    minted = mint(http, siro, clientSecret=siro.client_secret, userId=siro.user_id, scope="write").json()[
        "accessToken"
    ]
    siro.expire_tokens()
    for token in (pasted, minted):
        assert_error(sign(http, siro, {"fileType": "mp3", "fileSize": 10}, token), 401)
    assert_error(sign(http, siro, {"fileType": "mp3", "fileSize": 10}, "never-issued"), 401)
    # A token minted afterwards works.
    fresh = siro.issue_access_token()
    assert sign(http, siro, {"fileType": "mp3", "fileSize": 10}, fresh).status_code == 200


def test_read_scope_cannot_get_signed_urls_but_can_read(siro, http):
    read = mint(http, siro, clientSecret=siro.client_secret, userId=siro.user_id, scope="read").json()[
        "accessToken"
    ]
    objects_before = set(siro.objects)
    assert "write" in assert_error(sign(http, siro, {"fileType": "mp3", "fileSize": 10}, read), 403)
    assert set(siro.objects) == objects_before

    created = create(http, siro, {"downloadUrl": upload(http, siro), "fileType": "mp3", "userId": "u1"})
    recording_id = created.json()["data"]["id"]
    assert get_recording(http, siro, recording_id, read).status_code == 200
    assert_error(
        create(
            http,
            siro,
            {"downloadUrl": upload(http, siro), "fileType": "mp3", "userId": "u1"},
            read,
        ),
        403,
    )


def test_list_integration_connections(siro, http):
    url = f"{siro.auth_url}/v1/core/integrations/connections"
    answer = http.get(url, headers={"Authorization": f"Bearer {siro.org_token}"}, timeout=10)
    assert answer.status_code == 200
    assert siro.integration_connection_id in [c["id"] for c in answer.json()["data"]]
    assert_error(http.get(url, headers={"Authorization": "Bearer nope"}, timeout=10), 401)


# --------------------------------------------------------------------------- signed URLs


@pytest.mark.parametrize("file_type", ["mp3", "aac", "wav"])
def test_signed_urls_shape(siro, http, file_type):
    before = datetime.now(UTC)
    answer = sign(http, siro, {"fileType": file_type, "fileSize": 12345})
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert set(data) == {"uploadUrl", "uploadHeaders", "downloadUrl", "expiresAt"}
    assert data["uploadHeaders"] == {
        "Content-Type": CONTENT_TYPES[file_type],
        "x-goog-content-length-range": "0,12345",
    }
    assert data["uploadUrl"].startswith(f"{siro.url}/storage/upload/")
    assert data["downloadUrl"].startswith(f"{siro.url}/storage/download/")
    for url in (data["uploadUrl"], data["downloadUrl"]):
        query = parse_qs(urlsplit(url).query)
        assert query["X-Goog-Algorithm"] == ["GOOG4-HMAC-SHA256"]
        assert query["X-Goog-Signature"][0]
    assert object_name(data["uploadUrl"]).endswith(f".{file_type}")
    assert object_name(data["uploadUrl"]) == object_name(data["downloadUrl"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", data["expiresAt"])
    expires = parse_time(data["expiresAt"])
    lifetime = timedelta(seconds=siro.signed_url_lifetime)
    assert before + lifetime - timedelta(seconds=1) <= expires <= datetime.now(UTC) + lifetime


@pytest.mark.parametrize(
    ("body", "issue"),
    [
        ({"fileType": "ogg", "fileSize": 10}, ("invalid_enum_value", ["fileType"])),
        ({"fileType": "mp3", "fileSize": 0}, ("too_small", ["fileSize"])),
        ({"fileType": "mp3", "fileSize": 1.5}, ("too_small", ["fileSize"])),
        ({"fileType": "mp3", "fileSize": "10"}, ("too_small", ["fileSize"])),
        ({"fileType": "mp3", "fileSize": True}, ("too_small", ["fileSize"])),
        ({"fileType": "mp3"}, ("invalid_type", ["fileSize"])),
        ({"fileType": "mp3", "fileSize": 10, "fileName": "a.mp3"}, ("unrecognized_keys", [])),
        (["mp3", 10], ("invalid_type", [])),
    ],
)
def test_signed_urls_validation(siro, http, body, issue):
    objects_before = set(siro.objects)
    assert issue in zod_issues(sign(http, siro, body))
    assert set(siro.objects) == objects_before


def test_signed_urls_need_a_token(siro, http):
    answer = http.post(
        f"{siro.url}/v1/core/recordings/signed-urls",
        json={"fileType": "mp3", "fileSize": 1},
        timeout=10,
    )
    assert_error(answer, 401)


# --------------------------------------------------------------------------- storage: PUT and GET


def test_put_and_download_small_object(siro, http):
    signed = signed_urls(http, siro, "wav", len(AUDIO))
    name = object_name(signed["uploadUrl"])
    assert siro.objects[name].uploaded is False
    assert put(http, signed, AUDIO).status_code == 200
    stored = siro.objects[name]
    assert stored.uploaded and stored.size == len(AUDIO)
    assert stored.sha256 == hashlib.sha256(AUDIO).hexdigest()
    assert stored.content_type == "audio/wav"

    download = http.get(signed["downloadUrl"], timeout=10)
    assert download.status_code == 200
    assert download.content == AUDIO
    assert download.headers["Content-Type"] == "audio/wav"

    tampered = with_query(signed["downloadUrl"], **{"X-Goog-Signature": "0" * 64})
    assert gcs_code(http.get(tampered, timeout=10)) == "SignatureDoesNotMatch"
    siro.expire_signed_urls()
    expired = http.get(signed["downloadUrl"], timeout=10)
    assert expired.status_code == 400 and gcs_code(expired) == "ExpiredToken"


def test_put_smaller_than_file_size_is_accepted(siro, http):
    signed = signed_urls(http, siro, "mp3", 10_000)
    assert put(http, signed, b"x" * 10).status_code == 200
    assert siro.objects[object_name(signed["uploadUrl"])].size == 10


def test_put_tampered_signature(siro, http):
    signed = signed_urls(http, siro)
    signature = parse_qs(urlsplit(signed["uploadUrl"]).query)["X-Goog-Signature"][0]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    other = signed_urls(http, siro)
    tampered = [
        with_query(signed["uploadUrl"], **{"X-Goog-Signature": flipped}),
        # The URL's lifetime is signed too: it cannot be stretched.
        with_query(signed["uploadUrl"], **{"X-Goog-Expires": "604800"}),
        # One object's signature does not open another object.
        other["uploadUrl"].split("?")[0] + "?" + urlsplit(signed["uploadUrl"]).query,
    ]
    for url in tampered:
        answer = put(http, {**signed, "uploadUrl": url}, AUDIO)
        assert answer.status_code == 403, url
        assert gcs_code(answer) == "SignatureDoesNotMatch"
    assert not siro.objects[object_name(signed["uploadUrl"])].uploaded
    assert not siro.objects[object_name(other["uploadUrl"])].uploaded


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "audio/wav"},
        {"Content-Type": None},
        {"x-goog-content-length-range": f"0,{len(AUDIO) + 1}"},
        {"x-goog-content-length-range": None},
    ],
)
def test_put_signed_headers_must_carry_their_signed_values(siro, http, headers):
    signed = signed_urls(http, siro)
    answer = put(http, signed, AUDIO, **headers)
    assert answer.status_code == 403
    assert gcs_code(answer) == "SignatureDoesNotMatch"
    assert not siro.objects[object_name(signed["uploadUrl"])].uploaded
    # The URL itself is still good with the right headers.
    assert put(http, signed, AUDIO).status_code == 200


def test_put_with_a_siro_credential_is_refused_and_counted(siro, http):
    signed = signed_urls(http, siro)
    leaks_before = siro.credential_leaks
    leak = put(http, signed, AUDIO, **{"x-siro-auth-token": siro.issue_access_token()})
    assert leak.status_code == 400 and gcs_code(leak) == "InvalidArgument"
    assert siro.credential_leaks == leaks_before + 1
    leak = put(http, signed, AUDIO, Authorization=f"Bearer {siro.org_token}")
    assert leak.status_code == 400
    assert siro.credential_leaks == leaks_before + 2
    assert not siro.objects[object_name(signed["uploadUrl"])].uploaded


def test_put_larger_than_file_size(siro, http):
    signed = signed_urls(http, siro, "mp3", 100)
    answer = put(http, signed, b"x" * 101)
    assert answer.status_code == 400 and gcs_code(answer) == "EntityTooLarge"
    assert not siro.objects[object_name(signed["uploadUrl"])].uploaded
    assert put(http, signed, b"x" * 100).status_code == 200


def test_put_after_expiry(siro, http):
    signed = signed_urls(http, siro)
    siro.expire_signed_urls()
    answer = put(http, signed, AUDIO)
    assert answer.status_code == 400 and gcs_code(answer) == "ExpiredToken"
    assert not siro.objects[object_name(signed["uploadUrl"])].uploaded
    # Only URLs issued so far expired.
    assert put(http, signed_urls(http, siro), AUDIO).status_code == 200


def test_put_without_content_length(siro, http):
    signed = signed_urls(http, siro, "mp3", 100)
    # A generator body: requests streams it with Transfer-Encoding: chunked.
    chunked = put(http, signed, iter([b"x" * 50]))
    assert chunked.status_code == 411 and gcs_code(chunked) == "MissingContentLength"
    # Neither Content-Length nor chunked (requests always sends one of them, so speak HTTP directly).
    parts = urlsplit(signed["uploadUrl"])
    head = [f"PUT {parts.path}?{parts.query} HTTP/1.1", f"Host: 127.0.0.1:{siro.port}"]
    head += [f"{k}: {v}" for k, v in signed["uploadHeaders"].items()]
    with socket.create_connection(("127.0.0.1", siro.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        reply = sock.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.1 411 ")
    assert b"<Code>MissingContentLength</Code>" in reply
    assert not siro.objects[object_name(signed["uploadUrl"])].uploaded


def test_put_64_mib_is_hashed_correctly(siro, http):
    data = random.Random(64).randbytes(64 * MiB)
    expected = hashlib.sha256(data).hexdigest()
    signed = signed_urls(http, siro, "wav", len(data))
    answer = put(http, signed, io.BytesIO(data))  # streamed, with a Content-Length
    assert answer.status_code == 200
    (entry,) = [r for r in siro.requests if r.endpoint == "upload_put"]
    assert entry.body_size == len(data) and entry.headers["Content-Length"] == str(len(data))
    created = create(http, siro, {"downloadUrl": signed["downloadUrl"], "fileType": "wav", "userId": "u1"})
    assert created.status_code == 201, created.text
    recording = siro.recordings[created.json()["data"]["id"]]
    assert recording.sha256 == expected and recording.size == len(data)


# --------------------------------------------------------------------------- create a recording


def test_create_recording_with_the_seed_body(siro, http):
    download_url = upload(http, siro, "aac")
    body = {
        "downloadUrl": download_url,
        "fileType": "aac",
        "title": "Discovery call",
        "userEmail": "rep@example.com",
        "organizationId": "org_1",
        "conversationType": "discovery",
        "integrationConnectionId": siro.integration_connection_id,
        "crmObjects": [{"objectType": "Opportunity", "objectId": "006A"}],
        "customerPhone": "+15555550100",
        "customerName": "Ada",
        "dateCreated": "2024-05-01T10:00:00.250Z",
    }
    token = siro.issue_access_token()
    answer = create(http, siro, body, token)
    assert answer.status_code == 201, answer.text
    assert set(answer.json()) == {"data"} and set(answer.json()["data"]) == {"id"}
    recording = siro.recordings[answer.json()["data"]["id"]]
    assert recording.body == body
    assert recording.file_type == "aac" and recording.user_id == siro.user_id
    assert recording.sha256 == hashlib.sha256(AUDIO).hexdigest() and recording.size == len(AUDIO)


def test_create_recording_with_the_current_names(current_siro, http):
    siro = current_siro
    body = {
        "fileUrl": upload(http, siro),
        "fileType": "mp3",
        "userPhone": "+15555550101",
        "contactPhone": "+15555550100",
        "contactName": "Ada",
        "discoverable": True,
        "result": "not closed",
        "dateCreated": "2024-05-01T10:00:00Z",
    }
    answer = create(http, siro, body)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"data": {"recordingId": answer.json()["data"]["recordingId"]}}
    assert siro.recordings[answer.json()["data"]["recordingId"]].body == body


def test_the_current_api_refuses_the_original_body_naming_its_keys(current_siro, http):
    body = _seed(customerName="Ada", title="Call")(upload(http, current_siro))
    answer = create(http, current_siro, body)
    assert answer.status_code == 422
    issues = answer.json()["issues"]
    assert {"code": "invalid_type", "path": ["fileUrl"], "message": "Required"} in issues
    (unknown,) = [issue for issue in issues if issue["code"] == "unrecognized_keys"]
    assert unknown["keys"] == ["downloadUrl", "customerName"]
    assert "'downloadUrl', 'customerName'" in unknown["message"]
    assert current_siro.recordings == {}


def test_the_original_api_refuses_the_current_body_naming_its_keys(siro, http):
    body = {"fileUrl": upload(http, siro), "fileType": "mp3", "userId": "u", "result": "closed"}
    answer = create(http, siro, body)
    assert answer.status_code == 422
    issues = answer.json()["issues"]
    assert {"code": "invalid_type", "path": ["downloadUrl"], "message": "Required"} in issues
    (unknown,) = [issue for issue in issues if issue["code"] == "unrecognized_keys"]
    assert unknown["keys"] == ["fileUrl", "result"]
    assert siro.recordings == {}


@pytest.mark.parametrize(
    ("changes", "issue"),
    [
        ({"result": "maybe"}, ("invalid_enum_value", ["result"])),
        ({"result": None}, ("invalid_enum_value", ["result"])),
        ({"discoverable": "true"}, ("invalid_type", ["discoverable"])),
        ({"contactName": 5}, ("invalid_type", ["contactName"])),
        ({"fileUrl": None}, ("invalid_type", ["fileUrl"])),
        ({"notes": "x"}, ("unrecognized_keys", [])),
    ],
)
def test_current_create_validation_422(current_siro, http, changes, issue):
    body = {"fileUrl": upload(http, current_siro), "fileType": "mp3", "userId": "u", **changes}
    if changes.get("fileUrl", "") is None:
        del body["fileUrl"]
    answer = create(http, current_siro, body)
    assert answer.status_code == 422
    assert issue in zod_issues(answer)
    assert current_siro.recordings == {}


def test_an_unknown_api_is_refused():
    with pytest.raises(ValueError, match="api must be one of current, original, got 'v3'"):
        OfflineSiro(api="v3")


def test_response_id_key_recording_id(http):
    with OfflineSiro(api="original", response_id_key="recordingId") as server:
        token = server.issue_access_token()
        answer = create(
            http, server, {"downloadUrl": upload(http, server), "fileType": "mp3", "userId": "u"}, token
        )
        assert answer.status_code == 201
        assert set(answer.json()["data"]) == {"recordingId"}
        recording_id = answer.json()["data"]["recordingId"]
        assert recording_id in server.recordings
        assert get_recording(http, server, recording_id, token).json()["data"]["id"] == recording_id


def _seed(**changes: Any) -> Any:
    def body(url: str) -> dict[str, Any]:
        base = {"downloadUrl": url, "fileType": "mp3", "userEmail": "rep@example.com"}
        return {k: v for k, v in {**base, **changes}.items() if v is not None}

    return body


CRM = {"integrationConnectionId": "conn_1"}


@pytest.mark.parametrize(
    ("make_body", "issue"),
    [
        (_seed(notes="hello"), ("unrecognized_keys", [])),
        (_seed(contactName="Ada"), ("unrecognized_keys", [])),
        (_seed(fileUrl="https://example.com/a.mp3"), ("unrecognized_keys", [])),
        (_seed(discoverable=True), ("unrecognized_keys", [])),
        (_seed(fileType="ogg"), ("invalid_enum_value", ["fileType"])),
        (_seed(downloadUrl=None), ("invalid_type", ["downloadUrl"])),
        (_seed(fileType=None), ("invalid_type", ["fileType"])),
        (_seed(title=5), ("invalid_type", ["title"])),
        (_seed(crmObjects={"objectType": "Lead", "objectId": "1"}, **CRM), ("invalid_type", ["crmObjects"])),
        (
            _seed(crmObjects=[{"objectType": "Deal", "objectId": "1"}], **CRM),
            ("invalid_enum_value", ["crmObjects", 0, "objectType"]),
        ),
        (
            _seed(
                crmObjects=[{"objectType": "Lead", "objectId": "1"}, {"objectType": "Lead", "objectId": ""}],
                **CRM,
            ),
            ("too_small", ["crmObjects", 1, "objectId"]),
        ),
        (_seed(crmObjects=["Lead"], **CRM), ("invalid_type", ["crmObjects", 0])),
        (_seed(dateCreated="2024-05-01T10:00:00+02:00"), ("invalid_string", ["dateCreated"])),
        (_seed(dateCreated="2024-05-01"), ("invalid_string", ["dateCreated"])),
        (_seed(dateCreated="2024-05-01 10:00:00Z"), ("invalid_string", ["dateCreated"])),
        (lambda url: [url], ("invalid_type", [])),
    ],
)
def test_create_validation_422(siro, http, make_body, issue):
    answer = create(http, siro, make_body(upload(http, siro)))
    assert issue in zod_issues(answer)
    assert siro.recordings == {}


def test_mixed_names_name_the_offending_keys(siro, current_siro, http):
    body = _seed(contactName="Ada", customerPhone="+1555")(upload(http, siro))
    (issue,) = create(http, siro, body).json()["issues"]
    assert issue["code"] == "unrecognized_keys" and issue["keys"] == ["contactName"]
    assert "Ada" not in issue["message"]
    body = {"fileUrl": upload(http, current_siro), "fileType": "mp3", "userId": "u", "customerPhone": "+1555"}
    (issue,) = create(http, current_siro, body).json()["issues"]
    assert issue["code"] == "unrecognized_keys" and issue["keys"] == ["customerPhone"]
    assert "+1555" not in issue["message"]


@pytest.mark.parametrize(
    "make_body",
    [
        _seed(userEmail=None),
        _seed(userEmail=""),
        _seed(userEmail="   ", userId="", userPhone=""),
        _seed(integrationConnectionId="conn_1"),
        _seed(crmObjects=[{"objectType": "Lead", "objectId": "1"}]),
    ],
)
def test_create_rule_violations_are_400(siro, http, make_body):
    assert_error(create(http, siro, make_body(upload(http, siro))), 400)
    assert siro.recordings == {}


def test_create_needs_an_uploaded_file(siro, http):
    never_put = signed_urls(http, siro)
    uploaded = signed_urls(http, siro)
    assert put(http, uploaded, AUDIO).status_code == 200
    for url in (
        never_put["downloadUrl"],  # signed, but nothing was uploaded
        uploaded["uploadUrl"],  # the upload URL is not the download URL
        with_query(uploaded["downloadUrl"], **{"X-Goog-Signature": "0" * 64}),
        uploaded["downloadUrl"].split("?")[0],
        "https://example.com/call.mp3",
    ):
        assert "not found" in assert_error(create(http, siro, _seed()(url)), 400).lower()
    assert siro.recordings == {}
    assert create(http, siro, _seed()(uploaded["downloadUrl"])).status_code == 201


def test_create_file_type_must_match_the_upload(siro, http):
    download_url = upload(http, siro, "mp3")
    assert "fileType" in assert_error(create(http, siro, _seed(fileType="wav")(download_url)), 400)
    assert siro.recordings == {}


def test_create_needs_a_token(siro, http):
    body = _seed()(upload(http, siro))
    answer = http.post(f"{siro.url}/v1/core/recordings/upload", json=body, timeout=10)
    assert_error(answer, 401)


@pytest.mark.parametrize("stamp", ["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.123456Z"])
def test_create_accepts_zulu_date_created(siro, http, stamp):
    assert create(http, siro, _seed(dateCreated=stamp)(upload(http, siro))).status_code == 201


# --------------------------------------------------------------------------- read a recording


def created_recording(http, server, token: str, **changes: Any) -> str:
    body = _seed(
        title="Renewal",
        dateCreated="2024-05-01T10:00:00Z",
        integrationConnectionId="conn_1",
        crmObjects=[
            {"objectType": "Opportunity", "objectId": "006A"},
            {"objectType": "Contact", "objectId": "003B"},
        ],
        **changes,
    )(upload(http, server))
    answer = create(http, server, body, token)
    assert answer.status_code == 201, answer.text
    return answer.json()["data"]["id"]


def test_recording_completes_after_processing_polls(http):
    flags = {"showSummary": "true", "showEntityExtractions": "true", "showCrmOpportunities": "true"}
    extras = {"summary", "entityExtractions", "crmOpportunities"}
    with OfflineSiro(api="original", processing_polls=3) as server:
        token = server.issue_access_token()
        recording_id = created_recording(http, server, token)
        for _ in range(2):
            data = get_recording(http, server, recording_id, token, **flags).json()["data"]
            assert data["processingStatus"] == "in-progress"
            assert data["processingStage"] != "done"
            assert not extras & set(data)
        answer = get_recording(http, server, recording_id, token, **flags)
        assert answer.status_code == 200
        data = answer.json()["data"]
        assert data["id"] == recording_id and data["title"] == "Renewal"
        assert data["processingStatus"] == "complete" and data["processingStage"] == "done"
        assert data["transcriptionStatus"] == "complete"
        assert data["dateCreated"] == "2024-05-01T10:00:00Z"
        assert isinstance(data["summary"], str) and data["summary"]
        assert isinstance(data["entityExtractions"], list)
        assert data["crmOpportunities"] == [{"objectType": "Opportunity", "objectId": "006A"}]
        # Without the flags, no extras; it stays complete.
        data = get_recording(http, server, recording_id, token).json()["data"]
        assert data["processingStatus"] == "complete" and not extras & set(data)
        assert get_recording(http, server, recording_id, token, showSummary="false").json()[
            "data"
        ].keys() == (data.keys())


def test_recording_set_to_error(siro, http):
    token = siro.issue_access_token()
    recording_id = created_recording(http, siro, token)
    siro.set_recording_status(recording_id, "error")
    for _ in range(siro.processing_polls + 1):
        data = get_recording(http, siro, recording_id, token, showSummary="true").json()["data"]
        assert data["processingStatus"] == "error"
        assert data["transcriptionStatus"] == "error"
        assert "summary" not in data


def test_recording_not_found(siro, http):
    token = siro.issue_access_token()
    recording_id = created_recording(http, siro, token)
    other_user = siro.issue_access_token(user_id="user_someone_else")
    assert_error(get_recording(http, siro, "rec_unknown", token), 404)
    assert_error(get_recording(http, siro, recording_id, other_user), 404)
    assert get_recording(http, siro, recording_id, token).status_code == 200
    siro.delete_recording(recording_id)
    assert_error(get_recording(http, siro, recording_id, token), 404)
    assert_error(get_recording(http, siro, recording_id, "not-a-token"), 401)


# --------------------------------------------------------------------------- injected faults


def test_status_faults_with_and_without_retry_after(siro, http):
    objects_before = len(siro.objects)
    body = {"fileType": "mp3", "fileSize": 10}
    siro.add_fault("signed_urls", status=429)
    siro.add_fault("signed_urls", status=503, retry_after=7)
    first, second, third = (sign(http, siro, body) for _ in range(3))
    assert_error(first, 429)
    assert "Retry-After" not in first.headers
    assert_error(second, 503)
    assert second.headers["Retry-After"] == "7"
    assert third.status_code == 200
    assert [(r.status, r.fault) for r in siro.requests] == [
        (429, "manual"),
        (503, "manual"),
        (200, None),
    ]
    assert siro.fault_counts["signed_urls:manual"] == 2
    assert len(siro.objects) == objects_before + 1  # a status fault answers without acting

    siro.add_fault("signed_urls", status=500, body={"error": "custom"})
    assert sign(http, siro, body).json() == {"error": "custom"}


def test_status_fault_on_create_acted_or_not(siro, http):
    download_url = upload(http, siro)
    siro.add_fault("create_recording", status=503)
    assert_error(create(http, siro, _seed()(download_url)), 503)
    assert siro.recordings == {}
    siro.add_fault("create_recording", status=500, acted=True)
    assert_error(create(http, siro, _seed()(download_url)), 500)
    assert len(siro.recordings) == 1


def test_drop_before_and_after_on_create(siro, http):
    download_url = upload(http, siro)
    siro.add_fault("create_recording", drop="before")
    with pytest.raises(requests.ConnectionError):
        create(http, siro, _seed()(download_url))
    assert len(siro.recordings) == 0
    siro.add_fault("create_recording", drop="after")
    with pytest.raises(requests.ConnectionError):
        create(http, siro, _seed()(download_url))
    assert len(siro.recordings) == 1
    assert create(http, siro, _seed()(download_url)).status_code == 201
    assert len(siro.recordings) == 2
    creates = [r for r in siro.requests if r.endpoint == "create_recording"]
    assert [(r.status, r.fault) for r in creates] == [(None, "manual"), (None, "manual"), (201, None)]
    with pytest.raises(ValueError, match="drop"):
        siro.add_fault("create_recording", drop="sideways")


def test_drop_mid_upload(siro, http):
    data = os.urandom(3 * MiB)
    signed = signed_urls(http, siro, "mp3", len(data))
    siro.add_fault("upload_put", drop="mid")
    with pytest.raises(requests.ConnectionError):
        put(http, signed, data)
    name = object_name(signed["uploadUrl"])
    assert not siro.objects[name].uploaded
    (dropped,) = [r for r in siro.requests if r.endpoint == "upload_put"]
    assert dropped.status is None and dropped.fault == "manual"
    assert 0 < dropped.body_size < len(data)
    assert_error(create(http, siro, _seed()(signed["downloadUrl"])), 400)
    # A second attempt from the first byte works.
    assert put(http, signed, data).status_code == 200
    assert siro.objects[name].sha256 == hashlib.sha256(data).hexdigest()


def test_drop_mid_upload_of_a_small_file_still_stops_half_way(siro, http):
    # A body smaller than the server's read chunk is cut half-way too, not stored and then dropped.
    data = os.urandom(100_000)
    signed = signed_urls(http, siro, "mp3", len(data))
    siro.add_fault("upload_put", drop="mid")
    with pytest.raises(requests.ConnectionError):
        put(http, signed, data)
    assert not siro.objects[object_name(signed["uploadUrl"])].uploaded
    (dropped,) = [r for r in siro.requests if r.endpoint == "upload_put"]
    assert dropped.body_size == len(data) // 2


def test_delay_fault_runs_past_a_client_timeout(siro, http):
    minted = mint(http, siro, clientSecret=siro.client_secret, userId=siro.user_id, scope="write").json()
    siro.add_fault("get_token", delay=1.0)
    url = f"{siro.auth_url}/v1/core/oauth/apps/{siro.client_id}/access-token/{minted['accessTokenId']}"
    headers = {"Authorization": f"Bearer {siro.org_token}"}
    with pytest.raises(requests.ReadTimeout):
        http.get(url, headers=headers, timeout=(5, 0.1))
    assert http.get(url, headers=headers, timeout=10).status_code == 200
    # The delayed request is still answered, late; wait for it so it cannot land in a later test's log.
    deadline = threading.Event()
    for _ in range(100):
        statuses = [(r.status, r.fault) for r in siro.requests if r.endpoint == "get_token"]
        if len(statuses) == 2:
            break
        deadline.wait(0.1)
    assert sorted(statuses, key=str) == [(200, "manual"), (200, None)]


def test_fault_for_every_request_until_cleared(siro, http):
    siro.add_fault("signed_urls", status=502, times=None)
    for _ in range(4):
        assert_error(sign(http, siro, {"fileType": "mp3", "fileSize": 10}), 502)
    # Other endpoints are not affected.
    assert (
        mint(
            http,
            siro,
            clientSecret=siro.client_secret,
            userId=siro.user_id,
            scope="write",
        ).status_code
        == 201
    )
    assert siro.fault_counts["signed_urls:manual"] == 4
    siro.clear_faults()
    assert sign(http, siro, {"fileType": "mp3", "fileSize": 10}).status_code == 200


def _soak(server: OfflineSiro, seed: int) -> tuple[list[str | None], list[Any], Counter[str]]:
    """30 signed-URL requests under random faults: the server's log and what the client saw."""
    server.clear_requests()
    server.fault_counts.clear()
    server.random_faults(seed, rate=0.5)
    token = server.issue_access_token()
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    seen: list[Any] = []
    for _ in range(30):
        try:
            answer = sign(session, server, {"fileType": "mp3", "fileSize": 10}, token)
        except requests.ConnectionError:
            seen.append("dropped")
        else:
            seen.append((answer.status_code, answer.headers.get("Retry-After")))
    session.close()
    log = server.requests
    assert [r.status for r in log] == [None if s == "dropped" else s[0] for s in seen]
    return [r.fault for r in log], seen, Counter(server.fault_counts)


def test_random_faults_are_deterministic(siro, http):
    with OfflineSiro(api="original", slow_delay=0.01) as server:
        faults, seen, counts = _soak(server, seed=11)
        assert _soak(server, seed=11) == (faults, seen, counts)
        assert _soak(server, seed=12)[0] != faults
    assert None in faults and len(set(faults)) > 3
    assert counts == Counter(kind for kind in faults if kind is not None)
    for kind, outcome in zip(faults, seen, strict=True):
        if kind is None or kind == "slow":
            assert outcome == (200, None)
        elif kind.startswith("drop-"):
            assert outcome == "dropped"
        else:
            assert outcome == (int(kind[:3]), "1" if kind.endswith("retry-after") else None)

    with pytest.raises(ValueError, match="unknown fault kinds"):
        siro.random_faults(1, rate=0.5, kinds=["418"])
    siro.random_faults(1, rate=1.0, kinds=["500"])
    assert sign(http, siro, {"fileType": "mp3", "fileSize": 10}).status_code == 500
    siro.random_faults(1, rate=0)  # off
    assert sign(http, siro, {"fileType": "mp3", "fileSize": 10}).status_code == 200


# --------------------------------------------------------------------------- control endpoints


def test_control_endpoints(siro, http):
    token = siro.issue_access_token()
    minted = mint(http, siro, clientSecret=siro.client_secret, userId=siro.user_id, scope="write")
    assert minted.status_code == 201
    signed = signed_urls(http, siro)
    assert put(http, signed, AUDIO).status_code == 200
    recording_id = create(http, siro, _seed(title="Via HTTP")(signed["downloadUrl"]), token).json()["data"][
        "id"
    ]

    logged = http.get(f"{siro.url}/_offline/requests", timeout=10)
    assert logged.status_code == 200
    entries = logged.json()
    assert [e["endpoint"] for e in entries] == ["mint_token", "signed_urls", "upload_put", "create_recording"]
    assert entries[0]["headers"]["Authorization"] == "<redacted>"
    assert entries[-1]["headers"]["x-siro-auth-token"] == "<redacted>"
    assert entries[-1]["headers"]["User-Agent"] == USER_AGENT
    assert entries[-1]["status"] == 201 and entries[-1]["json"]["title"] == "Via HTTP"
    upload_signature = parse_qs(urlsplit(signed["uploadUrl"]).query)["X-Goog-Signature"][0]
    for secret in (token, siro.org_token, upload_signature):
        assert secret not in logged.text
    assert all("?" not in e["path"] for e in entries)

    recordings = http.get(f"{siro.url}/_offline/recordings", timeout=10).json()
    assert list(recordings) == [recording_id]
    assert recordings[recording_id]["body"]["title"] == "Via HTTP"
    assert datetime.fromisoformat(recordings[recording_id]["created_at"]).tzinfo is not None

    fault = {"endpoint": "signed_urls", "status": 503, "retry_after": 2, "times": None}
    assert http.post(f"{siro.url}/_offline/faults", json=fault, timeout=10).status_code == 201
    refused = sign(http, siro, {"fileType": "mp3", "fileSize": 10})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
    siro.random_faults(3, rate=1.0, kinds=["500"])

    assert http.post(f"{siro.url}/_offline/reset", timeout=10).status_code == 200
    assert siro.requests == []
    assert sign(http, siro, {"fileType": "mp3", "fileSize": 10}).status_code == 200  # faults gone
    assert list(siro.recordings) == [recording_id]  # recordings stay
    # Control requests are not part of the log.
    assert [r.endpoint for r in siro.requests] == ["signed_urls"]
    assert_error(http.get(f"{siro.url}/_offline/nothing", timeout=10), 404)


def test_control_endpoints_answer_on_a_fresh_connection(siro):
    # Another process (a scheduler, say) opens a new connection for a single control call.
    for method, path in [("GET", "requests"), ("GET", "recordings"), ("POST", "reset")]:
        with requests.Session() as session:
            session.headers["User-Agent"] = USER_AGENT
            answer = session.request(method, f"{siro.url}/_offline/{path}", timeout=10)
            assert answer.status_code == 200, path
    with requests.Session() as session:
        fault = {"endpoint": "get_recording", "status": 500}
        assert session.post(f"{siro.url}/_offline/faults", json=fault, timeout=10).status_code == 201
    assert siro.requests == []


# --------------------------------------------------------------------------- listing recordings


def list_recordings(http, server, token: str, **query: Any) -> requests.Response:
    return http.get(
        f"{server.url}/v1/core/recordings", params=query, headers={"x-siro-auth-token": token}, timeout=10
    )


def current_recording(http, server, token: str, **fields: Any) -> str:
    body = {"fileUrl": upload(http, server), "fileType": "mp3", "userId": "u1", **fields}
    answer = create(http, server, body, token)
    assert answer.status_code == 201, answer.text
    return answer.json()["data"]["recordingId"]


def test_list_shows_the_users_recordings_with_the_fields_a_client_matches_on(current_siro, http):
    token = current_siro.issue_access_token()
    first = current_recording(
        http,
        current_siro,
        token,
        title="QBR",
        result="closed",
        discoverable=True,
        dateCreated="2024-05-01T10:00:00Z",
    )
    second = current_recording(http, current_siro, token)
    other_user = current_siro.issue_access_token(user_id="user_someone_else")
    current_recording(http, current_siro, other_user)

    answer = list_recordings(http, current_siro, token)

    assert answer.status_code == 200, answer.text
    assert answer.json()["cursor"] is None
    items = {item["id"]: item for item in answer.json()["data"]}
    assert set(items) == {first, second}
    assert items[first] == {
        "id": first,
        "title": "QBR",
        "userId": "u1",
        "dateCreated": "2024-05-01T10:00:00Z",
        "durationInMilliseconds": len(AUDIO) // 16,
        "result": "closed",
        "discoverable": True,
        "isPrivate": False,
    }
    assert items[second]["result"] is None and items[second]["discoverable"] is False
    # Without a dateCreated in the body, the recording is dated when it was created, to the millisecond.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", items[second]["dateCreated"])


def test_list_filters_by_date_created_exclusively(current_siro, http):
    token = current_siro.issue_access_token()
    ids = {
        stamp: current_recording(http, current_siro, token, dateCreated=stamp)
        for stamp in ("2024-05-01T10:00:00Z", "2024-05-01T10:00:01Z", "2024-05-01T10:00:02Z")
    }

    def listed(**query: str) -> set[str]:
        answer = list_recordings(http, current_siro, token, **query)
        assert answer.status_code == 200, answer.text
        return {item["id"] for item in answer.json()["data"]}

    assert listed(**{"dateCreated:gt": "2024-05-01T10:00:00.000Z"}) == {
        ids["2024-05-01T10:00:01Z"],
        ids["2024-05-01T10:00:02Z"],
    }
    assert listed(
        **{"dateCreated:gt": "2024-05-01T10:00:00.999Z", "dateCreated:lt": "2024-05-01T10:00:01.001Z"}
    ) == {ids["2024-05-01T10:00:01Z"]}
    assert listed(**{"dateCreated:lt": "2024-05-01T10:00:00.000Z"}) == set()


def test_list_pages_with_a_cursor_in_either_order(current_siro, http):
    token = current_siro.issue_access_token()
    made = [
        current_recording(http, current_siro, token, dateCreated=f"2024-05-01T10:00:{second:02d}Z")
        for second in range(7)
    ]
    for direction, expected in (("asc", made), ("desc", made[::-1])):
        seen: list[str] = []
        query: dict[str, str] = {"limit": "3", "orderBy": "dateCreated", "orderDirection": direction}
        pages = 0
        while True:
            body = list_recordings(http, current_siro, token, **query).json()
            pages += 1
            assert len(body["data"]) <= 3
            seen += [item["id"] for item in body["data"]]
            if body["cursor"] is None:
                break
            query["cursor"] = body["cursor"]
        assert seen == expected and pages == 3


def test_list_default_order_is_newest_first(current_siro, http):
    token = current_siro.issue_access_token()
    older = current_recording(http, current_siro, token, dateCreated="2024-05-01T10:00:00Z")
    newer = current_recording(http, current_siro, token, dateCreated="2024-06-01T10:00:00Z")
    assert [item["id"] for item in list_recordings(http, current_siro, token).json()["data"]] == [
        newer,
        older,
    ]


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({"limit": "101"}, ["limit"]),
        ({"limit": "0"}, ["limit"]),
        ({"limit": "ten"}, ["limit"]),
        ({"dateCreated:gt": "yesterday"}, ["dateCreated:gt"]),
        ({"dateCreated:lt": "2024-05-01T10:00:00"}, ["dateCreated:lt"]),
        ({"orderDirection": "up"}, ["orderDirection"]),
        ({"orderBy": "secretField"}, ["orderBy"]),
        ({"cursor": "not-a-cursor"}, ["cursor"]),
    ],
)
def test_list_refuses_bad_parameters_with_a_422(current_siro, http, query, path):
    answer = list_recordings(http, current_siro, current_siro.issue_access_token(), **query)
    assert answer.status_code == 422
    assert [issue["path"] for issue in answer.json()["issues"]] == [path]


def test_list_needs_a_token(current_siro, http):
    assert_error(http.get(f"{current_siro.url}/v1/core/recordings", timeout=10), 401)


def test_caller_identity_names_the_organization(siro, http):
    answer = http.get(
        f"{siro.auth_url}/v1/core/auth/caller-identity",
        headers={"Authorization": f"Bearer {siro.org_token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["organizationId"] == siro.organization_id
    assert siro.org_token not in answer.text
    refused = http.get(
        f"{siro.auth_url}/v1/core/auth/caller-identity", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert_error(refused, 401)


# --------------------------------------------------------------------------- the house


def test_the_server_package_has_no_import_cycle():
    """The handlers are registered without importing the server module back (issue 22)."""
    import ast
    from pathlib import Path

    import airflow_provider_siro.testing as package

    root = Path(package.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):  # every level, TYPE_CHECKING blocks included
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        graph[path.stem] = {
            name.rsplit(".", 1)[-1] for name in imported if name.startswith("airflow_provider_siro.testing.")
        }
    assert "server" not in set().union(
        *(graph[name] for name in graph if name not in ("__init__", "__main__", "cli", "pytest_plugin"))
    )

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, set()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [name for name in graph if reaches(name, name, set())] == []


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    ("api", "url_key", "id_key"), [("current", "fileUrl", "recordingId"), ("original", "downloadUrl", "id")]
)
def test_cli_serves_the_api_it_is_asked_for(api, url_key, id_key, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout is a pipe, as in CI
    connection_file = tmp_path / "siro.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_siro.testing",
            "serve",
            "--port",
            "0",
            "--api",
            api,
            "--connection-file",
            str(connection_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)
    reader.start()
    try:
        while "Offline Siro listening on" not in (line := lines.get(timeout=20)):
            pass
        assert f"(the {api} API;" in line
        while "export AIRFLOW_CONN_SIRO_DEFAULT=" not in lines.get(timeout=20):
            pass
        pasted = json.loads(connection_file.read_text())
        assert pasted["conn_type"] == "siro"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", pasted["host"])
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        auth = {"x-siro-auth-token": pasted["password"]}

        def create_with(key: str) -> requests.Response:
            answer = session.post(
                f"{pasted['host']}/v1/core/recordings/signed-urls",
                json={"fileType": "mp3", "fileSize": len(AUDIO)},
                headers=auth,
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            signed = answer.json()["data"]
            assert put(session, signed, AUDIO).status_code == 200
            return session.post(
                f"{pasted['host']}/v1/core/recordings/upload",
                json={key: signed["downloadUrl"], "fileType": "mp3", "userEmail": "rep@example.com"},
                headers=auth,
                timeout=10,
            )

        created = create_with(url_key)
        assert created.status_code == 201, created.text
        assert set(created.json()["data"]) == {id_key}
        other_key = "downloadUrl" if url_key == "fileUrl" else "fileUrl"
        refused = create_with(other_key)
        assert refused.status_code == 422
        assert any(issue.get("keys") == [other_key] for issue in refused.json()["issues"])
        session.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
