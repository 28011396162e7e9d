"""The base of the Siro upload operators: the recording fields, the connection, the ledger, ``on_kill``.

:class:`~airflow_provider_siro.operators.siro.SiroUploadRecordingOperator` (one source) and
:class:`~airflow_provider_siro.operators.bulk.SiroUploadRecordingsOperator` (many) share it. Every
recording field is a real keyword parameter here, not a ``**kwargs`` entry, because Airflow looks at
``__init__`` signatures: ``default_args`` fill only declared parameters, ``partial()`` refuses
undeclared ones, and an IDE completes only what it sees. The list of fields itself is
:data:`airflow_provider_siro.payload.RECORDING_FIELD_ARGS` (a test checks that the two agree).

Like the operators, this module is imported by DAG files and stays light: the hook, the ledger and the
upload code are imported where used.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_siro.compat import BaseOperator
from airflow_provider_siro.exceptions import SiroValidationError
from airflow_provider_siro.operators.lineage import SiroLineageMixin
from airflow_provider_siro.payload import RECORDING_FIELD_ARGS, is_number, is_whole_number

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_siro.hooks.siro import SiroConnectionSettings, SiroHook
    from airflow_provider_siro.utils.ledger import UploadLedger
    from airflow_provider_siro.utils.sources import Source
    from airflow_provider_siro.utils.uploads import Reconcile

DEFAULT_MAP_INDEX_TEMPLATE = "{{ task.source_label }}"
"""Each mapped upload is named in the UI by its source (never a signed URL's query string)."""


def map_index_label(label: str) -> str:
    """``label`` as a map index can show it whatever the DAG's rendering: a label that Python would read
    as a literal (``42``, ``None``) is quoted, since native rendering would turn it into a non-string,
    which Airflow cannot store as a map index name."""
    import ast

    try:
        ast.literal_eval(label)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return label
    return repr(label)


class UploadStopped(Exception):
    """Raised inside an upload when the task is being killed (:meth:`SiroUploadBaseOperator.on_kill`).

    It is raised where the source is read, so it stops a transfer before its recording is created; the
    upload code then releases the source's ledger claim, as for any failure before the create call.
    """


class _StoppableStream:
    """A source stream whose reads fail once ``stop`` is set (so an in-flight PUT ends at its next chunk)."""

    def __init__(self, stream: IO[bytes], stop: threading.Event, label: str) -> None:
        self._stream, self._stop, self._label = stream, stop, label

    def read(self, size: int = -1) -> bytes:
        if self._stop.is_set():
            raise UploadStopped(f"{self._label}: upload stopped, the task is being killed")
        return self._stream.read(size)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> _StoppableStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stoppable(source: Source, stop: threading.Event) -> Source:
    """``source`` whose opener refuses to start, and whose reads stop, once ``stop`` is set."""
    import dataclasses

    opener = source.opener

    def open_stoppable() -> IO[bytes]:
        if stop.is_set():
            raise UploadStopped(f"{source.label}: not uploaded, the task is being killed")
        return _StoppableStream(opener(), stop, source.label)  # type: ignore[return-value]

    return dataclasses.replace(source, opener=open_stoppable)


class SiroUploadBaseOperator(SiroLineageMixin, BaseOperator):
    """
    What the Siro upload operators share; not used in DAGs directly.

    :param siro_conn_id: the ``siro`` connection to use.
    :param source_conn_id: the connection object storage uses for the source(s).
    :param file_type: ``mp3``, ``aac`` or ``wav``; inferred from each source's extension when omitted,
        and checked against it when given. (templated)
    :param title: the recording's title. (templated)
    :param user_id: Siro user who recorded the call; one of ``user_id``, ``user_email`` and
        ``user_phone`` is required. (templated)
    :param user_email: that user's email. (templated)
    :param user_phone: that user's phone number. (templated)
    :param organization_id: the Siro organization. (templated)
    :param conversation_type: the type to analyse the call against; Siro falls back to the
        organization's default. (templated)
    :param integration_connection_id: CRM integration the ``crm_objects`` belong to; the two go
        together. (templated)
    :param crm_objects: ``[{"objectType": "Opportunity", "objectId": "..."}]``, rendered in depth.
        (templated)
    :param customer_phone: the customer's phone, to link CRM objects when none are given. (templated)
    :param customer_name: the customer's name, likewise. (templated)
    :param date_created: when the call happened: a timezone-aware datetime or an RFC 3339 string, sent
        in UTC. ``"{{ data_interval_end }}"`` works. (templated)
    :param discoverable: share the recording with the team (Siro's current API only). (templated)
    :param result: how the call ended: ``"closed"``, ``"not closed"`` or ``"in progress"`` (Siro's
        current API only). (templated)
    :param ledger_path: the upload ledger (a folder or any object storage URL, e.g.
        ``s3://calls/_siro_ledger/``): a source it already has is not uploaded again, and its recording
        ID is returned. ``None`` (default): no ledger, every run uploads. (templated)
    :param ledger_conn_id: the connection object storage uses for ``ledger_path``; ``source_conn_id``
        when omitted.
    :param claim_timeout: seconds after which another task instance's ledger claim on a source counts
        as abandoned (its worker died) and is taken over. Longer than the slowest upload of one file.
    :param reconcile: with a ``ledger_path``: when a create call's answer is lost (or an earlier try's
        was), look the recording up in Siro's list of the user's recordings and record the one found,
        upload again when Siro has none, fail naming the candidates when several match (see
        :mod:`airflow_provider_siro.utils.reconcile`). ``False``: never look; the task fails and the
        ledger entry stays ``ambiguous`` until someone settles it by hand (the behaviour before
        reconciling existed, kept for accounts whose list Siro does not serve).
    :param reconcile_polls: how many times a look-up reads Siro's list before it concludes that no
        recording was made (Siro may list a new recording a moment after creating it); at least 1.
    :param reconcile_interval: seconds between those reads. The settling wait is about
        ``(reconcile_polls - 1) * reconcile_interval``: the longer, the surer that "none" means none.
    :param map_index_template: how the UI names each mapped task instance; by default its source(s)
        (``source_label``: the path, the folder and pattern, or a ``downloadUrl`` without its query).
    """

    recording_field_names: tuple[str, ...] = RECORDING_FIELD_ARGS
    template_fields_renderers = {"crm_objects": "json"}
    ui_color = "#e8f0fe"

    _stop: threading.Event | None = None  # set by execute; on_kill sets the event

    def __init__(
        self,
        *,
        siro_conn_id: str = "siro_default",
        source_conn_id: str | None = None,
        file_type: str | None = None,
        title: str | None = None,
        user_id: str | None = None,
        user_email: str | None = None,
        user_phone: str | None = None,
        organization_id: str | None = None,
        conversation_type: str | None = None,
        integration_connection_id: str | None = None,
        crm_objects: list[dict[str, str]] | None = None,
        customer_phone: str | None = None,
        customer_name: str | None = None,
        date_created: Any = None,
        discoverable: bool | None = None,
        result: str | None = None,
        ledger_path: str | None = None,
        ledger_conn_id: str | None = None,
        claim_timeout: float = 3600.0,
        reconcile: bool = True,
        reconcile_polls: int = 3,
        reconcile_interval: float = 2.0,
        map_index_template: str | None = DEFAULT_MAP_INDEX_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        # A default in the signature: partial() reads operator defaults from the __init__ chain.
        super().__init__(map_index_template=map_index_template or DEFAULT_MAP_INDEX_TEMPLATE, **kwargs)

        def require(ok: bool, name: str, value: object, what: str) -> None:
            if not ok:
                raise ValueError(
                    f"{type(self).__name__} {kwargs.get('task_id')!r}: {name} must be {what}, got {value!r}"
                )

        require(
            is_number(claim_timeout) and claim_timeout > 0,
            "claim_timeout",
            claim_timeout,
            "a number of seconds > 0",
        )
        require(
            is_whole_number(reconcile_polls) and reconcile_polls >= 1,
            "reconcile_polls",
            reconcile_polls,
            "a whole number >= 1",
        )
        require(
            is_number(reconcile_interval) and reconcile_interval >= 0,
            "reconcile_interval",
            reconcile_interval,
            "a number of seconds >= 0",
        )
        self.siro_conn_id = siro_conn_id
        self.source_conn_id = source_conn_id
        self.file_type = file_type
        self.title = title
        self.user_id = user_id
        self.user_email = user_email
        self.user_phone = user_phone
        self.organization_id = organization_id
        self.conversation_type = conversation_type
        self.integration_connection_id = integration_connection_id
        self.crm_objects = crm_objects
        self.customer_phone = customer_phone
        self.customer_name = customer_name
        self.date_created = date_created
        self.discoverable = discoverable
        self.result = result
        self.ledger_path = ledger_path
        self.ledger_conn_id = ledger_conn_id
        self.claim_timeout = float(claim_timeout)
        self.reconcile = bool(reconcile)
        self.reconcile_polls = reconcile_polls
        self.reconcile_interval = float(reconcile_interval)

    # ------------------------------------------------------------------ shared pieces
    @cached_property
    def hook(self) -> SiroHook:
        from airflow_provider_siro.hooks.siro import SiroHook

        return SiroHook(siro_conn_id=self.siro_conn_id)

    def recording_fields(self) -> dict[str, Any]:
        """The (rendered) recording fields by argument name, ``None`` for those not given."""
        return {name: getattr(self, name) for name in self.recording_field_names}

    @property
    def source_label(self) -> str:
        """How the UI names this task's source(s); the default ``map_index_template`` renders it."""
        raise NotImplementedError

    def _ledger(self, context: Context, conn_id: str | None) -> UploadLedger | None:
        from airflow_provider_siro.utils.ledger import ledger_for

        destination = self.hook.destination() if self.ledger_path is not None else ""
        ledger = ledger_for(
            self.ledger_path,
            self.ledger_conn_id or conn_id,
            context,
            destination=destination,
            claim_timeout=self.claim_timeout,
        )
        return ledger

    def _reconcile(self, ledger: UploadLedger | None) -> Reconcile | bool:
        """How this task looks lost creates up in Siro: ``False`` when ``reconcile`` is off (or there is
        no ledger to remember the answer in), else the default policy with this task's settling wait."""
        from dataclasses import replace

        from airflow_provider_siro.utils.uploads import default_reconcile

        chosen = default_reconcile(self.hook, ledger) if self.reconcile else None
        if chosen is None:
            return False
        return replace(chosen, settle_polls=self.reconcile_polls, settle_interval=self.reconcile_interval)

    def _upload_settings(self) -> SiroConnectionSettings:
        """The connection's settings; a broken connection, or one that cannot upload, fails here."""
        settings = self.hook.settings
        if settings.uses_oauth and settings.scope != "write":
            # A token minted with scope read cannot upload: say so before one is minted or anything is sent.
            raise SiroValidationError(
                f"{settings.conn_id}.extra.scope", f"is {settings.scope!r}, but uploads need 'write'"
            )
        return settings

    # ------------------------------------------------------------------ durable across tries (Airflow 3.3+)
    STATE_KEY = "siro_recording_id"
    """Key of the recording ID in the task state store (AIP-103), written as Siro answers the create."""

    @staticmethod
    def _state_store(context: Context | dict[str, Any]) -> Any | None:
        """The task state store of this task instance (Airflow 3.3+), or None on an older Airflow."""
        return context.get("task_state_store") if hasattr(context, "get") else None

    def _remembered_recording(self, context: Context | dict[str, Any]) -> str | None:
        """The recording an earlier try of this task instance created, if the state store has one."""
        store = self._state_store(context)
        if store is None:
            return None
        value = store.get(self.STATE_KEY)
        return value if isinstance(value, str) and value else None

    def _remember_recording(self, context: Context | dict[str, Any], recording_id: str) -> None:
        """Keep ``recording_id`` for every later try of this task instance (no expiry)."""
        store = self._state_store(context)
        if store is None:
            return
        try:
            from airflow.sdk.execution_time.context import NEVER_EXPIRE
        except ImportError:  # pragma: no cover - a store without the constant keeps it by default
            store.set(self.STATE_KEY, recording_id)
        else:
            store.set(self.STATE_KEY, recording_id, retention=NEVER_EXPIRE)

    # ------------------------------------------------------------------ being killed
    def _start_stoppable(self) -> threading.Event:
        """A fresh stop event for this execution (created here: an Event cannot be deep-copied)."""
        self._stop = threading.Event()
        return self._stop

    def _stoppable_sources(self, work: Sequence[tuple[Source, Any]]) -> list[tuple[Source, Any]]:
        stop = self._stop if self._stop is not None else self._start_stoppable()
        return [(stoppable(source, stop), fields) for source, fields in work]

    def on_kill(self) -> None:
        """Stop in-flight uploads: no new file starts, and a transfer ends at its next chunk.

        Each stopped source's ledger claim is released by the upload code (nothing was created, so the
        next try may upload it). A create call already sent is left to finish and its recording is
        written to the ledger: cutting it would leave a recording that nobody recorded.
        """
        if self._stop is not None:
            self.log.warning("The task is being killed: stopping the uploads in flight")
            self._stop.set()

    def _raise_if_stopped(self, done: int, total: int) -> None:
        if self._stop is not None and self._stop.is_set():
            from airflow_provider_siro.compat import AirflowException

            raise AirflowException(
                f"Stopped by on_kill after {done} of {total} sources; the others were not created "
                "(their ledger claims are released)"
            )
