"""``ncrefs stac …``: the STAC catalog commands of the CLI (see ``shared/cli.py``)."""

from __future__ import annotations

import argparse

COMMANDS: tuple[str, ...] = ()  # ("stac",) once the command exists
EXAMPLES: dict[str, str] = {}


def add_commands(command) -> None:
    """Add the commands with ``command(name, summary)`` from the main parser."""


def run(args: argparse.Namespace, settings, as_json: bool) -> int:
    raise NotImplementedError(args.command)
