"""SiroUploadRecordingsOperator: many files in one task, through one hook.

Importable from :mod:`airflow_provider_siro.operators.siro` as well, beside the single-file operator
whose base (:class:`~airflow_provider_siro.operators.base.SiroUploadBaseOperator`: argument names,
validation, ledger, ``on_kill``) it shares.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_siro.exceptions import fail_now_unless_retryable
from airflow_provider_siro.operators.base import SiroUploadBaseOperator, map_index_label
from airflow_provider_siro.payload import RECORDING_FIELD_ARGS
from airflow_provider_siro.utils.sources import source_path_text

if TYPE_CHECKING:
    from airflow.sdk import Context


class SiroUploadRecordingsOperator(SiroUploadBaseOperator):
    """
    Upload many audio files as Siro recordings in one task, a few at a time, through one hook.

    One token and the machine-wide pace serve the whole batch, and the task pays Airflow's start-up
    cost once instead of once per file. Every source's fields are checked, and every source located,
    before the first request. A file that fails does not stop the others: the task fails at the end
    naming each failed source and why. With a ``ledger_path`` a retry (or a re-run) uploads only what
    the ledger does not have; without one, a failed batch is not retried, since a retry would upload
    every file again.

    Map it to spread a large batch over task instances:
    ``SiroUploadRecordingsOperator.partial(task_id=..., user_email=...).expand(source_paths=[[...], [...]])``
    or ``.expand(source_folder=[...])``; each mapped instance is named in the UI by its source.

    :param source_paths: the sources: local paths or object storage URLs; a list, a template, or an
        upstream task's output. (templated)
    :param source_folder: instead of ``source_paths``: a folder or bucket prefix to upload from.
        (templated)
    :param pattern: the glob of the files in ``source_folder`` to upload (``"*.mp3"``,
        ``"**/*.wav"``). (templated)
    :param fields_per_source: recording fields per source, over the shared ones: a callable of the
        source path, or a dict keyed by source as given, each value a dict of recording field names
        (and ``file_type``). Not templated: Airflow would call a callable to render it.
    :param max_concurrency: files streamed at once.

    ``siro_conn_id``, ``source_conn_id``, ``file_type``, the ledger (``ledger_path``,
    ``ledger_conn_id``, ``claim_timeout``, ``reconcile``, ``reconcile_polls``, ``reconcile_interval``) and the recording fields (``title``, ``user_email``,
    ``date_created``, ...) are those of :class:`~airflow_provider_siro.operators.base.SiroUploadBaseOperator`
    and apply to every source. Returns ``{source as given: recording ID}``.
    """

    template_fields: Sequence[str] = (
        "source_paths",
        "source_folder",
        "pattern",
        "file_type",
        "ledger_path",
        *RECORDING_FIELD_ARGS,
    )

    def __init__(
        self,
        *,
        source_paths: Sequence[str | os.PathLike[str]] | str | None = None,
        source_folder: str | None = None,
        pattern: str | None = None,
        fields_per_source: Mapping[str, Mapping[str, Any]] | Callable[[str], Mapping[str, Any]] | None = None,
        max_concurrency: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__} {kwargs.get('task_id')!r}"
        if (source_paths is None) == (source_folder is None):
            raise ValueError(f"{where}: give exactly one of source_paths and source_folder (with pattern)")
        if (source_folder is None) != (pattern is None):
            raise ValueError(f"{where}: source_folder and pattern go together")
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"{where}: max_concurrency must be an int >= 1, got {max_concurrency!r}")
        self.source_paths = source_paths
        self.source_folder = source_path_text(source_folder)
        self.pattern = pattern
        self.fields_per_source = fields_per_source
        self.max_concurrency = max_concurrency

    @property
    def source_label(self) -> str:
        """The sources as the UI names this task: the folder and pattern, or the path(s).

        Never fails (see :attr:`SiroUploadRecordingOperator.source_label
        <airflow_provider_siro.operators.siro.SiroUploadRecordingOperator.source_label>`).
        """
        if self.source_folder not in (None, ""):
            return f"{str(self.source_folder).rstrip('/')}/{self.pattern}"
        paths = self.source_paths
        if isinstance(paths, str | os.PathLike):
            return map_index_label(str(paths))
        try:
            items = [str(source_path_text(item)) for item in paths or ()]
        except Exception:
            return "(sources)"
        if len(items) == 1:
            return map_index_label(items[0])
        return f"{items[0]} and {len(items) - 1} more" if items else "(no sources)"

    @fail_now_unless_retryable
    def execute(self, context: Context) -> dict[str, str]:
        from airflow_provider_siro.utils.bulk import plan_uploads, raise_for_failures, resolve_sources
        from airflow_provider_siro.utils.uploads import upload_many

        self._start_stoppable()
        width = self.max_concurrency
        sources = resolve_sources(self.source_paths, self.source_folder, self.pattern, self.source_conn_id)
        work = plan_uploads(
            sources,
            self.recording_fields(),
            self.file_type,
            self.fields_per_source,
            self.source_conn_id,
            width,
        )
        ledger = self._ledger(context, self.source_conn_id)
        hook = self.hook
        settings = self._upload_settings()
        for _source, fields in work:  # a field the connection's wire format lacks: before any upload
            hook.check_create_fields(fields)
        hook.size_pool(2 * width)  # each thread may hold an API and a storage connection
        ids, failures = upload_many(
            hook,
            self._stoppable_sources(work),
            ledger,
            width,
            self.log,
            settings.progress_interval,
            reconcile=self._reconcile(ledger),
        )
        if failures:
            context["ti"].xcom_push(key="recording_ids", value=ids)
        done = [self._uploaded(ids[s.given], s.location, f, s.size) for s, f in work if s.given in ids]
        self._report_uploads(context, done, settings.api_url)
        self._raise_if_stopped(len(ids), len(work))
        raise_for_failures(failures, len(work), with_ledger=ledger is not None)
        return ids
