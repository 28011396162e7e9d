"""Audio sources: locate a file in local storage or any Airflow object storage, say what it is, open it.

A :class:`Source` carries what the upload needs (an opener, the exact size, a label for log lines) and
what the upload ledger keys on: the file's identity and the store's own word on the content's version
(an S3 ETag, a GCS generation or checksum, a local file's modification time).

One file has one identity however it is named. A local file is identified by its resolved real path
(``//calls/a.mp3``, ``/calls/./a.mp3`` and a symlink to it are one file); a local file with more than
one hard link by its device and inode instead (``file-inode://<st_dev>:<st_ino>``), since no path
names it better than another. Device numbers are a machine's own: a hard-linked file reached from two
machines through a network mount is two identities, so keep hard-linked sources on one machine (or link
them symbolically). An object-storage source is identified by its URL without any connection id in it. Object storage is imported here, when a task runs, never when a DAG file is parsed.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

from airflow_provider_siro.exceptions import SiroValidationError

VERSION_KEYS = ("VersionId", "ETag", "etag", "generation", "md5Hash", "crc32c", "content_md5", "checksum")
"""Keys of an fsspec ``info()`` that change with an object's content, in order of preference (S3, S3,
Azure/HTTP, GCS, GCS, GCS, ...). A store that reports none of them is versioned by modification time."""


@dataclass(frozen=True)
class Source:
    """One located audio file.

    :param given: the path or URL as the DAG gave it (the key of a bulk upload's result).
    :param label: how log lines name it: the local path, or the URL.
    :param location: canonical: ``file:///real/path`` or ``s3://bucket/key`` (no connection id).
    :param size: bytes, as the store reports them.
    :param version: what the store says about the content (``etag:...``, ``mtime_ns:...``).
    :param opener: opens the file from byte 0; called once per upload attempt.
    :param identity: what the ledger files the source under: ``location``, or for a local file with
        several hard links ``file-inode://<st_dev>:<st_ino>`` (see the module docstring). Empty means
        ``location``.
    """

    given: str
    label: str
    location: str
    size: int
    version: str
    opener: Callable[[], IO[bytes]]
    identity: str = ""

    @property
    def key(self) -> str:
        """The identity the ledger and a bulk task's de-duplication use."""
        return self.identity or self.location


def source_path_text(source_path: Any) -> Any:
    """A path object as the string the operator renders and validates; anything else unchanged.

    An ``ObjectStoragePath`` has no file-system path (``os.fspath`` refuses it); its ``str()`` is its
    URL with the connection in it (``s3://aws_default@bucket/key.mp3``), which :func:`locate_source` reads
    back. Strings, templates and ``XComArg``s are left alone.
    """
    if source_path is None or isinstance(source_path, str):
        return source_path
    if isinstance(source_path, os.PathLike):
        return os.fspath(source_path)
    from airflow_provider_siro.compat import ObjectStoragePath

    if isinstance(source_path, ObjectStoragePath):
        return str(source_path)
    return source_path


def is_local(source: str) -> bool:
    return "://" not in source or source.startswith("file://")


def _local_path(source: str) -> str:
    return urlsplit(source).path if source.startswith("file://") else source


def _object_path(source: str, conn_id: str | None, field: str) -> Any:
    from airflow_provider_siro.compat import ObjectStoragePath

    try:
        path = ObjectStoragePath(source, conn_id=conn_id)
        path.fs  # noqa: B018 - Airflow 2.11 finds the scheme's filesystem only when asked for it
    except ValueError as exc:  # e.g. "No filesystem registered for scheme s3"
        # fsspec words a missing filesystem differently across versions: say it one way.
        scheme = source.split("://", 1)[0] if "://" in source else ""
        why = f"Unsupported filesystem: {scheme!r}" if "filesystem" in str(exc).lower() else str(exc)
        raise SiroValidationError(
            field, f"{source!r} cannot be opened by Airflow's object storage: {why}"
        ) from None
    return path


def _local_identity(real: str, info: os.stat_result) -> str:
    if info.st_nlink > 1:
        return f"file-inode://{info.st_dev}:{info.st_ino}"
    return "file://" + real


def canonical_location(source: str, conn_id: str | None = None, field: str = "source_path") -> str:
    """The identity the ledger files ``source`` under, the same whichever way the path was written.

    A local file that no longer exists is named by its resolved path (its inode is gone with it).
    """
    if is_local(source):
        real = os.path.realpath(_local_path(source))
        try:
            info = os.stat(real)
        except OSError:
            return "file://" + real
        return _local_identity(real, info)
    path = _object_path(source, conn_id, field)
    return f"{path.protocol}://{path.path}"


def _remote_version(info: Mapping[str, Any]) -> str:
    for key in VERSION_KEYS:
        value = info.get(key)
        if value not in (None, "", "null"):
            return f"{key}:{str(value).strip(chr(34))}"
    for key in ("mtime", "LastModified", "last_modified", "updated"):
        value = info.get(key)
        if value is not None:
            return f"{key}:{value.isoformat() if hasattr(value, 'isoformat') else value}"
    return "unversioned"


def locate_source(source: str, conn_id: str | None = None, field: str = "source_path") -> Source:
    """Stat ``source`` and return it, or raise :class:`SiroValidationError` naming ``field``.

    Only a source that is missing, not a file, unreadable or empty is bad input; any other error (a
    store that cannot be reached) propagates, so Airflow's retries apply.
    """
    if is_local(source):
        local = _local_path(source)
        try:
            info = os.stat(local)
        except FileNotFoundError:
            raise SiroValidationError(field, f"{source!r} does not exist") from None
        except OSError as exc:
            raise SiroValidationError(field, f"{source!r} cannot be read: {exc.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            raise SiroValidationError(field, f"{source!r} is not a file")
        if not os.access(local, os.R_OK):
            raise SiroValidationError(field, f"{source!r} is not readable")

        def open_local() -> IO[bytes]:
            return open(local, "rb")  # the hook closes it after each attempt

        size, label, opener = info.st_size, local, open_local
        real = os.path.realpath(local)
        location, identity = "file://" + real, _local_identity(real, info)
        version = f"mtime_ns:{info.st_mtime_ns}"
    else:
        path = _object_path(source, conn_id, field)
        # stat(), not is_file(): fsspec's is_file() answers False for any error, so a store that is
        # unreachable would pass for a missing file and fail the task without a retry.
        try:
            remote = path.stat()
        except FileNotFoundError:
            raise SiroValidationError(field, f"{source!r} does not exist") from None
        if not stat.S_ISREG(remote.st_mode):
            raise SiroValidationError(field, f"{source!r} is not a file")

        def open_remote() -> IO[bytes]:
            stream: IO[bytes] = path.open("rb")
            return stream

        size, label, opener = remote.st_size, source, open_remote
        location = identity = f"{path.protocol}://{path.path}"
        version = _remote_version(remote)
    if size == 0:
        raise SiroValidationError(field, f"{source!r} is empty (0 bytes)")
    return Source(source, label, location, int(size), version, opener, identity)


def list_sources(folder: str, pattern: str, conn_id: str | None = None) -> list[str]:
    """The files under ``folder`` matching the glob ``pattern``, sorted, as paths or URLs to upload.

    A local folder that does not exist is bad input; an object-store prefix with nothing under it is
    simply empty (stores have no folders).
    """
    if is_local(folder):
        local = _local_path(folder)
        if not os.path.isdir(local):
            raise SiroValidationError("source_folder", f"{folder!r} is not a folder")
        return sorted(p for p in glob.glob(os.path.join(local, pattern), recursive=True) if os.path.isfile(p))
    root = _object_path(folder, conn_id, "source_folder")
    found = []
    for path in root.glob(pattern):
        if path.is_file():
            found.append(f"{path.protocol}://{path.path}")
    return sorted(found)
