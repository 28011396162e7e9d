"""The ``siro://`` asset scheme: what an upload's asset event says, and how the scheme is normalised.

An upload operator with a ``siro://`` asset among its ``outlets`` fills that asset's event ``extra``
with the recordings it created and the sources they came from (:func:`asset_event_extra`); a DAG
scheduled on the asset, and the sensor in it, read the IDs back (:func:`recording_ids_from_events`).
The provider registers the scheme with Airflow (``asset-uris`` / ``dataset-uris`` in its provider info)
with :func:`sanitize_uri` as its normaliser, so ``siro://api.siro.ai/recordings/`` and
``SIRO://API.SIRO.AI/recordings`` name one asset.

Nothing here imports Airflow at module level: the provider info names these functions, and Airflow
imports this module when it first meets a ``siro://`` URI.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult

SCHEME = "siro"
"""The URI scheme of Siro assets: ``siro://<API host>/<a name the DAG author chooses>``."""

DEFAULT_HOST = "api.siro.ai"

EXTRA_RECORDING_IDS = "recording_ids"
"""Key of the recording IDs (a list, in upload order) in a Siro asset event's ``extra``."""
EXTRA_SOURCES = "sources"
"""Key of ``{recording ID: source location}`` in a Siro asset event's ``extra``."""
MAX_EXTRA_SOURCES = 1000
"""A bulk task's event lists at most this many sources (every recording ID is always listed); the
``extra`` is stored in the metadata DB, and beyond this the list would only weigh it down."""


def siro_asset_uri(name: str = "recordings", host: str = DEFAULT_HOST) -> str:
    """``siro://<host>/<name>``: the URI of a Siro asset.

    :param name: what the recordings are (``sales-calls``); one asset per stream of uploads that a
        downstream DAG wants to be scheduled on.
    :param host: the Siro API host the recordings live in (``host:port`` for a test server).
    """
    name = name.strip("/")
    if not name or not host:
        raise ValueError("a Siro asset needs a host and a name: siro://<host>/<name>")
    return f"{SCHEME}://{host.lower()}/{name}"


def siro_asset(name: str = "recordings", host: str = DEFAULT_HOST, **kwargs: Any) -> Any:
    """An Airflow ``Asset`` (a ``Dataset`` on Airflow 2.11) for :func:`siro_asset_uri`.

    Put it in an upload operator's ``outlets``, and in the downstream DAG's ``schedule``.
    ``kwargs`` go to ``Asset`` (``name``, ``group``, ``extra``) on Airflow 3, to ``Dataset`` on 2.11.
    """
    from airflow_provider_siro.compat import AIRFLOW_V_3_0_PLUS

    uri = siro_asset_uri(name, host)
    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk import Asset

        return Asset(uri=uri, **kwargs)
    from airflow.datasets import Dataset  # type: ignore[import-not-found,unused-ignore]

    return Dataset(uri=uri, **kwargs)


def create_asset(*, name: str = "recordings", host: str = DEFAULT_HOST, extra: Any = None) -> Any:
    """The ``factory`` Airflow's ``asset-uris`` entry names: :func:`siro_asset` by keyword."""
    return siro_asset(name, host, **({"extra": extra} if extra else {}))


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's normaliser for ``siro://`` URIs: a host and a name are required; the host is lower
    case, and a trailing slash, query and fragment are dropped (they would make two assets of one)."""
    if not uri.netloc:
        raise ValueError("a siro:// asset URI needs the Siro API host: siro://api.siro.ai/<name>")
    path = uri.path.rstrip("/")
    if not path:
        raise ValueError("a siro:// asset URI needs a name after the host: siro://api.siro.ai/<name>")
    return uri._replace(scheme=SCHEME, netloc=uri.netloc.lower(), path=path, query="", fragment="")


def convert_asset_to_openlineage(asset: Any, lineage_context: Any) -> Any:
    """Airflow's ``to_openlineage_converter``: a Siro asset as an OpenLineage dataset in the Siro
    namespace (``siro://<host>``), named by the asset's path."""
    from urllib.parse import urlsplit

    from airflow.providers.common.compat.openlineage.facet import Dataset

    parts = urlsplit(asset.uri)
    return Dataset(namespace=f"{SCHEME}://{parts.netloc}", name=parts.path.lstrip("/"))


def is_siro_uri(uri: str) -> bool:
    return uri.lower().startswith(f"{SCHEME}://")


def asset_event_extra(recordings: Mapping[str, str]) -> dict[str, Any]:
    """The ``extra`` of an upload's asset event.

    :param recordings: ``{recording ID: source location}`` in upload order (a location is a
        ``file:///...`` or store URL, never a signed URL's query string).
    :return: ``{"recording_ids": [...], "sources": {id: location}}``; beyond
        :data:`MAX_EXTRA_SOURCES` recordings the sources are left out and ``sources_omitted`` says how
        many there were.
    """
    ids = list(recordings)
    extra: dict[str, Any] = {EXTRA_RECORDING_IDS: ids}
    if len(ids) <= MAX_EXTRA_SOURCES:
        extra[EXTRA_SOURCES] = dict(recordings)
    else:
        extra["sources_omitted"] = len(ids)
    return extra


def recording_ids_from_events(triggering_events: Mapping[Any, Iterable[Any]] | None) -> list[str]:
    """The recording IDs of every ``siro://`` event that triggered a run, oldest event first, each once.

    :param triggering_events: the run's ``triggering_asset_events`` (``triggering_dataset_events`` on
        Airflow 2.11): ``{asset or URI: [events]}``; an event has ``extra`` and ``timestamp``, and
        names its asset by ``asset.uri`` (Airflow 3) or ``dataset.uri`` (2.11).
    """
    events: list[Any] = []
    for key, batch in (triggering_events or {}).items():
        for event in batch:
            if is_siro_uri(_event_uri(key, event)):
                events.append(event)
    ids: list[str] = []
    for event in sorted(events, key=lambda event: str(getattr(event, "timestamp", ""))):
        for recording_id in (getattr(event, "extra", None) or {}).get(EXTRA_RECORDING_IDS) or ():
            if isinstance(recording_id, str) and recording_id not in ids:
                ids.append(recording_id)
    return ids


def _event_uri(key: Any, event: Any) -> str:
    for holder in (getattr(event, "asset", None), getattr(event, "dataset", None), key):
        uri = getattr(holder, "uri", None) if not isinstance(holder, str) else holder
        if isinstance(uri, str):
            return uri
    return ""
