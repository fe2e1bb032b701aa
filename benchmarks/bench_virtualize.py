"""How much of a source does referencing read, and what would it cost in the cloud?

Builds (or reuses, in benchmarks/data/) two NetCDF4 files:
  big    ~1 GB, ~2,400 chunks of 400 KB   (a chunk index spread through a large file)
  small  ~20 MB, ~50,000 chunks of 400 B  (an index interleaved with tiny chunks)
uploads them to Azurite behind a counting proxy, and references each with:
  ncrefs               (this project: the planned, adaptive reader)
  vz-block-1MiB/64KiB/4KiB  (virtualizarr's HDFParser with obspec-utils' BlockStoreReader)
  kerchunk             (SingleHdf5ToZarr over adlfs, default options)
Each run is a fresh process; it prints GET requests, bytes read, wall time, reference size,
peak RSS (the largest of the process and its parser processes), and a modelled cloud time:
GETs x 10 ms + bytes / 100 MB/s (HEADs count as requests).

    .venv/bin/python -m benchmarks.bench_virtualize [--only big|small] [--tools ncrefs,kerchunk]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
CONTAINER = "raw-netcdf"
FILES = {
    # name: (shape, chunks)
    "big": ((2400, 320, 320), (1, 320, 320)),
    "small": ((1000, 50, 100), (1, 10, 10)),
}
TOOLS = ["ncrefs", "vz-block-1MiB", "vz-block-64KiB", "vz-block-4KiB", "kerchunk"]
LATENCY_S, BANDWIDTH = 0.010, 100e6


def build(name: str) -> Path:
    import netCDF4

    shape, chunks = FILES[name]
    path = DATA / f"{name}.nc"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    rng = np.random.default_rng(0)
    with netCDF4.Dataset(partial, "w", format="NETCDF4") as nc:
        for dim, size in zip(("time", "y", "x"), shape):
            nc.createDimension(dim, size)
        nc.createVariable("time", "f8", ("time",))[:] = np.arange(shape[0])
        v = nc.createVariable("data", "f4", ("time", "y", "x"), chunksizes=chunks)
        step = max(1, (64 << 20) // (4 * shape[1] * shape[2]))
        for start in range(0, shape[0], step):
            stop = min(shape[0], start + step)
            v[start:stop] = rng.random((stop - start, shape[1], shape[2]), dtype="f4")
    partial.rename(path)
    return path


def run_one(tool: str, name: str, connection_string: str) -> dict:
    """In a fresh process: reference abfs://raw-netcdf/<name>.nc with one tool."""
    import ujson

    url = f"abfs://{CONTAINER}/{name}.nc"
    started = time.perf_counter()
    if tool == "ncrefs":
        from shared.models import ReferenceRequest
        from shared.pipeline import generate_reference
        from shared.settings import Settings
        from shared.storage import Storage

        settings = Settings(DATA_STORAGE=connection_string)
        result = generate_reference(ReferenceRequest(source=url, format="json"), settings, Storage(settings))
        refs_size = result.reference_bytes
        extra = {"plan": result.read_plan, "chunks": result.chunk_count}
    elif tool.startswith("vz-block"):
        from obspec_utils.readers import BlockStoreReader
        from obspec_utils.registry import ObjectStoreRegistry
        from obstore.store import AzureStore
        from virtualizarr.parsers import HDFParser
        from azure.storage.blob import BlobServiceClient

        block = {"1MiB": 1 << 20, "64KiB": 64 << 10, "4KiB": 4 << 10}[tool.rsplit("-", 1)[1]]
        service = BlobServiceClient.from_connection_string(connection_string)
        store = AzureStore(CONTAINER, account_name=service.account_name, account_key=service.credential.account_key,
                           endpoint=service.url.rstrip("/"), client_options={"allow_http": True})
        registry = ObjectStoreRegistry({f"abfs://{CONTAINER}": store})
        parser = HDFParser(reader_factory=lambda s, p: BlockStoreReader(s, p, block_size=block))
        manifest_store = parser(url=url, registry=registry)
        refs = manifest_store._group.to_virtual_dataset().vz.to_kerchunk(format="dict")
        refs_size = len(ujson.dumps(refs))
        extra = {}
    else:
        from kerchunk.hdf import SingleHdf5ToZarr

        refs = SingleHdf5ToZarr(url, storage_options={"connection_string": connection_string}).translate()
        refs_size = len(ujson.dumps(refs))
        extra = {}
    elapsed = time.perf_counter() - started
    from shared.sandbox import close_pools

    close_pools()  # ncrefs parses in a parser process: once it is reaped, its peak counts below
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return {"wall_s": round(elapsed, 3), "reference_bytes": refs_size, "peak_rss_mb": round(peak / 1024, 1), **extra}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(FILES), action="append")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--one", nargs=3, metavar=("TOOL", "NAME", "CONNECTION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return 0

    from azure.storage.blob import BlobServiceClient

    from benchmarks.counting_proxy import CountingProxy
    from scripts.azurite import start_azurite

    names = args.only or sorted(FILES)
    tools = args.tools.split(",")
    azurite = start_azurite()
    try:
        proxy = CountingProxy(azurite.port, CONTAINER).start()
        proxied = azurite.connection_string.replace(f":{azurite.port}/", f":{proxy.port}/")
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        service.create_container(CONTAINER)
        service.create_container("refs")
        rows = []
        for name in names:
            path = build(name)
            with open(path, "rb") as handle:
                service.get_blob_client(CONTAINER, f"{name}.nc").upload_blob(handle, overwrite=True, max_concurrency=4)
            size = path.stat().st_size
            for tool in tools:
                proxy.reset()
                done = subprocess.run([sys.executable, "-m", "benchmarks.bench_virtualize", "--one", tool, name, proxied],
                                      cwd=ROOT, capture_output=True, text=True)
                counts = proxy.reset()
                if done.returncode != 0:
                    print(f"{name} {tool}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                    continue
                measured = json.loads(done.stdout.strip().splitlines()[-1])
                requests = counts.gets + counts.heads
                rows.append({"file": name, "file_mb": round(size / 1e6, 1), "tool": tool, "gets": counts.gets,
                             "heads": counts.heads, "mb_read": round(counts.bytes_out / 1e6, 3),
                             "modelled_cloud_s": round(requests * LATENCY_S + counts.bytes_out / BANDWIDTH, 3), **measured})
        print_table(rows)
    finally:
        azurite.cleanup()
    return 0


def print_table(rows: list[dict]) -> None:
    columns = ["file", "file_mb", "tool", "gets", "heads", "mb_read", "modelled_cloud_s", "wall_s", "reference_bytes", "peak_rss_mb", "plan"]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))
    print("\nmodelled_cloud_s = (GETs + HEADs) x 10 ms + bytes read / 100 MB/s; Azurite on loopback answers in ~1 ms.")


if __name__ == "__main__":
    sys.exit(main())
