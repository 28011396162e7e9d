"""The ledger command's arguments, and the ``airflow siro ledger ...`` commands made of them.

``get_provider_info()["cli"]`` names :func:`get_siro_cli_commands`; Airflow versions whose providers
manager reads that entry (3.2 and newer; not 3.1 nor 2.11) add its commands to the ``airflow`` command. Like the
official providers' ``cli/definition.py``, this module imports nothing heavy: Airflow reads it for every
``airflow`` command, even ``airflow --help``, and the commands' code is imported only when one runs
(``lazy_load_command``). ``python -m airflow_provider_siro`` builds its parser from the same specs
(:func:`airflow_provider_siro.cli.ledger.build_parser`), so both accept the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("created", "reconciled", "ambiguous", "claimed", "damaged")
"""What ``list --status`` filters on; ``ambiguous`` also matches a claim left by a try that sent its create
call and ended without recording Siro's answer (listed as ``ambiguous (claim)``)."""


@dataclass(frozen=True)
class Option:
    """One command-line argument, in the terms both argparse and Airflow's ``Arg`` take.

    :param kwargs: ``add_argument`` keywords, limited to those ``airflow.cli.cli_config.Arg`` accepts
        (action, default, nargs, type, choices, required, metavar, dest).
    """

    flags: tuple[str, ...]
    help: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    """One ``ledger`` subcommand; ``func_name`` is its function in :mod:`airflow_provider_siro.cli.ledger`."""

    name: str
    help: str
    func_name: str
    options: tuple[Option, ...]


LEDGER = Option(
    ("ledger",),
    "the ledger: a folder or object-storage URL, as the operators' ledger_path",
    {"metavar": "LEDGER"},
)
CONN_ID = Option(
    ("--conn-id",),
    "the connection object storage reaches LEDGER (and a TARGET URL) with, as the operators' "
    "ledger_conn_id; ignored for a local folder",
    {"dest": "conn_id", "default": None},
)
TARGET = Option(
    ("target",),
    "an entry's location, as `list` prints it, or a source's path or URL as the DAG names it "
    "(every entry of that source)",
    {"metavar": "TARGET"},
)
STATUS = Option(
    ("--status",),
    "only entries with this status (ambiguous includes a claim whose try sent its create call and ended)",
    {"choices": STATUSES, "default": None},
)
JSON = Option(("--json",), "print a JSON array instead of a table", {"action": "store_true", "dest": "json"})
RECORDING_ID = Option(
    ("--recording-id",),
    "Siro has the recording, with this ID: record it (status reconciled)",
    {"dest": "recording_id", "default": None, "metavar": "ID"},
)
RECONCILE = Option(
    ("--reconcile",),
    "look the recording up in Siro's list of recordings, as a try would: one match is recorded, none "
    "deletes the entry (the next run uploads the source), several are named and nothing changes",
    {"action": "store_true"},
)
NONE = Option(
    ("--none",),
    "Siro has no such recording: delete the entry, so the next run uploads the source again",
    {"action": "store_true", "dest": "none"},
)
SIRO_CONN_ID = Option(
    ("--siro-conn-id",),
    "with --reconcile: the Siro connection the upload used (default siro_default)",
    {"dest": "siro_conn_id", "default": "siro_default"},
)

LEDGER_COMMANDS: tuple[Command, ...] = (
    Command(
        "list",
        "list the ledger's entries: status, recording ID, source, location",
        "ledger_list",
        (LEDGER, CONN_ID, STATUS, JSON),
    ),
    Command("show", "print one entry as JSON (no credentials)", "ledger_show", (LEDGER, TARGET, CONN_ID)),
    Command(
        "forget",
        "delete entries: the next run uploads their sources again",
        "ledger_forget",
        (LEDGER, TARGET, CONN_ID),
    ),
    Command(
        "settle",
        "decide an ambiguous entry: --recording-id ID, --reconcile or --none",
        "ledger_settle",
        (LEDGER, TARGET, CONN_ID, RECORDING_ID, RECONCILE, NONE, SIRO_CONN_ID),
    ),
)


def get_siro_cli_commands() -> list[Any]:
    """``airflow siro ledger list|show|forget|settle``, as Airflow's CLI parser takes commands
    (``GroupCommand``/``ActionCommand`` of ``airflow.cli.cli_config``)."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

    make_arg: Callable[..., Any] = Arg  # Airflow's Arg.__init__ has no annotations
    ledger_commands = [
        ActionCommand(
            name=command.name,
            help=command.help,
            func=lazy_load_command(f"airflow_provider_siro.cli.ledger.{command.func_name}"),
            args=tuple(
                make_arg(option.flags, help=option.help, **option.kwargs) for option in command.options
            ),
        )
        for command in LEDGER_COMMANDS
    ]
    ledger = GroupCommand(
        name="ledger",
        help="Look at a Siro upload ledger; settle or forget its entries",
        subcommands=ledger_commands,
    )
    return [GroupCommand(name="siro", help="Siro provider commands", subcommands=[ledger])]
