"""``ncrefs stac …``: the STAC catalog commands of the CLI (see ``shared/cli.py``).

    ncrefs stac build [--prefix P] [--workers N] [--json]
    ncrefs stac show BLOB|DATASET [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

from shared.cli_common import nested, report_failure

COMMANDS: tuple[str, ...] = ("stac",)
EXAMPLES: dict[str, str] = {
    "stac": "examples:\n"
            "  ncrefs stac build                          # every item, collection and catalog under refs/_stac/\n"
            "  ncrefs stac build --prefix cmip6/          # only the items of references under cmip6/\n"
            "  ncrefs stac show raw-netcdf/cmip6/tas_2050.nc --json\n"
            "  ncrefs stac show tas-daily                 # a dataset's collection",
}


def add_commands(command) -> None:
    """Add ``stac`` with ``command(name, summary)`` from the main parser."""
    stac = command("stac", "the STAC catalog of referenced files (items) and datasets (collections)")
    action = nested(stac)

    build = action("build", "(re)write the catalog for the references and datasets that exist; remove what is gone")
    build.add_argument("--prefix", default="", help="only items of references under this path (as in refs/<path>)")
    build.add_argument("--workers", type=int, default=8, help="references described at once (default: 8)")
    show = action("show", "print the item of a blob (source or reference) or the collection of a dataset")
    show.add_argument("target", help="raw-netcdf/a/b.nc, abfs://raw-netcdf/a/b.nc, refs/a/b.json, or a dataset name")


def run(args: argparse.Namespace, settings, as_json: bool) -> int:
    from shared import catalog
    from shared.storage import Storage

    storage = Storage(settings)
    what = getattr(args, "target", None) or f"stac {args.action}"
    try:
        if args.action == "show":
            document = catalog.show(settings, storage, args.target)
            print(json.dumps(document, indent=2, ensure_ascii=False) if as_json else _describe(document))
            return 0
        summary = catalog.build(settings, storage, args.prefix, workers=max(1, args.workers))
        if as_json:
            print(json.dumps({"status": "success" if not summary.failed else "partial", **summary.__dict__}, indent=2))
        else:
            print(f"catalog {settings.refs_container}/{catalog.ROOT}: {summary.items} items, {summary.collections} "
                  f"collections written, {summary.removed} removed, {summary.catalogs} catalogs relinked "
                  f"({summary.elapsed_s:.1f} s)")
            for name, problem in list(summary.failed.items())[:20]:
                print(f"  not described: {name}: {problem}", file=sys.stderr)
        return 1 if summary.failed else 0
    except Exception as error:  # noqa: BLE001 - reported in the error model (unexpected ones with a correlation id)
        return report_failure(what, error, as_json)


def _describe(document: dict) -> str:
    kind = document.get("type")
    if kind == "Collection":
        extent = document.get("extent", {})
        lines = [f"collection {document['id']}: {document.get('description', '')}",
                 f"  bbox {extent.get('spatial', {}).get('bbox')}",
                 f"  time {extent.get('temporal', {}).get('interval')}"]
        properties = document
    else:
        properties = document.get("properties", {})
        when = properties.get("datetime") or f"{properties.get('start_datetime')} .. {properties.get('end_datetime')}"
        lines = [f"item {document.get('id')}", f"  bbox {document.get('bbox')}", f"  time {when}"]
    dims = properties.get("cube:dimensions", {})
    lines.append("  dimensions " + ", ".join(f"{name} ({d.get('type')})" for name, d in dims.items()))
    lines.append("  variables " + ", ".join(properties.get("cube:variables", {})))
    lines += [f"  asset {key}: {asset.get('type')} {asset.get('href')}" for key, asset in document.get("assets", {}).items()]
    return "\n".join(lines)
