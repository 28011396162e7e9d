"""The example DAGs: each parses in a real DagBag and runs end to end (``dag.test()``) against the offline
Siro server over HTTP. The s3:// variant of the storage-sync example is in test_object_storage.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow_compat import AIRFLOW_3, AIRFLOW_3_ONLY_DAG_FILES, DagBag
from upload_support import endpoints, return_value, task_instances, upload_out_of_band, write_audio

EXAMPLE_DAGS = Path(__file__).resolve().parents[1] / "example_dags"


def utc_z(moment: Any) -> str:
    """``moment`` as the provider sends a ``dateCreated``: RFC 3339 in UTC, microseconds only if any."""
    utc = pendulum.instance(moment).in_timezone("UTC")
    fraction = f".{utc.microsecond:06d}" if utc.microsecond else ""
    return f"{utc:%Y-%m-%dT%H:%M:%S}{fraction}Z"


def test_example_dags_parse_in_a_real_dagbag(airflow_db):
    # Every example that runs on the installed Airflow (the asset example needs Airflow 3).
    files = [
        f for f in sorted(EXAMPLE_DAGS.glob("*.py")) if AIRFLOW_3 or f.name not in AIRFLOW_3_ONLY_DAG_FILES
    ]
    dag_ids: set[str] = set()
    for path in files:
        dagbag = DagBag(str(path))
        assert dagbag.import_errors == {}
        dag_ids |= set(dagbag.dag_ids)
    expected = {"siro_upload_from_download_url", "siro_storage_sync", "siro_bulk_sync", "siro_mapped_uploads"}
    expected |= {"siro_upload_calls_to_asset", "siro_analyse_uploaded_calls"}
    if AIRFLOW_3:
        expected |= {"siro_call_audio_sync", "siro_upload_new_call_audio"}
    assert dag_ids == expected


@pytest.mark.airflow3
def test_the_asset_example_schedules_the_upload_on_the_producers_asset(airflow_db):
    dagbag = DagBag(str(EXAMPLE_DAGS / "siro_asset_audio.py"))
    assert dagbag.import_errors == {}
    # The producer's task updates the asset the upload DAG is scheduled on.
    producer = dagbag.get_dag("siro_call_audio_sync").get_task("announce_new_audio")
    consumer = dagbag.get_dag("siro_upload_new_call_audio")
    assert [asset.name for asset in producer.outlets] == ["call_audio"]
    assert [asset.name for asset in consumer.timetable.asset_condition.objects] == ["call_audio"]


def test_upload_from_download_url(siro_server, siro_connection, run_dag):
    audio = os.urandom(40_000)
    download_url = upload_out_of_band(siro_server, audio, "wav")
    logical_date = pendulum.datetime(2026, 3, 2, 14, 5, tz="UTC")

    dag_run = run_dag(
        "siro_upload_from_download_url",
        {"download_url": download_url, "user_email": "ae@acme.io"},
        logical_date=logical_date,
    )

    assert dag_run.state == "success"
    recording_id = return_value(dag_run, "upload_recording")
    assert return_value(dag_run, "announce") == recording_id  # upload.output fed the next task
    assert endpoints(siro_server) == ["create_recording"]
    recording = siro_server.recordings[recording_id]
    assert recording.sha256 == hashlib.sha256(audio).hexdigest()
    assert recording.body == {
        "fileUrl": download_url,
        "fileType": "wav",
        "title": f"Discovery call 2026-03-02 ({dag_run.run_id})",
        "userEmail": "ae@acme.io",
        "dateCreated": utc_z(dag_run.data_interval_end),
    }


def test_storage_sync_uploads_every_file_in_parallel_and_collects_the_ids(
    siro_server, siro_connection, run_dag, tmp_path
):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    digests = {
        name: write_audio(inbox / name, 30_000 + i) for i, name in enumerate(["a.mp3", "b.wav", "c.aac"])
    }
    (inbox / "notes.txt").write_text("not audio")

    # A run with a logical date (as a scheduled one, once the user gives the DAG a schedule): logical
    # date, data interval end and run_after are all 15:00.
    due = pendulum.datetime(2026, 3, 2, 15, 0, tz="UTC")
    dag_run = run_dag("siro_storage_sync", {"source_folder": str(inbox)}, logical_date=due, run_after=due)

    assert dag_run.state == "success"
    tis = task_instances(dag_run)
    assert sorted(index for task_id, index in tis if task_id == "upload_recording") == [0, 1, 2]
    ids = return_value(dag_run, "collect")
    assert sorted(ids) == sorted(siro_server.recordings)
    by_file = {
        recording.body["title"].split(" ")[0]: recording for recording in siro_server.recordings.values()
    }
    assert set(by_file) == set(digests)
    for name, recording in by_file.items():
        assert recording.sha256 == digests[name], name
        assert recording.file_type == name.rsplit(".", 1)[1]
        assert recording.body == {
            "fileUrl": recording.body["fileUrl"],
            "fileType": name.rsplit(".", 1)[1],
            "title": f"{name} (synced 2026-03-02)",
            "userEmail": "rep@example.com",
            "dateCreated": utc_z(dag_run.data_interval_end),
        }
    signed = [r.json for r in siro_server.requests if r.endpoint == "signed_urls"]
    assert sorted(body["fileSize"] for body in signed) == [30_000, 30_001, 30_002]
    puts = [r.body_size for r in siro_server.requests if r.endpoint == "upload_put"]
    assert sorted(puts) == [30_000, 30_001, 30_002]


def test_airflow_dags_test_runs_the_storage_sync_example_from_the_command_line(
    siro_server, siro_connection, airflow_db, tmp_path
):
    # As a user tries a DAG before deploying it: `airflow dags test`, a process of its own.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    digests = {f"call-{i}.wav": write_audio(inbox / f"call-{i}.wav", 20_000 + i) for i in range(2)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow",
            "dags",
            "test",
            "siro_storage_sync",
            "-c",
            json.dumps({"source_folder": str(inbox)}),
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    received = {r.body["title"].split(" ")[0]: r.sha256 for r in siro_server.recordings.values()}
    assert received == digests
    # A run started now is dated now (its logical date on 2.11, its run_after on 3.x).
    today = pendulum.now("UTC").to_date_string()
    assert {r.body["title"].split(" ", 1)[1] for r in siro_server.recordings.values()} == {
        f"(synced {today})"
    }


def test_bulk_sync_uploads_the_day_once_and_a_rerun_only_what_is_new(
    siro_server, siro_connection, run_dag, tmp_path
):
    day = tmp_path / "inbox" / "2026-03-02"
    day.mkdir(parents=True)
    digests = {
        name: write_audio(day / name, 20_000 + i)
        for i, name in enumerate(["rep-1_acme.mp3", "rep-2_initech.mp3"])
    }
    (day / "notes.wav").write_bytes(b"not matched by the pattern")
    due = pendulum.datetime(2026, 3, 2, tz="UTC")
    conf = {"source_folder": f"{day}/", "ledger_path": str(tmp_path / "ledger")}

    first = run_dag("siro_bulk_sync", conf, logical_date=due)
    ids = return_value(first, "upload_day")
    # The sync delivers one more call to the same day; the run is cleared and run again.
    digests["rep-3_hooli.mp3"] = write_audio(day / "rep-3_hooli.mp3", 20_005)
    siro_server.clear_requests()
    again = run_dag("siro_bulk_sync", conf, logical_date=due)

    assert (first.state, again.state) == ("success", "success")
    assert set(ids) == {str(day / "rep-1_acme.mp3"), str(day / "rep-2_initech.mp3")}
    rerun_ids = return_value(again, "upload_day")
    assert {k: v for k, v in rerun_ids.items() if k in ids} == ids  # the same IDs, nothing uploaded again
    assert sorted(rerun_ids.values()) == sorted(siro_server.recordings)
    assert endpoints(siro_server) == ["signed_urls", "upload_put", "create_recording"]  # the new call only
    assert return_value(again, "report") == 3
    by_title = {r.body["title"]: r for r in siro_server.recordings.values()}
    assert {title: r.sha256 for title, r in by_title.items()} == {
        name[: -len(".mp3")].replace("_", " "): digest for name, digest in digests.items()
    }
    assert {r.body["dateCreated"] for r in by_title.values()} == {utc_z(first.data_interval_end)}


CONSUMER = "siro_upload_new_call_audio"


@pytest.fixture
def switch_on_consumer() -> Iterator[Callable[[], None]]:
    """Unpause the asset-scheduled upload DAG, as a user does to switch it on; pause it again after.

    Airflow queues a run for an asset event only for unpaused DAGs (new DAGs start paused). The DAG has
    to be in the metadata DB first; ``dag.test()`` of any DAG in the folder puts it there.
    """
    from airflow.models.asset import AssetDagRunQueue
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete, update

    def set_paused(paused: bool) -> None:
        with create_session() as session:
            changed = session.execute(
                update(DagModel).where(DagModel.dag_id == CONSUMER).values(is_paused=paused)
            ).rowcount
            assert changed == 1, f"{CONSUMER} is not in the metadata DB yet"

    yield lambda: set_paused(False)
    set_paused(True)
    with create_session() as session:
        session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == CONSUMER))


@pytest.mark.airflow3
def test_asset_producer_announces_files_and_the_scheduled_upload_dag_uploads_them(
    siro_server, siro_connection, run_dag, tmp_path, monkeypatch, switch_on_consumer
):
    from airflow.models import dagrun as dagrun_module
    from airflow.models.asset import AssetDagRunQueue, AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    files = [tmp_path / "first.mp3", tmp_path / "second.wav"]
    digests = [write_audio(path, 25_000 + i) for i, path in enumerate(files)]

    # Two calls land before the scheduler gets round to the upload DAG. The first producer run also
    # registers every DAG of the folder in the metadata DB; unpausing the consumer then switches it on.
    producers = [run_dag("siro_call_audio_sync", {"synced_file": str(files[0])})]
    switch_on_consumer()
    producers.append(run_dag("siro_call_audio_sync", {"synced_file": str(files[1])}))
    assert [run.state for run in producers] == ["success", "success"]

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .where(AssetEvent.source_run_id.in_([run.run_id for run in producers]))
            .order_by(AssetEvent.timestamp)
        ).all()
        assert [event.extra for event in events] == [{"source_path": str(path)} for path in files]
        event_ids = [event.id for event in events]
        # What the scheduler acts on: the upload DAG is queued for a run on the call_audio asset.
        queued = session.scalars(
            select(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == CONSUMER)
        ).all()
        assert [row.asset_id for row in queued] == [events[-1].asset_id]

    # dag.test() always starts a manual run, without asset events. Give its run the producer's events,
    # as the scheduler's asset-triggered run creation does (dag_run.consumed_asset_events.extend), and
    # no logical date, as an asset-triggered run has none. The consumer reads them through
    # triggering_asset_events.
    create_run = dagrun_module.get_or_create_dagrun

    def create_run_with_events(**kwargs: Any) -> Any:
        run = create_run(**kwargs)
        session = kwargs["session"]
        run.consumed_asset_events.extend(
            session.scalars(select(AssetEvent).where(AssetEvent.id.in_(event_ids)))
        )
        session.commit()
        return run

    monkeypatch.setattr(dagrun_module, "get_or_create_dagrun", create_run_with_events)
    consumer = run_dag(CONSUMER, logical_date=None)

    assert consumer.state == "success"
    assert consumer.logical_date is None
    assert return_value(consumer, "files_from_events") == [str(path) for path in files]
    ids = [return_value(consumer, "upload_recording", index) for index in (0, 1)]
    assert sorted(ids) == sorted(siro_server.recordings)
    for path, digest, recording_id in zip(files, digests, ids, strict=True):
        recording = siro_server.recordings[recording_id]
        assert recording.sha256 == digest, path.name
        assert recording.body == {
            "fileUrl": recording.body["fileUrl"],
            "fileType": path.suffix[1:],
            "title": f"{path.name} (synced {consumer.run_after:%Y-%m-%d})",
            "userEmail": "rep@example.com",
            "dateCreated": utc_z(consumer.run_after),
        }


# ---------------------------------------------------------------------------------------------- safe to unpause

SCHEDULES_SAFE_TO_UNPAUSE = {"NullTimetable", "AssetTriggeredTimetable", "DatasetTriggeredTimetable"}
"""Timetables that never start a run by themselves: only a trigger (``schedule=None``) or an asset
update does. A cron, a timedelta or ``@once`` would start a run the moment a user unpauses the DAG."""
LOCAL_HOSTS = {"", "127.0.0.1", "localhost", "::1", "[::1]"}
NAME_ONLY_SCHEMES = {"siro"}
"""URI schemes that name something and are never contacted: a ``siro://`` asset names where recordings
live, and the connection, not the URI, decides which API a task calls (docs/lineage.rst)."""
URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://([^/\s'\"?#]*)", re.IGNORECASE)


def _strings(value: Any, seen: set[int] | None = None) -> Iterator[str]:
    """Every string inside ``value``: containers, Params and objects' public attributes, one level deep
    for objects (an asset's ``uri``, a Param's ``value``)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, seen)
            yield from _strings(item, seen)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item, seen)
    elif hasattr(value, "uri") and isinstance(value.uri, str):  # an asset or dataset
        yield value.uri


def _defaults(dag: Any) -> Iterator[tuple[str, str]]:
    """(where, text) for everything an unpaused DAG would run with unless a user changed it: its params'
    defaults, default_args, every task's templated fields (a mapped task's partial arguments), and the
    assets it is scheduled on or updates."""
    for name, param in dag.params.items():
        value = param.value if hasattr(param, "value") else param
        for text in _strings(value if value is not None else ""):
            yield f"param {name}", text
    for text in _strings(dict(dag.default_args or {})):
        yield "default_args", text
    condition = getattr(dag.timetable, "asset_condition", None) or getattr(
        dag.timetable, "dataset_condition", None
    )
    for asset in getattr(condition, "objects", []) or []:
        yield "schedule", asset.uri
    for task in dag.tasks:
        fields = dict(getattr(task, "partial_kwargs", {}) or {})
        for field in task.template_fields:
            if hasattr(task, field):
                fields.setdefault(field, getattr(task, field))
        for field, value in fields.items():
            for text in _strings(value):
                yield f"{task.task_id}.{field}", text
        for outlet in getattr(task, "outlets", []) or []:
            for text in _strings(outlet):
                yield f"{task.task_id}.outlets", text


def test_every_example_dag_is_safe_to_unpause(airflow_db):
    files = [
        f for f in sorted(EXAMPLE_DAGS.glob("*.py")) if AIRFLOW_3 or f.name not in AIRFLOW_3_ONLY_DAG_FILES
    ]
    checked: dict[str, int] = {}
    for path in files:
        dagbag = DagBag(str(path))
        assert dagbag.import_errors == {}
        for dag_id, dag in dagbag.dags.items():
            assert type(dag.timetable).__name__ in SCHEDULES_SAFE_TO_UNPAUSE, (dag_id, dag.timetable)
            remote = [
                (where, text)
                for where, text in _defaults(dag)
                for scheme, host in URL.findall(text)
                if scheme.lower() not in NAME_ONLY_SCHEMES
                and host.rsplit("@", 1)[-1].rsplit(":", 1)[0] not in LOCAL_HOSTS
            ]
            assert remote == [], f"{dag_id}: a default reaches beyond this machine"
            checked[dag_id] = sum(1 for _ in _defaults(dag))
    # Every example DAG was looked at, with defaults to look at.
    assert set(checked) >= {"siro_upload_from_download_url", "siro_storage_sync", "siro_bulk_sync"}
    assert all(count > 0 for count in checked.values()), checked


def test_the_safety_check_catches_a_schedule_and_a_remote_default(airflow_db, tmp_path):
    # The check above must be able to fail: a DAG that is scheduled and defaults to a bucket.
    (tmp_path / "unsafe.py").write_text(
        (EXAMPLE_DAGS / "siro_bulk_sync.py")
        .read_text()
        .replace('dag_id="siro_bulk_sync"', 'dag_id="unsafe_bulk_sync"')
        .replace("schedule=None", 'schedule="@daily"')
        .replace('"/tmp/siro-call-inbox/"', '"s3://calls/inbox/"')
    )
    dag = DagBag(str(tmp_path / "unsafe.py")).get_dag("unsafe_bulk_sync")
    assert type(dag.timetable).__name__ not in SCHEDULES_SAFE_TO_UNPAUSE
    assert ("param source_folder", "s3://calls/inbox/") in list(_defaults(dag))


# A run started by hand on Airflow 3 has no logical date (and so no ds, ts or data interval). On Airflow
# 2.11 every run has one; there these runs are dated now.


def test_upload_from_download_url_runs_by_hand_without_a_logical_date(siro_server, siro_connection, run_dag):
    download_url = upload_out_of_band(siro_server, os.urandom(20_000), "wav")
    dag_run = run_dag(
        "siro_upload_from_download_url",
        {"download_url": download_url, "user_email": "ae@acme.io"},
        logical_date=None,
    )
    assert dag_run.state == "success"
    (recording,) = siro_server.recordings.values()
    if AIRFLOW_3:
        assert dag_run.logical_date is None
        assert recording.body["dateCreated"] == utc_z(dag_run.run_after)
    assert recording.body["title"].startswith(f"Discovery call {pendulum.now('UTC'):%Y-%m-%d}")


def test_storage_sync_runs_by_hand_without_a_logical_date(siro_server, siro_connection, run_dag, tmp_path):
    write_audio(tmp_path / "call.mp3", 10_000)
    dag_run = run_dag("siro_storage_sync", {"source_folder": str(tmp_path)}, logical_date=None)
    assert dag_run.state == "success"
    (recording,) = siro_server.recordings.values()
    assert recording.body["title"] == f"call.mp3 (synced {pendulum.now('UTC'):%Y-%m-%d})"
    if AIRFLOW_3:
        assert dag_run.logical_date is None
        assert recording.body["dateCreated"] == utc_z(dag_run.run_after)


def test_bulk_sync_runs_by_hand_without_a_logical_date(siro_server, siro_connection, run_dag, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    digest = write_audio(inbox / "rep-7_globex.mp3", 10_000)
    conf = {"source_folder": f"{inbox}/", "ledger_path": str(tmp_path / "ledger")}
    dag_run = run_dag("siro_bulk_sync", conf, logical_date=None)
    assert dag_run.state == "success"
    (recording,) = siro_server.recordings.values()
    assert (recording.body["title"], recording.sha256) == ("rep-7 globex", digest)
    if AIRFLOW_3:
        assert dag_run.logical_date is None
        assert recording.body["dateCreated"] == utc_z(dag_run.run_after)
