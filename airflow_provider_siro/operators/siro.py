"""SiroUploadRecordingOperator: one task that turns audio into a Siro recording.

This module is imported by every DAG file that uses the operator, so it stays light: the hook (and with
it ``requests``) and Airflow's object storage are imported inside ``execute``, not here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_siro.compat import conf
from airflow_provider_siro.exceptions import (
    SiroApiError,
    SiroRecordingFailedError,
    SiroRecordingWaitError,
    SiroValidationError,
    fail_now_unless_retryable,
)
from airflow_provider_siro.links.siro import SiroRecordingLink
from airflow_provider_siro.operators.base import SiroUploadBaseOperator, map_index_label
from airflow_provider_siro.payload import (
    RECORDING_FIELD_ARGS,
    RecordingFields,
    check_text,
    check_url,
    file_type_from_path,
    resolve_file_type,
    validate_recording_fields,
)
from airflow_provider_siro.utils.sources import source_path_text

if TYPE_CHECKING:
    from airflow.sdk import Context


class SiroUploadRecordingOperator(SiroUploadBaseOperator):
    """
    Create a Siro recording from audio, uploading it first when it is not in Siro yet.

    Give exactly one of ``download_url`` (audio already uploaded through Siro's signed URLs) and
    ``source_path`` (audio anywhere Airflow's object storage reaches). For a ``source_path`` the
    operator asks Siro for signed URLs sized to the file, streams the bytes straight from the source to
    them (never the whole file in memory, never a temporary copy), and only then creates the recording.
    The recording ID is returned, so it lands in XCom and ``operator.output`` feeds the next task.

    Every value is checked after rendering and before the first request; a bad one fails the task at
    once, without retries, with a message naming the argument.

    :param siro_conn_id: the ``siro`` connection to use.
    :param download_url: the ``downloadUrl`` of a previous signed-URL upload. (templated)
    :param source_path: audio to upload: a local path, ``file://`` URL, any URL Airflow's object
        storage understands (``s3://``, ``gs://``, ...), or an ``ObjectStoragePath``. (templated)
    :param source_conn_id: the connection object storage uses for ``source_path``.
    :param file_type: ``mp3``, ``aac`` or ``wav``; inferred from the source's extension when omitted,
        and checked against it when given. (templated)

    The recording fields (``title``, ``user_id``, ``user_email``, ``user_phone``,
    ``organization_id``, ``conversation_type``, ``integration_connection_id``, ``crm_objects``,
    ``customer_phone``, ``customer_name``, ``date_created``, ``discoverable``, ``result``), the ledger
    (``ledger_path``, ``ledger_conn_id``, ``claim_timeout``, ``reconcile``, ``reconcile_polls``, ``reconcile_interval``) and ``siro_conn_id`` are those of
    :class:`~airflow_provider_siro.operators.base.SiroUploadBaseOperator`; all are keyword
    parameters, so ``default_args`` and ``partial()`` take them.

    :param wait_for_completion: after creating the recording, wait until Siro has processed it
        (``processingStatus`` ``complete``), so one task uploads and waits. The recording's details
        then go to XCom under the key ``recording`` (the return value stays the recording ID). On
        Airflow 3.3+ the recording ID is kept in the task state store, so a retry resumes the wait
        instead of uploading again; below 3.3 a failed wait is not retried, since a retry would upload
        the audio a second time.
    :param deferrable: wait in the triggerer instead of holding a worker slot (with
        ``wait_for_completion``). Defaults to the ``[operators] default_deferrable`` setting.
    :param poll_interval: seconds between reads of the recording while waiting.
    :param timeout: seconds to wait for processing before failing; Siro says about 30 minutes.
    :param show_summary: include the call summary (``showSummary``) in the ``recording`` XCom.
    :param show_entity_extractions: include extracted entities (``showEntityExtractions``).
    :param show_crm_opportunities: include linked CRM opportunities (``showCrmOpportunities``).

    The task has a "Siro recording" extra link to the recording (see
    :class:`~airflow_provider_siro.links.siro.SiroRecordingLink`), and writes the same URL to its log.
    """

    template_fields: Sequence[str] = (
        "download_url",
        "source_path",
        "file_type",
        "ledger_path",
        *RECORDING_FIELD_ARGS,
    )
    operator_extra_links = (SiroRecordingLink(),)

    def __init__(
        self,
        *,
        download_url: str | None = None,
        source_path: str | os.PathLike[str] | None = None,
        wait_for_completion: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 60.0,
        timeout: float = 3600.0,
        show_summary: bool = False,
        show_entity_extractions: bool = False,
        show_crm_opportunities: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = f"{type(self).__name__} {kwargs.get('task_id')!r}"
        if self.ledger_path is not None and download_url is not None:
            raise ValueError(f"{where}: ledger_path needs a source_path to key on")
        if (download_url is None) == (source_path is None):
            raise ValueError(f"{where}: give exactly one of download_url and source_path")
        if poll_interval <= 0 or timeout < 0:
            raise ValueError(f"{where}: poll_interval must be > 0 and timeout >= 0")
        self.download_url = download_url
        self.source_path = source_path_text(source_path)
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.timeout = float(timeout)
        self.show_summary = show_summary
        self.show_entity_extractions = show_entity_extractions
        self.show_crm_opportunities = show_crm_opportunities

    @property
    def source_label(self) -> str:
        """The source as the UI shows it: the path, or the ``downloadUrl`` without its query string.

        Never fails and never looks like a Python literal: Airflow renders ``map_index_template`` after
        a failed ``execute`` too (natively in a DAG with ``render_template_as_native_obj``), and an
        error there would turn a task that must fail at once into one that is retried.
        """
        if self.source_path not in (None, ""):
            return map_index_label(str(self.source_path))
        if isinstance(self.download_url, str) and self.download_url:
            parts = urlsplit(self.download_url)
            return map_index_label(
                f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else parts.path
            )
        return "(no source)"

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: Any,
        seen_oids: set[int],
    ) -> None:
        """Render, then mask a rendered ``download_url``'s query string.

        For a signed URL the query string is a credential, and Airflow stores rendered fields for the
        UI, redacting only registered secrets. The hook is ``_do_render_template_fields`` rather than
        ``render_template_fields`` because a mapped task (``.expand(download_url=...)``) is rendered
        through this method alone.
        """
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self and isinstance(self.download_url, str) and urlsplit(self.download_url).query:
            from airflow_provider_siro.compat import mask_secret

            mask_secret(urlsplit(self.download_url).query)

    # ------------------------------------------------------------------ validation
    def validate_inputs(self) -> tuple[RecordingFields, str]:
        """Check every rendered value; return the recording fields and the resolved file type.

        Raises :class:`~airflow_provider_siro.exceptions.SiroValidationError` (the task then fails
        without retrying) before any request is sent.
        """
        if (self.download_url is None) == (self.source_path is None):
            raise SiroValidationError("source_path", "give exactly one of download_url and source_path")
        if self.source_path is not None:
            source = check_text("source_path", self.source_path, if_empty="give the audio's path or URL")
            file_type = resolve_file_type(self.file_type, source)
        else:
            check_url("download_url", self.download_url)
            inferred = file_type_from_path(str(self.download_url))
            if self.file_type is None and inferred is None:
                raise SiroValidationError(  # never the URL itself: a signed one carries a credential
                    "file_type",
                    "is required: download_url has no .mp3, .aac or .wav extension to infer it from",
                )
            file_type = resolve_file_type(self.file_type if self.file_type is not None else inferred, None)
        fields = validate_recording_fields(file_type, **self.recording_fields())
        return fields, file_type

    # ------------------------------------------------------------------ execution
    @fail_now_unless_retryable
    def execute(self, context: Context) -> str:
        self._start_stoppable()
        fields, _file_type = self.validate_inputs()
        hook = self.hook
        self._upload_settings()
        hook.check_create_fields(fields)  # a field the connection's wire format lacks: before any upload
        recording_id = self._remembered_recording(context)
        if recording_id is not None:
            self.log.info(
                "Siro recording %s was created by an earlier try of this task (task state store); "
                "not uploading again",
                recording_id,
            )
            given = urlsplit(str(self.source_path or self.download_url))
            origin, size = (
                f"{given.scheme}://{given.netloc}{given.path}" if given.scheme else given.path,
                None,
            )
        elif self.source_path is not None:
            from airflow_provider_siro.utils.sources import locate_source
            from airflow_provider_siro.utils.uploads import upload_source

            source = locate_source(str(self.source_path), self.source_conn_id)
            ledger = self._ledger(context, self.source_conn_id)
            ((source, fields),) = self._stoppable_sources([(source, fields)])
            # In a thread of its own: a signal that interrupts the main thread (a kill, execution_timeout)
            # cannot cut the create call in half; on_kill stops the transfer instead.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="siro-upload") as pool:
                future = pool.submit(
                    upload_source, hook, source, fields, ledger, self.log, reconcile=self._reconcile(ledger)
                )
                try:
                    recording_id = future.result().recording_id
                    origin, size = source.location, source.size
                except BaseException:
                    if not future.done() and self._stop is not None:
                        self._stop.set()  # interrupted here: stop the transfer, then wait for the thread
                    raise
        else:
            started = time.monotonic()
            download_url = str(self.download_url)
            parts = urlsplit(download_url)
            recording_id = hook.create_recording(download_url, fields)
            origin, size = f"{parts.scheme}://{parts.netloc}{parts.path}", None
            self.log.info(
                "Created Siro recording %s for %s from %s://%s%s in %.1f s",
                recording_id,
                fields.user,
                parts.scheme,
                parts.netloc,
                parts.path,
                time.monotonic() - started,
            )
        self._remember_recording(context, recording_id)
        SiroRecordingLink.persist(context=context, operator=self, recording_id=recording_id)
        self._report_uploads(
            context, [self._uploaded(recording_id, origin, fields, size)], hook.settings.api_url
        )
        if self.wait_for_completion:
            try:
                self._wait(context, recording_id)
            except SiroRecordingWaitError as exc:
                if self._state_store(context) is None:
                    raise
                # Airflow 3.3+: a retry finds the recording in the task state store and resumes
                # waiting on it instead of uploading again, so the wait is safe to retry.
                self.log.warning("%s; a retry resumes waiting on recording %s", exc.problem, recording_id)
                raise SiroRecordingWaitError(recording_id, exc.problem, resumable=True) from None
        return recording_id

    # ------------------------------------------------------------------ waiting for processing
    def _show_flags(self) -> dict[str, Any]:  # bools, passed on as keyword arguments
        return {
            "show_summary": self.show_summary,
            "show_entity_extractions": self.show_entity_extractions,
            "show_crm_opportunities": self.show_crm_opportunities,
        }

    def _wait(self, context: Context, recording_id: str) -> None:
        """Poll until Siro has processed the recording, or defer that to the triggerer.

        Everything that ends the wait early raises
        :class:`~airflow_provider_siro.exceptions.SiroRecordingWaitError`; ``execute`` makes it
        retryable where the task state store keeps the recording ID for the retry (Airflow 3.3+).
        """
        from airflow_provider_siro.triggers.siro import (
            SiroRecordingTrigger,
            describe,
            gone_error,
            is_processed,
        )

        deadline = time.monotonic() + self.timeout
        while True:
            try:
                recording = self.hook.get_recording(recording_id, **self._show_flags())
                done = is_processed(recording_id, recording)
            except SiroApiError as exc:
                gone = gone_error(recording_id, exc)
                if gone is not None:
                    raise gone from None
                raise SiroRecordingWaitError(recording_id, f"reading it back failed: {exc}") from None
            if done:
                self._processed(context, recording_id, recording)
                return
            if self.deferrable:
                self.defer(
                    trigger=SiroRecordingTrigger(
                        recording_id=recording_id,
                        siro_conn_id=self.siro_conn_id,
                        end_time=time.time() + self.timeout,
                        poll_interval=self.poll_interval,
                        **self._show_flags(),
                    ),
                    method_name="execute_complete",
                    timeout=self.execution_timeout,
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SiroRecordingWaitError(
                    recording_id,
                    f"Siro had not processed it within {self.timeout:.0f} s (it is {describe(recording)})",
                )
            self.log.info(
                "Siro recording %s is %s; next check in %.1f s",
                recording_id,
                describe(recording),
                min(self.poll_interval, remaining),
            )
            time.sleep(min(self.poll_interval, remaining))

    def _processed(self, context: Context, recording_id: str, recording: dict[str, Any]) -> None:
        self.log.info("Siro has processed recording %s", recording_id)
        context["ti"].xcom_push(key="recording", value=recording)

    @fail_now_unless_retryable
    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        """Resume after the trigger fired: store the processed recording, or fail without a retry.

        :param event: the trigger's event (see :class:`~airflow_provider_siro.triggers.siro.SiroRecordingTrigger`).
        :return: the recording ID, as a run without waiting returns it.
        """
        recording_id = str(event["recording_id"])
        status = event.get("status")
        message = str(event.get("message", ""))
        if status == "success":
            self._processed(context, recording_id, event["recording"])
            self._report_resumed(context, recording_id)
            return recording_id
        if status == "failed":
            raise SiroRecordingFailedError(recording_id, message)
        raise SiroRecordingWaitError(
            recording_id,
            f"waiting for it ended: {message}",
            resumable=self._state_store(context) is not None,  # 3.3+: the retry resumes the wait
        )


# The bulk operator lives in operators/bulk.py and is importable from here as well. Imported last: it
# builds on the same base, never on this module, so there is no cycle.
from airflow_provider_siro.operators.bulk import SiroUploadRecordingsOperator  # noqa: E402

__all__ = ["SiroUploadRecordingOperator", "SiroUploadRecordingsOperator"]
