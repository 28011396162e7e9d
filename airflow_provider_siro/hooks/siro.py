"""SiroHook: the one place that speaks HTTP to Siro.

The hook owns the ``siro`` connection (base URL, credentials, tunables), the user-scoped access token
(pasted, or minted from an OAuth app and refreshed before it expires), and every call the provider
makes: signed upload URLs, the streamed PUT of the audio, creating and reading recordings, listing
integration connections. It retries what is safe to retry, never repeats a create call whose outcome
is unknown, sends its own User-Agent, and masks every secret before it could first reach a log line.

The two classes here are faces over one module per concern, in this package: ``settings`` (reading
the connection), ``auth`` (the token cache and minting), ``transport`` (pacing, retries, errors),
``redaction`` (signed URLs kept out of logs), ``upload`` (signed URLs and the streamed PUT) and
``async_transport`` (the same calls from an event loop).
"""

from __future__ import annotations

import asyncio
from functools import cached_property
from typing import Any
from urllib.parse import quote

from airflow_provider_siro.compat import BaseHook
from airflow_provider_siro.exceptions import SiroAmbiguousCreateError, SiroApiError, SiroValidationError
from airflow_provider_siro.hooks.async_transport import AsyncTransportMixin, _ResponseView
from airflow_provider_siro.hooks.auth import TOKEN_LIFETIME, TOKEN_REFRESH_MARGIN, TokenMixin
from airflow_provider_siro.hooks.redaction import MASKED_SIGNATURES_PER_PROCESS, mask_url_credentials
from airflow_provider_siro.hooks.settings import (
    DEFAULT_API_URL,
    DEFAULT_APP_URL,
    DEFAULT_AUTH_URL,
    DEFAULT_MAX_REQUESTS_PER_MINUTE,
    DEFAULT_UPLOAD_CHUNK,
    SiroConnectionSettings,
    read_settings,
)
from airflow_provider_siro.hooks.transport import RETRY_STATUSES, USER_AGENT, TransportMixin, _Pools
from airflow_provider_siro.hooks.upload import SIGNED_URL_MARGIN, SignedUpload, UploadMixin
from airflow_provider_siro.payload import RecordingFields

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_APP_URL",
    "DEFAULT_AUTH_URL",
    "DEFAULT_MAX_REQUESTS_PER_MINUTE",
    "DEFAULT_UPLOAD_CHUNK",
    "MASKED_SIGNATURES_PER_PROCESS",
    "RETRY_STATUSES",
    "SIGNED_URL_MARGIN",
    "TOKEN_LIFETIME",
    "TOKEN_REFRESH_MARGIN",
    "USER_AGENT",
    "SignedUpload",
    "SiroAsyncHook",
    "SiroConnectionSettings",
    "SiroHook",
]


def _recording_query(recording_id: str, summary: bool, entities: bool, opportunities: bool) -> dict[str, str]:
    """Check a recording ID and build the query string of ``GET /v1/core/recordings/{id}``."""
    if not isinstance(recording_id, str) or not recording_id.strip():
        raise SiroValidationError("recording_id", f"must be a non-empty string, got {recording_id!r}")
    wanted = {
        "showSummary": summary,
        "showEntityExtractions": entities,
        "showCrmOpportunities": opportunities,
    }
    return {name: "true" for name, on in wanted.items() if on}


class SiroHook(TokenMixin, UploadMixin, TransportMixin, BaseHook):
    """
    Interact with Siro's API: upload audio, create recordings, read them back.

    The connection's ``host`` is the user-scoped API (empty means ``https://api.siro.ai``). Its
    ``password`` is a pasted user-scoped access token; leave it empty to have the hook mint one from an
    OAuth app with the ``org_token``, ``client_id``, ``client_secret`` and ``user_id`` extras. Minted
    tokens are cached per process and connection and replaced shortly before their 16 hours run out or
    when Siro answers 401.

    Other extras, all optional: ``scope`` (``write``), ``auth_host`` (the org API), ``timeout`` (seconds
    per request, 30), ``max_retries`` (5), ``retry_backoff`` (first backoff in seconds, 1.0),
    ``max_retry_wait`` (cap on one wait, including ``Retry-After``, 120), ``newer_field_names`` (send the
    field names of Siro's newer public docs), ``allow_insecure_http`` (plain ``http://`` to a
    non-loopback host), ``app_url`` (the Siro web app, for links), ``upload_chunk_size`` (bytes, 1 MiB),
    ``progress_interval`` (seconds between upload progress lines, 30) and ``max_requests_per_minute``
    (900; the pace of user-scoped calls, shared by every task process on the machine that uses the same
    credential, so a wide mapped task stays under Siro's 1000 per token per minute; 0 turns it off).

    :param siro_conn_id: the Airflow connection to use.
    """

    conn_name_attr = "siro_conn_id"
    default_conn_name = "siro_default"
    conn_type = "siro"
    hook_name = "Siro"

    def __init__(self, siro_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.siro_conn_id = siro_conn_id
        self._last_api_call = 0.0
        self._pools = _Pools()

    # ------------------------------------------------------------------ connection form
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's layout, for Airflow 2's web UI (Airflow 3 reads ``get_provider_info``)."""
        from airflow_provider_siro.get_provider_info import UI_FIELD_BEHAVIOUR

        # The same layout; Airflow 2 spells its keys with underscores (hidden_fields).
        return {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extras' form fields for Airflow 2's web UI, made from the ``conn-fields`` Airflow 3 reads.

        Airflow 3 takes the fields from ``get_provider_info`` and never calls this; Airflow 2 calls it
        when its web server builds the connection form (Flask-AppBuilder and WTForms are there).
        """
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from wtforms import BooleanField, PasswordField, StringField

        from airflow_provider_siro.get_provider_info import CONN_FIELDS

        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            label, description, schema = spec["label"], spec["description"], spec["schema"]
            kind = schema["type"][0]
            if schema.get("format") == "password":
                widgets[name] = PasswordField(label, description=description, widget=BS3PasswordFieldWidget())
            elif kind == "boolean":
                widgets[name] = BooleanField(label, description=description)
            else:  # strings and numbers alike: a text box that may stay empty; the hook checks numbers
                widgets[name] = StringField(label, description=description, widget=BS3TextFieldWidget())
        return widgets

    # ------------------------------------------------------------------ settings
    @cached_property
    def settings(self) -> SiroConnectionSettings:
        """The connection, read once and validated. Secrets are masked here, before anything logs."""
        return read_settings(self.siro_conn_id, self.get_connection(self.siro_conn_id), warn=self.log.warning)

    # ------------------------------------------------------------------ API calls
    def create_recording(self, download_url: str, fields: RecordingFields) -> str:
        """Create a recording from uploaded audio (step 3) and return its ID.

        :param download_url: the ``downloadUrl`` of an upload's signed URLs.
        :param fields: validated metadata from :func:`~airflow_provider_siro.payload.validate_recording_fields`.
        :raises SiroAmbiguousCreateError: the call failed after Siro may have acted on it; never retried.
        """
        body = fields.to_body(download_url, newer_field_names=self.settings.newer_field_names)
        mask_url_credentials(download_url)
        endpoint = "/v1/core/recordings/upload"
        self._fresh_pool()
        response = self._send(
            "POST", self.settings.api_url + endpoint, endpoint=endpoint, auth="user", json=body, create=True
        )
        data = self._json(response, "POST", endpoint, create=True).get("data")
        recording_id = (data.get("id") or data.get("recordingId")) if isinstance(data, dict) else None
        if not isinstance(recording_id, str) or not recording_id:
            raise SiroAmbiguousCreateError(
                f"Siro answered {response.status_code} without a recording id; the recording may exist",
                status_code=response.status_code,
                method="POST",
                endpoint=endpoint,
            )
        return recording_id

    def get_recording(
        self,
        recording_id: str,
        *,
        show_summary: bool = False,
        show_entity_extractions: bool = False,
        show_crm_opportunities: bool = False,
    ) -> dict[str, Any]:
        """Read a recording (its ``data`` object), optionally with summary, entities and opportunities."""
        params = _recording_query(recording_id, show_summary, show_entity_extractions, show_crm_opportunities)
        endpoint = f"/v1/core/recordings/{quote(recording_id, safe='')}"
        response = self._send(
            "GET", self.settings.api_url + endpoint, endpoint=endpoint, auth="user", params=params or None
        )
        data = self._json(response, "GET", endpoint).get("data")
        if not isinstance(data, dict):
            raise SiroApiError("the recording response has no data object", method="GET", endpoint=endpoint)
        return data

    def list_integration_connections(self) -> list[dict[str, Any]]:
        """Integration connections of the organization (org API; needs the ``org_token`` extra)."""
        if not self.settings.org_token:
            raise SiroValidationError(
                f"{self.siro_conn_id}.extra.org_token", "is needed to list integration connections"
            )
        endpoint = "/v1/core/integrations/connections"
        response = self._send("GET", self.settings.auth_url + endpoint, endpoint=endpoint, auth="org")
        data = self._json(response, "GET", endpoint).get("data")
        return list(data) if isinstance(data, list) else []

    def recording_url(self, recording_id: str) -> str:
        """Where a person opens the recording in the Siro web app."""
        return f"{self.settings.app_url}/recordings/{quote(recording_id, safe='')}"

    def test_connection(self) -> tuple[bool, str]:
        """Check credentials the cheapest way that proves uploads will work: ask for a 1-byte signed URL."""
        try:
            settings = self.settings
            self.get_access_token()
            self.get_signed_urls("mp3", 1)
        except Exception as exc:
            return False, str(exc)
        how = "a minted OAuth token" if settings.uses_oauth else "the pasted access token"
        return True, f"Connected to Siro at {settings.api_url} with {how}; uploads are allowed"


class SiroAsyncHook(AsyncTransportMixin, SiroHook):
    """
    Read Siro recordings from async code, such as a trigger, without blocking the event loop.

    The triggerer runs every deferred task's trigger on one event loop, so a blocking call here would
    stall all of them. This hook keeps :class:`SiroHook`'s connection handling, retry policy, token
    cache and error types, and changes only how a request travels:

    * the connection is read, and an OAuth access token minted, by :class:`SiroHook`'s own code in a
      worker thread (both may wait on the Airflow supervisor, a secrets backend or the org API, and
      both happen rarely: once per hook, and once per 16 hours per token);
    * API calls go through an ``httpx.AsyncClient`` (httpx ships with Airflow, and is imported only
      here, so DAG files that merely name a sensor do not pay for it), under the same retry policy
      (:mod:`~airflow_provider_siro.hooks.retries`: 429, 5xx and network errors, ``Retry-After``
      honoured up to ``max_retry_wait``), one fresh token after a 401, and no redirect followed.

    Call :meth:`aclose` when done (a trigger does so in ``finally``).

    :param siro_conn_id: the Airflow connection to use.
    """

    def __init__(self, siro_conn_id: str = SiroHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(siro_conn_id=siro_conn_id, **kwargs)
        self._client: Any = None  # an httpx.AsyncClient, made on first use

    async def aget_settings(self) -> SiroConnectionSettings:
        """:attr:`settings`, read in a worker thread the first time and cached on the hook."""
        if "settings" not in self.__dict__:
            await asyncio.to_thread(getattr, self, "settings")
        return self.settings

    async def aget_access_token(self) -> str:
        """The user-scoped token; a mint, when one is due, runs in a worker thread."""
        settings = await self.aget_settings()
        if settings.access_token:
            return settings.access_token
        return await asyncio.to_thread(self.get_access_token)

    async def aget_recording(
        self,
        recording_id: str,
        *,
        show_summary: bool = False,
        show_entity_extractions: bool = False,
        show_crm_opportunities: bool = False,
    ) -> dict[str, Any]:
        """Read a recording (its ``data`` object); the async twin of :meth:`SiroHook.get_recording`."""
        params = _recording_query(recording_id, show_summary, show_entity_extractions, show_crm_opportunities)
        settings = await self.aget_settings()
        endpoint = f"/v1/core/recordings/{quote(recording_id, safe='')}"
        response = await self._asend(
            "GET", settings.api_url + endpoint, endpoint=endpoint, params=params or None
        )
        data = self._json(_ResponseView(response), "GET", endpoint).get("data")
        if not isinstance(data, dict):
            raise SiroApiError("the recording response has no data object", method="GET", endpoint=endpoint)
        return data
