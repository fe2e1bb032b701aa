"""Tile latency: the tile server over a per-file reference and a dataset, vs TiTiler on the original NetCDF.

On ``--files`` daily files of a 0.5° grid (360 x 720 float32 ``tas``, chunks (1, 45, 90), zlib; made by
``tests.samples.smooth_daily``), uploaded to Azurite, referenced (``backfill``) and combined into a dataset
(Icechunk + Parquet), it times PNG tiles (``/tiles/WebMercatorQuad/{z}/{x}/{y}.png``, viridis, one time
step) through FastAPI's TestClient for:

  reference      tiles.app, url=abfs://refs/tas/<file>.json
  dataset (ice)  tiles.app, url=<name> (the Icechunk output)
  dataset (pq)   tiles.app, url=…/_datasets/<name>/<name>.parquet
  original       titiler.xarray's own FsReader (fs_open_dataset: h5netcdf over adlfs) on the NetCDF blob,
                 as TiTiler serves a NetCDF file without ncrefs

"cold" is a new app's first tile (the server opens the reference or dataset: the per-app cache is
empty); "warm" is the median of the next tiles (zoom 2 and 3, a few each) of the same file/step. TiTiler's
FsReader opens the file on every request, so its cold and warm differ only by adlfs' own caches.
Every client talks to Azurite through ``benchmarks/counting_proxy.py`` holding each request
``--latency-ms`` (default 10 ms): the requests it counts per tile are the model's cost; bandwidth is
loopback's. Imports are done before the clock starts.

    .venv/bin/python -m benchmarks.bench_tiles [--files 8] [--latency-ms 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE, REFS = "raw-netcdf", "refs"
COLD_TILE = (2, 2, 1)
WARM_TILES = [(2, 1, 1), (2, 2, 2), (2, 1, 2), (3, 4, 2), (3, 4, 3), (3, 3, 3), (3, 5, 2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--grid", type=int, nargs=2, default=(360, 720), metavar=("NLAT", "NLON"),
                        help="grid of each file (default 360 720; 1440 2880 makes ~20 MB files)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    import os

    from azure.storage.blob import BlobServiceClient
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from titiler.xarray.factory import TilerFactory
    from titiler.xarray.io import FsReader

    from benchmarks.counting_proxy import CountingProxy
    from scripts.azurite import start_azurite
    from shared import datasets
    from shared.backfill import backfill
    from shared.settings import Settings
    from shared.storage import Storage
    from tests import samples
    from tiles.app import create_app

    azurite = start_azurite()
    try:
        direct = Settings(DATA_STORAGE=azurite.connection_string)
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        for container in (SOURCE, REFS):
            service.create_container(container)
        with tempfile.TemporaryDirectory() as work:
            for day in range(args.files):
                path = samples.smooth_daily(Path(work), day, ny=args.grid[0], nx=args.grid[1])
                with open(path, "rb") as handle:
                    service.get_blob_client(SOURCE, f"tas/{path.name}").upload_blob(handle)
            size_mb = path.stat().st_size / 1e6
        os.environ["DATA_STORAGE"] = azurite.connection_string
        assert backfill(direct, prefix="tas/").done == args.files
        datasets.create(direct, Storage(direct), "tas-daily", prefix="tas/", outputs=["icechunk", "parquet"])

        proxy = CountingProxy(azurite.port, SOURCE, latency_s=args.latency_ms / 1000).start()
        proxied = azurite.connection_string.replace(f":{azurite.port}/", f":{proxy.port}/")
        settings = Settings(DATA_STORAGE=proxied)
        day = args.files // 2
        step = f"time=2000-01-{day + 1:02d}"
        name = f"tas_smooth_{day:03d}"
        style = {"variable": "tas", "sel": step, "rescale": "230,310", "colormap_name": "viridis"}

        def ncrefs_client():
            return TestClient(create_app(settings))

        def original_client():
            class ProxiedReader(FsReader):
                def __init__(self, *a, **kw):
                    super().__init__(*a, opener_options={"connection_string": proxied}, **kw)

            app = FastAPI()
            app.include_router(TilerFactory(reader=ProxiedReader).router)
            return TestClient(app)

        cases = [
            ("reference (JSON)", ncrefs_client, f"abfs://{REFS}/tas/{name}.json"),
            ("dataset, Icechunk", ncrefs_client, "tas-daily"),
            ("dataset, Parquet", ncrefs_client, f"abfs://{REFS}/_datasets/tas-daily/tas-daily.parquet"),
            ("original NetCDF (TiTiler FsReader)", original_client, f"abfs://{SOURCE}/tas/{name}.nc"),
        ]
        reference = None
        rows = []
        for label, make, url in cases:
            client = make()

            def tile(z, x, y):
                proxy.reset()
                start = time.perf_counter()
                response = client.get(f"/tiles/WebMercatorQuad/{z}/{x}/{y}.png", params={"url": url, **style})
                elapsed = time.perf_counter() - start
                counts = proxy.reset()
                assert response.status_code == 200, (label, response.text[:300])
                return elapsed, counts.gets + counts.heads + counts.other, response.content

            cold_s, cold_requests, first = tile(*COLD_TILE)
            if reference is None:
                reference = first
            same = first == reference
            warm = [tile(*t) for t in WARM_TILES]
            rows.append((label, cold_s, cold_requests, statistics.median(w[0] for w in warm),
                         statistics.median(w[1] for w in warm), same))
        proxy_note = f"{args.latency_ms:g} ms per request"
    finally:
        azurite.cleanup()

    from shared.opener import detach_loopless_adlfs_finalizers

    detach_loopless_adlfs_finalizers()
    print(f"\n{args.files} files of {args.grid[0]}x{args.grid[1]} float32 (chunks 1x45x90, zlib), {size_mb:.1f} MB each; Azurite behind a "
          f"proxy adding {proxy_note}; PNG tiles 256x256, viridis, one time step\n")
    print("| url= | cold tile (ms) | requests | warm tile, median (ms) | requests | same PNG as the reference |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, cold_s, cold_n, warm_s, warm_n, same in rows:
        print(f"| {label} | {cold_s * 1000:.0f} | {cold_n} | {warm_s * 1000:.0f} | {warm_n:g} | {'yes' if same else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
