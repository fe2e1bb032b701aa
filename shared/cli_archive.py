"""``ncrefs prune`` and ``ncrefs verify``: keeping an archive's references true (see ``shared/cli.py``).

    ncrefs prune [--prefix P] [--dry-run] [--json]
    ncrefs verify SOURCE|--prefix P [--sample N] [--max-bytes SIZE] [--json]
"""

from __future__ import annotations

import argparse
import sys

COMMANDS: tuple[str, ...] = ("prune", "verify")
EXAMPLES: dict[str, str] = {
    "prune": "examples:\n"
             "  ncrefs prune --dry-run                 # list what ncrefs holds for sources that no longer exist\n"
             "  ncrefs prune --prefix cmip6/           # remove it: references, error records, STAC items, dataset members",
    "verify": "examples:\n"
              "  ncrefs verify raw-netcdf/cmip6/tas_2050.nc          # one chunk per variable, reference vs original\n"
              "  ncrefs verify refs/cmip6/tas_2050.json --sample 4   # four chunks per variable, spread\n"
              "  ncrefs verify --prefix cmip6/ --max-bytes 4G --json\n\n"
              "exit codes (verify): 0 every reference reads back its original; 1 a mismatch, a stale reference or one that\n"
              "could not be verified; 2 bad input, or more to read than --max-bytes",
}


def add_commands(command) -> None:
    prune = command("prune", "remove references, error records, STAC items and dataset members of deleted sources")
    prune.add_argument("--prefix", default="", help="only what lies under this path of the refs container (as sources map there)")
    prune.add_argument("--dry-run", action="store_true", help="list what would be removed; change nothing")

    verify = command("verify", "compare a few chunks per variable read through references with the originals")
    verify.add_argument("source", nargs="?", help="a source blob (raw-netcdf/a.nc) or its reference (refs/a.json)")
    verify.add_argument("--prefix", help="every reference under this path of the refs container")
    verify.add_argument("--sample", type=_count, default=1,
                        help="chunks per variable, spread over its grid (default: 1, the first)")
    verify.add_argument("--max-bytes", type=_size, default=None, metavar="SIZE",
                        help="refuse to read more than this, both sides together (default: 1G; e.g. 256M, 4G)")


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _size(text: str) -> int:
    from shared.verify import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run(args: argparse.Namespace, settings, as_json: bool) -> int:
    from shared.cli_common import report_failure
    from shared.storage import Storage

    storage = Storage(settings)
    what = getattr(args, "source", None) or f"{args.command} {getattr(args, 'prefix', '') or ''}".strip()
    try:
        if args.command == "prune":
            return _prune(args, settings, storage, as_json)
        return _verify(args, settings, storage, as_json)
    except Exception as error:  # noqa: BLE001 - reported in the error model (unexpected ones with a correlation id)
        return report_failure(what, error, as_json)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _prune(args, settings, storage, as_json: bool) -> int:
    from shared.prune import prune

    summary = prune(settings, storage, args.prefix, dry_run=args.dry_run, say=None if as_json else _say)
    if as_json:
        print(summary.model_dump_json(indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for orphan in summary.orphans:
        parts = orphan.references + [p for p in (orphan.error_record, orphan.stac_item) if p]
        parts += [f"member of dataset {name}" for name in orphan.datasets]
        print(f"{orphan.source} (gone): {verb} {', '.join(parts) or 'nothing'}")
    for source in summary.recreated:
        print(f"{source}: uploaded again meanwhile, kept")
    for change in summary.datasets:
        print(f"dataset {change.name}: {change.action}, {change.members} members"
              + (f", snapshot {change.snapshot}" if change.snapshot else ""))
    done = len(summary.orphans) - len(summary.recreated)
    outcome = "found" if args.dry_run else "cleaned up"
    print(f"prune {settings.refs_container}/{args.prefix}: {summary.references} references, {summary.error_records} error "
          f"records, {summary.stac_items} STAC items looked at; {done} deleted source(s) {outcome} ({summary.elapsed_s:.1f} s)")
    return 0


def _verify(args, settings, storage, as_json: bool) -> int:
    from shared import verify

    found = verify.targets(settings, storage, args.source, args.prefix)
    summary = verify.verify(settings, storage, found, sample=args.sample,
                            max_bytes=args.max_bytes or verify.DEFAULT_MAX_BYTES, say=_say)
    if as_json:
        print(summary.model_dump_json(indent=2, exclude_none=True))
    else:
        for result in summary.files:
            print(f"{result.source} -> {result.reference}: {result.status.upper() if result.status != 'ok' else 'ok'}")
            if result.error is not None:
                print(f"  [{result.error.code}] {result.error.message}\n  what to do: {result.error.hint}")
            for check in result.variables:
                if check.status == "ok":
                    print(f"  {check.variable}: ok ({len(check.chunks)} chunk{'s' if len(check.chunks) != 1 else ''})")
                elif check.status == "mismatch":
                    values = (f": reference {check.reference_value}, original {check.original_value}"
                              if check.reference_value is not None else "")
                    print(f"  {check.variable}: MISMATCH at {check.index} ({check.reason}){values}")
                else:
                    print(f"  {check.variable}: skipped ({check.reason})")
        print(f"verify: {summary.ok} ok, {summary.mismatched} mismatch, {summary.stale} stale, {summary.errors} not verified "
              f"of {summary.references}; read {verify._size(summary.original_bytes_read)} of the originals "
              f"({summary.elapsed_s:.1f} s)")
    return 0 if summary.status == "ok" else 1
