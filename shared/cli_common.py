"""What the CLI's command modules (cli_datasets, cli_catalog, ...) share: nested commands and errors."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


def nested(parent: argparse.ArgumentParser) -> Callable[[str, str], argparse.ArgumentParser]:
    """``action(name, summary)`` adding ``ncrefs <parent> <name>``, with the parent's common options and epilog."""
    actions = parent.add_subparsers(dest="action", required=True, parser_class=type(parent))

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=summary, description=summary, parents=parent._ncrefs_parents,
                                  epilog=parent.epilog, formatter_class=argparse.RawDescriptionHelpFormatter)

    return action


def report_failure(what: str, error: Exception, as_json: bool) -> int:
    """Say what went wrong in the error model (an unexpected error with a correlation id); its exit code."""
    from shared.errors import NcrefsError
    from shared.pipeline import error_result

    info = error_result(what, error).error
    if as_json:
        print(json.dumps({"status": "error", "input": what, "error": info.model_dump(exclude_none=True)}, indent=2))
    else:
        print(f"error [{info.code}] {info.message}\n  what to do: {info.hint}", file=sys.stderr)
    return error.kind.exit_code if isinstance(error, NcrefsError) else 1
