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
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote

from airflow_provider_siro.compat import BaseHook
from airflow_provider_siro.exceptions import (
    SiroAmbiguousCreateError,
    SiroApiError,
    SiroRejectedError,
    SiroValidationError,
)
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
from airflow_provider_siro.payload import (
    RecordingFields,
    is_whole_number,
    recording_id_from,
    rejects_field_name,
)

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


_NEGOTIATED: dict[tuple[str, str], str] = {}
"""(connection ID, API URL) -> the wire format that Siro accepted there, for ``api_fields=auto``; one
guess per process, so only a process's first create can cost a second round trip."""
_NEGOTIATED_LOCK = threading.Lock()

LIST_PAGE_MAX = 100
"""``limit``'s ceiling on ``GET /v1/core/recordings``."""


def _list_moment(name: str, value: datetime | None) -> str | None:
    """A list filter's date in Siro's format (``YYYY-MM-DDTHH:mm:ss.sssZ``); naive datetimes refused."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise SiroValidationError(name, f"must be a datetime with a time zone, got {value!r}")
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


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
    ``max_retry_wait`` (cap on one wait, including ``Retry-After``, 120), ``api_fields`` (the create
    call's field names: ``auto``, the default, sends Siro's current names and falls back to the
    original ones once if Siro refuses them; ``current`` or ``original`` pins one; the deprecated
    ``newer_field_names`` means ``current`` when true, ``original`` when false), ``allow_insecure_http`` (plain ``http://`` to a
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

        The body goes out in the wire format of the connection's ``api_fields`` extra. With ``auto``
        (the default) that is Siro's current field names, unless this process already learnt that this
        connection's Siro speaks the original ones. A 400/422 that refuses the body's field *names*
        proves nothing was created, so the create is sent once more in the other format and the format
        that worked is remembered. No other answer leads to a second send: an ambiguous one (no answer,
        a 5xx) is never repeated.

        :param download_url: the ``downloadUrl`` of an upload's signed URLs.
        :param fields: validated metadata from :func:`~airflow_provider_siro.payload.validate_recording_fields`.
        :raises SiroAmbiguousCreateError: the call failed after Siro may have acted on it; never retried.
        :raises SiroRejectedError: Siro refused the body (in every format it was sent in).
        :raises SiroValidationError: a field the format Siro speaks does not have (``discoverable`` or
            ``result`` for the original format).
        """
        settings = self.settings
        key = (self.siro_conn_id, settings.api_url)
        pinned = settings.api_fields != "auto"
        with _NEGOTIATED_LOCK:
            known = _NEGOTIATED.get(key)
        api = settings.api_fields if pinned else (known or "current")
        body = self._create_body(download_url, fields, api, learnt=known is not None)
        mask_url_credentials(download_url)
        try:
            recording_id = self._post_create(body)
        except SiroRejectedError as exc:
            if not rejects_field_name(exc.status_code, exc.message, exc.issues, body):
                raise
            if pinned:
                raise type(exc)(
                    f"{exc.message} - Siro at {settings.api_url} does not accept the {api} field names that "
                    f"connection {self.siro_conn_id!r} is pinned to (extra api_fields={api}); set api_fields "
                    "to auto to let the provider use the names Siro speaks",
                    status_code=exc.status_code,
                    method=exc.method,
                    endpoint=exc.endpoint,
                    issues=exc.issues,
                ) from None
            other = "original" if api == "current" else "current"
            self.log.info(
                "Siro at %s refused the %s field names (%s); nothing was created. Sending the create once "
                "more with the %s names, and using them for this connection from now on.",
                settings.api_url,
                api,
                exc.status_code,
                other,
            )
            with _NEGOTIATED_LOCK:
                _NEGOTIATED[key] = other
            recording_id = self._post_create(self._create_body(download_url, fields, other, learnt=True))
            return recording_id
        if not pinned and known is None:
            with _NEGOTIATED_LOCK:
                _NEGOTIATED.setdefault(key, api)
        return recording_id

    def check_create_fields(self, fields: RecordingFields) -> None:
        """Refuse, before any audio moves, a field the create's wire format cannot carry.

        The format is the pinned one (``api_fields`` ``current`` or ``original``), or the one this
        process learnt for the connection; with ``auto`` and nothing learnt yet, every field may still go
        out in the current format, so nothing is refused here.

        :raises SiroValidationError: naming the field (``discoverable`` or ``result``).
        """
        settings = self.settings
        if settings.api_fields != "auto":
            fields.check_format(settings.api_fields)
            return
        with _NEGOTIATED_LOCK:
            known = _NEGOTIATED.get((self.siro_conn_id, settings.api_url))
        if known is not None:
            try:
                fields.check_format(known)
            except SiroValidationError as exc:
                raise self._learnt_format_error(exc.field) from None

    def _learnt_format_error(self, field: str) -> SiroValidationError:
        return SiroValidationError(
            field,
            f"is a field of Siro's current API only, and Siro at {self.settings.api_url} refused the current "
            "field names: it speaks the original ones, which cannot carry it. Unset it for this Siro.",
        )

    def _create_body(
        self, download_url: str, fields: RecordingFields, api: str, *, learnt: bool
    ) -> dict[str, Any]:
        """The create body in format ``api``; a field that format lacks is named in the error."""
        try:
            return fields.to_body(download_url, api=api)
        except SiroValidationError as exc:
            if not learnt or exc.field == "download_url":
                raise
            raise self._learnt_format_error(exc.field) from None

    def _post_create(self, body: dict[str, Any]) -> str:
        """Send one create call and read the recording ID from ``data.recordingId`` or ``data.id``."""
        endpoint = "/v1/core/recordings/upload"
        self._fresh_pool()
        response = self._send(
            "POST", self.settings.api_url + endpoint, endpoint=endpoint, auth="user", json=body, create=True
        )
        recording_id = recording_id_from(self._json(response, "POST", endpoint, create=True))
        if recording_id is None:
            raise SiroAmbiguousCreateError(
                f"Siro answered {response.status_code} without a recording id; the recording may exist",
                status_code=response.status_code,
                method="POST",
                endpoint=endpoint,
            )
        return recording_id

    def list_recordings(
        self,
        *,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = LIST_PAGE_MAX,
        order_direction: str = "desc",
    ) -> Iterator[dict[str, Any]]:
        """The token's user's recordings (``GET /v1/core/recordings``), ordered by ``dateCreated``.

        Pages are fetched as the iterator is consumed, following Siro's ``cursor``; stop early to
        fetch fewer. Both bounds are exclusive, as Siro's ``dateCreated:gt`` and ``dateCreated:lt``.

        :param created_after: only recordings dated after this moment (a timezone-aware datetime).
        :param created_before: only recordings dated before it.
        :param limit: recordings per page, 1 to 100.
        :param order_direction: ``desc`` (newest first) or ``asc``.
        """
        if not is_whole_number(limit) or not 1 <= limit <= LIST_PAGE_MAX:
            raise SiroValidationError("limit", f"must be an integer from 1 to {LIST_PAGE_MAX}, got {limit!r}")
        if order_direction not in ("asc", "desc"):
            raise SiroValidationError("order_direction", f"must be asc or desc, got {order_direction!r}")
        params: dict[str, str] = {
            "limit": str(limit),
            "orderBy": "dateCreated",
            "orderDirection": order_direction,
        }
        for name, query, value in (
            ("created_after", "dateCreated:gt", created_after),
            ("created_before", "dateCreated:lt", created_before),
        ):
            moment = _list_moment(name, value)
            if moment is not None:
                params[query] = moment
        endpoint = "/v1/core/recordings"
        while True:
            response = self._send(
                "GET", self.settings.api_url + endpoint, endpoint=endpoint, auth="user", params=params
            )
            answer = self._json(response, "GET", endpoint)
            items = answer.get("data")
            if not isinstance(items, list):
                raise SiroApiError("the recordings list has no data array", method="GET", endpoint=endpoint)
            yield from (item for item in items if isinstance(item, dict))
            cursor = answer.get("cursor")
            if not isinstance(cursor, str) or not cursor or not items:
                return
            params = {**params, "cursor": cursor}

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

    def destination(self) -> str:
        """Where this hook creates recordings, as the stable string the upload ledger keys entries on.

        It names Siro's API base URL and the account a recording is created in, never a token (tokens
        rotate; the account does not):

        * a connection that mints tokens: ``oauth:<client_id>/user:<user_id>`` (the OAuth app and the
          Siro user the tokens are minted for);
        * a pasted access token: the extra ``account`` when set (name the Siro user the token belongs
          to, e.g. their email), else the connection's ``login``, else ``connection:<conn id>``, so two
          connections with pasted tokens are two destinations unless they say they are one account.

        No request is made: the answer must be there before the first byte moves.
        """
        settings = self.settings
        if settings.uses_oauth:
            account = f"oauth:{settings.client_id}/user:{settings.user_id}"
        else:
            conn = self.get_connection(self.siro_conn_id)
            extras = conn.extra_dejson or {}
            named = extras.get("account") or extras.get("extra__siro__account")
            if named not in (None, ""):
                account = f"account:{str(named).strip()}"
            elif (conn.login or "").strip():
                account = f"login:{str(conn.login).strip()}"
            else:
                account = f"connection:{self.siro_conn_id}"
        return f"{settings.api_url} {account}"

    def test_connection(self) -> tuple[bool, str]:
        """Prove the credential works and say whose it is, creating and uploading nothing.

        Reads one recording of the token's user (a list call with ``limit=1``), minting a token first
        where the connection has an OAuth app; where an organization token is configured, also asks the
        org API whose it is (``caller-identity``).
        """
        try:
            settings = self.settings
            first = next(iter(self.list_recordings(limit=1)), None)
            organization = None
            if settings.org_token:
                endpoint = "/v1/core/auth/caller-identity"
                answer = self._send("GET", settings.auth_url + endpoint, endpoint=endpoint, auth="org").json()
                organization = answer.get("organizationId") if isinstance(answer, dict) else None
        except Exception as exc:
            return False, str(exc)
        how = "a minted OAuth token" if settings.uses_oauth else "the pasted access token"
        user = settings.user_id or (first or {}).get("userId")
        who = f"user {user}" if user else "its user (who has no recordings yet)"
        org = f", organization {organization}" if organization else ""
        return True, (
            f"Connected to Siro at {settings.api_url} with {how}: it reads the recordings of {who}{org}. "
            "Nothing was uploaded or created."
        )


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
