"""``ncrefs``: reference NetCDF files from the command line.

    ncrefs virtualize SOURCE [--output TARGET] [--format json|parquet|auto] [--strict] [--json]
    ncrefs scan SOURCE [--strict] [--json]
    ncrefs backfill [--container C] [--prefix P] [--workers N] [--force] [--retry-failed] [--json]

Exit codes: 0 success; 2 a permanent error (bad input: fix it and run again);
1 a retryable or internal error (or, for backfill, any file failed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from shared import __version__
from shared.backfill import backfill
from shared.errors import ERROR_TABLE, NcrefsError
from shared.models import ReferenceRequest, ReferenceResult
from shared.paths import BlobLocation, parse_location
from shared.pipeline import error_result, run_request
from shared.settings import Settings, load_local_settings
from shared.storage import Storage


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ncrefs", description="Kerchunk references for NetCDF/HDF5 files in Azure Blob Storage.")
    parser.add_argument("--version", action="version", version=f"ncrefs {__version__}")
    parser.add_argument("--connection-string", help="storage connection string (default: DATA_STORAGE, then AzureWebJobsStorage)")
    commands = parser.add_subparsers(dest="command", required=True)

    virtualize = commands.add_parser("virtualize", help="write the reference of one file")
    virtualize.add_argument("source", help="abfs://container/path, https://<account>.blob.core.windows.net/..., container/path, or a local file")
    virtualize.add_argument("--output", "-o", dest="target", help="where to write the reference (default: the mapped refs location; beside a local file)")
    virtualize.add_argument("--format", choices=["json", "parquet", "auto"], help="reference format (default: REFERENCE_FORMAT, auto)")
    virtualize.add_argument("--json", action="store_true", help="print the result as JSON")
    virtualize.add_argument("--strict", action="store_true",
                            help="refuse a file with a variable Zarr cannot reference, instead of leaving it out")

    scan = commands.add_parser("scan", help="report a file's chunking without writing anything")
    scan.add_argument("source")
    scan.add_argument("--json", action="store_true", help="print the result as JSON")
    scan.add_argument("--strict", action="store_true", help="as for virtualize")

    fill = commands.add_parser("backfill", help="reference every NetCDF blob under a prefix that needs it")
    fill.add_argument("--container", help="source container (default: SOURCE_CONTAINER, raw-netcdf)")
    fill.add_argument("--prefix", default="", help="only blobs whose names start with this")
    fill.add_argument("--workers", type=int, help="parallel processes (default: number of CPUs)")
    fill.add_argument("--force", action="store_true", help="regenerate references that are already current")
    fill.add_argument("--retry-failed", action="store_true",
                      help="try again files whose error record says they failed at their current version")
    fill.add_argument("--json", action="store_true", help="print the summary as JSON")
    fill.add_argument("--strict", action="store_true", help="as for virtualize")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    load_local_settings()
    settings = Settings()
    if args.strict:
        settings = settings.model_copy(update={"strict": True})
    if args.command == "backfill":
        try:
            summary = backfill(settings, connection_string=args.connection_string, container=args.container,
                               prefix=args.prefix, workers=args.workers, force=args.force, retry_failed=args.retry_failed)
        except NcrefsError as error:  # the container or the storage itself, not one file
            failed = error_result(args.container or settings.source_container, error)
            print(failed.model_dump_json(indent=2, exclude_none=True) if args.json else _describe(failed))
            return error.kind.exit_code
        print(summary.model_dump_json(indent=2) if args.json else _describe_backfill(summary))
        return 0 if summary.failed == 0 else 1

    storage = Storage(settings, args.connection_string)
    request = ReferenceRequest(source=args.source, target=getattr(args, "target", None),
                               format=getattr(args, "format", None), scan_only=args.command == "scan")
    if not request.scan_only and request.target is None:
        _ensure_refs_container(request, storage, settings)
    result = run_request(request, settings, storage)
    print(result.model_dump_json(indent=2, exclude_none=True) if args.json else _describe(result))
    if result.status == "error":
        return ERROR_TABLE[result.error.code].exit_code
    return 0


def _ensure_refs_container(request: ReferenceRequest, storage: Storage, settings: Settings) -> None:
    try:
        source = parse_location(request.source)
    except Exception:  # noqa: BLE001 - the pipeline reports a bad source properly
        return
    if isinstance(source, BlobLocation):
        try:
            storage.ensure_container(settings.refs_container)
        except Exception:  # noqa: BLE001 - the pipeline reports storage failures properly
            return


def _describe(result: ReferenceResult) -> str:
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
