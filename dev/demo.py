"""`make demo`: upload a call to a local Siro through the provider, end to end, and print its ID.

1. Starts the provider's offline Siro server on 127.0.0.1 and points ``siro_default`` at it
   (``AIRFLOW_CONN_SIRO_DEFAULT``), with a user access token as a user would paste one.
2. Uses Airflow's own SQLite metadata DB in ``.build/demo`` (``airflow db migrate``).
3. Uploads a generated one-second WAV through Siro's signed URLs, as a recorder app would.
4. Runs the example DAG ``siro_upload_from_download_url`` with ``airflow dags test``; its operator
   creates the recording, and the demo prints the ID from the task's XCom.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".build" / "demo"
DAG_ID = "siro_upload_from_download_url"


def write_tone(path: Path, seconds: float = 1.0, rate: int = 16000) -> None:
    """A real 440 Hz mono WAV, so the demo uploads audio and not filler bytes."""
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


def main() -> int:
    BUILD.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(BUILD / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    os.environ.update(env)

    from airflow_provider_siro.testing import OfflineSiro

    with OfflineSiro() as server:
        connection = server.connection()
        os.environ["AIRFLOW_CONN_SIRO_DEFAULT"] = env["AIRFLOW_CONN_SIRO_DEFAULT"] = json.dumps(connection)
        print(f"Offline Siro server listening on {server.url}")

        print("Preparing Airflow's SQLite metadata DB (airflow db migrate) ...")
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
        )

        audio = BUILD / "discovery-call.wav"
        write_tone(audio)
        from airflow_provider_siro.hooks.siro import SiroHook

        download_url = SiroHook().upload_audio(
            lambda: audio.open("rb"), audio.stat().st_size, "wav", label=audio.name
        )
        print(f"Uploaded {audio.name} ({audio.stat().st_size} bytes) through Siro's signed URLs")

        print(f"Running the example DAG {DAG_ID} with `airflow dags test` ...")
        conf = json.dumps({"download_url": download_url, "user_email": "rep@example.com"})
        run = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "-c", conf],
            env=env,
            capture_output=True,
            text=True,
        )
        log_file = BUILD / "dags-test.log"
        log_file.write_text(run.stdout + run.stderr)
        if run.returncode != 0:
            print(f"`airflow dags test` failed (exit {run.returncode}); its output is in {log_file}")
            return 1

        recording_id = read_xcom(DAG_ID, "upload_recording")
        recording = server.recordings.get(str(recording_id))
        if recording is None:
            print(f"The DAG ran but the server holds no recording {recording_id!r}; see {log_file}")
            return 1
        print(f"Siro recording created: {recording_id}")
        print(f"  title: {recording.body.get('title')!r}, user: {recording.body.get('userEmail')!r}")
        print(f"  dateCreated: {recording.body.get('dateCreated')}, audio sha256: {recording.sha256[:16]}...")
        print(f"Full Airflow output: {log_file}")
    return 0


def read_xcom(dag_id: str, task_id: str) -> object:
    """The newest ``return_value`` of a task, read from the metadata DB the CLI run wrote to."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, task_id=task_id, key="return_value")
            .order_by(XComModel.timestamp.desc())
            .first()
        )
        return XComModel.deserialize_value(row) if row is not None else None


if __name__ == "__main__":
    sys.exit(main())
