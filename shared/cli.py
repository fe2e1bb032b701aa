"""``ncrefs``: reference NetCDF files from the command line.

    ncrefs virtualize SOURCE [--output TARGET] [--format json|parquet|auto] [--strict] [--json]
    ncrefs scan SOURCE [--strict] [--json]
    ncrefs backfill [--container C] [--prefix P] [--workers N] [--force] [--retry-failed] [--verbose] [--queue] [--json]
    ncrefs dataset create|show|list|build|delete ...   and   ncrefs open NAME|URL  (shared/cli_datasets.py)
    ncrefs stac build|show (shared/cli_catalog.py)   ncrefs tiles (shared/cli_tiles.py)
    ncrefs status [--prefix P] [--json]   (shared/cli_status.py)
    ncrefs prune [--prefix P] [--dry-run]   and   ncrefs verify SOURCE|--prefix P [--sample N]  (shared/cli_archive.py)

Storage: --connection-string, or --account-name / --blob-endpoint with az login or a managed
identity, else the settings (see shared/settings.py). Options go before or after the command. Results go to stdout, errors to stderr (with
``--json`` the result or error model, and nothing else, to stdout).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

from shared import __version__
from shared import cli_archive, cli_catalog, cli_datasets, cli_status, cli_tiles

# Command modules beside this one: each has EXAMPLES, COMMANDS, add_commands(command) and run(args, settings, as_json).
COMMAND_MODULES = (cli_datasets, cli_catalog, cli_tiles, cli_status, cli_archive)

EXIT_CODES = """exit codes:
  0  success
  2  a permanent error: bad input, a file that cannot be referenced, no access (fix it, run again)
  1  a retryable or internal error (for backfill: any file failed)"""
EXAMPLES = {
    "virtualize": "example:\n  ncrefs virtualize abfs://raw-netcdf/cmip6/tas_2050.nc    # -> abfs://refs/cmip6/tas_2050.json",
    "scan": "example:\n  ncrefs scan raw-netcdf/cmip6/tas_2050.nc --json",
    **{name: text for module in COMMAND_MODULES for name, text in module.EXAMPLES.items()},
    "backfill": "examples:\n  ncrefs backfill --prefix cmip6/ --workers 4\n"
                "  ncrefs backfill --account-name mydata --verbose    # signed in with az login; one line per file\n"
                "  ncrefs backfill --queue --prefix cmip6/           # one queue message per file, for the Functions app",
}
_SECRET = re.compile(r"(AccountKey|SharedAccessSignature|sig)=[^;&\s'\"]+", re.IGNORECASE)


def redact(text: str) -> str:
    """Text that may quote a connection string, with its secrets masked."""
    return _SECRET.sub(lambda match: f"{match.group(1)}=***", text)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # argparse quotes the offending arguments: a mistyped option may carry a key
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {redact(message)}\n")


def _parser() -> argparse.ArgumentParser:
    # Options shared by every command, accepted before or after it (SUPPRESS: a later, absent
    # copy does not overwrite one given earlier).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--connection-string", default=argparse.SUPPRESS, metavar="CONNECTION_STRING",
                        help="storage connection string (default: DATA_STORAGE, AZURE_STORAGE_CONNECTION_STRING, "
                             "then AzureWebJobsStorage)")
    common.add_argument("--account-name", default=argparse.SUPPRESS, metavar="ACCOUNT",
                        help="storage account to reach with your Azure sign-in (az login, a managed identity or "
                             "AZURE_CLIENT_* variables) instead of a key; default: AZURE_STORAGE_ACCOUNT")
    common.add_argument("--blob-endpoint", default=argparse.SUPPRESS, metavar="URL",
                        help="the account's blob endpoint, for other clouds, DNS-zone or private endpoints "
                             "(e.g. https://<account>.blob.core.chinacloudapi.cn); sign-in as for --account-name")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON")
    common.add_argument("--strict", action="store_true", default=argparse.SUPPRESS,
                        help="refuse a file with a variable Zarr cannot reference, instead of leaving it out")
    layout = {"formatter_class": argparse.RawDescriptionHelpFormatter}
    parser = _Parser(prog="ncrefs", description="Kerchunk references for NetCDF/HDF5 files in Azure Blob Storage.",
                     epilog=EXIT_CODES, parents=[common], **layout)
    parser.add_argument("--version", action="version", version=f"ncrefs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary, parents=[common],
                                  epilog=f"{EXAMPLES[name]}\n\n{EXIT_CODES}", **layout)
        sub._ncrefs_parents = [common]  # for nested commands (dataset create, ...)
        return sub

    virtualize = command("virtualize", "write the reference of one file")
    virtualize.add_argument("source", help="abfs://container/path, https://<account>.blob.core.windows.net/..., container/path, or a local file")
    virtualize.add_argument("--output", "-o", dest="target", help="where to write the reference (default: the mapped refs location; beside a local file)")
    virtualize.add_argument("--format", choices=["json", "parquet", "auto"], help="reference format (default: REFERENCE_FORMAT, auto)")

    scan = command("scan", "report a file's chunking without writing anything")
    scan.add_argument("source", help="as for virtualize")

    fill = command("backfill", "reference every NetCDF blob under a prefix that needs it")
    fill.add_argument("--container", help="source container (default: SOURCE_CONTAINER, raw-netcdf)")
    fill.add_argument("--prefix", default="", help="only blobs whose names start with this")
    fill.add_argument("--workers", type=_positive, help="files referenced at once (default: 1 below 50 files, else PARSE_WORKERS)")
    fill.add_argument("--force", action="store_true", help="regenerate references that are already current")
    fill.add_argument("--retry-failed", action="store_true",
                      help="try again files whose error record says they failed at their current version")
    fill.add_argument("--verbose", "-v", action="store_true", help="one line per file on stderr as it is done")
    fill.add_argument("--queue", action="store_true",
                      help="do not reference here: put one message per file on the queue REFERENCE_QUEUE for the "
                           "Functions app's queue trigger (fan-out over its instances), print how many, and return")
    for module in COMMAND_MODULES:
        module.add_commands(command)
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    given = [f"--{name.replace('_', '-')}" for name in ("connection_string", "account_name", "blob_endpoint")
             if hasattr(args, name)]
    if "--connection-string" in given and len(given) > 1:
        parser.error(f"give either --connection-string or {' / '.join(given[1:])}, not both")
    if getattr(args, "queue", False) and (args.workers or args.verbose):
        parser.error("--workers and --verbose do not apply to backfill --queue: the Functions app's instances do the work")
    try:
        return _run(args)
    except BrokenPipeError:
        # The reader went away (ncrefs ... --json | head): end quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run(args: argparse.Namespace) -> int:
    as_json = getattr(args, "json", False)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Its failed-sign-in warning is a page long; the access_denied error says what to do in two lines.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    settings = _settings(args, as_json)
    if settings is None:
        return 2

    # The heavy imports (Azure SDKs, numpy) only once the command line is known to be good.
    from shared.errors import ERROR_TABLE, NcrefsError
    from shared.models import ReferenceRequest
    from shared.pipeline import ensure_refs_container, error_result, run_request
    from shared.storage import Storage

    for module in COMMAND_MODULES:
        if args.command in module.COMMANDS:
            return module.run(args, settings, as_json)

    if args.command == "backfill" and args.queue:
        from shared.fanout import enqueue

        try:
            queued = enqueue(settings, container=args.container, prefix=args.prefix, force=args.force,
                             retry_failed=args.retry_failed, say=lambda line: print(line, file=sys.stderr, flush=True))
        except NcrefsError as error:
            _report(error_result(args.container or settings.source_container, error), as_json)
            return error.kind.exit_code
        print(queued.model_dump_json(indent=2) if as_json else _describe_enqueue(queued))
        return 0

    if args.command == "backfill":
        from shared.backfill import backfill

        try:
            summary = backfill(settings, container=args.container, prefix=args.prefix, workers=args.workers,
                               force=args.force, retry_failed=args.retry_failed, verbose=args.verbose,
                               say=lambda line: print(line, file=sys.stderr, flush=True))
        except NcrefsError as error:  # the container or the storage itself, not one file
            _report(error_result(args.container or settings.source_container, error), as_json)
            return error.kind.exit_code
        print(summary.model_dump_json(indent=2) if as_json else _describe_backfill(summary))
        return 0 if summary.failed == 0 else 1

    storage = Storage(settings)
    request = ReferenceRequest(source=args.source, target=getattr(args, "target", None),
                               format=getattr(args, "format", None), scan_only=args.command == "scan")
    if not request.scan_only and request.target is None:
        ensure_refs_container(request, storage, settings)
    result = run_request(request, settings, storage)
    _report(result, as_json)
    return ERROR_TABLE[result.error.code].exit_code if result.status == "error" else 0


def _settings(args: argparse.Namespace, as_json: bool):
    """The settings, or None after saying in one line which one is wrong (exit 2)."""
    from pydantic import ValidationError

    from shared.settings import Settings, describe_invalid_settings, load_local_settings

    try:
        load_local_settings()
        settings = Settings().with_connection(connection_string=getattr(args, "connection_string", None),
                                              account_name=getattr(args, "account_name", None),
                                              blob_endpoint=getattr(args, "blob_endpoint", None))
    except (ValidationError, ValueError) as error:
        from shared.errors import InvalidRequest
        from shared.pipeline import error_result

        invalid = InvalidRequest(describe_invalid_settings(error), hint="Fix the setting (environment or local.settings.json).")
        if as_json:
            _report(error_result(getattr(args, "source", "settings"), invalid), as_json)
        else:  # one line: the setting and what it takes
            print(f"error [{invalid.code}] {invalid.message}", file=sys.stderr)
        return None
    return settings.model_copy(update={"strict": True}) if getattr(args, "strict", False) else settings


def _report(result, as_json: bool) -> None:
    """A result on stdout; an error, in human form, on stderr."""
    if as_json:
        print(result.model_dump_json(indent=2, exclude_none=True))
    else:
        print(_describe(result), file=sys.stderr if result.status == "error" else sys.stdout)


def _describe(result) -> str:
    if result.status == "error":
        e = result.error
        return f"error [{e.code}] {e.message}\n  what to do: {e.hint}"
    lines = [
        f"{result.input}",
        f"  {len(result.variables)} variables, {result.chunk_count} chunks, groups: {', '.join(result.groups)}",
        f"  dimensions: {', '.join(f'{k}={v}' for k, v in result.dimensions.items())}",
        f"  read {result.bytes_read:,} of {result.source_size:,} bytes in {result.requests} "
        f"request{'' if result.requests == 1 else 's'} ({result.read_plan}), {result.elapsed_s:.2f} s",
    ]
    if result.output:
        lines.append(f"  wrote {result.format} reference {result.output} ({result.reference_bytes:,} bytes)")
    if result.scan and result.status == "scanned":
        for v in result.scan.variables:
            lines.append(f"  {v.name}: {v.dtype} {tuple(v.shape)} chunks {tuple(v.chunks)} {'+'.join(v.codecs) or 'raw'}, "
                         f"{v.chunk_count} chunks ~{v.mean_chunk_bytes:,} B")
    lines += [f"  left out: {name}: {why}" for name, why in result.skipped_variables.items()]
    lines += [f"  warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def _describe_enqueue(summary) -> str:
    lines = [f"queued {summary.queued} of {summary.candidates} NetCDF files under {summary.container}/{summary.prefix} "
             f"on queue {summary.queue} ({summary.skipped} already current; {summary.elapsed_s:.1f} s)"]
    if summary.skipped_failed:
        lines.append(f"  {summary.skipped_failed} skipped: they failed before at their current version "
                     "(--retry-failed to queue them)")
    if summary.queued:
        lines.append("  the Functions app's queue trigger references them; `ncrefs status` shows the progress")
    return "\n".join(lines)


def _describe_backfill(summary) -> str:
    lines = [f"backfill {summary.container}/{summary.prefix}: {summary.candidates} NetCDF files, "
             f"{summary.done} referenced, {summary.skipped} already current, {summary.failed} failed ({summary.elapsed_s:.1f} s)"]
    if summary.skipped_failed:
        lines.append(f"  {summary.skipped_failed} skipped: they failed before at their current version (--retry-failed to try again)")
    for code, count in sorted(summary.failed_by_code.items()):
        lines.append(f"  {code}: {count}")
    for failure in summary.failures:
        lines.append(f"  {failure.input}: [{failure.error.code}] {failure.error.message}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
