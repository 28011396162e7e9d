"""The offline server's org API: minting and reading access tokens, listing integration connections."""

from __future__ import annotations

import hmac
import re
from datetime import UTC, datetime

from airflow_provider_siro.testing.base_handler import BaseHandler
from airflow_provider_siro.testing.faults import Fault
from airflow_provider_siro.testing.rules import validate_shape, zod_error, zod_issue
from airflow_provider_siro.testing.state import Headers


class OrgEndpoints(BaseHandler):
    """Endpoints under ``/api-externalApi`` that take the organization's Bearer token."""

    def _ep_mint_token(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        ok, body = self._json_or_refuse()
        if not ok:
            return
        if self._refused(siro._org(headers)):
            return
        issues = validate_shape(
            body, ["clientSecret", "userId", "scope"], {"clientSecret": "string", "userId": "string"}
        )
        if isinstance(body, dict) and body.get("scope", "write") not in ("read", "write"):
            issues.append(
                zod_issue("invalid_enum_value", ["scope"], "Invalid enum value. Expected 'read' | 'write'")
            )
        if issues:
            self._send(422, zod_error(issues))
            return
        if match.group(1) != siro.client_id:
            self._error(404, "OAuth app not found")
            return
        if not hmac.compare_digest(body["clientSecret"], siro.client_secret):
            self._error(401, "Unauthorized: invalid client secret")
            return
        if body["userId"] != siro.user_id:
            self._error(404, "User not found")
            return
        token, token_id = siro._new_token(body["userId"], body.get("scope", "write"))
        if self._finish_fault(fault):
            return
        self._send(201, {"accessTokenId": token_id, "accessToken": token})

    def _ep_get_token(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        if self._refused(siro._org(headers)):
            return
        with siro._lock:
            found = next((t for t in siro._tokens.values() if t.token_id == match.group(2)), None)
        if found is None or match.group(1) != siro.client_id:
            self._error(404, "Access token not found")
            return
        expires = datetime.fromtimestamp(found.expires_at, UTC).isoformat().replace("+00:00", "Z")
        data = {
            "accessTokenId": found.token_id,
            "userId": found.user_id,
            "scope": found.scope,
            "expiresAt": expires,
        }
        self._send(200, {"data": data})

    def _ep_list_connections(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        siro = self.server_state
        if self._refused(siro._org(headers)):
            return
        self._send(
            200,
            {"data": [{"id": siro.integration_connection_id, "name": "Salesforce", "type": "salesforce"}]},
        )

    def _ep_caller_identity(
        self, match: re.Match[str], query: dict[str, str], headers: Headers, fault: Fault | None
    ) -> None:
        """Details of the organization API token the call was made with."""
        siro = self.server_state
        if self._refused(siro._org(headers)):
            return
        if self._finish_fault(fault):
            return
        self._send(
            200,
            {
                "tokenId": "orgtok_offline",
                "tokenName": "Offline Siro organization token",
                "organizationId": siro.organization_id,
                "authorizedOrgGroupId": None,
                "parentOrgGroupTokenId": None,
                "createdAt": "2026-01-01T00:00:00.000Z",
                "createdBy": siro.user_id,
            },
        )
