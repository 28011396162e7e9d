"""Audio from non-local object storage: an s3:// bucket (moto's S3 on 127.0.0.1) through Airflow's
ObjectStoragePath, uploaded by the storage-sync example's mapped tasks."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto S3 server on 127.0.0.1 with bucket ``calls``; ``aws_default`` points at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            }
        ),
    )
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
    sources = {f"inbox/call-{i}.mp3": os.urandom(200_000 + i) for i in range(3)}
    for key, data in sources.items():
        s3_bucket.put_object(Bucket="calls", Key=key, Body=data)
    s3_bucket.put_object(Bucket="calls", Key="inbox/readme.txt", Body=b"not audio")

    dag_run = run_dag("siro_storage_sync", {"source_folder": "s3://calls/inbox/"})

    assert dag_run.state == "success"
    collect = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "collect")
    ids = collect.xcom_pull(task_ids="collect")
    assert sorted(ids) == sorted(siro_server.recordings)
    received = {r.body["title"].split(" ")[0]: r.sha256 for r in siro_server.recordings.values()}
    assert received == {
        key.rsplit("/", 1)[1]: hashlib.sha256(data).hexdigest() for key, data in sources.items()
    }


def test_missing_s3_object_fails_before_anything_reaches_siro(
    s3_bucket, siro_server, siro_connection, run_dag
):
    from airflow_provider_siro.exceptions import SiroValidationError
    from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator

    operator = SiroUploadRecordingOperator(
        task_id="upload", source_path="s3://calls/nope/call.mp3", user_email="ae@acme.io"
    )
    with pytest.raises(SiroValidationError, match=r"source_path: 's3://calls/nope/call.mp3' does not exist"):
        operator.execute(context={})
    assert siro_server.requests == []
