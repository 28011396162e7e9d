"""What the offline server's request handlers need from the server: a Protocol, so the handlers do
not import the server module (which imports them to build its handler class).

:class:`~airflow_provider_siro.testing.server.OfflineSiro` satisfies it; nothing else needs to.
"""

from __future__ import annotations

import random
import socket
import threading
from typing import Any, Protocol

from airflow_provider_siro.testing.faults import Fault
from airflow_provider_siro.testing.state import Headers, RecordedRequest, Recording, StoredObject, _Token


class ServerState(Protocol):
    """The state and helpers of one offline Siro, as its endpoints use them."""

    api: str
    response_id_key: str
    processing_polls: int
    signed_url_lifetime: float
    client_id: str
    client_secret: str
    user_id: str
    organization_id: str
    integration_connection_id: str
    credential_leaks: int
    _lock: threading.RLock
    _sockets: set[socket.socket]
    _rng_ids: random.Random
    _objects: dict[str, StoredObject]
    _recordings: dict[str, Recording]
    _tokens: dict[str, _Token]

    @property
    def requests(self) -> list[RecordedRequest]: ...

    @property
    def recordings(self) -> dict[str, Recording]: ...

    def clear_requests(self) -> None: ...

    def clear_faults(self) -> None: ...

    def add_fault(
        self,
        endpoint: str,
        *,
        status: int | None = None,
        retry_after: int | None = None,
        drop: str | None = None,
        delay: float = 0.0,
        times: int | None = 1,
        body: Any = None,
        acted: bool = False,
    ) -> Fault: ...

    def _take_fault(self, endpoint: str) -> Fault | None: ...

    def _handling(self, delta: int) -> None: ...

    def _record(self, entry: RecordedRequest) -> None: ...

    def _user(self, headers: Headers, write: bool) -> tuple[int, str] | _Token: ...

    def _org(self, headers: Headers) -> tuple[int, str] | None: ...

    def _new_token(self, user_id: str, scope: str) -> tuple[str, str]: ...

    def _signed_url(self, method: str, obj: StoredObject) -> str: ...

    def _check_signature(self, method: str, name: str, query: dict[str, str]) -> str | None: ...
