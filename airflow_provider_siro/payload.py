"""Build and validate Siro request bodies. Pure functions: no I/O, no Airflow state, no HTTP.

Everything a DAG author can get wrong is checked here, so that a bad value fails the task with a
message naming the argument *before* any audio is read or any request is sent. The names in error
messages are the operator's argument names (``user_email``), because that is what the author wrote;
the camelCase names only exist on the wire.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import PurePosixPath
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from airflow_provider_siro.exceptions import SiroValidationError

FILE_TYPES: tuple[str, ...] = ("mp3", "aac", "wav")
"""Audio formats Siro accepts, as the API spells them."""

CONTENT_TYPES: dict[str, str] = {"mp3": "audio/mpeg", "aac": "audio/aac", "wav": "audio/wav"}
"""The ``Content-Type`` Siro signs into the upload URL for each format."""

EXTENSIONS: dict[str, str] = {".mp3": "mp3", ".aac": "aac", ".m4a": "aac", ".wav": "wav", ".wave": "wav"}
"""File-name extensions recognised when ``file_type`` is inferred from a path."""

CRM_OBJECT_TYPES: tuple[str, ...] = (
    "Opportunity",
    "Account",
    "Contact",
    "Lead",
    "Engagement",
    "Event",
    "ServiceAppointment",
)

MAX_TEXT_LENGTH = 2048
"""Provider-side ceiling for free-text fields. Siro publishes none; this catches runaway templates."""

RESULTS: tuple[str, ...] = ("closed", "not closed", "in progress")
"""The values of ``result`` in Siro's current API (how the call ended)."""

API_FORMATS: tuple[str, ...] = ("current", "original")
"""The two wire formats of the create call: ``current`` is what Siro's published reference names
today (``fileUrl``, ``contactPhone``, ``contactName``, plus ``discoverable`` and ``result``);
``original`` is the seed document's (``downloadUrl``, ``customerPhone``, ``customerName``), which older
deployments may still speak. Siro refuses unknown properties, so a body is in one format or the other."""

# The recording fields, defined once: operator argument -> (original wire name, current wire name).
# ``None`` means the format has no such field. The audio's URL is not here: the upload produces it.
_FIELDS: dict[str, tuple[str | None, str]] = {
    "title": ("title", "title"),
    "user_id": ("userId", "userId"),
    "user_email": ("userEmail", "userEmail"),
    "user_phone": ("userPhone", "userPhone"),
    "organization_id": ("organizationId", "organizationId"),
    "conversation_type": ("conversationType", "conversationType"),
    "integration_connection_id": ("integrationConnectionId", "integrationConnectionId"),
    "crm_objects": ("crmObjects", "crmObjects"),
    "customer_phone": ("customerPhone", "contactPhone"),
    "customer_name": ("customerName", "contactName"),
    "date_created": ("dateCreated", "dateCreated"),
    "discoverable": (None, "discoverable"),
    "result": (None, "result"),
}

RECORDING_FIELD_ARGS: tuple[str, ...] = tuple(_FIELDS)
"""The operator argument names of every recording field, in order (the operators declare each one)."""

URL_FIELD: dict[str, str] = {"original": "downloadUrl", "current": "fileUrl"}
"""The wire name of the uploaded audio's URL in each format."""

WIRE_NAMES: dict[str, dict[str, str]] = {
    "original": {arg: names[0] for arg, names in _FIELDS.items() if names[0] is not None},
    "current": {arg: names[1] for arg, names in _FIELDS.items()},
}
"""Operator argument -> wire name, per format (``original`` lacks ``discoverable`` and ``result``)."""

SEED_FIELDS: dict[str, str] = WIRE_NAMES["original"]
"""The seed document's names (kept for callers of earlier versions)."""

FORMAT_ONLY_KEYS: dict[str, frozenset[str]] = {
    api: frozenset({URL_FIELD[api], *WIRE_NAMES[api].values()})
    - frozenset({URL_FIELD[other], *WIRE_NAMES[other].values()})
    for api, other in (("current", "original"), ("original", "current"))
}
"""Wire names that exist in one format only: the names a server speaking the other one rejects."""

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ().\-]+$")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$",
)
_JINJA = re.compile(r"\{\{|\{%|\{#|%\}|\}\}")
_BIDI_OVERRIDES = frozenset("\u202d\u202e")
"""LEFT-TO-RIGHT and RIGHT-TO-LEFT OVERRIDE: they make text display in another order than it reads."""


def _is_noncharacter(ch: str) -> bool:
    """One of Unicode's 66 code points that are permanently not characters (U+FDD0..U+FDEF, U+xxFFFE/F)."""
    code = ord(ch)
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def is_number(value: object) -> TypeGuard[int | float]:
    """An int or a float, not a bool (which Python counts as an int): ``True`` is no timeout."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_whole_number(value: object) -> TypeGuard[int]:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_text(name: str, value: object, *, if_empty: str = "leave it unset (None) to omit it") -> str:
    """Return ``value`` if it is a usable non-empty string, else raise naming ``name``.

    Any script, accent and emoji is text. Refused: control characters (but tab), line and paragraph
    separators, lone surrogates, noncharacters, and the two bidi overrides, which can make a title or a
    name display as something else. Code points this Python's Unicode database does not know yet are
    accepted: Siro may well know them (a new emoji is "unassigned" to an older Python).

    :param if_empty: the advice after "is empty;" (what to do instead of a blank value).
    """
    if not isinstance(value, str):
        raise SiroValidationError(name, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise SiroValidationError(name, f"is empty; {if_empty}")
    if len(value) > MAX_TEXT_LENGTH:
        raise SiroValidationError(name, f"is {len(value)} characters long; at most {MAX_TEXT_LENGTH}")
    if _JINJA.search(value):
        raise SiroValidationError(name, "contains an unrendered Jinja expression ('{{', '{%' or '{#')")
    if value.isascii() and value.isprintable():
        return value  # the common case, and nothing below can refuse it: skip the walk per character
    for ch in value:
        if ch in _BIDI_OVERRIDES:
            raise SiroValidationError(
                name,
                f"contains the character U+{ord(ch):04X} ({unicodedata.name(ch)}), which reorders how the text after "
                "it is displayed",
            )
        category = unicodedata.category(ch)
        if (category in ("Cc", "Cs", "Zl", "Zp") and ch != "\t") or (
            category == "Cn" and _is_noncharacter(ch)
        ):
            raise SiroValidationError(
                name, f"contains the character U+{ord(ch):04X} ({category}), which is not printable text"
            )
    return value


def check_file_type(value: object, name: str = "file_type") -> str:
    """Return the API spelling of an audio format (``"MP3"`` and ``".mp3"`` are accepted too)."""
    if not isinstance(value, str):
        raise SiroValidationError(name, f"must be one of {', '.join(FILE_TYPES)}, got {type(value).__name__}")
    normalized = value.strip().lower().lstrip(".")
    if normalized not in FILE_TYPES:
        raise SiroValidationError(name, f"must be one of {', '.join(FILE_TYPES)}, got {value!r}")
    return normalized


def _suffix(path: str) -> str:
    """A path's or URL's extension, lower case (``".mp3"``), or ``""``; a URL's query string is ignored."""
    return PurePosixPath(urlsplit(path).path if "://" in path else path).suffix.lower()


def file_type_from_path(path: str, name: str = "source_path") -> str | None:
    """The audio format implied by a path's extension, or ``None`` if it has no recognised one."""
    return EXTENSIONS.get(_suffix(path))


def resolve_file_type(file_type: object, source_path: str | None) -> str:
    """Pick the upload's format from ``file_type`` and/or the source's extension, which must agree."""
    inferred = file_type_from_path(source_path) if source_path else None
    if file_type is None:
        if inferred is None:
            where = f"source_path {source_path!r} has no .mp3, .aac or .wav extension" if source_path else ""
            raise SiroValidationError("file_type", f"is required: {where or 'it cannot be inferred'}")
        return inferred
    checked = check_file_type(file_type)
    if source_path and inferred is not None and inferred != checked:
        suffix = _suffix(source_path)
        which = "" if suffix == f".{inferred}" else f", which is {inferred}"  # .m4a, .wave
        raise SiroValidationError(
            "file_type", f"is {checked!r} but source_path {source_path!r} has a {suffix} extension{which}"
        )
    if source_path and inferred is None:
        raise SiroValidationError(
            "source_path",
            f"has extension {_suffix(source_path) or '(none)'}, which does not match file_type {checked!r}",
        )
    return checked


def check_url(name: str, value: object) -> str:
    """Return ``value`` if it is an absolute http(s) URL with a host."""
    text = check_text(name, value, if_empty="give an absolute http(s) URL")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SiroValidationError(name, "must be an absolute http(s) URL")
    return text


def format_date_created(value: object, name: str = "date_created") -> str:
    """Render a moment as RFC 3339 in UTC (``2024-05-01T14:03:00Z``).

    Accepts an aware :class:`datetime` (pendulum's included) or an RFC 3339 string with an offset.
    A naive datetime or a string without an offset is refused: guessing its time zone would silently
    move the call by hours.
    """
    if isinstance(value, str):
        text = value.strip()
        if not _RFC3339.match(text):
            raise SiroValidationError(
                name, f"{value!r} is not an RFC 3339 date-time with a time zone (e.g. 2024-05-01T14:03:00Z)"
            )
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
        except ValueError as exc:
            raise SiroValidationError(name, f"{value!r} is not a valid date-time: {exc}") from None
    elif isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        raise SiroValidationError(name, "is a date without a time; pass a datetime with a time zone")
    else:
        raise SiroValidationError(
            name, f"must be a datetime or an RFC 3339 string, got {type(value).__name__}"
        )
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise SiroValidationError(name, f"{value!s} has no time zone; give an offset or use UTC")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is in the year 10000 in UTC
        raise SiroValidationError(name, f"{value!s} is outside the years 1 to 9999 in UTC") from None
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_crm_objects(value: object, name: str = "crm_objects") -> list[dict[str, str]]:
    """Return a clean copy of ``[{"objectType": ..., "objectId": ...}, ...]``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        hint = " (with a template, set render_template_as_native_obj=True)" if isinstance(value, str) else ""
        raise SiroValidationError(name, f"must be a list of objects, got {type(value).__name__}{hint}")
    if not value:
        raise SiroValidationError(name, "is an empty list; leave it unset (None) to link no CRM objects")
    clean: list[dict[str, str]] = []
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, Mapping):
            raise SiroValidationError(where, f"must be an object, got {type(item).__name__}")
        extra = sorted(set(item) - {"objectType", "objectId"})
        if extra:
            raise SiroValidationError(where, f"has unknown keys {extra}; only objectType and objectId")
        object_type = item.get("objectType")
        if object_type not in CRM_OBJECT_TYPES:
            raise SiroValidationError(
                f"{where}.objectType", f"must be one of {', '.join(CRM_OBJECT_TYPES)}, got {object_type!r}"
            )
        if "objectId" not in item:
            raise SiroValidationError(f"{where}.objectId", "is missing")
        clean.append(
            {
                "objectType": object_type,
                "objectId": check_text(
                    f"{where}.objectId",
                    item["objectId"],
                    if_empty="every CRM object needs the id of its record",
                ),
            }
        )
    return clean


def check_signed_url_request(file_type: object, file_size: object) -> tuple[str, int]:
    """Validate the two values of a signed-URL request."""
    checked = check_file_type(file_type)
    if not is_whole_number(file_size) or file_size <= 0:
        raise SiroValidationError("file_size", f"must be a positive integer of bytes, got {file_size!r}")
    return checked, file_size


@dataclass(frozen=True)
class RecordingFields:
    """The validated metadata of one recording, everything but the audio's download URL.

    Build it with :func:`validate_recording_fields`; turn it into a request body with :meth:`to_body`
    once the audio is uploaded, in the wire format the server speaks.
    """

    file_type: str
    values: dict[str, Any] = field(default_factory=dict)
    """Operator argument -> checked value, only for fields that were given (unset fields are never
    sent as null)."""

    def to_body(self, download_url: str, *, api: str = "current") -> dict[str, Any]:
        """The create-recording request body in wire format ``api`` (``current`` or ``original``).

        :raises SiroValidationError: ``api`` is ``original`` and a field only the current API has
            (``discoverable``, ``result``) is set: sending it would be refused, dropping it would
            silently lose what the DAG asked for.
        """
        self.check_format(api)
        names = WIRE_NAMES[api]
        body: dict[str, Any] = {
            URL_FIELD[api]: check_url("download_url", download_url),
            "fileType": self.file_type,
        }
        body.update({names[arg]: value for arg, value in self.values.items()})
        return body

    def check_format(self, api: str) -> None:
        """Raise unless every field that is set exists in wire format ``api``.

        :raises SiroValidationError: naming ``api_fields`` for an unknown format, or the first field
            the format lacks (``discoverable`` and ``result`` in ``original``).
        """
        if api not in API_FORMATS:
            raise SiroValidationError("api_fields", f"must be one of {', '.join(API_FORMATS)}, got {api!r}")
        missing = [arg for arg in self.values if arg not in WIRE_NAMES[api]]
        if missing:
            raise SiroValidationError(
                missing[0],
                "is a field of Siro's current API only, and the connection is pinned to its original field "
                "names (extra api_fields=original): unset it, or set api_fields to auto or current",
            )

    @property
    def user(self) -> str:
        """Who the recording belongs to, for log lines."""
        for arg in ("user_email", "user_id", "user_phone"):
            if arg in self.values:
                return f"{WIRE_NAMES['current'][arg]}={self.values[arg]}"
        return "unknown user"


def check_result(value: object, name: str = "result") -> str:
    """Return ``value`` if it is one of Siro's call results (``closed``, ``not closed``, ``in progress``)."""
    if not isinstance(value, str) or value not in RESULTS:
        choices = ", ".join(repr(r) for r in RESULTS)
        raise SiroValidationError(name, f"must be one of {choices}, got {value!r}")
    return value


def check_discoverable(value: object, name: str = "discoverable") -> bool:
    """Return ``value`` if it is a real boolean (a string ``"false"`` would be truthy)."""
    if not isinstance(value, bool):
        hint = " (with a template, set render_template_as_native_obj=True)" if isinstance(value, str) else ""
        raise SiroValidationError(name, f"must be true or false, got {type(value).__name__} {value!r}{hint}")
    return value


def validate_recording_fields(file_type: object, **fields: Any) -> RecordingFields:
    """Check every metadata field of a recording and the rules that tie them together.

    :param file_type: ``mp3``, ``aac`` or ``wav``.
    :param fields: the operator's keyword names (``user_email=...``); ``None`` means "not given".
    :raises SiroValidationError: naming the first field that is wrong.
    """
    unknown = sorted(set(fields) - set(RECORDING_FIELD_ARGS))
    if unknown:
        raise SiroValidationError(
            unknown[0], f"is not a Siro recording field (known: {', '.join(RECORDING_FIELD_ARGS)})"
        )
    values: dict[str, Any] = {}
    for arg in RECORDING_FIELD_ARGS:
        value = fields.get(arg)
        if value is None:
            continue
        if arg == "crm_objects":
            values[arg] = check_crm_objects(value)
        elif arg == "date_created":
            values[arg] = format_date_created(value)
        elif arg == "discoverable":
            values[arg] = check_discoverable(value)
        elif arg == "result":
            values[arg] = check_result(value)
        else:
            text = check_text(arg, value)
            if arg == "user_email" and not _EMAIL.match(text):
                raise SiroValidationError(arg, f"{text!r} is not an email address")
            if arg in ("user_phone", "customer_phone") and (
                not _PHONE.match(text) or not 7 <= sum(c.isdigit() for c in text) <= 15
            ):
                raise SiroValidationError(
                    arg, f"{text!r} is not a phone number (7 to 15 digits, e.g. +15551234567)"
                )
            values[arg] = text
    if not any(key in values for key in ("user_id", "user_email", "user_phone")):
        raise SiroValidationError(
            "user_id", "Siro needs to know whose recording this is: set user_id, user_email or user_phone"
        )
    if ("integration_connection_id" in values) != ("crm_objects" in values):
        given, missing = (
            ("integration_connection_id", "crm_objects")
            if "integration_connection_id" in values
            else ("crm_objects", "integration_connection_id")
        )
        raise SiroValidationError(missing, f"is required when {given} is set (Siro takes the two together)")
    return RecordingFields(file_type=check_file_type(file_type), values=values)


def recording_id_from(answer: object) -> str | None:
    """The recording ID of a create call's 201 body: ``data.recordingId`` (current API) or ``data.id``
    (original), whichever is there; ``None`` when neither is a non-empty string."""
    data = answer.get("data") if isinstance(answer, Mapping) else None
    if not isinstance(data, Mapping):
        return None
    for key in ("recordingId", "id"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


_UNRECOGNIZED = re.compile(r"unrecognized key", re.IGNORECASE)
_QUOTED = re.compile(r"['\"`]([A-Za-z]+)['\"`]")


def rejects_field_name(
    status: int | None, message: str, issues: Sequence[tuple[str, str]], sent: Mapping[str, Any]
) -> bool:
    """Whether a create call's error answer refuses the body's field NAMES (the other format's server).

    True only for a 400 or 422 that names, as unrecognized, a key only ``sent``'s format has, or that
    says the other format's required URL field is missing. Such an answer proves nothing was created:
    Siro validates the body before it acts. Anything else (a bad value, a 5xx, no answer) is not
    evidence about the format, so the caller must not send the body again in the other one.

    :param status: the HTTP status of the answer.
    :param message: the answer's ``error`` text.
    :param issues: a 422's ZodError issues as ``(path, message)`` pairs.
    :param sent: the body that was sent.
    """
    if status not in (400, 422):
        return False
    api = "current" if URL_FIELD["current"] in sent else "original"
    other = "original" if api == "current" else "current"
    own_names = FORMAT_ONLY_KEYS[api] & set(sent)
    texts = [message, *(msg for path, msg in issues if not path)]
    for text in texts:
        if _UNRECOGNIZED.search(text) and own_names & set(_QUOTED.findall(text)):
            return True
    return any(path == URL_FIELD[other] and msg.strip().lower() == "required" for path, msg in issues)
