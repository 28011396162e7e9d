"""SiroLineageMixin: what an upload task tells OpenLineage and Airflow's assets about its recordings.

Both upload operators inherit it. ``execute`` hands the finished uploads to :meth:`_report_uploads`,
which keeps them for the OpenLineage listener (which asks :meth:`get_openlineage_facets_on_complete`
once the task has succeeded, in the same process) and fills the ``extra`` of every ``siro://`` asset
event the task emits. The OpenLineage provider is imported only when its listener asks for facets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_siro.payload import RecordingFields, file_type_from_path
from airflow_provider_siro.utils.assets import asset_event_extra, is_siro_uri
from airflow_provider_siro.utils.openlineage import UploadedRecording

if TYPE_CHECKING:
    from airflow_provider_siro.compat import Context


class SiroLineageMixin:
    """Lineage and asset events for an upload operator (mixed in before its Airflow base class).

    To emit an asset event, put a Siro asset in the task's ``outlets``
    (:func:`airflow_provider_siro.utils.assets.siro_asset`); its event's ``extra`` is
    ``{"recording_ids": [...], "sources": {recording ID: source location}}``.
    """

    _siro_uploads: Sequence[UploadedRecording] = ()
    _siro_api_url: str = ""

    def _report_uploads(self, context: Context, uploads: Sequence[UploadedRecording], api_url: str) -> None:
        """Keep ``uploads`` for OpenLineage and put them in the ``extra`` of each Siro outlet's event."""
        self._siro_uploads = list(uploads)
        self._siro_api_url = api_url
        outlets = [outlet for outlet in getattr(self, "outlets", None) or () if is_siro_uri(_uri(outlet))]
        if not outlets:
            return
        extra = asset_event_extra({upload.recording_id: upload.source for upload in uploads})
        outlet_events = context.get("outlet_events")
        if outlet_events is None:  # an Airflow without outlet events: nothing to fill
            return
        for outlet in outlets:
            outlet_events[outlet].extra = extra

    @staticmethod
    def _uploaded(
        recording_id: str, origin: str, fields: RecordingFields, size: int | None
    ) -> UploadedRecording:
        """One finished upload: ``origin`` is the source's canonical location (no query string)."""
        return UploadedRecording(recording_id, origin, fields.values.get("title"), fields.file_type, size)

    def _report_resumed(self, context: Context, recording_id: str) -> None:
        """After a deferred wait (a new process): report the upload from the task's rendered values;
        the size is not known there any more."""
        from urllib.parse import urlsplit

        source = getattr(self, "source_path", None) or getattr(self, "download_url", None) or ""
        parts = urlsplit(str(source))
        origin = f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else str(source)
        file_type = getattr(self, "file_type", None) or file_type_from_path(str(source)) or ""
        title = getattr(self, "title", None)
        upload = UploadedRecording(
            recording_id, origin, title if isinstance(title, str) else None, file_type, None
        )
        api_url = getattr(getattr(self, "hook", None), "settings", None)
        self._report_uploads(context, [upload], getattr(api_url, "api_url", ""))

    def _planned_sources(self) -> list[str]:
        """The sources known before ``execute`` (for the START event); empty when not a plain list."""
        single = getattr(self, "source_path", None)
        if isinstance(single, str) and single:
            return [single]
        many = getattr(self, "source_paths", None)
        if isinstance(many, list | tuple) and all(isinstance(item, str) for item in many):
            return list(many)
        return []

    def get_openlineage_facets_on_start(self) -> Any:
        """START: the sources as inputs, when the task names them itself (not for a folder)."""
        from airflow_provider_siro.utils.openlineage import planned_inputs

        return planned_inputs(self._planned_sources())

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """COMPLETE: every source as an input, every recording (with its ``siroRecording`` facet) as an
        output; past :data:`~airflow_provider_siro.utils.openlineage.MAX_LINEAGE_DATASETS` the first
        ones and a ``siroUploadSummary`` run facet."""
        from airflow_provider_siro.utils.openlineage import operator_lineage, plan_lineage

        return operator_lineage(plan_lineage(self._siro_uploads, self._siro_api_url))


def _uri(outlet: Any) -> str:
    uri = getattr(outlet, "uri", None)
    return uri if isinstance(uri, str) else ""
