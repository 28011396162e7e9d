"""Injected failures: what a test asks the offline server to get wrong, and when.

A fault is taken by the next matching request: a status (with or without ``Retry-After``), a dropped
connection before or after the server acted, a delay. :meth:`FaultsMixin.random_faults` draws them
from a seeded generator, for the soak tests of the reliability suite.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FAULT_KINDS = (
    "429",
    "429-retry-after",
    "500",
    "502",
    "503",
    "503-retry-after",
    "504",
    "drop-before",
    "drop-after",
    "drop-mid",
    "slow",
)


@dataclass
class Fault:
    """An injected failure; see :meth:`OfflineSiro.add_fault`."""

    endpoint: str
    status: int | None = None
    retry_after: int | None = None
    drop: str | None = None
    delay: float = 0.0
    times: int | None = 1
    body: Any = None
    acted: bool = False
    kind: str = ""
    redirect: str | None = None
    echo: bool = False
    content_type: str | None = None

    def answer(self, headers: Any, raw: bytes) -> tuple[bytes, str, dict[str, str]] | None:
        """The answer of a redirect, echo or raw-body fault: ``(body, content type, extra headers)``;
        None for a plain status fault (a Siro-style JSON error)."""
        if self.redirect is not None:
            return b"", "text/plain", {"Location": self.redirect}
        if self.echo:
            # Like a debugging proxy or a verbose framework error page: the request, headers and all.
            request = {"headers": dict(headers.items()), "body": raw.decode("utf-8", "replace")}
            echoed = {"error": f"Injected {self.status} for this request: {json.dumps(request)}"}
            return json.dumps(echoed).encode(), "application/json", {}
        if self.content_type is not None:
            text = self.body if isinstance(self.body, str) else ""
            return text.encode(), self.content_type, {}
        return None


class FaultsMixin:
    """The fault half of :class:`~airflow_provider_siro.testing.server.OfflineSiro`."""

    _lock: threading.RLock
    _faults: list[Fault]
    _random: tuple[random.Random, float, tuple[str, ...]] | None
    fault_counts: Counter[str]
    slow_delay: float

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
        redirect: str | None = None,
        echo: bool = False,
        content_type: str | None = None,
    ) -> Fault:
        """Make the next ``times`` requests to ``endpoint`` fail (``times=None``: all of them).

        :param status: answer this status (Siro-style error body, or ``body``) without acting.
        :param retry_after: send ``Retry-After`` with that many seconds.
        :param drop: close the connection without an answer: ``"before"`` acting, ``"after"`` acting
            (the recording is created, the answer lost), or ``"mid"`` (an upload: half the body read).
        :param delay: seconds to wait before answering (to run past a client's timeout).
        :param acted: with a 5xx ``status`` on ``create_recording``: create the recording first, like a
            gateway that failed after the backend succeeded.
        :param redirect: with a 3xx ``status``: send ``Location: redirect`` (another host, say).
        :param echo: answer ``status`` with a JSON body that echoes the request's headers and body.
        :param content_type: answer ``status`` with ``body`` (a string) as this content type, e.g. an
            HTML page from a proxy, or an empty ``application/json`` body.
        """
        if drop not in (None, "before", "after", "mid"):
            raise ValueError(f"drop must be before, after or mid, not {drop!r}")
        fault = Fault(
            endpoint,
            status,
            retry_after,
            drop,
            delay,
            times,
            body,
            acted,
            kind="manual",
            redirect=redirect,
            echo=echo,
            content_type=content_type,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def random_faults(self, seed: int, rate: float, kinds: Sequence[str] | None = None) -> None:
        """Give each request a fault with probability ``rate``, its kind drawn from ``kinds``.

        Counts land in ``fault_counts`` (kind -> n). ``rate=0`` turns it off.
        """
        chosen = tuple(kinds or FAULT_KINDS)
        unknown = set(chosen) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        with self._lock:
            self._random = (random.Random(seed), rate, chosen) if rate > 0 else None

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._random = None

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.endpoint == endpoint and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    self.fault_counts[f"{endpoint}:manual"] += 1
                    return fault
            if self._random is None:
                return None
            rng, rate, kinds = self._random
            if rng.random() >= rate:
                return None
            kind = rng.choice(kinds)
            self.fault_counts[kind] += 1
        return _fault_of_kind(endpoint, kind, self.slow_delay)


def _fault_of_kind(endpoint: str, kind: str, slow_delay: float) -> Fault:
    if kind.startswith(("429", "5")):
        status = int(kind[:3])
        return Fault(
            endpoint,
            status=status,
            retry_after=1 if kind.endswith("retry-after") else None,
            acted=status in (500, 502, 504),
            kind=kind,
        )
    if kind == "slow":
        return Fault(endpoint, delay=slow_delay, kind=kind)
    drop = kind.removeprefix("drop-")
    if drop == "mid" and endpoint != "upload_put":
        drop = "after"
    return Fault(endpoint, drop=drop, kind=kind)
