"""Audio from non-local object storage: an s3:// bucket (moto's S3 on 127.0.0.1) through Airflow's
ObjectStoragePath, uploaded by the upload operator and by the storage-sync example's mapped tasks.

One moto server serves the whole module: Airflow caches an object store per connection id for the life
of the process (as a worker does), so every test that uses ``aws_default`` must see the same endpoint.
Each test works under its own key prefix.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest
from airflow_compat import AIRFLOW_3
from upload_support import fails_now, return_value

from airflow_provider_siro.exceptions import SiroValidationError
from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator


def aws_connection(endpoint: str) -> str:
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
    )


@pytest.fixture(scope="module")
def s3_bucket() -> Iterator[Any]:
    """A moto S3 server on 127.0.0.1 with bucket ``calls``; ``aws_default`` points at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.delenv(name, raising=False)
        env.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(endpoint))
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="calls")
        try:
            yield client
        finally:
            server.stop()


def test_storage_sync_example_uploads_from_an_s3_bucket(s3_bucket, siro_server, siro_connection, run_dag):
    sources = {f"sync/call-{i}.mp3": os.urandom(200_000 + i) for i in range(3)}
    for key, data in sources.items():
        s3_bucket.put_object(Bucket="calls", Key=key, Body=data)
    s3_bucket.put_object(Bucket="calls", Key="sync/readme.txt", Body=b"not audio")

    # A manual run without a logical date: the example dates the calls by when the run was due.
    dag_run = run_dag("siro_storage_sync", {"source_folder": "s3://calls/sync/"}, logical_date=None)

    assert dag_run.state == "success"
    collect = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "collect")
    ids = collect.xcom_pull(task_ids="collect")
    assert sorted(ids) == sorted(siro_server.recordings)
    received = {r.body["title"].split(" ")[0]: r.sha256 for r in siro_server.recordings.values()}
    assert received == {
        key.rsplit("/", 1)[1]: hashlib.sha256(data).hexdigest() for key, data in sources.items()
    }
    # The example dates a run by data_interval_end, or by run_after where (Airflow 3) a run has none.
    run_after = (dag_run.run_after if AIRFLOW_3 else dag_run.data_interval_end).astimezone(UTC)
    fraction = f".{run_after.microsecond:06d}" if run_after.microsecond else ""
    assert {r.body["dateCreated"] for r in siro_server.recordings.values()} == {
        f"{run_after:%Y-%m-%dT%H:%M:%S}{fraction}Z"
    }


def test_upload_of_one_s3_object_named_by_url_and_source_conn_id(
    s3_bucket, siro_server, siro_connection, run_dag
):
    data = os.urandom(1_500_000)
    s3_bucket.put_object(Bucket="calls", Key="direct/call.wav", Body=data)

    # The test DAG passes source_conn_id="aws_default"; the URL names no connection.
    dag_run = run_dag(
        "siro_test_upload_params", {"source_path": "s3://calls/direct/call.wav", "user_id": "u-1"}
    )

    assert dag_run.state == "success"
    (recording,) = siro_server.recordings.values()
    upload = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "upload")
    assert upload.xcom_pull(task_ids="upload") == recording.id
    assert recording.sha256 == hashlib.sha256(data).hexdigest()
    assert [r.json for r in siro_server.requests if r.endpoint == "signed_urls"] == [
        {"fileType": "wav", "fileSize": 1_500_000}
    ]
    assert recording.body["fileType"] == "wav"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("missing/call.mp3", "source_path: 's3://calls/missing/call.mp3' does not exist"),
        ("folder.mp3", "source_path: 's3://calls/folder.mp3' is not a file"),
        ("empty/call.mp3", "source_path: 's3://calls/empty/call.mp3' is empty (0 bytes)"),
    ],
)
def test_a_bad_s3_source_fails_before_anything_reaches_siro(
    s3_bucket, siro_server, siro_connection, key, message
):
    s3_bucket.put_object(Bucket="calls", Key="folder.mp3/inside.mp3", Body=b"x")
    s3_bucket.put_object(Bucket="calls", Key="empty/call.mp3", Body=b"")
    operator = SiroUploadRecordingOperator(
        task_id="upload",
        source_path=f"s3://calls/{key}",
        source_conn_id="aws_default",
        user_email="ae@acme.io",
    )

    with fails_now(SiroValidationError) as raised:
        operator.execute(context={})

    assert str(raised.value) == message
    assert siro_server.requests == []


def test_an_unreachable_store_is_not_mistaken_for_a_missing_file(siro_server, siro_connection, monkeypatch):
    """A network failure is worth a retry; "does not exist" (no retry) would be wrong."""
    with socket.socket() as probe:  # a port on 127.0.0.1 that nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    # Its own connection id: Airflow caches the store of aws_default with the live endpoint.
    monkeypatch.setenv("AIRFLOW_CONN_S3_UNREACHABLE", aws_connection(f"http://127.0.0.1:{closed}"))
    operator = SiroUploadRecordingOperator(
        task_id="upload",
        source_path="s3://calls/direct/call.wav",
        source_conn_id="s3_unreachable",
        user_email="ae@acme.io",
    )

    with pytest.raises(Exception) as raised:
        operator.execute(context={})

    assert not isinstance(raised.value, SiroValidationError)
    assert "Could not connect to the endpoint URL" in str(raised.value)
    assert siro_server.requests == []


def test_a_ledger_on_s3_makes_a_cleared_bulk_run_upload_nothing_and_a_changed_object_once(
    s3_bucket, siro_server, siro_connection, run_dag
):
    import pendulum

    sources = {f"ledger-sync/call-{i}.mp3": os.urandom(50_000 + i) for i in range(4)}
    for key, data in sources.items():
        s3_bucket.put_object(Bucket="calls", Key=key, Body=data)
    conf = {"source_paths": [f"s3://calls/{key}" for key in sources], "ledger_path": "s3://calls/_ledger-a/"}
    day = pendulum.datetime(2026, 3, 2, tz="UTC")

    first = run_dag("siro_test_ledger_bulk", conf, logical_date=day)
    ids = return_value(first, "upload_list")
    siro_server.clear_requests()
    again = run_dag(
        "siro_test_ledger_bulk", conf, logical_date=day
    )  # clears the run's tasks, runs them again

    assert (first.state, again.state) == ("success", "success")
    assert sorted(ids) == sorted(conf["source_paths"]) and sorted(ids.values()) == sorted(
        siro_server.recordings
    )
    assert return_value(again, "upload_list") == ids
    assert siro_server.requests == []
    listed = s3_bucket.list_objects_v2(Bucket="calls", Prefix="_ledger-a/")["Contents"]
    assert sorted(o["Key"].rsplit(".", 1)[1] for o in listed) == ["json"] * 4  # entries; no claim left behind

    changed = os.urandom(70_000)  # a new version of one call under the same key
    s3_bucket.put_object(Bucket="calls", Key="ledger-sync/call-2.mp3", Body=changed)
    new_ids = return_value(run_dag("siro_test_ledger_bulk", conf, logical_date=day), "upload_list")
    assert return_value(run_dag("siro_test_ledger_bulk", conf, logical_date=day), "upload_list") == new_ids
    assert {k: v for k, v in new_ids.items() if not k.endswith("call-2.mp3")} == {
        k: v for k, v in ids.items() if not k.endswith("call-2.mp3")
    }
    assert len(siro_server.recordings) == 5
    assert siro_server.recordings[new_ids["s3://calls/ledger-sync/call-2.mp3"]].sha256 == (
        hashlib.sha256(changed).hexdigest()
    )


def test_s3_claims_are_exclusive_writes(s3_bucket):
    """moto 5.2.5 and s3fs honour PutObject If-None-Match: *, so of eight racing tries one claims."""
    from upload_support import race_for_one_source

    from airflow_provider_siro.utils.ledger import UploadLedger

    s3_bucket.put_object(Bucket="calls", Key="race/call.mp3", Body=os.urandom(1000))
    ledger = UploadLedger("s3://calls/_ledger-race/", "aws_default")
    assert ledger.store.create("probe", b"1") is True
    assert ledger.store.create("probe", b"2") is False  # refused by S3 itself (412), not by a check first
    assert ledger.store.read("probe") == b"1"

    outcomes = race_for_one_source(
        lambda i: UploadLedger(
            "s3://calls/_ledger-race/", "aws_default", owner=f"try {i}", poll_interval=0.05
        ),
        "s3://calls/race/call.mp3",
        "aws_default",
    )

    assert sorted(outcomes) == ["claimed"] + ["rec-from-the-winner"] * 7


def test_the_ledger_command_lists_and_forgets_entries_of_a_ledger_on_s3(
    s3_bucket, siro_server, siro_connection, run_dag
):
    import subprocess
    import sys

    import pendulum

    def ledger_command(*words: str) -> Any:
        return subprocess.run(
            [sys.executable, "-m", "airflow_provider_siro", "ledger", *words, "--conn-id", "aws_default"],
            capture_output=True,
            text=True,
            env=os.environ.copy(),  # aws_default: the moto server
            timeout=300,
        )

    s3_bucket.put_object(Bucket="calls", Key="cli/call.mp3", Body=os.urandom(40_000))
    conf = {"source_path": "s3://calls/cli/call.mp3", "ledger_path": "s3://calls/_ledger-cli/"}
    day = pendulum.datetime(2026, 3, 2, tz="UTC")
    first_id = return_value(run_dag("siro_test_ledger_single", conf, logical_date=day), "upload")

    listed = ledger_command("list", "s3://calls/_ledger-cli/", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["status"], row["recording_id"], row["source"]) == (
        "created",
        first_id,
        "s3://calls/cli/call.mp3",
    )
    assert row["location"].startswith("s3://calls/_ledger-cli/")

    forgot = ledger_command("forget", "s3://calls/_ledger-cli/", "s3://calls/cli/call.mp3")
    assert forgot.returncode == 0, forgot.stderr
    assert f"Forgot {row['location']} (created, Siro recording {first_id})" in forgot.stdout
    again = return_value(run_dag("siro_test_ledger_single", conf, logical_date=day), "upload")
    assert again != first_id and len(siro_server.recordings) == 2

    nothing = ledger_command("list", "s3://calls/_no-ledger-here/")
    assert nothing.returncode == 1
    assert "error: no ledger at s3://calls/_no-ledger-here/: nothing is stored there" in nothing.stderr
