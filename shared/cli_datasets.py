"""``ncrefs dataset …`` and ``ncrefs open``: the dataset commands of the CLI (see ``shared/cli.py``).

    ncrefs dataset create NAME --prefix P [--concat-dim time] [--outputs icechunk,parquet] [--no-build]
    ncrefs dataset show NAME [--json]
    ncrefs dataset list [--json]
    ncrefs dataset build NAME [--rebuild]
    ncrefs dataset delete NAME
    ncrefs open NAME|URL [--version SNAPSHOT_OR_TAG]
"""

from __future__ import annotations

import argparse
import json
import sys

from shared.cli_common import nested, report_failure

COMMANDS = ("dataset", "open")
EXAMPLES = {
    "dataset": "examples:\n"
               "  ncrefs dataset create tas-daily --prefix cmip6/tas/ --concat-dim time\n"
               "  ncrefs dataset show tas-daily --json\n"
               "  ncrefs dataset build tas-daily --rebuild",
    "open": "examples:\n  ncrefs open tas-daily\n  ncrefs open abfs://refs/cmip6/tas_2050.json\n"
            "  ncrefs open tas-daily --version 1CECHNKREP0F1RSTCMT0",
}


def add_commands(command) -> None:
    """Add ``dataset`` and ``open`` with ``command(name, summary)`` from the main parser."""
    dataset = command("dataset", "define, build, show and delete datasets (many files combined into one)")
    action = nested(dataset)

    create = action("create", "define a dataset over the files under a prefix, and build it")
    create.add_argument("name", help="1-63 lowercase letters, digits and hyphens")
    create.add_argument("--prefix", required=True, help="the files under this prefix of the source container belong to it")
    create.add_argument("--concat-dim", default="time", help="the dimension files are concatenated along (default: time)")
    create.add_argument("--outputs", type=_outputs, default=["icechunk"],
                        help="comma-separated: icechunk (versioned, the default), parquet, json (kerchunk)")
    create.add_argument("--container", help="source container (default: SOURCE_CONTAINER)")
    create.add_argument("--no-build", action="store_true", help="only define it; build later with `dataset build`")
    action("show", "a dataset's definition, members, outputs, history and last error").add_argument("name")
    action("list", "every dataset defined in the refs container")
    build = action("build", "bring a dataset up to date (missing or stale per-file references first)")
    build.add_argument("name")
    build.add_argument("--rebuild", action="store_true", help="rebuild from every per-file reference, taking the "
                                                               "first file's encoding as the dataset's again")
    action("delete", "remove a dataset's definition and outputs (never a source file)").add_argument("name")

    opener = command("open", "open a dataset, reference or Icechunk repository with xarray and print it")
    opener.add_argument("target", help="a dataset name, a reference URL (.json/.parquet), an Icechunk URL (.icechunk) or a file")
    opener.add_argument("--version", dest="snapshot", help="a snapshot id or tag of an Icechunk dataset (default: latest)")


def _outputs(text: str) -> list[str]:
    outputs = [o.strip() for o in text.split(",") if o.strip()]
    unknown = sorted(set(outputs) - {"icechunk", "parquet", "json"})
    if unknown or not outputs:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from icechunk, parquet, json (comma-separated)")
    return outputs


def run(args: argparse.Namespace, settings, as_json: bool) -> int:
    from shared import datasets
    from shared.storage import Storage

    storage = Storage(settings)
    what = getattr(args, "name", None) or getattr(args, "target", None) or "datasets"
    try:
        if args.command == "open":
            return _open(args, settings)
        if args.action == "create":
            change = datasets.create(settings, storage, args.name, prefix=args.prefix, concat_dim=args.concat_dim,
                                     outputs=args.outputs, container=args.container, build_now=not args.no_build)
            return _print_change(change, as_json, f"defined dataset {args.name}")
        if args.action == "build":
            return _print_change(datasets.build(settings, storage, args.name, rebuild=args.rebuild), as_json)
        if args.action == "show":
            view = datasets.show(settings, storage, args.name)
            print(view.model_dump_json(indent=2) if as_json else _describe(view))
            return 0
        if args.action == "list":
            found = datasets.list_definitions(settings, storage)
            if as_json:
                print(json.dumps([d.model_dump(mode="json") for d in found], indent=2))
            else:
                for d in found:
                    print(f"{d.name}: {d.container}/{d.prefix} along {d.concat_dim} -> {', '.join(d.outputs)}")
                if not found:
                    print("no datasets (define one with `ncrefs dataset create NAME --prefix P`)", file=sys.stderr)
            return 0
        removed = datasets.delete(settings, storage, args.name)
        print(json.dumps({"status": "deleted", "name": args.name, "blobs_removed": removed}) if as_json
              else f"deleted dataset {args.name} ({removed} blobs of definition, state and outputs; no source touched)")
        return 0
    except Exception as error:  # noqa: BLE001 - reported in the error model (unexpected ones with a correlation id)
        return report_failure(what, error, as_json)


def _open(args, settings) -> int:
    from shared.opener import open_dataset

    connection = {"connection_string": settings.connection_string} if settings.connection_string else (
        {"blob_endpoint": settings.blob_service_uri} if settings.blob_service_uri else {})
    dataset = open_dataset(args.target, version=args.snapshot, **connection)
    print(dataset)
    return 0


def _print_change(change, as_json: bool, first: str | None = None) -> int:
    if change is None:
        print(json.dumps({"status": "defined"}) if as_json else first)
        return 0
    if as_json:
        print(change.model_dump_json(indent=2))
    else:
        lines = [f"dataset {change.name}: {change.action}, {change.members} files ({change.elapsed_s:.1f} s)"]
        if change.snapshot:
            lines.append(f"  snapshot {change.snapshot}")
        lines += [f"  added {source}" for source in change.added[:10]]
        if len(change.added) > 10:
            lines.append(f"  ... and {len(change.added) - 10} more added")
        lines += [f"  removed {source}" for source in change.removed]
        lines += [f"  not in the dataset: {source}: {why}" for source, why in change.refused.items()]
        print("\n".join(lines))
    return 1 if change.refused else 0


def _describe(view) -> str:
    lines = [f"dataset {view.name}: {view.container}/{view.prefix} along {view.concat_dim}, {len(view.members)} files"]
    if view.members:
        lines.append(f"  {view.concat_dim}: {view.members[0].first} .. {view.members[-1].last}")
    lines += [f"  {output}: {url}" for output, url in view.outputs.items()]
    for snapshot in view.snapshots[:5]:
        lines.append(f"  snapshot {snapshot['id']} {snapshot['time'][:19]} {snapshot['message'][:100]}")
    if view.error:
        lines.append(f"  last error: {view.error.source}: [{view.error.code}] {view.error.message}")
    return "\n".join(lines)
