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
from typing import Any
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

# Operator argument -> wire name, in the seed document's order. ``download_url`` is handled apart
# because it is produced by the upload, not given up front in every mode.
SEED_FIELDS: dict[str, str] = {
    "title": "title",
    "user_id": "userId",
    "user_email": "userEmail",
    "user_phone": "userPhone",
    "organization_id": "organizationId",
    "conversation_type": "conversationType",
    "integration_connection_id": "integrationConnectionId",
    "crm_objects": "crmObjects",
    "customer_phone": "customerPhone",
    "customer_name": "customerName",
    "date_created": "dateCreated",
}

NEWER_DOCS_RENAMES: dict[str, str] = {
    "downloadUrl": "fileUrl",
    "customerPhone": "contactPhone",
    "customerName": "contactName",
}
"""Field renames of Siro's newer public reference; sent instead of the seed names when switched on."""

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
    if isinstance(file_size, bool) or not isinstance(file_size, int) or file_size <= 0:
        raise SiroValidationError("file_size", f"must be a positive integer of bytes, got {file_size!r}")
    return checked, file_size


@dataclass(frozen=True)
class RecordingFields:
    """The validated metadata of one recording, everything but the audio's download URL.

    Build it with :func:`validate_recording_fields`; turn it into a request body with :meth:`to_body`
    once the audio is uploaded.
    """

    file_type: str
    values: dict[str, Any] = field(default_factory=dict)
    """Wire name -> value, only for fields that were given (unset fields are never sent as null)."""

    def to_body(self, download_url: str, *, newer_field_names: bool = False) -> dict[str, Any]:
        """The create-recording request body, in the seed's names or the newer docs' renames."""
        body: dict[str, Any] = {
            "downloadUrl": check_url("download_url", download_url),
            "fileType": self.file_type,
        }
        body.update(self.values)
        if newer_field_names:
            body = {NEWER_DOCS_RENAMES.get(key, key): value for key, value in body.items()}
        return body

    @property
    def user(self) -> str:
        """Who the recording belongs to, for log lines."""
        for key in ("userEmail", "userId", "userPhone"):
            if key in self.values:
                return f"{key}={self.values[key]}"
        return "unknown user"


def validate_recording_fields(file_type: object, **fields: Any) -> RecordingFields:
    """Check every metadata field of a recording and the rules that tie them together.

    :param file_type: ``mp3``, ``aac`` or ``wav``.
    :param fields: the operator's keyword names (``user_email=...``); ``None`` means "not given".
    :raises SiroValidationError: naming the first field that is wrong.
    """
    unknown = sorted(set(fields) - set(SEED_FIELDS))
    if unknown:
        raise SiroValidationError(
            unknown[0], f"is not a Siro recording field (known: {', '.join(SEED_FIELDS)})"
        )
    values: dict[str, Any] = {}
    for arg, wire in SEED_FIELDS.items():
        value = fields.get(arg)
        if value is None:
            continue
        if arg == "crm_objects":
            values[wire] = check_crm_objects(value)
        elif arg == "date_created":
            values[wire] = format_date_created(value)
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
            values[wire] = text
    if not any(key in values for key in ("userId", "userEmail", "userPhone")):
        raise SiroValidationError(
            "user_id", "Siro needs to know whose recording this is: set user_id, user_email or user_phone"
        )
    if ("integrationConnectionId" in values) != ("crmObjects" in values):
        given, missing = (
            ("integration_connection_id", "crm_objects")
            if "integrationConnectionId" in values
            else ("crm_objects", "integration_connection_id")
        )
        raise SiroValidationError(missing, f"is required when {given} is set (Siro takes the two together)")
    return RecordingFields(file_type=check_file_type(file_type), values=values)
