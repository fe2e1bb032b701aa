"""``ncrefs tiles``'s server: uvicorn on the tile app, with the CLI's settings and connection."""

from __future__ import annotations

import sys

import uvicorn

from tiles.app import create_app


def serve(settings, host: str, port: int) -> int:
    app = create_app(settings)
    print(f"ncrefs tiles: http://{host}:{port}/map  (TiTiler routes: /info /tiles /point /statistics; "
          f"API docs /api.html; Ctrl-C to stop)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
