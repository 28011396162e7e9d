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
    validate_recording,
    validate_shape,
    zod_error,
    zod_issue,
)
from airflow_provider_siro.testing.state import Headers, Recording, StoredObject


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
        if self._refused(user):
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
        if self._refused(user):
            return
        issues, newer = validate_recording(body)
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
        url = body["fileUrl" if newer else "downloadUrl"]
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
            self._error(400, "File not found at downloadUrl: upload the audio through the signed URL first")
            return
        if CONTENT_TYPES[body["fileType"]] != obj.content_type:
            self._error(
                400, f"fileType {body['fileType']} does not match the uploaded file ({obj.content_type})"
            )
            return
        recording_id = f"rec_{uuid.UUID(int=siro._rng_ids.getrandbits(128)).hex[:20]}"
        recording = Recording(
            id=recording_id,
            body=body,
            object_name=name,
            sha256=obj.sha256,
            size=obj.size,
            file_type=body["fileType"],
            user_id=user.user_id,
            created_at=datetime.now(UTC),
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
        if self._refused(user):
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
