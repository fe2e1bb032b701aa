"""``ncrefs tiles``: run the tile server locally (see ``shared/cli.py`` and ``tiles/app.py``).

titiler, rasterio and uvicorn are an optional extra (``pip install -r requirements-tiles.txt``):
they are imported only when the command runs, so ``ncrefs --help`` and the other commands never pay for them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: tuple[str, ...] = ("tiles",)
EXAMPLES: dict[str, str] = {
    "tiles": "example:\n  ncrefs tiles --port 8080    # then open http://127.0.0.1:8080/map",
}
EXTRA_HINT = "pip install -r requirements-tiles.txt"


def add_commands(command) -> None:
    """Add ``tiles`` with ``command(name, summary)`` from the main parser."""
    tiles = command("tiles", "serve map tiles, /info, /point and /statistics of references and datasets (TiTiler), and a map page")
    tiles.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    tiles.add_argument("--port", type=_port, default=8080, help="port to listen on (default: 8080)")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def run(args: argparse.Namespace, settings, as_json: bool) -> int:
    try:
        # By name: the ingestion app ships shared/ but never runs this command, and its package
        # (tests/test_packaging.py) holds neither tiles/ nor titiler, rasterio or uvicorn.
        server = importlib.import_module("tiles.serve")
    except ImportError as error:
        print(f"error [invalid_request] The tile server is an optional extra and is not installed ({error.name} is missing).\n"
              f"  what to do: {EXTRA_HINT}", file=sys.stderr)
        return 2
    from shared.errors import NcrefsError
    from shared.storage import Storage

    try:
        Storage(settings).service  # a malformed connection is one line now, not an error per request
    except NcrefsError as error:
        print(f"error [{error.code}] {error.message}\n  what to do: {error.hint}", file=sys.stderr)
        return error.kind.exit_code
    return server.serve(settings, args.host, args.port)
