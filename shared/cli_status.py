"""``ncrefs status``: what state the references under a prefix are in (see ``shared/status.py``).

    ncrefs status [--prefix P] [--json]
"""

from __future__ import annotations

import argparse

from shared.cli_common import report_failure

COMMANDS: tuple[str, ...] = ("status",)
EXAMPLES: dict[str, str] = {
    "status": "examples:\n"
              "  ncrefs status                    # every NetCDF file of the source container\n"
              "  ncrefs status --prefix cmip6/    # current, stale, missing and failed references; queues; datasets\n"
              "  ncrefs status --json             # the model GET /api/status answers",
}


def add_commands(command) -> None:
    """Add ``status`` with ``command(name, summary)`` from the main parser."""
    status = command("status", "sources, current/stale/missing/failed references, queued messages and datasets")
    status.add_argument("--prefix", default="", help="only sources whose names start with this")


def run(args: argparse.Namespace, settings, as_json: bool) -> int:
    from shared.status import describe, status
    from shared.storage import Storage

    try:
        report = status(settings, Storage(settings), args.prefix)
    except Exception as error:  # noqa: BLE001 - reported in the error model (unexpected ones with a correlation id)
        return report_failure(f"{settings.source_container}/{args.prefix}", error, as_json)
    print(report.model_dump_json(indent=2) if as_json else describe(report))
    return 0
