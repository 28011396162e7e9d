"""The offline server's user-scoped API: signed upload URLs, creating and reading recordings."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_siro.testing.base_handler import BaseHandler
from airflow_provider_siro.testing.faults import Fault
from airflow_provider_siro.testing.rules import (
    CONTENT_TYPES,
    FILE_TYPES,
    URL_KEY,
    validate_recording,
    validate_shape,
    zod_error,
    zod_issue,
)
from airflow_provider_siro.testing.state import Headers, Recording, StoredObject

MAX_PAGE = 100
"""``limit``'s default and ceiling on Siro's list endpoint."""
LIST_FIELDS = (
    "id",
    "title",
    "userId",
    "dateCreated",
    "durationInMilliseconds",
    "result",
    "discoverable",
    "isPrivate",
)
"""The item fields the list endpoint shows (a subset of Siro's: the ones a client can match on)."""


def _iso_millis(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:mm:ss.sssZ``, the format of Siro's list filters and dates."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_moment(text: str) -> datetime | None:
    """An ISO 8601 date-time with ``Z`` or an offset, or ``None`` when it is not one."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def list_item(recording: Recording) -> dict[str, Any]:
    """A recording as ``GET /v1/core/recordings`` shows it."""
    return {
        "id": recording.id,
        "title": recording.body.get("title") or "Untitled recording",
        "userId": recording.body.get("userId") or recording.user_id,
        "dateCreated": recording.date_created,
        # About 16 bytes a millisecond: a 128 kbit/s recording.
        "durationInMilliseconds": recording.size // 16,
        "result": recording.body.get("result"),
        "discoverable": bool(recording.body.get("discoverable", False)),
        "isPrivate": False,
    }


class RecordingEndpoints(BaseHandler):
    """Endpoints that take a user-scoped ``x-siro-auth-token``."""

    def _ep_signed_urls(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        ok, body = self._json_or_refuse()
        if not ok:
            return
        user = siro._user(headers, write=True)
        if self._refused(user) or isinstance(user, tuple):
            return
        issues = validate_shape(body, ["fileType", "fileSize"], {"fileType": "enum", "fileSize": "int"})
        if isinstance(body, dict):
            if "fileType" in body and body["fileType"] not in FILE_TYPES:
                issues.append(
                    zod_issue(
                        "invalid_enum_value",
                        ["fileType"],
                        "Invalid enum value. Expected 'mp3' | 'aac' | 'wav'",
                    )
                )
            size = body.get("fileSize")
            if "fileSize" in body and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
                issues.append(zod_issue("too_small", ["fileSize"], "Number must be a positive integer"))
        if issues:
            self._send(422, zod_error(issues))
            return
        file_type = body["fileType"]
        name = f"{uuid.UUID(int=siro._rng_ids.getrandbits(128)).hex}.{file_type}"
        obj = StoredObject(name, 0, "", CONTENT_TYPES[file_type], max_size=body["fileSize"])
        with siro._lock:
            siro._objects[name] = obj
            upload_url, download_url = siro._signed_url("PUT", obj), siro._signed_url("GET", obj)
        expires = datetime.now(UTC) + timedelta(seconds=siro.signed_url_lifetime)
        if self._finish_fault(fault):
            return
        self._send(
            200,
            {
                "data": {
                    "uploadUrl": upload_url,
                    "uploadHeaders": {
                        "Content-Type": obj.content_type,
                        "x-goog-content-length-range": f"0,{obj.max_size}",
                    },
                    "downloadUrl": download_url,
                    "expiresAt": expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
                }
            },
        )

    def _ep_create_recording(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        ok, body = self._json_or_refuse()
        if not ok:
            return
        user = siro._user(headers, write=True)
        if self._refused(user) or isinstance(user, tuple):
            return
        issues = validate_recording(body, siro.api)
        if issues:
            self._send(422, zod_error(issues))
            return
        if not any(
            isinstance(body.get(k), str) and body[k].strip() for k in ("userId", "userEmail", "userPhone")
        ):
            self._error(400, "At least one of userId, userEmail or userPhone is required")
            return
        if ("integrationConnectionId" in body) != ("crmObjects" in body):
            self._error(400, "integrationConnectionId and crmObjects must be provided together")
            return
        url_key = URL_KEY[siro.api]
        url = body[url_key]
        parts = urlsplit(url)
        name = parts.path.rsplit("/", 1)[-1]
        signed_query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with siro._lock:
            obj = siro._objects.get(name)
        valid = (
            parts.path.startswith("/storage/download/")
            and obj is not None
            and siro._check_signature("GET", name, signed_query) in (None, "ExpiredToken")
        )
        if not valid or obj is None or not obj.uploaded:
            self._error(400, f"File not found at {url_key}: upload the audio through the signed URL first")
            return
        if CONTENT_TYPES[body["fileType"]] != obj.content_type:
            self._error(
                400, f"fileType {body['fileType']} does not match the uploaded file ({obj.content_type})"
            )
            return
        recording_id = f"rec_{uuid.UUID(int=siro._rng_ids.getrandbits(128)).hex[:20]}"
        now = datetime.now(UTC)
        recording = Recording(
            id=recording_id,
            body=body,
            object_name=name,
            sha256=obj.sha256,
            size=obj.size,
            file_type=body["fileType"],
            user_id=user.user_id,
            created_at=now,
            date_created=body.get("dateCreated") or _iso_millis(now),
        )
        with siro._lock:
            siro._recordings[recording_id] = recording
        if self._finish_fault(fault):
            return
        self._send(201, {"data": {siro.response_id_key: recording_id}})

    def _ep_get_recording(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        user = siro._user(headers, write=False)
        if self._refused(user) or isinstance(user, tuple):
            return
        with siro._lock:
            recording = siro._recordings.get(match.group(1))
            if recording is None or recording.user_id != user.user_id:
                self._error(404, "Recording not found")
                return
            recording.polls += 1
            if recording.status == "in-progress" and recording.polls >= siro.processing_polls:
                recording.status = "complete"
            status = recording.status
        stage = {"in-progress": "processing", "complete": "done", "error": "processing"}[status]
        data: dict[str, Any] = {
            "id": recording.id,
            "title": recording.body.get("title"),
            "processingStatus": status,
            "processingStage": stage,
            "transcriptionStatus": {"complete": "complete", "error": "error"}.get(status, "in-progress"),
            "dateCreated": recording.body.get("dateCreated"),
        }
        if status == "complete":
            if query.get("showSummary") == "true":
                data["summary"] = f"Offline summary of {recording.body.get('title') or recording.id}."
            if query.get("showEntityExtractions") == "true":
                data["entityExtractions"] = [{"type": "nextStep", "value": "Send the proposal"}]
            if query.get("showCrmOpportunities") == "true":
                data["crmOpportunities"] = [
                    {"objectType": o["objectType"], "objectId": o["objectId"]}
                    for o in recording.body.get("crmObjects", [])
                    if o.get("objectType") == "Opportunity"
                ]
        if self._finish_fault(fault):
            return
        self._send(200, {"data": data})

    def _ep_list_recordings(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        """The user's recordings, filtered by ``dateCreated:gt``/``:lt`` (and ``result``,
        ``conversationType``), ordered by ``orderBy``/``orderDirection``, ``limit`` at a time; the
        answer's ``cursor`` (``null`` on the last page) asks for the next page."""
        siro = self.server_state
        user = siro._user(headers, write=False)
        if self._refused(user) or isinstance(user, tuple):
            return
        issues: list[dict[str, Any]] = []
        bounds: dict[str, datetime] = {}
        for key in ("dateCreated:gt", "dateCreated:lt"):
            if key in query:
                moment = _parse_moment(query[key])
                if moment is None:
                    issues.append(zod_issue("invalid_string", [key], "Invalid datetime"))
                else:
                    bounds[key] = moment
        limit = MAX_PAGE
        if "limit" in query:
            text = query["limit"]
            if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
                issues.append(zod_issue("too_big", ["limit"], f"Number must be between 1 and {MAX_PAGE}"))
            else:
                limit = int(text)
        direction = query.get("orderDirection", "desc")
        if direction not in ("asc", "desc"):
            issues.append(
                zod_issue(
                    "invalid_enum_value", ["orderDirection"], "Invalid enum value. Expected 'asc' | 'desc'"
                )
            )
        order_by = query.get("orderBy", "dateCreated")
        if order_by not in LIST_FIELDS:
            issues.append(zod_issue("invalid_enum_value", ["orderBy"], f"Cannot order by {order_by!r}"))
        offset = 0
        if "cursor" in query:
            if not query["cursor"].startswith("o") or not query["cursor"][1:].isdigit():
                issues.append(zod_issue("custom", ["cursor"], "Invalid cursor"))
            else:
                offset = int(query["cursor"][1:])
        if issues:
            self._send(422, zod_error(issues))
            return
        with siro._lock:
            mine = [r for r in siro._recordings.values() if r.user_id == user.user_id]
        items = []
        for recording in mine:
            item = list_item(recording)
            created = _parse_moment(item["dateCreated"])
            if created is None:
                continue
            if "dateCreated:gt" in bounds and not created > bounds["dateCreated:gt"]:
                continue
            if "dateCreated:lt" in bounds and not created < bounds["dateCreated:lt"]:
                continue
            if "result" in query and item["result"] != query["result"]:
                continue
            if "conversationType" in query and recording.body.get("conversationType") not in query[
                "conversationType"
            ].split(","):
                continue
            items.append((created, item))

        def sort_key(pair: tuple[datetime, dict[str, Any]]) -> tuple[Any, ...]:
            created, item = pair
            value = created if order_by == "dateCreated" else item[order_by]
            return (value is not None, value if value is not None else 0, item["id"])

        items.sort(key=sort_key, reverse=direction == "desc")
        page = [item for _, item in items[offset : offset + limit]]
        cursor = f"o{offset + limit}" if offset + limit < len(items) else None
        if self._finish_fault(fault):
            return
        self._send(200, {"data": page, "cursor": cursor})
