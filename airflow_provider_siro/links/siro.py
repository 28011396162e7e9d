"""SiroRecordingLink: one click from a task to its recording in the Siro web app."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from airflow_provider_siro.compat import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

    from airflow_provider_siro.hooks.siro import SiroHook

RECORDING_ID_XCOM_KEY = "siro_recording_id"
"""XCom key under which a task records which Siro recording it created or waited for."""


class SiroRecordingLink(BaseOperatorLink):
    """
    Extra link "Siro recording" on :class:`~airflow_provider_siro.operators.siro.SiroUploadRecordingOperator`
    and :class:`~airflow_provider_siro.sensors.siro.SiroRecordingSensor`.

    A task calls :meth:`persist` as soon as it knows the recording ID: that stores the ID in the task
    instance's XCom (key ``siro_recording_id``) and writes the same URL to the task log. The link is
    then ``{app_url}/recordings/{id}``, with ``app_url`` from the task's ``siro`` connection (extra
    ``app_url``, ``https://app.siro.ai`` by default). A connection that points at the offline Siro
    server (a loopback host) and sets no ``app_url`` links to that server's own page of the recording
    (``/_offline/recordings/{id}``) instead: the real web app has never heard of an offline recording. The ID is looked up with the full task instance
    key, map index included, so each mapped task instance links to its own recording. In Airflow 3
    the worker resolves the link when the task instance finishes, and the UI shows what it stored.
    """

    name = "Siro recording"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The recording's URL in the Siro web app, or ``""`` while the task has not named one."""
        from airflow_provider_siro.compat import XCom

        recording_id = XCom.get_value(ti_key=ti_key, key=RECORDING_ID_XCOM_KEY)
        if not isinstance(recording_id, str) or not recording_id:
            return ""
        return recording_page(_hook(operator), recording_id)

    @classmethod
    def persist(cls, *, context: Context, operator: BaseOperator, recording_id: str) -> str:
        """Remember ``recording_id`` for the link, log its URL, and return the URL.

        :param context: the running task's context (its task instance receives the XCom).
        :param operator: the task; its ``siro_conn_id`` gives the web app's address, its log the line.
        :param recording_id: the Siro recording the task created or waits for.
        """
        url = recording_page(_hook(operator), recording_id)
        context["ti"].xcom_push(key=RECORDING_ID_XCOM_KEY, value=recording_id)
        operator.log.info("Siro recording %s: %s", recording_id, url)
        return url


def _hook(operator: BaseOperator) -> SiroHook:
    """The task's own hook when it has one (its connection is already read), else a new one."""
    from airflow_provider_siro.hooks.siro import SiroHook

    hook = getattr(operator, "hook", None)
    if isinstance(hook, SiroHook):
        return hook
    return SiroHook(siro_conn_id=getattr(operator, "siro_conn_id", SiroHook.default_conn_name))


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def recording_page(hook: SiroHook, recording_id: str) -> str:
    """Where a person opens ``recording_id``: the offline server's page when the connection points at
    one (a loopback host, no ``app_url`` of its own), else the web app at the connection's ``app_url``."""
    from airflow_provider_siro.hooks.settings import DEFAULT_APP_URL

    settings = hook.settings
    api = urlsplit(settings.api_url)
    if settings.app_url == DEFAULT_APP_URL and api.hostname in LOOPBACK_HOSTS:
        return f"{api.scheme}://{api.netloc}/_offline/recordings/{quote(recording_id, safe='')}"
    return hook.recording_url(recording_id)
