"""OpenLineage for uploads: the audio sources as input datasets, the Siro recordings as outputs.

The builders here are pure (plain tuples and dicts) and are tested without OpenLineage. Only
:func:`operator_lineage` imports the OpenLineage provider, and only when the provider's listener asks an
operator for its facets; a deployment without ``apache-airflow-providers-openlineage`` never imports it.

Dataset naming follows OpenLineage's naming spec:

* a local file: namespace ``file``, name its absolute path;
* an object: namespace ``s3://bucket`` / ``gs://bucket`` (any ``scheme://bucket``), name the key;
* a recording: namespace ``siro://<API host[:port]>`` (``siro://api.siro.ai``), name the recording ID,
  with a ``siroRecording`` facet carrying its title, file type and size in bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote, urlsplit

MAX_LINEAGE_DATASETS = 1000
"""A bulk task lists at most this many sources and recordings in one event (each side). Beyond that
it lists the first ones and a ``siroUploadSummary`` run facet counts all of them: an event with tens of
thousands of datasets is more than most lineage back ends accept."""

RECORDING_FACET = "siroRecording"
SUMMARY_FACET = "siroUploadSummary"


@dataclass(frozen=True)
class UploadedRecording:
    """One upload as lineage sees it.

    :param recording_id: the Siro recording.
    :param source: where the audio came from: ``file:///abs/path``, ``s3://bucket/key``, or a
        ``downloadUrl`` without its query string.
    :param title: the recording's title, if one was given.
    :param file_type: ``mp3``, ``aac`` or ``wav``.
    :param size: bytes, when known (not for a ``download_url``).
    """

    recording_id: str
    source: str
    title: str | None
    file_type: str
    size: int | None


def source_dataset(location: str) -> tuple[str, str]:
    """``(namespace, name)`` of an audio source, the OpenLineage way."""
    parts = urlsplit(location)
    if parts.scheme in ("", "file"):
        path = unquote(parts.path) if parts.scheme else location
        return "file", path
    if parts.scheme in ("http", "https"):  # a downloadUrl: the object's path, never its signature
        return f"{parts.scheme}://{parts.netloc}", parts.path
    scheme = {"gcs": "gs", "s3a": "s3", "s3n": "s3"}.get(parts.scheme, parts.scheme)
    bucket = parts.netloc.rsplit("@", 1)[-1]  # object storage URLs may carry a connection id
    return f"{scheme}://{bucket}", unquote(parts.path).lstrip("/")


def recording_namespace(api_url: str) -> str:
    """``siro://<host[:port]>`` of the Siro API the recordings were created in."""
    return f"siro://{urlsplit(api_url).netloc.lower() or 'api.siro.ai'}"


def recording_facet(upload: UploadedRecording) -> dict[str, Any]:
    """The fields of the ``siroRecording`` facet of one output dataset."""
    return {"title": upload.title, "fileType": upload.file_type, "sizeBytes": upload.size}


@dataclass(frozen=True)
class LineagePlan:
    """What one task reports: inputs and outputs as ``(namespace, name)``, facets as plain dicts."""

    inputs: list[tuple[str, str]]
    outputs: list[tuple[str, str, dict[str, Any]]]
    summary: dict[str, Any] | None


def plan_lineage(
    uploads: Sequence[UploadedRecording], api_url: str, *, limit: int = MAX_LINEAGE_DATASETS
) -> LineagePlan:
    """Datasets for ``uploads``: every source and recording up to ``limit``, then a summary facet."""
    namespace = recording_namespace(api_url)
    shown = uploads[:limit]
    inputs: list[tuple[str, str]] = []
    for upload in shown:
        dataset = source_dataset(upload.source)
        if dataset not in inputs:
            inputs.append(dataset)
    outputs = [(namespace, upload.recording_id, recording_facet(upload)) for upload in shown]
    summary = None
    if len(uploads) > limit:
        summary = {
            "recordings": len(uploads),
            "listed": len(shown),
            "totalBytes": sum(upload.size or 0 for upload in uploads),
        }
    return LineagePlan(inputs, outputs, summary)


@cache
def _facet_classes() -> tuple[type, type]:
    """The two custom facets, defined on first use: their base class comes from OpenLineage."""
    import attrs
    from airflow.providers.common.compat.openlineage.facet import DatasetFacet, RunFacet

    @attrs.define
    class SiroRecordingDatasetFacet(DatasetFacet):
        """A Siro recording: its title, file type and size in bytes."""

        title: str | None = attrs.field(default=None)
        fileType: str | None = attrs.field(default=None)
        sizeBytes: int | None = attrs.field(default=None)

    @attrs.define
    class SiroUploadSummaryRunFacet(RunFacet):
        """A bulk upload larger than the datasets listed: how many recordings, how many listed."""

        recordings: int = attrs.field(default=0)
        listed: int = attrs.field(default=0)
        totalBytes: int = attrs.field(default=0)

    return SiroRecordingDatasetFacet, SiroUploadSummaryRunFacet


def operator_lineage(plan: LineagePlan) -> Any:
    """``plan`` as the OpenLineage provider's ``OperatorLineage`` (imports the provider)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    recording_facet_class, summary_class = _facet_classes()
    inputs = [Dataset(namespace=namespace, name=name) for namespace, name in plan.inputs]
    outputs = [
        Dataset(namespace=namespace, name=name, facets={RECORDING_FACET: recording_facet_class(**facet)})
        for namespace, name, facet in plan.outputs
    ]
    run_facets = {SUMMARY_FACET: summary_class(**plan.summary)} if plan.summary else {}
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)


def planned_inputs(locations: Sequence[str]) -> Any:
    """``OperatorLineage`` with only the sources, for the START event (no recording exists yet)."""
    return operator_lineage(LineagePlan([source_dataset(location) for location in locations], [], None))
