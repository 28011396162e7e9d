"""What the offline server accepts in a create body: the Zod-shaped rules of Siro's API.

Siro validates ``POST /v1/core/recordings/upload`` with a Zod schema and answers 422 with its issues.
These functions return the same issue objects (``code``, ``path``, ``message``) for the same bodies,
so a test sees the error a real Siro would send. A server speaks one wire format, as a Siro deployment
does: ``current`` (Siro's published reference today: ``fileUrl``, ``contactPhone``, ``contactName``,
``discoverable``, ``result``; ``additionalProperties: false``) or ``original`` (the seed document's
``downloadUrl``, ``customerPhone``, ``customerName``). A key of the other format is refused like any
unknown key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

FILE_TYPES = ("mp3", "aac", "wav")
CONTENT_TYPES = {"mp3": "audio/mpeg", "aac": "audio/aac", "wav": "audio/wav"}
CRM_OBJECT_TYPES = ("Opportunity", "Account", "Contact", "Lead", "Engagement", "Event", "ServiceAppointment")
SEED_KEYS = [
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
NEWER_KEYS = [
    "fileUrl",
    "fileType",
    "title",
    "userId",
    "userEmail",
    "userPhone",
    "organizationId",
    "conversationType",
    "integrationConnectionId",
    "crmObjects",
    "contactPhone",
    "contactName",
    "dateCreated",
    "discoverable",
    "result",
]
SEED_ONLY = {"downloadUrl", "customerPhone", "customerName"}
NEWER_ONLY = {"fileUrl", "contactPhone", "contactName", "discoverable", "result"}
APIS = ("current", "original")
KEYS = {"current": NEWER_KEYS, "original": SEED_KEYS}
URL_KEY = {"current": "fileUrl", "original": "downloadUrl"}
ID_KEY = {"current": "recordingId", "original": "id"}
"""Where each format's 201 answer puts the recording ID."""
RESULTS = ("closed", "not closed", "in progress")
ZOD_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def zod_error(issues: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "ZodError", "issues": issues}


def zod_issue(code: str, path: list[Any], message: str) -> dict[str, Any]:
    return {"code": code, "path": path, "message": message}


def validate_shape(body: Any, allowed: Sequence[str], required: dict[str, str]) -> list[dict[str, Any]]:
    """Zod's ``.strict()`` object checks: required keys first, then one issue naming every unknown key."""
    if not isinstance(body, dict):
        return [zod_issue("invalid_type", [], "Expected object")]
    issues = []
    for key, kind in required.items():
        if key not in body:
            issues.append(zod_issue("invalid_type", [key], "Required"))
        elif kind == "string" and not isinstance(body[key], str):
            issues.append(
                zod_issue("invalid_type", [key], f"Expected string, received {type(body[key]).__name__}")
            )
    extra = [key for key in body if key not in allowed]
    if extra:
        keys = ", ".join(f"'{k}'" for k in extra)
        issue = zod_issue("unrecognized_keys", [], f"Unrecognized key(s) in object: {keys}")
        issue["keys"] = extra
        issues.append(issue)
    return issues


def validate_recording(body: Any, api: str = "current") -> list[dict[str, Any]]:
    """ZodError issues for a create body sent to a server that speaks wire format ``api``."""
    if not isinstance(body, dict):
        return [zod_issue("invalid_type", [], "Expected object")]
    url_key = URL_KEY[api]
    issues = validate_shape(body, KEYS[api], {url_key: "string", "fileType": "enum"})
    if "fileType" in body and body["fileType"] not in FILE_TYPES:
        issues.append(
            zod_issue(
                "invalid_enum_value",
                ["fileType"],
                f"Invalid enum value. Expected 'mp3' | 'aac' | 'wav', received '{body['fileType']}'",
            )
        )
    for key, value in body.items():
        if key in (url_key, "fileType", "crmObjects", "discoverable", "result"):
            continue
        if key in KEYS[api] and not isinstance(value, str):
            issues.append(
                zod_issue("invalid_type", [key], f"Expected string, received {type(value).__name__}")
            )
    if isinstance(body.get("dateCreated"), str) and not ZOD_DATETIME.match(body["dateCreated"]):
        issues.append(zod_issue("invalid_string", ["dateCreated"], "Invalid datetime"))
    if "crmObjects" in body:
        objects = body["crmObjects"]
        if not isinstance(objects, list):
            issues.append(zod_issue("invalid_type", ["crmObjects"], "Expected array"))
        else:
            for index, item in enumerate(objects):
                if not isinstance(item, dict):
                    issues.append(zod_issue("invalid_type", ["crmObjects", index], "Expected object"))
                    continue
                if item.get("objectType") not in CRM_OBJECT_TYPES:
                    issues.append(
                        zod_issue(
                            "invalid_enum_value",
                            ["crmObjects", index, "objectType"],
                            f"Invalid enum value. Expected {' | '.join(CRM_OBJECT_TYPES)}",
                        )
                    )
                object_id = item.get("objectId")
                if not isinstance(object_id, str) or not object_id:
                    issues.append(
                        zod_issue(
                            "too_small",
                            ["crmObjects", index, "objectId"],
                            "String must contain at least 1 character(s)",
                        )
                    )
    if api == "current" and "discoverable" in body and not isinstance(body["discoverable"], bool):
        issues.append(zod_issue("invalid_type", ["discoverable"], "Expected boolean"))
    if api == "current" and "result" in body and body["result"] not in RESULTS:
        issues.append(
            zod_issue(
                "invalid_enum_value",
                ["result"],
                f"Invalid enum value. Expected {' | '.join(repr(r) for r in RESULTS)}, received {body['result']!r}",
            )
        )
    return issues
