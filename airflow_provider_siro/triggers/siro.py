"""SiroRecordingTrigger: wait in the triggerer until Siro has processed a recording.

Siro transcribes and analyses an uploaded call in the background; that can take half an hour. A
deferred task hands the wait to this trigger, which polls the recording from the triggerer's event loop
while no worker slot is held. The module also holds the one reading of a recording's status that the
sensor, the upload operator and the trigger share.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_siro.exceptions import SiroApiError, SiroRecordingFailedError

COMPLETE = "complete"
ERROR = "error"

GONE_STATUSES = frozenset({404, 410})
"""Answers to a recording read that mean the recording does not exist (a wrong ID, or deleted)."""


def is_processed(recording_id: str, recording: Mapping[str, Any]) -> bool:
    """Read a recording's ``processingStatus``: True once ``complete``, False while Siro works on it.

    :param recording_id: the recording's ID, for the error message.
    :param recording: the recording's ``data`` object, as ``get_recording`` returns it.
    :raises SiroRecordingFailedError: Siro reports ``error``; waiting longer cannot help.
    """
    status = recording.get("processingStatus")
    if status == COMPLETE:
        return True
    if status == ERROR:
        details = ", ".join(
            f"{name} {recording[name]}"
            for name in ("processingStatus", "processingStage", "transcriptionStatus")
            if recording.get(name) is not None
        )
        raise SiroRecordingFailedError(
            recording_id,
            f"Siro could not process it ({details}); check the audio, or the recording in the Siro web app",
        )
    return False


def gone_error(recording_id: str, exc: SiroApiError) -> SiroRecordingFailedError | None:
    """The failure to raise when a read of the recording says it does not exist, else None."""
    if exc.status_code not in GONE_STATUSES:
        return None
    return SiroRecordingFailedError(
        recording_id,
        f"Siro has no such recording ({exc.status_code}: {exc.message}); the ID is wrong or it was deleted",
    )


def describe(recording: Mapping[str, Any]) -> str:
    """``in-progress (stage processing)``: a recording's progress, for log lines."""
    return f"{recording.get('processingStatus')} (stage {recording.get('processingStage')})"


class SiroRecordingTrigger(BaseTrigger):
    """
    Fire once a Siro recording is processed, has failed, is gone, or the wait has run out of time.

    The trigger carries only the connection ID, never a token: the triggerer reads the connection
    itself, and a minted token stays in that process's memory. Reads go through
    :class:`~airflow_provider_siro.hooks.siro.SiroAsyncHook`, so nothing blocks the event loop, and
    back off on 429, 502, 503, 504 and network errors like every other call of the provider.

    It fires exactly one event, a dict with ``status``, ``recording_id`` and ``message``:

    * ``success``: ``processingStatus`` is ``complete``; ``recording`` holds the recording's ``data``
      object, with the details the ``show_*`` flags asked for.
    * ``failed``: Siro reports ``processingStatus`` ``error``, or has no such recording (404).
    * ``timeout``: the recording was still being processed at ``end_time``.
    * ``error``: Siro could not be asked (after the hook's retries) or refused the read.

    :param recording_id: the recording to wait for.
    :param siro_conn_id: the ``siro`` connection to read it with.
    :param end_time: when to give up, in seconds since the epoch (``time.time()``). An absolute time,
        so that a trigger restarted on another triggerer keeps the original deadline.
    :param poll_interval: seconds between reads.
    :param show_summary: ask for the call summary (``showSummary``) in the final read.
    :param show_entity_extractions: ask for extracted entities (``showEntityExtractions``).
    :param show_crm_opportunities: ask for linked CRM opportunities (``showCrmOpportunities``).
    """

    def __init__(
        self,
        recording_id: str,
        siro_conn_id: str,
        end_time: float,
        poll_interval: float = 60.0,
        show_summary: bool = False,
        show_entity_extractions: bool = False,
        show_crm_opportunities: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__ has no annotations
        self.recording_id = recording_id
        self.siro_conn_id = siro_conn_id
        self.end_time = float(end_time)
        self.poll_interval = float(poll_interval)
        self.show_summary = show_summary
        self.show_entity_extractions = show_entity_extractions
        self.show_crm_opportunities = show_crm_opportunities

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and keyword arguments, stored in the metadata DB and read by the triggerer."""
        return (
            "airflow_provider_siro.triggers.siro.SiroRecordingTrigger",
            {
                "recording_id": self.recording_id,
                "siro_conn_id": self.siro_conn_id,
                "end_time": self.end_time,
                "poll_interval": self.poll_interval,
                "show_summary": self.show_summary,
                "show_entity_extractions": self.show_entity_extractions,
                "show_crm_opportunities": self.show_crm_opportunities,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Read the recording every ``poll_interval`` seconds until one event can be fired."""
        # The hook module pulls in requests and friends: a first import takes a good fraction of a
        # second, which must not be spent on the event loop every trigger shares.
        hooks = await asyncio.to_thread(importlib.import_module, "airflow_provider_siro.hooks.siro")
        hook = hooks.SiroAsyncHook(siro_conn_id=self.siro_conn_id)
        try:
            yield TriggerEvent(await self._wait(hook))
        finally:
            await hook.aclose()

    async def _wait(self, hook: Any) -> dict[str, Any]:
        polls = 0
        while True:
            polls += 1
            try:
                recording = await hook.aget_recording(
                    self.recording_id,
                    show_summary=self.show_summary,
                    show_entity_extractions=self.show_entity_extractions,
                    show_crm_opportunities=self.show_crm_opportunities,
                )
                done = is_processed(self.recording_id, recording)
            except SiroRecordingFailedError as exc:
                return self._event("failed", exc.problem)
            except SiroApiError as exc:
                gone = gone_error(self.recording_id, exc)
                if gone is not None:
                    return self._event("failed", gone.problem)
                return self._event("error", f"could not read the recording: {exc}")
            except Exception as exc:
                # The task, not the triggerer, decides what a failure means; it gets an event it can read.
                return self._event("error", f"could not read the recording: {type(exc).__name__}: {exc}")
            if done:
                return self._event(
                    "success", f"Siro has processed recording {self.recording_id}", recording=recording
                )
            remaining = self.end_time - time.time()
            if remaining <= 0:
                return self._event(
                    "timeout",
                    f"Siro had not processed recording {self.recording_id} by the deadline; it is "
                    f"{describe(recording)} after {polls} check(s)",
                )
            wait = min(self.poll_interval, remaining)
            self.log.info(
                "Siro recording %s is %s; next check in %.1f s", self.recording_id, describe(recording), wait
            )
            await asyncio.sleep(wait)

    def _event(self, status: str, message: str, **extra: Any) -> dict[str, Any]:
        return {"status": status, "recording_id": self.recording_id, "message": message, **extra}


class SiroRecordingsTrigger(SiroRecordingTrigger):
    """
    Fire once every one of many Siro recordings is processed, or one has failed or is gone, or time
    is up: one trigger (one poll loop, one client) for a whole batch.

    Each round reads every recording not processed yet. Events are those of
    :class:`SiroRecordingTrigger`, except that ``success`` carries ``recordings``
    (``{recording ID: data object}``, in the order given) instead of ``recording``, and ``failed`` /
    ``error`` name the recording concerned in ``recording_id``.

    :param recording_ids: the recordings to wait for.

    The other parameters are :class:`SiroRecordingTrigger`'s.
    """

    def __init__(
        self,
        recording_ids: list[str],
        siro_conn_id: str,
        end_time: float,
        poll_interval: float = 60.0,
        show_summary: bool = False,
        show_entity_extractions: bool = False,
        show_crm_opportunities: bool = False,
    ) -> None:
        super().__init__(
            ",".join(recording_ids),
            siro_conn_id,
            end_time,
            poll_interval,
            show_summary,
            show_entity_extractions,
            show_crm_opportunities,
        )
        self.recording_ids = list(recording_ids)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and keyword arguments, stored in the metadata DB and read by the triggerer."""
        _, kwargs = super().serialize()
        del kwargs["recording_id"]
        return "airflow_provider_siro.triggers.siro.SiroRecordingsTrigger", {
            "recording_ids": self.recording_ids,
            **kwargs,
        }

    async def _wait(self, hook: Any) -> dict[str, Any]:
        """Read each pending recording per round until all are processed."""
        recording_ids = self.recording_ids
        done: dict[str, Any] = {}
        polls = 0
        while True:
            polls += 1
            pending = {}
            for recording_id in recording_ids:
                if recording_id in done:
                    continue
                try:
                    recording = await hook.aget_recording(
                        recording_id,
                        show_summary=self.show_summary,
                        show_entity_extractions=self.show_entity_extractions,
                        show_crm_opportunities=self.show_crm_opportunities,
                    )
                    finished = is_processed(recording_id, recording)
                except SiroRecordingFailedError as exc:
                    return {"status": "failed", "recording_id": recording_id, "message": exc.problem}
                except SiroApiError as exc:
                    gone = gone_error(recording_id, exc)
                    if gone is not None:
                        return {"status": "failed", "recording_id": recording_id, "message": gone.problem}
                    return {
                        "status": "error",
                        "recording_id": recording_id,
                        "message": f"could not read the recording: {exc}",
                    }
                except Exception as exc:
                    return {
                        "status": "error",
                        "recording_id": recording_id,
                        "message": f"could not read the recording: {type(exc).__name__}: {exc}",
                    }
                if finished:
                    done[recording_id] = recording
                else:
                    pending[recording_id] = recording
            if not pending:
                return self._event(
                    "success",
                    f"Siro has processed all {len(recording_ids)} recordings",
                    recordings={recording_id: done[recording_id] for recording_id in recording_ids},
                )
            remaining = self.end_time - time.time()
            if remaining <= 0:
                waiting = ", ".join(f"{rid} {describe(rec)}" for rid, rec in pending.items())
                return self._event(
                    "timeout",
                    f"Siro had not processed {len(pending)} of {len(recording_ids)} recordings by the "
                    f"deadline after {polls} round(s): {waiting}",
                )
            wait = min(self.poll_interval, remaining)
            self.log.info(
                "%d of %d Siro recordings processed; next check in %.1f s",
                len(done),
                len(recording_ids),
                wait,
            )
            await asyncio.sleep(wait)
