"""The offline server's credentials: tokens, the issued-secrets ledger, signed URLs.

Every secret the server issues (its org token and client secret, each access token, each signed URL's
signature) is remembered, so the secret audit can look for it in logs. Signed URLs are HMAC-signed
like GCS V4 URLs and checked the way GCS checks them.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from airflow_provider_siro.testing.state import Headers, StoredObject, _Token

SECRETS_LEDGER_ENV = "SIRO_OFFLINE_SECRETS_FILE"
"""When this environment variable names a file, every ``OfflineSiro`` of every process (a server that a
test started with ``python -m airflow_provider_siro.testing serve``, say) appends each secret it issues
to it, one JSON object a line: ``{"kind": ..., "secret": ..., "pid": ...}``. A test suite reads it back
with :meth:`OfflineSiro.all_issued_secrets` to look for those secrets in logs. Unset: nothing is written."""


class CredentialsMixin:
    """The credential half of :class:`~airflow_provider_siro.testing.server.OfflineSiro`."""

    _lock: threading.RLock
    _ledgers: ClassVar[list[dict[str, str]]] = []
    """The issued secrets (secret -> kind) of every instance ever created in this process, stopped or not."""
    _ledger_lock: ClassVar[threading.Lock] = threading.Lock()
    _issued: dict[str, str]
    _tokens: dict[str, _Token]
    _objects: dict[str, StoredObject]
    _expired_signatures: set[str]
    _calls: dict[str, deque[float]]
    _signing_key: bytes
    token_lifetime: float
    signed_url_lifetime: float
    rate_limit: int | None
    rate_window: float
    rate_limited: int
    org_token: str
    client_id: str
    client_secret: str
    user_id: str

    @property
    def url(self) -> str:
        """The server's base URL (``OfflineSiro.url``)."""
        raise NotImplementedError

    @property
    def auth_url(self) -> str:
        """The org API's base URL (``OfflineSiro.auth_url``)."""
        raise NotImplementedError

    def _new_token(self, user_id: str, scope: str) -> tuple[str, str]:
        token, token_id = secrets.token_urlsafe(32), f"tok_{secrets.token_hex(6)}"
        self._remember(token, "access_token")
        with self._lock:
            self._tokens[token] = _Token(token_id, user_id, scope, time.time() + self.token_lifetime)
        return token, token_id

    def _remember(self, secret: str, kind: str) -> None:
        """Add a secret this server issued to its ledger (and to the ``SIRO_OFFLINE_SECRETS_FILE`` file)."""
        with CredentialsMixin._ledger_lock:
            self._issued.setdefault(secret, kind)
            path = os.environ.get(SECRETS_LEDGER_ENV)
            if path:
                line = json.dumps({"kind": kind, "secret": secret, "pid": os.getpid()}) + "\n"
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line.encode())  # one write per line: lines of processes never interleave
                finally:
                    os.close(fd)

    def issued_secrets(self) -> set[str]:
        """Every credential this server ever issued, for scanning logs for leaks: its org token, its client
        secret, each access token minted or issued (expired ones too) and each signed URL's signature."""
        with CredentialsMixin._ledger_lock:
            return set(self._issued)

    def issued_secret_kinds(self) -> dict[str, str]:
        """:meth:`issued_secrets` with what each one is: ``org_token``, ``client_secret``,
        ``access_token``, ``upload_url_signature`` or ``download_url_signature``."""
        with CredentialsMixin._ledger_lock:
            return dict(self._issued)

    @classmethod
    def all_issued_secrets(cls) -> dict[str, str]:
        """Secret -> kind for every server this process ever created, running or stopped, and for every
        server of any process that appended to the ``SIRO_OFFLINE_SECRETS_FILE`` file."""
        found: dict[str, str] = {}
        path = os.environ.get(SECRETS_LEDGER_ENV)
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as ledger:
                for line in ledger:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        entry = json.loads(line)
                        found.setdefault(str(entry["secret"]), str(entry["kind"]))
        with cls._ledger_lock:
            for issued in cls._ledgers:
                for secret, kind in issued.items():
                    found.setdefault(secret, kind)
        return found

    def issue_access_token(self, scope: str = "write", user_id: str | None = None) -> str:
        """A token as if the user had minted it elsewhere and pasted it into the connection."""
        return self._new_token(user_id or self.user_id, scope)[0]

    def connection(self, *, oauth: bool = False, token: str | None = None, **extras: Any) -> dict[str, Any]:
        """A JSON-form Airflow connection to this server (for ``AIRFLOW_CONN_SIRO_DEFAULT``)."""
        conn: dict[str, Any] = {"conn_type": "siro", "host": self.url}
        extra: dict[str, Any] = {}
        if oauth:
            extra.update(
                org_token=self.org_token,
                client_id=self.client_id,
                client_secret=self.client_secret,
                user_id=self.user_id,
                auth_host=self.auth_url,
            )
        else:
            conn["password"] = token or self.issue_access_token()
        extra.update(extras)
        if extra:
            conn["extra"] = extra
        return conn

    def expire_tokens(self) -> None:
        """Every access token issued so far now answers 401."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = 0.0

    def expire_signed_urls(self) -> None:
        """Every signed URL issued so far is now past its ``expiresAt``."""
        with self._lock:
            self._expired_signatures.update(sig for obj in self._objects.values() for sig in obj.signatures)

    # ------------------------------------------------------------------ signing
    def _sign(self, method: str, name: str, content_type: str, max_size: int, date: str, expires: int) -> str:
        message = f"{method}\n{name}\n{content_type}\n0,{max_size}\n{date}\n{expires}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    def _signed_url(self, method: str, obj: StoredObject) -> str:
        now = datetime.now(UTC)
        date, expires = now.strftime("%Y%m%dT%H%M%SZ"), int(self.signed_url_lifetime)
        signature = self._sign(method, obj.name, obj.content_type, obj.max_size, date, expires)
        obj.signatures.append(signature)
        kind = "upload" if method == "PUT" else "download"
        self._remember(signature, f"{kind}_url_signature")
        query = urlencode(
            {
                "X-Goog-Algorithm": "GOOG4-HMAC-SHA256",
                "X-Goog-Credential": f"offline-siro/{now:%Y%m%d}/auto/storage/goog4_request",
                "X-Goog-Date": date,
                "X-Goog-Expires": str(expires),
                "X-Goog-SignedHeaders": "content-type;x-goog-content-length-range",
                "X-Goog-Signature": signature,
            }
        )
        return f"{self.url}/storage/{kind}/{quote(obj.name)}?{query}"

    def _check_signature(self, method: str, name: str, query: dict[str, str]) -> str | None:
        """None if the signed URL is valid now, else the GCS error code."""
        with self._lock:
            obj = self._objects.get(name)
        signature = query.get("X-Goog-Signature", "")
        if obj is None or not signature:
            return "SignatureDoesNotMatch"
        try:
            expires = int(query.get("X-Goog-Expires", ""))
            issued = datetime.strptime(query.get("X-Goog-Date", ""), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "SignatureDoesNotMatch"
        expected = self._sign(method, name, obj.content_type, obj.max_size, query["X-Goog-Date"], expires)
        if not hmac.compare_digest(expected, signature):
            return "SignatureDoesNotMatch"
        if signature in self._expired_signatures or datetime.now(UTC) > issued + timedelta(seconds=expires):
            return "ExpiredToken"
        return None

    def _user(self, headers: Headers, write: bool) -> tuple[int, str] | _Token:
        value = headers.get("x-siro-auth-token") or ""
        token = self._tokens.get(value)
        if token is None or token.expires_at <= time.time():
            return 401, "Unauthorized"
        if self.rate_limit is not None:
            with self._lock:
                calls = self._calls.setdefault(value, deque())
                now = time.monotonic()
                while calls and calls[0] <= now - self.rate_window:
                    calls.popleft()
                if len(calls) >= self.rate_limit:
                    self.rate_limited += 1
                    return 429, f"Too Many Requests: at most {self.rate_limit} per {self.rate_window:g} s"
                calls.append(now)
        if write and token.scope != "write":
            return 403, "Forbidden: this token has read scope; uploads need write"
        return token

    def _org(self, headers: Headers) -> tuple[int, str] | None:
        if headers.get("Authorization") != f"Bearer {self.org_token}":
            return 401, "Unauthorized: invalid organization API token"
        return None
