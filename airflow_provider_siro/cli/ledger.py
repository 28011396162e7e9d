"""The ledger command: look at an upload ledger and settle or forget its entries from a shell.

    python -m airflow_provider_siro ledger list   LEDGER [--conn-id C] [--status S] [--json]
    python -m airflow_provider_siro ledger show   LEDGER TARGET [--conn-id C]
    python -m airflow_provider_siro ledger forget LEDGER TARGET [--conn-id C]
    python -m airflow_provider_siro ledger settle LEDGER TARGET [--conn-id C]
                                                  (--recording-id ID | --reconcile | --none)

``LEDGER`` is what the operators' ``ledger_path`` says (a folder or an object-storage URL), ``--conn-id``
their ``ledger_conn_id``. ``TARGET`` is an entry's location as ``list`` and the task's error messages
print it, or a source's path or URL as the DAG wrote it (every entry of that source).

The same commands run as ``airflow siro ledger ...`` where Airflow loads provider CLI commands
(:mod:`airflow_provider_siro.cli.definition`). The argument specs below serve both parsers, so the two
accept the same words, and :meth:`UploadLedger.command` prints commands this module accepts.

Only ``settle --reconcile`` talks to Siro (through the hook, imported there and only there); every
other command reads and writes the ledger's store alone.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_siro.exceptions import SiroLedgerError
from airflow_provider_siro.utils.ledger import LedgerRecord, UploadLedger
from airflow_provider_siro.utils.sources import is_local

PROG = "python -m airflow_provider_siro"

SECRET_KEYS = ("token", "secret", "password", "authorization", "signature", "credential", "api_key")
"""Keys whose values ``show`` and ``list --json`` never print (no entry holds one today; a store edited by
hand or a future field might)."""


class LedgerCommandError(Exception):
    """What went wrong, in words for the person at the shell; the command exits with status 1."""


def _exits_on_error(
    func: Callable[[argparse.Namespace, TextIO], None],
) -> Callable[[argparse.Namespace], None]:
    """A command that writes its results to stdout and everything else to stderr, and exits with status
    1 and ``error: <message>`` when the ledger cannot do what it was asked (the same under ``python -m``
    and under ``airflow``, which calls it directly).

    Logs go to stderr so that stdout is the results alone (``list --json | jq``): Airflow's handlers
    that write to stdout are pointed at stderr, and loggers made while the command runs (object
    storage's, the hook's) find stderr as ``sys.stdout``.
    """

    @functools.wraps(func)
    def command(args: argparse.Namespace) -> None:
        results = sys.stdout
        _logs_to_stderr()
        try:
            with contextlib.redirect_stdout(sys.stderr):
                func(args, results)
        except (LedgerCommandError, SiroLedgerError) as exc:
            raise SystemExit(f"error: {exc}") from None

    return command


def _logs_to_stderr() -> None:
    """Point log handlers that write to stdout (Airflow's, and what object storage logs through them) at
    stderr: stdout carries the command's results (``list --json | jq``, ``show``)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            # Airflow 2.11's RedirectStdHandler has no setter: it reads sys.stdout at each write, so the
            # command's redirect_stdout already sends it to stderr.
            with contextlib.suppress(AttributeError):
                handler.setStream(sys.stderr)


# ---------------------------------------------------------------------------------------------- helpers
def _open(args: argparse.Namespace) -> UploadLedger:
    """The ledger ``args.ledger`` names; raise :class:`LedgerCommandError` if nothing is there."""
    path: str = args.ledger
    if not path.strip():
        raise LedgerCommandError("LEDGER is empty: give the folder or URL of the operators' ledger_path")
    try:
        ledger = UploadLedger(path, args.conn_id)
    except Exception as exc:  # object storage: an unknown scheme, a connection that does not exist
        raise LedgerCommandError(f"cannot open the ledger {path}: {type(exc).__name__}: {exc}") from None
    store = ledger.store
    if is_local(path):
        root = store.where("").rstrip("/") or "/"
        if not os.path.exists(root):
            raise LedgerCommandError(f"no ledger at {path}: {root} does not exist")
        if not os.path.isdir(root):
            raise LedgerCommandError(f"no ledger at {path}: {root} is not a folder")
    else:
        try:
            there = bool(store.fs.exists(store.base))  # type: ignore[union-attr]
        except Exception as exc:
            raise LedgerCommandError(f"cannot reach the ledger {path}: {type(exc).__name__}: {exc}") from None
        if not there:
            raise LedgerCommandError(
                f"no ledger at {path}: nothing is stored there (a wrong URL, or --conn-id names another store?)"
            )
    return ledger


def _find(ledger: UploadLedger, target: str) -> list[LedgerRecord]:
    """The records ``target`` names; raise :class:`LedgerCommandError` when it names none."""
    try:
        records = ledger.find(target)
    except SiroLedgerError:
        raise
    except Exception as exc:  # a source URL object storage cannot parse, say
        raise LedgerCommandError(f"cannot look up {target}: {type(exc).__name__}: {exc}") from None
    if not records:
        raise LedgerCommandError(
            f"no entry for {target} in the ledger {ledger.path}. Name an entry by its location as "
            f"`{PROG} ledger list {ledger.path}` prints it, or a source by its path or URL as the DAG wrote it"
        )
    return records


def scrub(value: Any, key: str = "") -> Any:
    """``value`` without anything that works as a credential: a secret-named key's value, a URL's query
    string (a signed URL's signature) and its password."""
    if key and any(word in key.lower() for word in SECRET_KEYS):
        return "***" if value not in (None, "") else value
    if isinstance(value, Mapping):
        return {str(k): scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    if isinstance(value, str) and "://" in value:
        parts = urlsplit(value)
        netloc = parts.netloc.rsplit("@", 1)[-1] if "@" in parts.netloc else parts.netloc
        query = "<query removed>" if parts.query else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    return value


def _summary(record: LedgerRecord) -> dict[str, Any]:
    data = record.data
    summary: dict[str, Any] = scrub(
        {
            "status": record.status,
            "recording_id": data.get("recording_id"),
            "source": data.get("source") or data.get("given"),
            "location": record.where,
            "destination": data.get("destination"),
            "at": data.get("at") or data.get("sent_at"),
            "detail": data.get("detail", ""),
        }
    )
    return summary


def _describe(record: LedgerRecord) -> str:
    rid = record.data.get("recording_id")
    return f"{record.where} ({record.status}{', Siro recording ' + str(rid) if rid else ''})"


# ---------------------------------------------------------------------------------------------- commands
@_exits_on_error
def ledger_list(args: argparse.Namespace, out: TextIO) -> None:
    """Print every entry (and every claim without one): status, recording ID, source, location."""
    ledger = _open(args)
    wanted: str | None = args.status
    rows = [
        _summary(record)
        for record in ledger.records()
        if wanted is None or record.status.split(" ")[0] == wanted
    ]
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
        return
    if not rows:
        which = f" with status {wanted}" if wanted else ""
        print(f"No entries{which} in the ledger {ledger.path}.", file=out)
        return
    table = [("STATUS", "RECORDING ID", "SOURCE", "LOCATION")] + [
        (row["status"], row["recording_id"] or "-", row["source"] or "-", row["location"]) for row in rows
    ]
    widths = [max(len(str(line[i])) for line in table) for i in range(3)]
    for line in table:
        print(
            "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=False)),
            line[3],
            file=out,
        )


@_exits_on_error
def ledger_show(args: argparse.Namespace, out: TextIO) -> None:
    """Print the one entry ``TARGET`` names as JSON: its location, status and stored fields."""
    ledger = _open(args)
    records = _find(ledger, args.target)
    if len(records) > 1:
        raise LedgerCommandError(
            f"{args.target} names {len(records)} entries (one per destination or version); show one by "
            f"its location: {', '.join(record.where for record in records)}"
        )
    (record,) = records
    shown = {"location": record.where, "status": record.status, "entry": scrub(dict(record.data))}
    print(json.dumps(shown, indent=2), file=out)


@_exits_on_error
def ledger_forget(args: argparse.Namespace, out: TextIO) -> None:
    """Delete the entries ``TARGET`` names, with their claims: the next run uploads those sources again."""
    ledger = _open(args)
    records = _find(ledger, args.target)
    ledger.forget(args.target)
    for record in records:
        print(f"Forgot {_describe(record)}; the next run uploads its source again.", file=out)


@_exits_on_error
def ledger_settle(args: argparse.Namespace, out: TextIO) -> None:
    """Decide the ambiguous (or damaged) entries ``TARGET`` names: one of ``--recording-id``,
    ``--reconcile`` or ``--none``."""
    chosen = [name for name, on in _decisions(args).items() if on]
    if len(chosen) != 1:
        raise LedgerCommandError(
            "settle needs exactly one of --recording-id ID (Siro has it), --reconcile (look it up in Siro) "
            f"or --none (Siro has no such recording); got {', '.join(chosen) if chosen else 'none of them'}"
        )
    recording_id: str | None = args.recording_id
    if recording_id is not None and not recording_id.strip():
        raise LedgerCommandError("--recording-id is empty: give the ID of the recording Siro has")
    ledger = _open(args)
    records = _find(ledger, args.target)
    for record in records:
        if not record.needs_decision:
            print(f"Nothing to settle: {_describe(record)}.", file=out)
            continue
        if args.reconcile:
            _settle_by_reconciling(ledger, record, args.siro_conn_id, out)
        elif recording_id is not None:
            ledger.settle_record(record, recording_id.strip(), how="the ledger command (--recording-id)")
            print(
                f"Settled {record.where}: Siro recording {recording_id.strip()} (status reconciled).",
                file=out,
            )
        else:
            ledger.settle_record(record, None, how="the ledger command (--none)")
            print(f"Settled {record.where}: deleted; the next run uploads its source again.", file=out)


def _decisions(args: argparse.Namespace) -> dict[str, bool]:
    return {
        "--recording-id": args.recording_id is not None,
        "--reconcile": bool(args.reconcile),
        "--none": bool(args.none),
    }


def _settle_by_reconciling(
    ledger: UploadLedger, record: LedgerRecord, siro_conn_id: str, out: TextIO
) -> None:
    """Look ``record``'s lost create up in Siro (one look: the create is long over) and settle it."""
    from airflow_provider_siro.exceptions import SiroReconcileError
    from airflow_provider_siro.utils.reconcile import find_created_recording

    data = record.data
    body = data.get("body")
    sent_at = _moment(data.get("sent_at")) or _moment(data.get("at"))
    if not isinstance(body, Mapping) or not body or sent_at is None:
        raise LedgerCommandError(
            f"{record.where} ({record.status}) does not say what its create call sent, so there is nothing to "
            "look up in Siro. Check Siro for the recording, then settle it with --recording-id ID or --none"
        )
    try:
        from airflow_provider_siro.hooks.siro import SiroHook

        hook = SiroHook(siro_conn_id)
        here = hook.destination()
    except Exception as exc:
        raise LedgerCommandError(
            f"cannot use the Siro connection {siro_conn_id!r}: {type(exc).__name__}: {exc}"
        ) from None
    there = str(data.get("destination") or "")
    if there and there != here:
        raise LedgerCommandError(
            f"{record.where} was uploaded to {there}, but the connection {siro_conn_id!r} reaches {here}: "
            "give the connection the upload used with --siro-conn-id"
        )
    try:
        found = find_created_recording(hook, body, sent_at, settle_polls=1, settle_interval=0.0)
    except SiroReconcileError as exc:
        raise LedgerCommandError(
            f"{record.where}: Siro has {len(exc.candidates)} recordings its create call may have made: "
            f"{', '.join(exc.candidates)}. Check which is this source's, then record it with "
            f"`{ledger.command('settle', record.where, 'ID')}`"
        ) from None
    except Exception as exc:
        raise LedgerCommandError(
            f"{record.where}: looking it up in Siro failed ({type(exc).__name__}: {exc}); nothing changed"
        ) from None
    if found is None:
        ledger.settle_record(record, None, how="the ledger command (--reconcile: not in Siro)")
        print(
            f"Settled {record.where}: Siro has no recording from that create call; deleted, so the next run "
            "uploads its source again.",
            file=out,
        )
        return
    ledger.settle_record(record, found, how="the ledger command (--reconcile)")
    print(f"Settled {record.where}: found Siro recording {found} (status reconciled).", file=out)


def _moment(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------- parsers
def build_parser() -> argparse.ArgumentParser:
    """``python -m airflow_provider_siro``'s parser, from the same specs as ``airflow siro``'s."""
    from airflow_provider_siro.cli.definition import LEDGER_COMMANDS

    parser = argparse.ArgumentParser(prog=PROG, description="The Siro provider's commands.")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    ledger = groups.add_parser(
        "ledger",
        help="look at an upload ledger; settle or forget its entries",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = ledger.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in LEDGER_COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        for option in command.options:
            sub.add_argument(*option.flags, help=option.help, **option.kwargs)
        sub.set_defaults(func=globals()[command.func_name])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m airflow_provider_siro``: 0 on success; a ledger problem exits with status 1 and its
    message on stderr (each command raises that ``SystemExit`` itself, for ``airflow siro`` too)."""
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0
