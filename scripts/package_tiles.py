"""Build the tile server's Function app package: ``python -m scripts.package_tiles [--out build/tiles-app]``.

The folder it writes is what gets deployed (``func azure functionapp publish <tiles app> --python`` run
inside it, or its zip with ``az functionapp deployment source config-zip --build-remote true``):

    function_app.py     tiles/function_app.py (AsgiFunctionApp over tiles.app)
    host.json           tiles/host.json (routePrefix "": TiTiler's routes at the root)
    requirements.txt    requirements-tiles.txt (the runtime lock + titiler.xarray, rasterio, uvicorn)
    shared/  tiles/     the code; MapLibre GL's dist files copied from node_modules into tiles/static/maplibre
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPLIBRE_FILES = ("maplibre-gl.js", "maplibre-gl.css", "LICENSE.txt")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "maplibre")


def build(out: Path) -> Path:
    maplibre = ROOT / "node_modules" / "maplibre-gl" / "dist"
    if not (maplibre / "maplibre-gl.js").is_file():
        raise SystemExit("package_tiles: node_modules/maplibre-gl is missing: run scripts/bootstrap (npm ci)")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy2(ROOT / "tiles" / "function_app.py", out / "function_app.py")
    shutil.copy2(ROOT / "tiles" / "host.json", out / "host.json")
    shutil.copy2(ROOT / "requirements-tiles.txt", out / "requirements.txt")
    for package in ("shared", "tiles"):
        shutil.copytree(ROOT / package, out / package, ignore=SKIP)
    (out / "tiles" / "static" / "maplibre").mkdir()
    for name in MAPLIBRE_FILES:
        shutil.copy2(maplibre / name, out / "tiles" / "static" / "maplibre" / name)
    (out / ".funcignore").write_text("__pycache__/\n*.pyc\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "tiles-app")
    args = parser.parse_args(argv)
    out = build(args.out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"tile server package: {out} ({size / 1e6:.1f} MB before its requirements are installed)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
