"""``siro-offline``: the offline Siro server from a shell, for trying DAGs by hand.

``siro-offline serve`` runs :class:`~airflow_provider_siro.testing.server.OfflineSiro` in the foreground
and writes the Airflow connection that reaches it to a file only you can read; the terminal shows where
the file is and the command that exports it, never the token inside. ``siro-offline upload FILE``
uploads a call to that running server through the provider's own hook, as a recorder app would, and
gives the ``downloadUrl`` a manual run of ``siro_upload_from_download_url`` takes.

The same commands run as ``python -m airflow_provider_siro.testing``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from airflow_provider_siro.testing.rules import APIS

DEFAULT_PORT = 8765
UPLOAD_DAG_ID = "siro_upload_from_download_url"
UPLOAD_CONN_ID = "siro_offline_upload"


def default_connection_file(port: int) -> Path:
    """Where ``serve`` leaves the connection of the server on ``port``, and where ``upload`` looks.

    A folder of the user's own under the temporary directory (mode 0700), one file per port, so a second
    server on another port keeps its own file and nothing lands in the project's working tree.
    """
    return Path(tempfile.gettempdir()) / f"siro-offline-{os.getuid()}" / f"{port}.json"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only; the folder is created owner-only too.

    The file holds a credential of the offline server, so it is created with mode 0600 from the start
    (never world-readable for an instant) and a folder made here is 0700.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve(args: argparse.Namespace) -> int:
    """Run the server until Ctrl-C (or SIGTERM); its connection file is removed when it stops."""
    from airflow_provider_siro.testing.server import OfflineSiro
    from airflow_provider_siro.testing.state import _Token

    server = OfflineSiro(port=args.port, api=args.api, rate_limit=args.rate_limit or None).start()
    if args.token:
        # A token the user chose is accepted as if Siro had issued it; the user knows it already.
        server._remember(args.token, "access_token")
        with server._lock:
            server._tokens[args.token] = _Token(
                "tok_cli", server.user_id, "write", time.time() + server.token_lifetime
            )
    connection = server.connection(oauth=True) if args.oauth else server.connection(token=args.token)
    path = Path(args.connection_file) if args.connection_file else default_connection_file(server.port)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        write_private(path, json.dumps(connection))
        kind = "the OAuth app it knows" if args.oauth else "an access token"
        print(f"Offline Siro listening on {server.url} (the {server.api} API; Ctrl-C stops it)")
        print(f"Its Airflow connection, with {kind}, is in {path} (readable by you only).")
        print("Point Airflow at it:")
        print(f'  export AIRFLOW_CONN_SIRO_DEFAULT="$(cat {path})"')
        print("Upload a call for a manual run of the example DAG siro_upload_from_download_url:")
        port_option = "" if server.port == DEFAULT_PORT else f" --port {server.port}"
        print(f"  siro-offline upload{port_option} call.wav", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        path.unlink(missing_ok=True)
    return 0


def upload(args: argparse.Namespace) -> int:
    """Upload ``args.file`` to the running server; the download URL goes to stdout or ``--conf-file``."""
    from airflow_provider_siro.payload import file_type_from_path

    audio = Path(args.file)
    if not audio.is_file():
        print(f"siro-offline upload: {audio} is not a file", file=sys.stderr)
        return 2
    file_type = args.file_type or file_type_from_path(audio.name)
    if file_type is None:
        print(
            f"siro-offline upload: {audio.name} has no .mp3, .aac or .wav extension; give --file-type",
            file=sys.stderr,
        )
        return 2
    path = Path(args.connection_file) if args.connection_file else default_connection_file(args.port)
    try:
        connection: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(
            f"siro-offline upload: no connection file at {path}; is `siro-offline serve` running"
            + ("" if args.connection_file else f" on port {args.port}")
            + "?",
            file=sys.stderr,
        )
        return 2

    # The provider's own hook does the upload, with the server's connection under a name of its own, so
    # a siro_default the user has configured is neither used nor changed.
    os.environ[f"AIRFLOW_CONN_{UPLOAD_CONN_ID.upper()}"] = json.dumps(connection)
    size = audio.stat().st_size
    # Airflow 2's console log handler writes to whatever sys.stdout is: keep stdout for the URL alone.
    with contextlib.redirect_stdout(sys.stderr):
        from airflow_provider_siro.hooks.siro import SiroHook

        download_url = SiroHook(siro_conn_id=UPLOAD_CONN_ID).upload_audio(
            lambda: audio.open("rb"), size, file_type, label=audio.name
        )
    conf = {"download_url": download_url, "user_email": args.user_email}
    print(
        f"Uploaded {audio.name} ({size} bytes) to the offline Siro at {connection['host']}.", file=sys.stderr
    )
    if args.conf_file:
        write_private(Path(args.conf_file), json.dumps(conf))
        print(f"The run's conf, with its download URL, is in {args.conf_file} (readable by you only).")
        print("Trigger a run with it:")
        print(f'  airflow dags trigger {UPLOAD_DAG_ID} --conf "$(cat {args.conf_file})"', flush=True)
        return 0
    print(
        "Its download URL is below, alone on stdout; paste it into the download_url of a manual run of "
        f"{UPLOAD_DAG_ID} (Trigger DAG in the UI). Its query string is a credential of this offline "
        "server, valid for 15 minutes: treat it like one, or use --conf-file to keep it off the terminal.",
        file=sys.stderr,
        flush=True,
    )
    print(download_url, flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``siro-offline`` command line: ``serve`` and ``upload``."""
    parser = argparse.ArgumentParser(
        prog="siro-offline",
        description="An offline Siro server on 127.0.0.1, for trying the provider's DAGs by hand.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("serve", help="run the offline Siro server in the foreground")
    run.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 for any)"
    )
    run.add_argument("--token", help="an access token to accept (default: a new random one)")
    run.add_argument(
        "--api",
        choices=APIS,
        default="current",
        help="the create call's wire format: current (fileUrl, contactPhone, contactName, discoverable, "
        "result; the default) or original (downloadUrl, customerPhone, customerName)",
    )
    run.add_argument(
        "--oauth",
        action="store_true",
        help="write a connection that mints tokens from the server's OAuth app instead of a pasted token",
    )
    run.add_argument(
        "--rate-limit",
        type=int,
        default=1000,
        help="requests per token per minute before 429, as Siro (default 1000; 0 turns it off)",
    )
    run.add_argument(
        "--connection-file",
        help="where to write the Airflow connection (default: a private folder under the temp directory)",
    )
    run.set_defaults(func=serve)

    send = commands.add_parser("upload", help="upload an audio file to a running offline server")
    send.add_argument("file", help="the audio file (.mp3, .aac or .wav)")
    send.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"the server's port (default {DEFAULT_PORT})"
    )
    send.add_argument("--connection-file", help="the connection file `serve` wrote, instead of --port")
    send.add_argument("--file-type", choices=["mp3", "aac", "wav"], help="when the extension does not say")
    send.add_argument("--user-email", default="rep@example.com", help="the user_email of the run's conf")
    send.add_argument(
        "--conf-file",
        help="write the run's conf (download_url, user_email) to this file instead of printing the URL",
    )
    send.set_defaults(func=upload)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``siro-offline`` and ``python -m airflow_provider_siro.testing``."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
