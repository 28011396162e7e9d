"""SiroRecordingSensor: wait until Siro has transcribed and analysed a recording.

DAG files import this module, so it stays light: the hook (and with it ``requests``) is imported when
the sensor first needs it, and the trigger module imports no HTTP client.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_siro.compat import (
    AirflowException,
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)
from airflow_provider_siro.exceptions import (
    SiroApiError,
    SiroRecordingFailedError,
    SiroValidationError,
    fail_now_unless_retryable,
)
from airflow_provider_siro.links.siro import SiroRecordingLink
from airflow_provider_siro.triggers.siro import (
    SiroRecordingsTrigger,
    SiroRecordingTrigger,
    describe,
    gone_error,
    is_processed,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_siro.hooks.siro import SiroHook


class SiroRecordingSensor(BaseSensorOperator):
    """
    Wait until Siro has processed a recording, then hand its details to XCom.

    After an upload Siro transcribes and analyses the call in the background, which can take half an
    hour. The sensor reads the recording every ``poke_interval`` seconds and succeeds when its
    ``processingStatus`` is ``complete``. Its return value (XCom ``return_value``) is the recording's
    ``data`` object as Siro returns it (``id``, ``title``, ``processingStatus``, ...), including the call
    summary, extracted entities or CRM opportunities when the ``show_*`` flags ask for them, so a
    downstream task needs no second call.

    It fails at once, without retries, when Siro reports ``processingStatus`` ``error`` or has no such
    recording (a wrong ID, or it was deleted): waiting longer cannot change either.

    All three ways of waiting are supported: ``mode="poke"`` holds a worker slot and sleeps between
    reads (for short waits); ``mode="reschedule"`` frees the slot between reads; ``deferrable=True``
    hands the whole wait to :class:`~airflow_provider_siro.triggers.siro.SiroRecordingTrigger` in the
    triggerer, so no worker slot is held at all. ``timeout`` bounds the wait in every mode.

    The task gets a "Siro recording" extra link, and the same URL is written to its log.

    :param recording_id: the recording to wait for; ``upload.output`` of a
        :class:`~airflow_provider_siro.operators.siro.SiroUploadRecordingOperator` fits. A list of IDs
        (or the ``{source: ID}`` dict a bulk upload returns, e.g. ``bulk.output``) waits for all of
        them in one task, and the XCom value is then ``{recording ID: data object}``. Left out (``None``),
        the IDs come from the ``siro://`` asset events that triggered the run (their ``extra``'s
        ``recording_ids``), so a DAG scheduled on a Siro asset needs no code to find them; see
        docs/lineage.rst. (templated)
    :param siro_conn_id: the ``siro`` connection to use.
    :param show_summary: include the call summary (``showSummary``) in the XCom value.
    :param show_entity_extractions: include extracted entities (``showEntityExtractions``).
    :param show_crm_opportunities: include linked CRM opportunities (``showCrmOpportunities``).
    :param deferrable: wait in the triggerer instead of a worker. Defaults to the
        ``[operators] default_deferrable`` setting.
    :param poke_interval: seconds (or a ``timedelta``) between reads, in every mode. Siro rate-limits
        each token to 1000 requests a minute, shared with every other task using it.
    """

    template_fields: Sequence[str] = ("recording_id",)
    operator_extra_links = (SiroRecordingLink(),)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        recording_id: str | Sequence[str] | Mapping[str, str] | None = None,
        siro_conn_id: str = "siro_default",
        show_summary: bool = False,
        show_entity_extractions: bool = False,
        show_crm_opportunities: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: timedelta | float = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.recording_id = recording_id
        self.siro_conn_id = siro_conn_id
        self.show_summary = show_summary
        self.show_entity_extractions = show_entity_extractions
        self.show_crm_opportunities = show_crm_opportunities
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> SiroHook:
        from airflow_provider_siro.hooks.siro import SiroHook

        return SiroHook(siro_conn_id=self.siro_conn_id)

    def _checked_recording_id(self) -> str:
        """The rendered ``recording_id``: a stray ``None`` from an upstream XCom fails clearly here."""
        if not isinstance(self.recording_id, str) or not self.recording_id.strip():
            raise SiroValidationError(
                "recording_id", f"must be a non-empty string, got {self.recording_id!r}"
            )
        return self.recording_id.strip()

    def _many_ids(self, context: Context) -> list[str] | None:
        """The IDs of a many-recording wait (a list, a bulk upload's dict, or the triggering Siro asset
        events), or ``None`` for one ``recording_id`` string. Checked before any request."""
        value = self.recording_id
        if isinstance(value, str):
            return None
        if value is None:
            from airflow_provider_siro.utils.assets import recording_ids_from_events

            events = context.get("triggering_asset_events") or context.get("triggering_dataset_events")
            ids = recording_ids_from_events(events)  # type: ignore[arg-type]
            if not ids:
                raise SiroValidationError(
                    "recording_id",
                    "is not given and no siro:// asset event with recording_ids in its extra triggered "
                    "this run: pass the ID(s), or schedule the DAG on the uploads' Siro asset",
                )
            return ids
        items = list(value.values()) if isinstance(value, Mapping) else value
        if not isinstance(items, Sequence) or not items:
            raise SiroValidationError(
                "recording_id",
                f"must be an ID, a non-empty list of IDs or a {{source: ID}} dict, got {value!r}",
            )
        bad = [item for item in items if not isinstance(item, str) or not item.strip()]
        if bad:
            raise SiroValidationError("recording_id", f"holds {bad[0]!r}, which is not a recording ID")
        return list(dict.fromkeys(item.strip() for item in items))

    @fail_now_unless_retryable
    def execute(self, context: Context) -> Any:
        many = self._many_ids(context)
        if many is not None:
            return self._execute_many(context, many)
        recording_id = self._checked_recording_id()
        SiroRecordingLink.persist(context=context, operator=self, recording_id=recording_id)
        if not self.deferrable:
            return super().execute(context)
        # One read in the worker first: a recording that is already processed needs no triggerer.
        first = self.poke(context)
        if first:
            self.log.info("Success criteria met. Exiting.")
            return first.xcom_value
        self.defer(
            trigger=SiroRecordingTrigger(
                recording_id=recording_id,
                **self._trigger_options(),
            ),
            method_name="execute_complete",
            timeout=self.execution_timeout,
        )

    def _execute_many(self, context: Context, recording_ids: list[str]) -> Any:
        self.log.info("Waiting for %d Siro recordings: %s", len(recording_ids), ", ".join(recording_ids))
        self._ids = recording_ids
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first:
            return first.xcom_value
        self.defer(
            trigger=SiroRecordingsTrigger(
                recording_ids=recording_ids,
                **self._trigger_options(),
            ),
            method_name="execute_complete",
            timeout=self.execution_timeout,
        )

    def _trigger_options(self) -> dict[str, Any]:
        """What every wait in the triggerer takes from this sensor, whichever trigger runs it."""
        return {
            "siro_conn_id": self.siro_conn_id,
            "end_time": time.time() + self.timeout,
            "poll_interval": self.poke_interval,
            "show_summary": self.show_summary,
            "show_entity_extractions": self.show_entity_extractions,
            "show_crm_opportunities": self.show_crm_opportunities,
        }

    def _poke_many(self, recording_ids: list[str]) -> PokeReturnValue:
        done: dict[str, Any] = {}
        for recording_id in recording_ids:
            recording = self._read(recording_id)
            if not is_processed(recording_id, recording):
                self.log.info(
                    "Siro recording %s is %s (%d of %d processed so far)",
                    recording_id,
                    describe(recording),
                    len(done),
                    len(recording_ids),
                )
                return PokeReturnValue(is_done=False)
            done[recording_id] = recording
        self.log.info("Siro has processed all %d recordings", len(recording_ids))
        return PokeReturnValue(is_done=True, xcom_value=done)

    def _read(self, recording_id: str) -> dict[str, Any]:
        try:
            return self.hook.get_recording(
                recording_id,
                show_summary=self.show_summary,
                show_entity_extractions=self.show_entity_extractions,
                show_crm_opportunities=self.show_crm_opportunities,
            )
        except SiroApiError as exc:
            gone = gone_error(recording_id, exc)
            if gone is not None:
                raise gone from None
            raise

    def poke(self, context: Context) -> PokeReturnValue:
        """Read the recording once (each of them, for many); done when it is processed."""
        ids = getattr(self, "_ids", None) or self._many_ids(context)
        if ids is not None:
            return self._poke_many(ids)
        recording_id = self._checked_recording_id()
        try:
            recording = self.hook.get_recording(
                recording_id,
                show_summary=self.show_summary,
                show_entity_extractions=self.show_entity_extractions,
                show_crm_opportunities=self.show_crm_opportunities,
            )
        except SiroApiError as exc:
            gone = gone_error(recording_id, exc)
            if gone is not None:
                raise gone from None
            raise
        if is_processed(recording_id, recording):
            self.log.info("Siro has processed recording %s", recording_id)
            return PokeReturnValue(is_done=True, xcom_value=recording)
        self.log.info("Siro recording %s is %s", recording_id, describe(recording))
        return PokeReturnValue(is_done=False)

    @fail_now_unless_retryable
    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: return the recording, or fail as the event says.

        :param event: the trigger's event (see :class:`SiroRecordingTrigger`).
        """
        status = event.get("status")
        recording_id = str(event.get("recording_id", self.recording_id))
        message = str(event.get("message", ""))
        if status == "success":
            self.log.info(message)
            result: dict[str, Any] = event["recordings"] if "recordings" in event else event["recording"]
            return result
        if status == "failed":
            raise SiroRecordingFailedError(recording_id, message)
        if status == "timeout":
            raise AirflowSensorTimeout(f"Sensor has timed out: {message}")
        # Siro could not be asked: a retry of the sensor may well succeed.
        raise AirflowException(f"Waiting for Siro recording {recording_id} failed: {message}")
