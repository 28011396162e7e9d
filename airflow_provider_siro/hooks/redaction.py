"""Keeping signed-URL signatures out of logs.

A signed upload or download URL is a credential until it expires: its query string lets anyone PUT or
GET the audio. The provider never logs a query string; this module covers what it does not write
itself (the HTTP client's own debug lines) and registers signatures with Airflow's secrets masker, so
that a URL a user passes on (a rendered field, an exception) is masked too.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit

from airflow_provider_siro.compat import mask_secret


def redact_url(url: str) -> str:
    """``scheme://host/path`` without the query string, which for a signed URL is a credential."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


MASKED_SIGNATURES_PER_PROCESS = 32
"""Signed URLs whose signature one process registers with Airflow's secrets masker.

The masker compiles one regular expression over every secret it knows, again on each registration, so
registering grows quadratically: 750 signatures cost 79 s in one process (measured on this project's
machine). A task uploads one file, re-signing a few times at most, and stays far below the cap; a
process that uploads hundreds of files (a loop in a ``@task``, the triggerer) stops registering there
and relies on the two guards that cover every URL: the provider never logs a query string, and
:class:`_SignedUrlRedactor` removes signatures from the HTTP client's own debug lines.
"""

_SIGNED_PARAMS = re.compile(r"(?i)([?&][^=&\s\"']*(?:signature|credential)[^=&\s\"']*=)[^&\s\"']+")
_mask_lock = threading.Lock()
_masked_signatures: set[str] = set()
_masked_urls: set[str] = set()


class _SignedUrlRedactor(logging.Filter):
    """Blanks signed-URL signatures in ``urllib3``'s debug lines (it logs each request's full URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SIGNED_PARAMS.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


@functools.cache
def _redact_http_client_logs() -> None:
    """Install :class:`_SignedUrlRedactor` once per process, on the logger that writes request lines."""
    logging.getLogger("urllib3.connectionpool").addFilter(_SignedUrlRedactor())


def mask_url_credentials(url: str) -> None:
    """Keep a signed URL's signature out of logs: register it with Airflow's secrets masker.

    Only the signature is registered, not the whole query string: it is what makes the URL a
    credential, and one secret per URL keeps the masker's cost down. See
    :data:`MASKED_SIGNATURES_PER_PROCESS` for the cap.
    """
    _redact_http_client_logs()
    if url in _masked_urls or len(_masked_signatures) >= MASKED_SIGNATURES_PER_PROCESS:
        return  # every create call passes its download URL again: no parsing twice
    for key, value in parse_qsl(urlsplit(url).query):
        if "signature" not in key.lower() or len(value) < 8:
            continue
        with _mask_lock:
            if value in _masked_signatures or len(_masked_signatures) >= MASKED_SIGNATURES_PER_PROCESS:
                continue
            _masked_signatures.add(value)
            _masked_urls.add(url)
        mask_secret(value)


MESSAGE_LIMIT = 300
"""Characters of a server's text (an error message, an unexpected body) a provider message quotes."""

_URL_QUERY = re.compile(r"(?i)\b(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*")
_CREDENTIAL_VALUES = re.compile(
    r"(?i)(\b(?:x-siro-auth-token|authorization|access[_-]?token|client[_-]?secret|org[_-]?token|"
    r"password|secret|token)\b[\\\"']{0,3}\s*[:=]\s*[\\\"']{0,3})(?:bearer\s+)?[^\s\\\"'&,;}<]+"
)
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+")


def scrub(text: str, secrets: Iterable[str | None] = (), limit: int = MESSAGE_LIMIT) -> str:
    """``text`` from a server, safe to put in an exception or a log line, at most ``limit`` characters.

    Whatever Siro, a proxy or a debugging page echoes, this removes: each of ``secrets`` (the hook's
    token, org token, client secret), the query string of every URL (a signed URL's credential), and
    the value after anything named like a credential (``x-siro-auth-token``, ``Authorization``,
    ``clientSecret``...), so a secret the hook does not know of (another hook's token) goes too.
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_QUERY.sub(r"\1?***", text)
    text = _SIGNED_PARAMS.sub(r"\1***", text)
    text = _CREDENTIAL_VALUES.sub(r"\1***", text)
    text = _BEARER.sub("Bearer ***", text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters)"
    return text
