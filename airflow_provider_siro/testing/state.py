"""What the offline server keeps: the request log, recordings, stored objects and tokens.

Tests read these records (``OfflineSiro.requests``, ``.recordings``, ``.objects``) to check what a
DAG really sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Headers(dict[str, str]):
    """Request headers with case-insensitive lookups (``headers["user-agent"]``)."""

    def __getitem__(self, key: str) -> str:
        for name, value in self.items():
            if name.lower() == key.lower():
                return value
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(name.lower() == key.lower() for name in self)


@dataclass
class RecordedRequest:
    """One request as the server saw it. ``path`` never has the query string (signatures live there)."""

    endpoint: str
    method: str
    path: str
    headers: Headers
    json: Any
    body_size: int
    status: int | None
    fault: str | None
    time: float
    """``time.monotonic()`` when the request arrived."""


@dataclass
class Recording:
    id: str
    body: dict[str, Any]
    object_name: str
    sha256: str
    size: int
    file_type: str
    user_id: str
    created_at: datetime
    status: str = "in-progress"
    polls: int = 0
    date_created: str = ""
    """``dateCreated`` as the list endpoint shows it: the body's, else the time of the create."""


@dataclass
class StoredObject:
    name: str
    size: int
    sha256: str
    content_type: str
    uploaded: bool = False
    max_size: int = 0
    data: bytes | None = field(default=None, repr=False)
    signatures: list[str] = field(default_factory=list, repr=False)


@dataclass
class _Token:
    token_id: str
    user_id: str
    scope: str
    expires_at: float
