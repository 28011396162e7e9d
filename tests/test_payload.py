"""payload.py: request bodies in both namings, date formatting, and every validation rule.

Pure functions, so these tests need no server and no DAG run.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pendulum
import pytest

from airflow_provider_siro.exceptions import SiroValidationError
from airflow_provider_siro.payload import (
    RECORDING_FIELD_ARGS,
    check_crm_objects,
    check_file_type,
    check_signed_url_request,
    check_text,
    check_url,
    file_type_from_path,
    format_date_created,
    recording_id_from,
    rejects_field_name,
    resolve_file_type,
    validate_recording_fields,
)

URL = "https://storage.googleapis.com/siro-uploads/abc.mp3?X-Goog-Signature=deadbeef"
CRM = [{"objectType": "Opportunity", "objectId": "006xx1"}]


def rejects(field: str, text: str):
    """``pytest.raises`` for a SiroValidationError naming ``field`` with ``text`` in its message."""
    return pytest.raises(SiroValidationError, match=rf"^{re.escape(field)}: .*{re.escape(text)}")


# ---------------------------------------------------------------------------------------- bodies
def test_original_body_has_the_seed_names_in_camel_case_and_leaves_unset_fields_out():
    fields = validate_recording_fields(
        "mp3",
        title="QBR",
        user_email="ae@acme.io",
        customer_phone="+1 555 010 2001",
        customer_name="Ada Lovelace",
        date_created="2026-03-01T09:30:00Z",
        user_id=None,
        crm_objects=None,
    )

    body = fields.to_body(URL, api="original")

    assert body == {
        "downloadUrl": URL,
        "fileType": "mp3",
        "title": "QBR",
        "userEmail": "ae@acme.io",
        "customerPhone": "+1 555 010 2001",
        "customerName": "Ada Lovelace",
        "dateCreated": "2026-03-01T09:30:00Z",
    }
    assert None not in body.values()


def test_every_original_field_maps_to_its_wire_name():
    fields = validate_recording_fields(
        "wav",
        title="t",
        user_id="u-1",
        user_email="a@b.io",
        user_phone="+15550102000",
        organization_id="org-1",
        conversation_type="Discovery",
        integration_connection_id="conn-1",
        crm_objects=CRM,
        customer_phone="555 010 2001",
        customer_name="Ada",
        date_created="2026-03-01T09:30:00Z",
    )

    assert list(fields.to_body(URL, api="original")) == [
        "downloadUrl",
        "fileType",
        "title",
        "userId",
        "userEmail",
        "userPhone",
        "organizationId",
        "conversationType",
        "integrationConnectionId",
        "crmObjects",
        "customerPhone",
        "customerName",
        "dateCreated",
    ]


def test_current_body_is_the_default_and_sends_the_renamed_fields_instead_never_both():
    fields = validate_recording_fields(
        "aac", user_id="u-1", customer_phone="+15550102001", customer_name="Ada", title="t"
    )

    body = fields.to_body(URL)

    assert body == {
        "fileUrl": URL,
        "fileType": "aac",
        "title": "t",
        "userId": "u-1",
        "contactPhone": "+15550102001",
        "contactName": "Ada",
    }
    assert fields.to_body(URL, api="current") == body


def test_the_field_list_is_the_operator_contract_in_order():
    assert RECORDING_FIELD_ARGS == (
        "title",
        "user_id",
        "user_email",
        "user_phone",
        "organization_id",
        "conversation_type",
        "integration_connection_id",
        "crm_objects",
        "customer_phone",
        "customer_name",
        "date_created",
        "discoverable",
        "result",
    )


@pytest.mark.parametrize("result", ["closed", "not closed", "in progress"])
@pytest.mark.parametrize("discoverable", [True, False])
def test_discoverable_and_result_go_in_the_current_body_under_those_names(result, discoverable):
    fields = validate_recording_fields("mp3", user_id="u-1", discoverable=discoverable, result=result)

    body = fields.to_body(URL)

    assert body == {
        "fileUrl": URL,
        "fileType": "mp3",
        "userId": "u-1",
        "discoverable": discoverable,
        "result": result,
    }


@pytest.mark.parametrize("value", ["maybe", "Closed", "closed ", "", 1, ["closed"]])
def test_result_outside_the_three_values_is_refused_naming_it(value):
    with rejects("result", "must be one of 'closed', 'not closed', 'in progress'"):
        validate_recording_fields("mp3", user_id="u-1", result=value)


@pytest.mark.parametrize("value", ["true", "false", 1, 0, "yes"])
def test_discoverable_must_be_a_real_boolean(value):
    with rejects("discoverable", "must be true or false"):
        validate_recording_fields("mp3", user_id="u-1", discoverable=value)


@pytest.mark.parametrize(("arg", "value"), [("discoverable", False), ("result", "closed")])
def test_original_format_refuses_the_current_only_fields_naming_them(arg, value):
    fields = validate_recording_fields("mp3", user_id="u-1", **{arg: value})
    with rejects(arg, "pinned to its original field names (extra api_fields=original)"):
        fields.to_body(URL, api="original")


def test_an_unknown_wire_format_is_refused():
    with rejects("api_fields", "must be one of current, original, got 'newest'"):
        validate_recording_fields("mp3", user_id="u-1").to_body(URL, api="newest")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"data": {"recordingId": "rec_1"}}, "rec_1"),
        ({"data": {"id": "rec_2"}}, "rec_2"),
        ({"data": {"recordingId": "rec_3", "id": "other"}}, "rec_3"),
        ({"data": {"recordingId": ""}}, None),
        ({"data": {"id": 7}}, None),
        ({"data": None}, None),
        ({}, None),
        (["rec_4"], None),
        (None, None),
    ],
)
def test_the_recording_id_is_read_from_recording_id_or_id(answer, expected):
    assert recording_id_from(answer) == expected


CURRENT = {"fileUrl": URL, "fileType": "mp3", "userId": "u", "contactName": "Ada"}
ORIGINAL = {"downloadUrl": URL, "fileType": "mp3", "userId": "u", "customerName": "Ada"}


@pytest.mark.parametrize(
    ("status", "message", "issues", "sent", "expected"),
    [
        # An original-API server refusing a current body: Zod's unrecognized_keys and the missing URL.
        (
            422,
            "ZodError (2 issue(s))",
            [("", "Unrecognized key(s) in object: 'fileUrl', 'contactName'")],
            CURRENT,
            True,
        ),
        (422, "ZodError (1 issue(s))", [("fileUrl", "Required")], ORIGINAL, True),
        (422, "ZodError (1 issue(s))", [("downloadUrl", "Required")], CURRENT, True),
        (400, "Unrecognized key(s) in object: 'downloadUrl'", [], ORIGINAL, True),
        # Not about the names: a bad value, a key both formats have, other statuses.
        (422, "ZodError (1 issue(s))", [("dateCreated", "Invalid datetime")], CURRENT, False),
        (422, "ZodError (1 issue(s))", [("", "Unrecognized key(s) in object: 'userId'")], CURRENT, False),
        (422, "ZodError (1 issue(s))", [("fileType", "Required")], CURRENT, False),
        (400, "File not found at downloadUrl", [], ORIGINAL, False),
        (400, "At least one of userId, userEmail or userPhone is required", [], CURRENT, False),
        (500, "Unrecognized key(s) in object: 'fileUrl'", [], CURRENT, False),
        (None, "ConnectionError", [], CURRENT, False),
        (403, "Unrecognized key(s) in object: 'fileUrl'", [], CURRENT, False),
    ],
)
def test_which_answers_reject_a_field_name(status, message, issues, sent, expected):
    assert rejects_field_name(status, message, issues, sent) is expected


def test_body_refuses_a_download_url_that_is_not_http():
    fields = validate_recording_fields("mp3", user_id="u-1")
    with rejects("download_url", "must be an absolute http(s) URL"):
        fields.to_body("gs://bucket/abc.mp3")


def test_user_label_for_log_lines_prefers_the_email():
    assert validate_recording_fields("mp3", user_id="u-1", user_email="a@b.io").user == "userEmail=a@b.io"
    assert validate_recording_fields("mp3", user_phone="+15550102000").user == "userPhone=+15550102000"


# ---------------------------------------------------------------------------------------- dates
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (pendulum.datetime(2026, 3, 1, 9, 30, tz="UTC"), "2026-03-01T09:30:00Z"),
        (pendulum.datetime(2026, 3, 1, 9, 30, tz="Europe/Berlin"), "2026-03-01T08:30:00Z"),
        (pendulum.datetime(2026, 7, 1, 9, 30, tz="America/Los_Angeles"), "2026-07-01T16:30:00Z"),  # PDT
        (datetime(2026, 1, 1, 9, 30, tzinfo=ZoneInfo("America/Los_Angeles")), "2026-01-01T17:30:00Z"),  # PST
        (datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))), "2026-03-02T04:30:00Z"),
        (datetime(2026, 3, 1, 9, 30, 0, 250000, tzinfo=UTC), "2026-03-01T09:30:00.250000Z"),
        ("2026-03-01T09:30:00Z", "2026-03-01T09:30:00Z"),
        ("2026-03-01T09:30:00+01:00", "2026-03-01T08:30:00Z"),
        ("2026-03-01t09:30:00z", "2026-03-01T09:30:00Z"),
        ("2026-03-01T09:30:00.5-02:00", "2026-03-01T11:30:00.500000Z"),
        # What "{{ logical_date }}" renders to without native rendering: str() of a pendulum DateTime.
        (str(pendulum.datetime(2026, 3, 1, 9, 30, tz="UTC")), "2026-03-01T09:30:00Z"),
    ],
)
def test_date_created_is_sent_as_rfc3339_in_utc(value, expected):
    assert format_date_created(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (datetime(2026, 3, 1, 9, 30), "has no time zone"),
        (pendulum.naive(2026, 3, 1, 9, 30), "has no time zone"),
        ("2026-03-01T09:30:00", "is not an RFC 3339 date-time with a time zone"),
        ("2026-03-01 09:30", "is not an RFC 3339 date-time with a time zone"),
        ("2026-03-01", "is not an RFC 3339 date-time with a time zone"),
        ("yesterday", "is not an RFC 3339 date-time with a time zone"),
        ("2026-02-30T09:30:00Z", "is not a valid date-time"),
        (date(2026, 3, 1), "is a date without a time"),
        # In range where it was written, out of range in UTC: no OverflowError (which would be retried).
        ("9999-12-31T23:30:00-01:00", "is outside the years 1 to 9999 in UTC"),
        (
            datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
            "is outside the years 1 to 9999 in UTC",
        ),
        (1767225600, "must be a datetime or an RFC 3339 string, got int"),
    ],
)
def test_date_created_refuses_anything_without_a_definite_moment(value, problem):
    with rejects("date_created", problem):
        format_date_created(value)


# ---------------------------------------------------------------------------------------- file type
@pytest.mark.parametrize(
    ("value", "expected"), [("mp3", "mp3"), ("MP3", "mp3"), (".wav", "wav"), (" aac ", "aac")]
)
def test_file_type_spellings(value, expected):
    assert check_file_type(value) == expected


@pytest.mark.parametrize("value", ["flac", "", "mpeg", 3])
def test_file_type_outside_the_three_formats_is_refused(value):
    with rejects("file_type", "must be one of mp3, aac, wav"):
        check_file_type(value)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/calls/a.mp3", "mp3"),
        ("/calls/A.WAV", "wav"),
        ("/calls/a.m4a", "aac"),
        ("s3://bucket/calls/a.aac", "aac"),
        ("s3://aws_default@bucket/calls/a.wav", "wav"),
        ("https://storage.example/a.mp3?X-Goog-Signature=x.wav", "mp3"),
        ("/calls/a.ogg", None),
        ("/calls/mp3", None),
    ],
)
def test_file_type_from_the_extension(path, expected):
    assert file_type_from_path(path) == expected


def test_file_type_is_inferred_from_the_source_or_must_agree_with_it():
    assert resolve_file_type(None, "/calls/a.wav") == "wav"
    assert resolve_file_type("WAV", "/calls/a.wav") == "wav"
    with rejects("file_type", "is 'mp3' but source_path '/calls/a.wav' has a .wav extension"):
        resolve_file_type("mp3", "/calls/a.wav")
    with rejects("source_path", "has extension .ogg, which does not match file_type 'mp3'"):
        resolve_file_type("mp3", "/calls/a.ogg")
    # The extension the path has, not the format it stands for.
    with rejects("file_type", "is 'wav' but source_path '/calls/a.m4a' has a .m4a extension, which is aac"):
        resolve_file_type("wav", "/calls/a.m4a")
    with rejects("source_path", "has extension .ogg, which does not match"):
        resolve_file_type("mp3", "s3://bucket/calls/a.OGG")
    with rejects("file_type", "is required: source_path '/calls/a.ogg' has no .mp3, .aac or .wav extension"):
        resolve_file_type(None, "/calls/a.ogg")


# ---------------------------------------------------------------------------------------- rules
@pytest.mark.parametrize(
    ("arg", "wire", "value"),
    [
        ("user_id", "userId", "u-1"),
        ("user_email", "userEmail", "a@b.io"),
        ("user_phone", "userPhone", "+15550102000"),
    ],
)
def test_any_one_user_identity_is_enough(arg, wire, value):
    fields = validate_recording_fields("mp3", **{arg: value})
    assert fields.values == {arg: value}
    assert fields.to_body(URL)[wire] == value


def test_a_recording_without_a_user_is_refused():
    with rejects("user_id", "set user_id, user_email or user_phone"):
        validate_recording_fields("mp3", title="Call", customer_name="Ada")


def test_integration_connection_and_crm_objects_go_together():
    with rejects("crm_objects", "is required when integration_connection_id is set"):
        validate_recording_fields("mp3", user_id="u", integration_connection_id="conn-1")
    with rejects("integration_connection_id", "is required when crm_objects is set"):
        validate_recording_fields("mp3", user_id="u", crm_objects=CRM)
    fields = validate_recording_fields(
        "mp3", user_id="u", integration_connection_id="conn-1", crm_objects=CRM
    )
    assert fields.to_body(URL)["crmObjects"] == CRM


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("user_email", "rep.example.com", "'rep.example.com' is not an email address"),
        ("user_email", "rep @example.com", "is not an email address"),
        ("user_phone", "call me", "is not a phone number"),
        ("user_phone", "+1 555", "is not a phone number (7 to 15 digits"),
        ("customer_phone", "+1 555 010 2000 1234 5678", "is not a phone number"),
        ("title", "", "is empty; leave it unset (None) to omit it"),
        ("title", "   ", "is empty"),
        ("title", "x" * 2049, "is 2049 characters long; at most 2048"),
        ("title", "Call {{ ds }", "contains an unrendered Jinja expression"),
        ("customer_name", "Ada\x00", "contains the character U+0000 (Cc)"),
        # With render_template_as_native_obj, "{{ params.user_id }}" of "12345" renders as an int.
        ("user_id", 12345, "must be a string, got int"),
        ("organization_id", ["org"], "must be a string, got list"),
    ],
)
def test_text_fields_are_checked_and_named(field, value, problem):
    others = {"user_id": "u-1"} if field != "user_id" else {"user_email": "a@b.io"}
    with rejects(field, problem):
        validate_recording_fields("mp3", **{**others, field: value})


TEXT_FIELDS = (
    "title",
    "user_id",
    "user_email",
    "user_phone",
    "organization_id",
    "conversation_type",
    "integration_connection_id",
    "customer_phone",
    "customer_name",
)


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize(
    "value", [15550102001, 1.5, True, ["x"], {"id": "x"}, b"x"], ids=lambda v: type(v).__name__
)
def test_every_text_field_refuses_what_is_not_a_string(field, value):
    others: dict[str, object] = {"user_id": "u-1"} if field != "user_id" else {"user_email": "a@b.io"}
    if field == "integration_connection_id":
        others["crm_objects"] = CRM
    with rejects(field, f"must be a string, got {type(value).__name__}"):
        validate_recording_fields("mp3", **{**others, field: value})


def test_an_unknown_field_is_named():
    with rejects("customer_email", "is not a Siro recording field"):
        validate_recording_fields("mp3", user_id="u", customer_email="a@b.io")


def test_tab_is_allowed_in_text_but_other_control_characters_are_not():
    assert check_text("title", "Call\twith Ada") == "Call\twith Ada"
    with rejects("title", "U+001B"):
        check_text("title", "Call\x1b[31m")


@pytest.mark.parametrize(
    "text",
    [
        "José Müller",
        "Zoë O'Brien-Łukasiewicz",
        "\u200f\u05e9\u05d9\u05e8\u05d4 \u05db\u05d4\u05df",  # Hebrew, after a right-to-left mark
        "\u0645\u062d\u0645\u062f \u0639\u0644\u064a",  # Arabic
        "田中 太郎",
        "\u0915\u094d\u200d\u0937",  # Devanagari with a zero-width joiner
        "Call 🎧 with 👩\u200d💼",  # an emoji sequence joined by U+200D
        "Call 🫨",  # Unicode 15: unassigned to Python 3.11's database, a real emoji to Siro
        "Ticket \U000f0001",  # private use
    ],
)
def test_text_in_any_script_with_emoji_is_accepted(text):
    assert check_text("title", text) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Ada\nLovelace", "U+000A (Cc), which is not printable text"),
        ("Ada\x7f", "U+007F (Cc)"),
        ("Ada\ud800", "U+D800 (Cs), which is not printable text"),  # a lone surrogate
        ("Ada\u2028Lovelace", "U+2028 (Zl)"),
        ("Ada\uffff", "U+FFFF (Cn)"),  # noncharacters, unlike unassigned code points, never become text
        ("Ada\ufdd0", "U+FDD0 (Cn)"),
        ("Ada\U0010fffe", "U+10FFFE (Cn)"),
        ("\u202eAda", "U+202E (RIGHT-TO-LEFT OVERRIDE), which reorders how the text after it is displayed"),
        ("Ada\u202d", "U+202D (LEFT-TO-RIGHT OVERRIDE)"),
    ],
)
def test_characters_that_are_not_text_are_refused(text, problem):
    with rejects("customer_name", f"contains the character {problem}"):
        check_text("customer_name", text)


def test_an_empty_required_value_says_what_to_give():
    with rejects("download_url", "is empty; give an absolute http(s) URL"):
        check_url("download_url", " ")
    with rejects("crm_objects[0].objectId", "is empty; every CRM object needs the id of its record"):
        check_crm_objects([{"objectType": "Lead", "objectId": ""}])


def test_check_url_wants_an_absolute_http_url():
    assert check_url("download_url", URL) == URL
    for bad in ("storage.googleapis.com/a.mp3", "ftp://host/a.mp3", "https:///a.mp3"):
        with rejects("download_url", "must be an absolute http(s) URL"):
            check_url("download_url", bad)


# ---------------------------------------------------------------------------------------- CRM objects
def test_crm_objects_are_copied_clean():
    given = (
        {"objectType": "Account", "objectId": "001xx"},
        {"objectType": "ServiceAppointment", "objectId": "08pxx"},
    )
    assert check_crm_objects(given) == [dict(item) for item in given]


@pytest.mark.parametrize(
    ("value", "field", "problem"),
    [
        (
            '[{"objectType": "Lead"}]',
            "crm_objects",
            "must be a list of objects, got str (with a template, set ",
        ),
        ({"objectType": "Lead", "objectId": "1"}, "crm_objects", "must be a list of objects, got dict"),
        ([], "crm_objects", "is an empty list"),
        (["00Qxx"], "crm_objects[0]", "must be an object, got str"),
        (
            [{"objectType": "Deal", "objectId": "1"}],
            "crm_objects[0].objectType",
            "must be one of Opportunity",
        ),
        ([{"objectType": "opportunity", "objectId": "1"}], "crm_objects[0].objectType", "got 'opportunity'"),
        ([{"objectType": "Lead"}], "crm_objects[0].objectId", "is missing"),
        ([{"objectType": "Lead", "objectId": ""}], "crm_objects[0].objectId", "is empty"),
        ([{"objectType": "Lead", "objectId": 42}], "crm_objects[0].objectId", "must be a string, got int"),
        (
            [CRM[0], {"objectType": "Lead", "objectId": "1", "name": "x"}],
            "crm_objects[1]",
            "has unknown keys ['name']",
        ),
    ],
)
def test_crm_objects_shape_and_type_are_checked_and_named(value, field, problem):
    with rejects(field, problem):
        check_crm_objects(value)


# ---------------------------------------------------------------------------------------- signed URLs
def test_signed_url_request_wants_a_positive_byte_count():
    assert check_signed_url_request("MP3", 1) == ("mp3", 1)
    for size in (0, -1, True, 1.5, "10"):
        with rejects("file_size", "must be a positive integer of bytes"):
            check_signed_url_request("mp3", size)
