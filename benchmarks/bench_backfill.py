"""Backfill throughput: files per second for many small files, with real request latency.

Writes N small daily NetCDF4 files (tests/samples.daily: 18x36, two variables), uploads them to
Azurite behind a proxy that adds ``--latency-ms`` to every request (concurrent requests allowed),
and references all of them twice, each run in a fresh process:

  ncrefs    ``shared.backfill.backfill`` (its defaults: workers, parser processes, the per-file
            unit of work with ownership checks, error records and the STAC item)
  naive     a thread pool of ``--threads`` over virtualizarr 2.8's HDFParser (64 KiB block reader)
            + ``to_kerchunk`` + one upload per file: what a notebook would do, with none of the checks

It prints files per second, requests through the proxy, and the wall time of each.

    .venv/bin/python -m benchmarks.bench_backfill [--files 300] [--latency-ms 10] [--threads 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def naive(connection_string: str, prefix: str, threads: int) -> int:
    from concurrent.futures import ThreadPoolExecutor

    import ujson
    from azure.storage.blob import BlobServiceClient
    from obspec_utils.readers import BlockStoreReader
    from obspec_utils.registry import ObjectStoreRegistry
    from obstore.store import AzureStore
    from virtualizarr.parsers import HDFParser

    service = BlobServiceClient.from_connection_string(connection_string)
    store = AzureStore("raw-netcdf", account_name=service.account_name, account_key=service.credential.account_key,
                       endpoint=service.url.rstrip("/"), client_options={"allow_http": True})
    registry = ObjectStoreRegistry({"abfs://raw-netcdf": store})
    parser = HDFParser(reader_factory=lambda s, p: BlockStoreReader(s, p, block_size=64 << 10))
    refs_container = service.get_container_client("refs-naive")
    names = [b.name for b in service.get_container_client("raw-netcdf").list_blobs(name_starts_with=prefix)]

    def one(name: str) -> None:
        refs = parser(url=f"abfs://raw-netcdf/{name}", registry=registry)._group.to_virtual_dataset().vz.to_kerchunk(format="dict")
        refs_container.upload_blob(name.rsplit(".", 1)[0] + ".json", ujson.dumps(refs), overwrite=True)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, names))
    return len(names)


def ncrefs(connection_string: str, prefix: str) -> int:
    from shared.backfill import backfill
    from shared.settings import Settings

    summary = backfill(Settings(connection_string=connection_string), prefix=prefix, progress=False)
    assert summary.failed == 0, summary.failures[:1]
    return summary.done


def run_tool() -> None:
    tool, connection_string, prefix, threads = sys.argv[2], os.environ["BENCH_CONNECTION"], sys.argv[3], int(sys.argv[4])
    started = time.perf_counter()
    done = ncrefs(connection_string, prefix) if tool == "ncrefs" else naive(connection_string, prefix, threads)
    print(json.dumps({"files": done, "wall_s": round(time.perf_counter() - started, 2)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=10)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    from azure.storage.blob import BlobServiceClient

    from benchmarks.counting_proxy import CountingProxy, fetch_counts
    from scripts.azurite import start_azurite
    from tests import samples

    azurite = start_azurite()
    try:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        for container in ("raw-netcdf", "refs", "refs-naive"):
            service.create_container(container)
        with tempfile.TemporaryDirectory() as tmp:
            for day in range(args.files):
                path = samples.daily(Path(tmp), day)
                for prefix in ("a/", "b/"):  # one copy per tool, so neither finds the other's work done
                    service.get_blob_client("raw-netcdf", prefix + path.name).upload_blob(path.read_bytes())
            size = path.stat().st_size
        proxy = CountingProxy(azurite.port, "raw-netcdf", latency_s=args.latency_ms / 1000).start()
        proxied = azurite.connection_string.replace(f":{azurite.port}/", f":{proxy.port}/")
        print(f"{args.files} files of {size:,} bytes; Azurite behind {args.latency_ms:g} ms per request; "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'tool':8} {'files/s':>8} {'wall s':>7} {'requests':>9}")
        for tool, prefix in (("ncrefs", "a/"), ("naive", "b/")):
            before = fetch_counts(proxy.port)
            done = subprocess.run([sys.executable, "-m", "benchmarks.bench_backfill", "--run", tool, prefix, str(args.threads)],
                                  cwd=ROOT, env={**os.environ, "BENCH_CONNECTION": proxied}, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            after = fetch_counts(proxy.port)
            requests = sum(getattr(after, k) - getattr(before, k) for k in ("gets", "heads", "other"))
            print(f"{tool:8} {figures['files'] / figures['wall_s']:8.1f} {figures['wall_s']:7.1f} {requests:9d}")
    finally:
        azurite.cleanup()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--run":
        run_tool()
    else:
        main()
