"""`make demo`: upload a call to a local Siro through the provider, end to end, and print its ID.

1. Starts the provider's offline Siro server on 127.0.0.1 and points ``siro_default`` at it
   (``AIRFLOW_CONN_SIRO_DEFAULT``), with a user access token as a user would paste one.
2. Uses Airflow's own SQLite metadata DB in ``.build/demo`` (``airflow db migrate``).
3. Uploads a generated one-second WAV through Siro's signed URLs, as a recorder app would.
4. Runs the example DAG ``siro_upload_from_download_url`` with ``airflow dags test``, saying which of
   its tasks runs as it starts and ends; its operator creates the recording, and the demo prints the ID
   from the task's XCom.

The demo numbers its steps and narrates them; Airflow's full output goes to ``.build/demo/dags-test.log``.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".build" / "demo"
DAG_ID = "siro_upload_from_download_url"
STEPS = 4
TASKS = {
    "upload_recording": "SiroUploadRecordingOperator renders the title and date from the run, checks every "
    "field, and creates the Siro recording from the download URL",
    "announce": "a plain @task receives the new recording's ID through XCom (upload.output)",
}
"""What each task of the example DAG does, said as it starts."""
TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+)")
TASK_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+)")


def step(number: int, text: str) -> None:
    print(f"[{number}/{STEPS}] {text}", flush=True)


def run_dag_narrated(command: list[str], env: dict[str, str], log_file: Path) -> int:
    """Run ``airflow dags test``, its output into ``log_file``; say which task runs as it starts and ends."""
    started: dict[str, float] = {}
    with (
        log_file.open("w") as log,
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            if match := TASK_START.search(line):
                task_id = match.group(1)
                started[task_id] = time.monotonic()
                print(f"      task {task_id} starts: {TASKS.get(task_id, 'a task of the DAG')}", flush=True)
            elif match := TASK_END.search(line):
                task_id = match.group(1)
                took = time.monotonic() - started.get(task_id, time.monotonic())
                print(f"      task {task_id} ended ({took:.1f} s)", flush=True)
    return process.returncode


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
        step(1, f"An offline Siro server listens on {server.url}; siro_default points at it")

        step(2, "Preparing Airflow's SQLite metadata DB in .build/demo (airflow db migrate) ...")
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
        )

        audio = BUILD / "discovery-call.wav"
        write_tone(audio)
        from airflow_provider_siro.hooks.siro import SiroHook

        download_url = SiroHook().upload_audio(
            lambda: audio.open("rb"), audio.stat().st_size, "wav", label=audio.name
        )
        step(
            3,
            f"Uploaded {audio.name} ({audio.stat().st_size} bytes) through Siro's signed URLs, "
            "as a recorder app would",
        )

        step(4, f"Running the example DAG {DAG_ID} with `airflow dags test`, given the download URL ...")
        conf = json.dumps({"download_url": download_url, "user_email": "rep@example.com"})
        log_file = BUILD / "dags-test.log"
        returncode = run_dag_narrated(
            [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "-c", conf], env, log_file
        )
        if returncode != 0:
            print(f"`airflow dags test` failed (exit {returncode}); its output is in {log_file}")
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
