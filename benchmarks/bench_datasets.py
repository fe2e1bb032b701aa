"""Datasets at CMIP6 scale: building one from per-file references, opening it, adding a file.

What it measures, on N daily NetCDF files shaped like CMIP6 output (one day each of a
180 x 360 float32 ``tas`` and ``pr``, chunks (1, 180, 360), zlib; time in "days since
2000-01-01"), uploaded to Azurite under ``raw-netcdf/tas/``:

  reference    backfill: one per-file reference per file (what a dataset is built from)
  build        ``shared.datasets.create(..., outputs=["icechunk", "parquet"])``: checks the
               per-file references are current, combines them, writes both outputs
  build (ice)  the same over the same prefix with outputs=["icechunk"] only
  open         until the lazy ``xarray.Dataset`` is returned, then separately one time step of
               ``tas`` loaded (``.isel(time=-1).load()``), for (a) the Icechunk output
               (``ncrefs.open_dataset(name)``), (b) the Parquet output (``ncrefs.open_dataset(url)``)
               and (c) ``xr.open_mfdataset`` over the original NetCDF blobs through adlfs
               (engine h5netcdf, combine="by_coords"); the three loaded steps must be equal
  add 1 file   one more file as the blob trigger handles it (``reference_created_blob``): its
               reference, then every dataset holding it updated (an append), at two sizes,
               N/4 and N files, each with an Icechunk+Parquet and an Icechunk-only dataset

The model: every client (ncrefs's Storage, obstore, adlfs, icechunk) talks to Azurite through a
loopback proxy (``benchmarks/counting_proxy.py``) that holds every request ``--latency-ms``
(default 10 ms, a same-region cloud round trip) before forwarding it, without holding up the
others, and counts them. Bandwidth is loopback's (not modelled). Each phase runs in a fresh
child process (``--phase``), so its peak RSS (the largest of the process and its parser
processes) is its own; imports are done before the clock starts (a warm Functions host or a
notebook has them); the blob trigger's parser process is warmed first, as on a warm host.
Uploads go straight to Azurite and are not timed.

    .venv/bin/python -m benchmarks.bench_datasets [--files 365] [--latency-ms 10]

Files are generated once into benchmarks/data/daily_180x360/ and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data" / "daily_180x360"
SOURCE = "raw-netcdf"
PREFIX = "tas/"  # N files: datasets "tas-daily" (Icechunk + Parquet) and "tas-icechunk"
QUARTER = "quarter/"  # N/4 files: datasets "quarter-daily" and "quarter-icechunk"
NLAT, NLON = 180, 360
# Environment of the phase processes
ENV_CONNECTION, ENV_PROXY_PORT, ENV_WORK = "BENCH_CONNECTION", "BENCH_PROXY_PORT", "BENCH_WORK"


# -- the files --------------------------------------------------------------------------------------
def daily_name(day: int) -> str:
    return f"tas_day_{day:04d}.nc"


def daily_file(day: int) -> Path:
    """One day of a CMIP6-like daily series (as tests/samples.py ``daily``, at 180 x 360): tas and pr,
    chunks (1, 180, 360), zlib; written once and reused."""
    import xarray as xr

    path = DATA / daily_name(day)
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(day)
    lat = np.linspace(-89.5, 89.5, NLAT)
    lon = np.arange(NLON) + 0.5
    season = np.sin(2 * np.pi * day / 365.0)
    field = (250 + 40 * np.cos(np.deg2rad(lat))[:, None] + 10 * season * np.sin(np.deg2rad(lat))[:, None]
             + 3 * np.sin(np.deg2rad(lon))[None, :])
    tas = (field + rng.normal(0, 2, (NLAT, NLON)))[None].astype("f4")
    pr = rng.gamma(0.5, 4e-5, (1, NLAT, NLON)).astype("f4")
    dataset = xr.Dataset(
        {"tas": (("time", "lat", "lon"), tas, {"units": "K", "long_name": "near-surface air temperature"}),
         "pr": (("time", "lat", "lon"), pr, {"units": "kg m-2 s-1"})},
        coords={"time": ("time", np.array([float(day)]), {"units": "days since 2000-01-01", "calendar": "standard",
                                                           "standard_name": "time"}),
                "lat": ("lat", lat, {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"})},
        attrs={"title": "daily sample 180x360", "Conventions": "CF-1.8"},
    )
    encoding = {v: {"chunksizes": (1, NLAT, NLON), "zlib": True} for v in ("tas", "pr")}
    encoding["time"] = {"dtype": "f8"}
    partial = path.with_suffix(".partial")
    dataset.to_netcdf(partial, engine="h5netcdf", encoding=encoding)
    partial.rename(path)
    return path


def upload(service, paths: list[Path], prefix: str) -> None:
    """Straight to Azurite (not through the proxy), not timed."""
    def one(path: Path) -> None:
        with open(path, "rb") as handle:
            service.get_blob_client(SOURCE, prefix + path.name).upload_blob(handle, overwrite=True)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, paths))


# -- phases (each in its own process) -----------------------------------------------------------------
def _requests(port: int) -> tuple[int, int]:
    """(all requests, source-blob requests) through the proxy so far."""
    from benchmarks.counting_proxy import fetch_counts

    counts = fetch_counts(port)
    return counts.gets + counts.heads + counts.other, counts.gets + counts.heads


def _peak_mb() -> float:
    return round(max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024, 1)


def run_phase(args) -> dict:
    connection, port, work = os.environ[ENV_CONNECTION], int(os.environ[ENV_PROXY_PORT]), Path(os.environ[ENV_WORK])
    # Imports first, off the clock.
    import adlfs  # noqa: F401
    import dask.array  # noqa: F401
    import fsspec
    import h5netcdf  # noqa: F401
    import icechunk  # noqa: F401
    import virtualizarr  # noqa: F401
    import xarray as xr
    import zarr  # noqa: F401

    import ncrefs
    from shared import datasets
    from shared.opener import open_dataset  # noqa: F401
    from shared.sandbox import close_pools
    from shared.settings import Settings
    from shared.storage import Storage

    settings = Settings(connection_string=connection)
    storage = Storage(settings)
    out: dict = {}
    if args.phase == "backfill":
        from shared.backfill import backfill

        before = _requests(port)
        started = time.perf_counter()
        summary = backfill(settings, prefix=args.prefix, progress=False)
        out["wall_s"] = time.perf_counter() - started
        out["notes"] = f"{summary.done} referenced, {summary.failed} failed"
        assert summary.failed == 0, summary.failures[:3]
    elif args.phase == "create":
        before = _requests(port)
        started = time.perf_counter()
        change = datasets.create(settings, storage, args.name, prefix=args.prefix, outputs=args.outputs.split(","))
        out["wall_s"] = time.perf_counter() - started
        out["notes"] = f"{change.action}, {change.members} members"
        assert change.action == "created" and not change.refused, change
    elif args.phase == "open":
        url = f"{SOURCE}/{args.prefix}"
        if args.how == "parquet":  # looked up off the clock: a user has the URL
            url = datasets.show(settings, storage, args.name, snapshots=1).outputs["parquet"]
        before = _requests(port)
        started = time.perf_counter()
        if args.how == "icechunk":
            ds = ncrefs.open_dataset(args.name, connection_string=connection)
        elif args.how == "parquet":
            ds = ncrefs.open_dataset(url, connection_string=connection)
        else:  # what a user does with the originals
            files = fsspec.open_files(f"abfs://{SOURCE}/{args.prefix}*.nc", "rb", connection_string=connection)
            ds = xr.open_mfdataset([f.open() for f in files], engine="h5netcdf", combine="by_coords")
        out["open_s"] = time.perf_counter() - started
        opened = _requests(port)
        out["open_requests"], out["open_source_requests"] = opened[0] - before[0], opened[1] - before[1]
        out["open_peak_rss_mb"] = _peak_mb()
        started = time.perf_counter()
        step = ds.tas.isel(time=-1).load()
        out["load_s"] = time.perf_counter() - started
        out["wall_s"] = out["open_s"] + out["load_s"]
        np.save(work / f"step-{args.how}.npy", step.values)
        out["time"] = str(step.time.values)
        out["steps"] = ds.sizes["time"]
    elif args.phase == "add":
        from shared.datasets import service
        from shared.events import reference_created_blob

        # A warm host: a parser process already running (a scan writes nothing).
        ncrefs.scan(f"{SOURCE}/{args.prefix}{daily_name(0)}", connection_string=connection)
        per_dataset = {}
        add_member = service.add_member

        def counted(settings, storage, definition, source, result):  # requests of each dataset's update
            start = _requests(port)
            try:
                return add_member(settings, storage, definition, source, result)
            finally:
                per_dataset[definition.name] = _requests(port)[0] - start[0]

        service.add_member = counted
        before = _requests(port)
        started = time.perf_counter()
        outcome = reference_created_blob(SOURCE, args.prefix + args.blob, settings, storage)
        out["wall_s"] = time.perf_counter() - started
        assert outcome.action == "referenced", outcome
        out["datasets"] = [{"name": c.name, "action": c.action, "members": c.members, "elapsed_s": c.elapsed_s,
                            "requests": per_dataset.get(c.name)} for c in outcome.datasets]
        out["reference_s"] = outcome.result.elapsed_s
    else:
        raise SystemExit(f"unknown phase {args.phase}")
    after = _requests(port)
    out["requests"], out["source_requests"] = after[0] - before[0], after[1] - before[1]
    close_pools()  # parser processes reaped, so their peak counts below
    out["peak_rss_mb"] = _peak_mb()
    return out


def phase(env: dict, *arguments: str, timeout: float = 3600) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_datasets", "--phase", *arguments], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"phase {' '.join(arguments)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the driver ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=365)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    for hidden in ("--prefix", "--name", "--outputs", "--how", "--blob"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(run_phase(args)))
        return 0

    from azure.storage.blob import BlobServiceClient

    from benchmarks.counting_proxy import CountingProxy
    from scripts.azurite import start_azurite

    n = args.files
    quarter = max(2, n // 4)
    started = time.perf_counter()
    paths = [daily_file(day) for day in range(n + 1)]  # the last one arrives later
    print(f"{len(paths)} files ready in {DATA} ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    file_mb = np.mean([p.stat().st_size for p in paths]) / 1e6

    azurite = start_azurite()
    work = Path(tempfile.mkdtemp(prefix="bench-datasets-"))
    rows: list[dict] = []
    try:
        proxy = CountingProxy(azurite.port, SOURCE, latency_s=args.latency_ms / 1000).start()
        proxied = azurite.connection_string.replace(f":{azurite.port}/", f":{proxy.port}/")
        assert proxied != azurite.connection_string
        env = {**os.environ, ENV_CONNECTION: proxied, ENV_PROXY_PORT: str(proxy.port), ENV_WORK: str(work)}
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        service.create_container(SOURCE)
        upload(service, paths[:n], PREFIX)
        upload(service, paths[:quarter], QUARTER)

        def row(name: str, result: dict, notes: str = "", wall: str = "wall_s", requests: str = "requests",
                rss: str = "peak_rss_mb") -> dict:
            entry = {"phase": name, "wall_s": result[wall], "requests": result[requests], "peak_rss_mb": result[rss],
                     "notes": notes}
            rows.append(entry)
            print(f"  {name}: {result[wall]:.2f} s, {result[requests]} requests", file=sys.stderr)
            return entry

        def say(text: str) -> None:
            print(text, file=sys.stderr)

        say(f"reference {n} files (backfill)...")
        reference = phase(env, "backfill", "--prefix", PREFIX)
        row(f"reference {n} files (backfill, per-file refs)", reference, reference["notes"] + "; not part of the build")
        say("build tas-daily (icechunk + parquet)...")
        build = phase(env, "create", "--name", "tas-daily", "--prefix", PREFIX, "--outputs", "icechunk,parquet")
        row(f"build {n}-file dataset: Icechunk + Parquet", build,
            build["notes"] + f"; {build['source_requests']} requests to the NetCDF files")
        say("build tas-icechunk (icechunk only)...")
        build_ice = phase(env, "create", "--name", "tas-icechunk", "--prefix", PREFIX, "--outputs", "icechunk")
        row(f"build {n}-file dataset: Icechunk only", build_ice,
            build_ice["notes"] + f"; {build_ice['source_requests']} requests to the NetCDF files")

        opens = {}
        for how, label in (("icechunk", "Icechunk (ncrefs.open_dataset(name))"),
                           ("parquet", "Parquet (ncrefs.open_dataset(url))"),
                           ("mfdataset", "xr.open_mfdataset, adlfs, h5netcdf")):
            say(f"open {how}...")
            opens[how] = result = phase(env, "open", "--how", how, "--name", "tas-daily", "--prefix", PREFIX)
            result["load_requests"] = result["requests"] - result["open_requests"]
            row(f"open {label}", result, f"lazy Dataset, {result['steps']} steps", wall="open_s",
                requests="open_requests", rss="open_peak_rss_mb")
            cached = "; 0 requests: adlfs cached each whole file while opening" if not result["load_requests"] else ""
            row(f"load tas[time=-1] {how}", result, f"one step ({NLAT}x{NLON}); RSS: open + load{cached}", wall="load_s",
                requests="load_requests")
        steps = {how: np.load(work / f"step-{how}.npy") for how in opens}
        import xarray as xr

        with xr.open_dataset(paths[n - 1], engine="h5netcdf") as local:
            expected = local.tas.isel(time=-1).values
        for how, values in steps.items():
            assert np.array_equal(values, expected), f"{how}: the last step differs from the file's"
            assert opens[how]["time"] == opens["icechunk"]["time"], (how, opens[how]["time"])
            assert opens[how]["steps"] == n, (how, opens[how]["steps"])
        say("the three agree on the last step")

        adds = {}
        for size, prefix, names in ((quarter, QUARTER, ("quarter-daily", "quarter-icechunk")),
                                    (n, PREFIX, ("tas-daily", "tas-icechunk"))):
            if prefix == QUARTER:  # set-up of the smaller datasets, reported as such
                say(f"set up {size}-file datasets...")
                r = phase(env, "backfill", "--prefix", QUARTER)
                row(f"(set-up) reference {size} files", r, r["notes"])
                r = phase(env, "create", "--name", names[0], "--prefix", QUARTER, "--outputs", "icechunk,parquet")
                row(f"(set-up) build {size}-file dataset: Icechunk + Parquet", r, r["notes"])
                r = phase(env, "create", "--name", names[1], "--prefix", QUARTER, "--outputs", "icechunk")
                row(f"(set-up) build {size}-file dataset: Icechunk only", r, r["notes"])
            upload(service, [paths[size]], prefix)
            say(f"add one file to {size}...")
            result = phase(env, "add", "--prefix", prefix, "--blob", paths[size].name)
            adds[size] = result
            changes = {c["name"]: c for c in result["datasets"]}
            assert set(changes) == set(names), changes
            for name in names:
                assert changes[name]["action"] == "appended" and changes[name]["members"] == size + 1, changes[name]
            notes = "; ".join(f"{c['name']} {c['action']} in {c['elapsed_s']:.2f} s ({c['requests']} req)"
                              for c in result["datasets"])
            row(f"add 1 file to {size} (blob trigger, warm)", result,
                f"its reference {result['reference_s']:.2f} s; {notes}")
    finally:
        azurite.cleanup()

    print()
    print(f"Setup: N = {n} daily files (+1 added), each {NLAT}x{NLON} float32 tas + pr, chunks (1,{NLAT},{NLON}), zlib, "
          f"{file_mb:.2f} MB per file ({file_mb * n:.0f} MB in all); Azurite on loopback behind a proxy adding "
          f"{args.latency_ms:g} ms to every request (concurrent); add-one-file at N/4 = {quarter} and N = {n}.")
    print()
    print("| phase | wall s | requests | peak RSS MB | notes |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['phase']} | {r['wall_s']:.2f} | {r['requests']} | {r['peak_rss_mb']:.0f} | {r['notes']} |")
    print()
    mf = opens["mfdataset"]
    for how in ("icechunk", "parquet"):
        o = opens[how]
        print(f"- open_mfdataset / {how}: open {mf['open_s'] / o['open_s']:.1f}x, load one step "
              f"{mf['load_s'] / o['load_s']:.1f}x, open + load {mf['wall_s'] / o['wall_s']:.1f}x "
              f"(goal: at least 20x for open)")
    print("- add one file, per dataset update (elapsed_s):")
    for size, result in adds.items():
        print(f"  - {size} files: trigger {result['wall_s']:.2f} s; " + "; ".join(
            f"{c['name']} {c['elapsed_s']:.2f} s" for c in result["datasets"]))
    small, big = adds[quarter], adds[n]
    for position in range(2):
        a = next(c for c in small["datasets"] if c["name"].endswith(("daily", "icechunk")[position]))
        b = next(c for c in big["datasets"] if c["name"].endswith(("daily", "icechunk")[position]))
        kind = ("Icechunk + Parquet", "Icechunk only")[position]
        print(f"  - {kind}: {b['elapsed_s'] / a['elapsed_s']:.1f}x the time for {n / quarter:.0f}x the files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
