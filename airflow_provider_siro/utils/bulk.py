"""Plan and settle a bulk upload: which sources, with which fields, and how the task ends.

Everything here runs before the first request to Siro (:func:`resolve_sources`, :func:`plan_uploads`)
or after the last (:func:`raise_for_failures`), so a bad value anywhere in a batch fails the task
before any byte of any file leaves the machine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_provider_siro.exceptions import (
    SiroBulkUploadError,
    SiroBulkUploadFailedError,
    SiroValidationError,
    is_final,
)
from airflow_provider_siro.payload import (
    RecordingFields,
    check_text,
    resolve_file_type,
    validate_recording_fields,
)
from airflow_provider_siro.utils.sources import Source, list_sources, locate_source, source_path_text
from airflow_provider_siro.utils.uploads import map_threads

SHOWN_PROBLEMS = 20
"""At most this many bad sources are listed in one validation error (then "... and N more")."""


def resolve_sources(source_paths: Any, source_folder: Any, pattern: Any, conn_id: str | None) -> list[str]:
    """The rendered list of sources, or the files ``source_folder`` holds that match ``pattern``."""
    if source_paths is not None:
        if isinstance(source_paths, str) or not isinstance(source_paths, Sequence | set | frozenset):
            raise SiroValidationError(
                "source_paths", f"must be a list of paths or URLs, got {type(source_paths).__name__}"
            )
        # A source named twice (or a file under two names) is uploaded once: see upload_many.
        return [check_text("source_paths", source_path_text(item)) for item in source_paths]
    folder = check_text("source_folder", source_folder, if_empty="give a folder or bucket URL")
    glob = check_text("pattern", pattern, if_empty='give a glob such as "*.mp3" or "**/*.wav"')
    return list_sources(folder, glob, conn_id)


def _fields_of(fields_per_source: Any, source: str) -> Mapping[str, Any]:
    if fields_per_source is None:
        return {}
    extra = fields_per_source(source) if callable(fields_per_source) else fields_per_source.get(source, {})
    if extra is None:
        return {}
    if not isinstance(extra, Mapping):
        raise SiroValidationError(
            f"fields_per_source[{source!r}]",
            f"must be a dict of recording fields, got {type(extra).__name__}",
        )
    return extra


def _raise_together(problems: list[tuple[str, SiroValidationError]], what: str) -> None:
    if not problems:
        return
    if len(problems) == 1 or len({str(exc) for _, exc in problems}) == 1:
        source, exc = problems[0]
        scope = "" if len(problems) > 1 else f" (source {source!r})"
        raise SiroValidationError(exc.field, f"{exc.problem}{scope}")
    lines = "".join(f"\n  - {source!r}: {exc}" for source, exc in problems[:SHOWN_PROBLEMS])
    more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    raise SiroValidationError(problems[0][1].field, f"{len(problems)} sources {what}:{lines}{more}")


def plan_uploads(
    sources: Sequence[str],
    shared: Mapping[str, Any],
    file_type: Any,
    fields_per_source: Mapping[str, Mapping[str, Any]] | Callable[[str], Mapping[str, Any]] | None,
    conn_id: str | None,
    width: int,
) -> list[tuple[Source, RecordingFields]]:
    """Validate every source's fields, then stat every source; raise one error naming all bad ones."""
    allowed = {*shared, "file_type"}
    fields: list[RecordingFields] = []
    problems: list[tuple[str, SiroValidationError]] = []
    for source in sources:
        try:
            extra = dict(_fields_of(fields_per_source, source))
            unknown = sorted(set(extra) - allowed)
            if unknown:
                raise SiroValidationError(
                    f"fields_per_source[{source!r}]",
                    f"{unknown[0]!r} is not a recording field (known: {', '.join(sorted(allowed))})",
                )
            chosen = extra.pop("file_type", file_type)
            try:
                resolved = resolve_file_type(chosen, source)
                fields.append(validate_recording_fields(resolved, **{**shared, **extra}))
            except SiroValidationError as exc:
                if exc.field in extra or (exc.field == "file_type" and "file_type" in extra):
                    raise SiroValidationError(
                        f"fields_per_source[{source!r}].{exc.field}", exc.problem
                    ) from None
                raise
        except SiroValidationError as exc:
            problems.append((source, exc))
    _raise_together(problems, "have unusable recording fields")

    def locate(source: object) -> Source:
        return locate_source(str(source), conn_id, field="source_paths")

    located = map_threads(locate, list(sources), width)
    bad = [(s, r) for s, r in zip(sources, located, strict=True) if isinstance(r, SiroValidationError)]
    _raise_together(bad, "cannot be uploaded")
    for outcome in located:
        if isinstance(outcome, BaseException):
            raise outcome  # a store that cannot be reached: Airflow's retries apply
    return [(source, f) for source, f in zip(located, fields, strict=True)]  # type: ignore[misc]


def raise_for_failures(failures: Mapping[str, BaseException], total: int, with_ledger: bool) -> None:
    """End the task: retried only when a retry can do better and cannot upload anything twice."""
    if not failures:
        return
    reasons = {source: str(exc) for source, exc in failures.items()}
    if not with_ledger:
        raise SiroBulkUploadFailedError(
            reasons,
            total,
            "not retried: without a ledger_path a retry would upload the other sources again",
        )
    if all(is_final(exc) for exc in failures.values()):
        raise SiroBulkUploadFailedError(reasons, total, "not retried: a retry would meet the same errors")
    raise SiroBulkUploadError(reasons, total, "a retry uploads only the sources the ledger does not have")
