"""ncrefs against virtualizarr and kerchunk, behind a proxy that adds cloud latency (issue 12).

The files (built once into benchmarks/data/, git-ignored, and reused):
  nc4-1gb      ~1 GB NetCDF4, 2,400 chunks of 400 KB (a chunk index spread through a large file)
  chunks-50k   ~23 MB NetCDF4, 50,000 chunks of 400 B (an index interleaved with tiny chunks)
  nc3-records  ~1 GB NetCDF3 classic, 1,300 records of an unlimited `time`, 5 record variables
               (float32, 200 x 200 per record) and the `time` coordinate (one 8-byte piece per record)
  cmip6        a CMIP6-shaped NetCDF4 file: tas (365, 180, 360) float32, chunks (1, 180, 360), zlib,
               time/lat/lon with their bounds, time unlimited
  chunks-1m    NetCDF4, one variable of 1,000,000 written chunks ((100, 1000, 1000) float32, chunks
               (1, 10, 10), zlib of one value per chunk: ~94 MB, half of it the chunk index)
  chunks-5m    (--with-5m) the same with 5,000,000 chunks; ncrefs only
The tools, each in a fresh process, one after the other:
  ncrefs        this project: shared.pipeline.generate_reference, REFERENCE_FORMAT left to "auto"
  virtualizarr  virtualizarr's HDFParser (NetCDF3Parser for NetCDF3) over obspec-utils' BlockStoreReader,
                64 KiB blocks; its manifests (ManifestGroup.to_virtual_dataset, fully virtual: no
                coordinate read) .vz.to_kerchunk(format="dict"), json-encoded
  kerchunk      kerchunk's defaults over adlfs: SingleHdf5ToZarr (NetCDF3ToZarr for NetCDF3), json-encoded
  on request with --tools: vz-coords (virtualizarr's public ManifestStore.to_virtual_dataset(): the
  dimension coordinates loaded and copied into the reference, as ncrefs does), and
  vz-block-1MiB, vz-block-4KiB (virtualizarr with other block sizes)

Azurite runs behind benchmarks/counting_proxy.py, which holds every request --latency-ms (default
10 ms) without holding up the others, and counts the requests for the source blobs, their bytes,
their round-trip waves (a wave: a request arriving while none is in flight), rounds (the longest
chain of requests each arriving after the one before had finished: ~N/K for N requests K at a
time) and the most in flight at once. Each tool first references a tiny file in another container
(imports, parser process, connections warm, as on a warm host; not counted), then the timed file. Per (file, tool) it prints:
wall time around the tool's call, ncrefs's own elapsed_s, GETs, HEADs, waves, rounds, max in flight, MB
read, the requests ncrefs makes besides its reads (writing the reference, the STAC item), peak RSS
(the largest of the process and its children: ncrefs parses in a child process), the reference's
size, its chunk references, and a modelled cloud time = rounds x latency + bytes / 100 MB/s.
Then the issue's targets for ncrefs as PASS/FAIL lines, and the machine's load.

    .venv/bin/python -m benchmarks.bench_virtualize [--only nc4-1gb --only cmip6] [--tools ncrefs,kerchunk]
        [--latency-ms 10] [--timeout 600] [--with-5m] [--json rows.json] [--markdown] [--extra-path DIR]
    .venv/bin/python -m benchmarks.bench_virtualize --check     # the proxy's counts on known requests
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
CONTAINER = "raw-netcdf"  # the watched container: only its requests are counted
WARMUP = "warmup"  # tiny files each tool references first, not counted
BANDWIDTH = 100e6  # bytes/s, for the model
TOOLS = ["ncrefs", "virtualizarr", "kerchunk"]
MORE_TOOLS = ["vz-coords", "vz-block-1MiB", "vz-block-4KiB"]
BLOCKS = {"virtualizarr": 64 << 10, "vz-coords": 64 << 10, "vz-block-1MiB": 1 << 20, "vz-block-4KiB": 4 << 10}
# The other benchmark's earlier names of two of the files: reused (hard-linked) instead of rebuilt.
OLD_NAMES = {"nc4-1gb": "big.nc", "chunks-50k": "small.nc"}


# -- the files --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # "hdf5" or "nc3"
    build: Callable[[Path], None]
    chunks: int | None = None  # written chunks of the main variable, checked with h5py after a build
    tools: tuple[str, ...] | None = None  # only these tools (None: any)
    env: tuple[tuple[str, str], ...] = ()  # settings for ncrefs on this file


def _random_nc4(shape, chunks) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        import netCDF4

        rng = np.random.default_rng(0)
        with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
            for dim, size in zip(("time", "y", "x"), shape):
                nc.createDimension(dim, size)
            nc.createVariable("time", "f8", ("time",))[:] = np.arange(shape[0])
            v = nc.createVariable("data", "f4", ("time", "y", "x"), chunksizes=chunks)
            step = max(1, (64 << 20) // (4 * shape[1] * shape[2]))
            for start in range(0, shape[0], step):
                stop = min(shape[0], start + step)
                v[start:stop] = rng.random((stop - start, shape[1], shape[2]), dtype="f4")
    return build


def _many_chunks(steps: int) -> Callable[[Path], None]:
    """(steps, 1000, 1000) float32 in chunks of (1, 10, 10): 10,000 chunks a step, every one written;
    zlib over smooth values keeps each chunk ~20 bytes, so the file is mostly its chunk index."""
    def build(path: Path) -> None:
        import netCDF4

        with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
            nc.createDimension("time", steps)
            nc.createDimension("y", 1000)
            nc.createDimension("x", 1000)
            v = nc.createVariable("data", "f4", ("time", "y", "x"), chunksizes=(1, 10, 10), zlib=True, complevel=1)
            ramp = (np.arange(1000, dtype="f4")[:, None] // 10 + np.arange(1000, dtype="f4")[None, :] // 10)
            for t in range(steps):
                v[t] = ramp + t  # each chunk one value: written, not left to the fill value
    return build


def _nc3_records(path: Path, records: int = 1300, ny: int = 200, nx: int = 200) -> None:
    import netCDF4

    names = ("tas", "pr", "psl", "uas", "vas")
    rng = np.random.default_rng(3)
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("time", None)
        nc.createDimension("y", ny)
        nc.createDimension("x", nx)
        time_var = nc.createVariable("time", "f8", ("time",))
        time_var.units, time_var.calendar, time_var.standard_name = "hours since 2000-01-01", "standard", "time"
        nc.createVariable("y", "f4", ("y",))[:] = np.arange(ny)
        nc.createVariable("x", "f4", ("x",))[:] = np.arange(nx)
        variables = [nc.createVariable(name, "f4", ("time", "y", "x")) for name in names]
        step = 20  # records a slab: 5 x 3.2 MB in memory
        for start in range(0, records, step):
            stop = min(records, start + step)
            time_var[start:stop] = np.arange(start, stop) * 6.0
            for v in variables:
                v[start:stop] = rng.random((stop - start, ny, nx), dtype="f4")


def _cmip6(path: Path, days: int = 365, nlat: int = 180, nlon: int = 360) -> None:
    import netCDF4

    rng = np.random.default_rng(6)
    lat = np.linspace(-89.5, 89.5, nlat)
    lon = np.arange(nlon) + 0.5
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncatts({"Conventions": "CF-1.7 CMIP-6.2", "activity_id": "CMIP", "experiment_id": "historical",
                      "frequency": "day", "source_id": "SYNTH-1", "table_id": "day", "variable_id": "tas",
                      "variant_label": "r1i1p1f1", "grid_label": "gn", "nominal_resolution": "100 km"})
        nc.createDimension("time", None)
        nc.createDimension("lat", nlat)
        nc.createDimension("lon", nlon)
        nc.createDimension("bnds", 2)
        t = nc.createVariable("time", "f8", ("time",))
        t.setncatts({"units": "days since 1850-01-01", "calendar": "noleap", "standard_name": "time",
                     "axis": "T", "bounds": "time_bnds"})
        tb = nc.createVariable("time_bnds", "f8", ("time", "bnds"))
        for name, values, units in (("lat", lat, "degrees_north"), ("lon", lon, "degrees_east")):
            c = nc.createVariable(name, "f8", (name,))
            c.setncatts({"units": units, "standard_name": {"lat": "latitude", "lon": "longitude"}[name],
                         "axis": name[1].upper() if name == "lat" else "X", "bounds": f"{name}_bnds"})
            c[:] = values
            nc.createVariable(f"{name}_bnds", "f8", (name, "bnds"))[:] = np.stack([values - 0.5, values + 0.5], axis=1)
        tas = nc.createVariable("tas", "f4", ("time", "lat", "lon"), chunksizes=(1, nlat, nlon), zlib=True,
                                fill_value=np.float32(1e20))
        tas.setncatts({"standard_name": "air_temperature", "long_name": "Near-Surface Air Temperature",
                       "units": "K", "cell_methods": "area: time: mean", "coordinates": "height"})
        height = nc.createVariable("height", "f8", ())
        height.setncatts({"units": "m", "axis": "Z", "positive": "up", "standard_name": "height"})
        height.assignValue(2.0)
        base = 250 + 40 * np.cos(np.deg2rad(lat))[:, None] + 3 * np.sin(np.deg2rad(lon))[None, :]
        start_day = 60225.0  # 2015-01-01 in a 365-day calendar from 1850
        for start in range(0, days, 73):
            stop = min(days, start + 73)
            day = np.arange(start, stop)
            season = np.sin(2 * np.pi * day / 365.0)[:, None, None] * 10 * np.sin(np.deg2rad(lat))[None, :, None]
            tas[start:stop] = (base[None] + season + rng.normal(0, 2, (stop - start, nlat, nlon))).astype("f4")
            t[start:stop] = start_day + day + 0.5
            tb[start:stop] = np.stack([start_day + day, start_day + day + 1], axis=1)


def _tiny_nc4(path: Path) -> None:
    # CF-shaped (time units and calendar, bounds): a warm host has decoded times before
    _cmip6(path, days=4, nlat=6, nlon=12)


def _tiny_nc3(path: Path) -> None:
    _nc3_records(path, records=4, ny=10, nx=10)


FILES = {spec.name: spec for spec in (
    Spec("nc4-1gb", "hdf5", _random_nc4((2400, 320, 320), (1, 320, 320)), chunks=2400),
    Spec("chunks-50k", "hdf5", _random_nc4((1000, 50, 100), (1, 10, 10)), chunks=50_000),
    Spec("nc3-records", "nc3", _nc3_records),
    Spec("cmip6", "hdf5", _cmip6, chunks=365),
    Spec("chunks-1m", "hdf5", _many_chunks(100), chunks=1_000_000),
)}
# 5 million chunks is beyond the default MAX_CHUNKS (2M) and MAX_READ_MB (256: its index is ~240 MB):
# raised for this file; PARSE_MEMORY_MB at the 2 GB instance's size, to see the peak rather than a refusal.
FIVE_M = Spec("chunks-5m", "hdf5", _many_chunks(500), chunks=5_000_000, tools=("ncrefs",),
              env=(("MAX_CHUNKS", "6000000"), ("MAX_READ_MB", "1024"), ("PARSE_MEMORY_MB", "2048")))
WARMUPS = {"hdf5": ("tiny-cf.nc", _tiny_nc4), "nc3": ("tiny3.nc", _tiny_nc3)}


def build(name: str, builder: Callable[[Path], None], chunks: int | None = None) -> Path:
    path = DATA / name
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    old = DATA / OLD_NAMES.get(path.stem, "-")
    if old.is_file():
        os.link(old, path)
        return path
    partial = path.with_suffix(".partial")
    started = time.perf_counter()
    print(f"building {path} ...", file=sys.stderr, flush=True)
    builder(partial)
    if chunks is not None:
        import h5py

        with h5py.File(partial, "r") as f:
            main = max((v for v in f.values() if isinstance(v, h5py.Dataset) and v.chunks), key=lambda v: v.size)
            written = main.id.get_num_chunks()
        if written != chunks:
            raise RuntimeError(f"{partial}: {main.name} has {written:,} chunks written, expected {chunks:,}")
    partial.rename(path)
    print(f"  built in {time.perf_counter() - started:.0f} s, {path.stat().st_size / 1e6:.1f} MB", file=sys.stderr)
    return path


# -- one tool on one file, in a fresh process ----------------------------------------------------------
def _chunk_keys(refs: dict) -> int:
    return sum(1 for key in refs if not key.rsplit("/", 1)[-1].startswith(".z"))


def _inline_coordinates(refs: dict) -> str:
    """Which dimension coordinates the reference holds itself (a reader reads the others from the
    source at every open: for a NetCDF3 record coordinate, one request per record)."""
    copied, pointed = [], []
    for key, value in refs.items():
        if not key.endswith("/.zattrs"):
            continue
        name = key[: -len("/.zattrs")]
        attrs = json.loads(value) if isinstance(value, str) else value
        if "/" in name or attrs.get("_ARRAY_DIMENSIONS") != [name]:
            continue
        chunks = [v for k, v in refs.items() if k.startswith(name + "/") and not k.rsplit("/", 1)[-1].startswith(".z")]
        (copied if all(isinstance(v, str) for v in chunks) else pointed).append(name)
    parts = []
    if copied:
        parts.append("coords copied: " + ",".join(sorted(copied)))
    if pointed:
        parts.append("coords by ref: " + ",".join(sorted(pointed)))
    return "; ".join(parts)


def _tool_call(tool: str, kind: str, connection: str) -> Callable[[str], dict]:
    """Everything imported and set up (off the clock); the returned call references one URL."""
    import ujson

    if tool == "ncrefs":
        from shared.models import ReferenceRequest
        from shared.pipeline import generate_reference
        from shared.settings import Settings
        from shared.storage import Storage

        settings = Settings(DATA_STORAGE=connection)
        storage = Storage(settings)

        def call(url: str) -> dict:
            result = generate_reference(ReferenceRequest(source=url), settings, storage)
            return {"result": result}
        return call

    if tool in BLOCKS:
        from functools import partial

        from azure.storage.blob import BlobServiceClient
        from obspec_utils.readers import BlockStoreReader
        from obspec_utils.registry import ObjectStoreRegistry
        from obstore.store import AzureStore

        block = BLOCKS[tool]
        service = BlobServiceClient.from_connection_string(connection)
        stores = {container: AzureStore(container, account_name=service.account_name,
                                        account_key=service.credential.account_key, endpoint=service.url.rstrip("/"),
                                        client_options={"allow_http": True}) for container in (CONTAINER, WARMUP)}
        registry = ObjectStoreRegistry({f"abfs://{c}": s for c, s in stores.items()})
        if kind == "nc3":
            import virtualizarr.parsers.netcdf3 as netcdf3
            from virtualizarr.parsers import NetCDF3Parser

            # NetCDF3Parser takes no reader factory: its module's BlockStoreReader gets the block size.
            netcdf3.BlockStoreReader = partial(BlockStoreReader, block_size=block)
            parser = NetCDF3Parser()
        else:
            from virtualizarr.parsers import HDFParser

            parser = HDFParser(reader_factory=lambda store, path: BlockStoreReader(store, path, block_size=block))

        def call(url: str) -> dict:
            manifest_store = parser(url=url, registry=registry)
            if tool == "vz-coords":  # the public way: opens the store with xarray, loads the dimension coordinates
                virtual = manifest_store.to_virtual_dataset()
            else:  # the parser's manifests only (ManifestStore.to_virtual_dataset reads every dimension
                # coordinate even with loadable_variables=[]: it opens the store with xarray first)
                virtual = manifest_store._group.to_virtual_dataset()
            refs = virtual.vz.to_kerchunk(format="dict")
            return {"refs": refs, "reference_bytes": len(ujson.dumps(refs))}
        return call

    if tool == "kerchunk":
        options = {"connection_string": connection}
        if kind == "nc3":
            from kerchunk.netCDF3 import NetCDF3ToZarr as translator
        else:
            from kerchunk.hdf import SingleHdf5ToZarr as translator

        def call(url: str) -> dict:
            refs = translator(url, storage_options=options).translate()
            return {"refs": refs, "reference_bytes": len(ujson.dumps(refs))}
        return call
    raise SystemExit(f"unknown tool {tool!r}")


def run_one(job: dict) -> dict:
    """Warm up on a tiny file, then reference the file; the counts of the timed call only."""
    from benchmarks.counting_proxy import fetch_counts

    tool, kind, connection, port = job["tool"], job["kind"], job["connection"], job["port"]
    call = _tool_call(tool, kind, connection)
    warm = call(f"abfs://{WARMUP}/{WARMUPS[kind][0]}")
    if tool == "ncrefs" and warm["result"].status != "success":
        raise RuntimeError(f"warm-up failed: {warm['result']}")
    before = fetch_counts(port)
    cpu_started = time.process_time()
    started = time.perf_counter()
    done = call(f"abfs://{CONTAINER}/{job['name']}.nc")
    wall = time.perf_counter() - started
    tool_cpu = time.process_time() - cpu_started
    after = fetch_counts(port)
    out = {"wall_s": round(wall, 3), "tool_cpu_s": round(tool_cpu, 2), "other_requests": after.other - before.other,
           "child_gets": after.gets - before.gets, "child_heads": after.heads - before.heads}
    from shared.sandbox import close_pools

    close_pools()  # ncrefs's parser processes reaped: their peak counts below
    own, children = (resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    out.update(peak_rss_mb=round(max(own, children), 1), rss_self_mb=round(own, 1), rss_children_mb=round(children, 1))
    if tool == "ncrefs":
        result = done["result"]
        out.update(elapsed_s=result.elapsed_s, plan=result.read_plan, chunks=result.chunk_count, format=result.format,
                   reference_bytes=result.reference_bytes)
        if result.format != "json":
            out["notes"] = f"{result.format}: not read back"
        else:  # read back, off the clock, to see what it copied
            from shared.paths import parse_location
            from shared.settings import Settings
            from shared.storage import Storage

            try:
                data, _ = Storage(Settings(DATA_STORAGE=connection)).get(parse_location(result.output))
                out["notes"] = _inline_coordinates(json.loads(data)["refs"])
            except Exception as error:  # noqa: BLE001 - a note only
                out["notes"] = f"reference not read back ({type(error).__name__})"
    else:
        refs = done["refs"]["refs"]
        out.update(chunks=_chunk_keys(refs), format="json", reference_bytes=done["reference_bytes"],
                   notes=_inline_coordinates(refs))
    return out


# -- the driver ------------------------------------------------------------------------------------
def _short(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.startswith(("File ", "^", "~")) and line != "Traceback (most recent call last):":
            return line[:160]
    return "no output"


def _group_rss_mb(group: int) -> float:
    """The resident memory now of every process in this process group, summed."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:  # pgrp
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # rss, in pages
        except (OSError, IndexError, ValueError):
            continue
    return total / (1 << 20)


def _run_child(job: dict, env: dict, timeout: float) -> dict:
    """The tool in a fresh process (its own process group: a timeout ends it and its parser processes).
    Meanwhile the group's resident memory is sampled every 0.2 s: its peak is the sum of the process
    and its parser processes at one moment, and is known even for a run that fails or times out."""
    import threading

    process = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_virtualize", "--one", json.dumps(job)], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], _group_rss_mb(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop.set()
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return {"failed": f"timed out after {timeout:g} s (peak RSS seen: {peak[0]:.0f} MB, all its processes)",
                "rss_sum_mb": round(peak[0], 1)}
    finally:
        stop.set()
        sampler.join()
    seen = {"rss_sum_mb": round(peak[0], 1)}
    if process.returncode != 0:
        if process.returncode < 0:
            return {"failed": f"killed by signal {-process.returncode}: {_short(stderr)}", **seen}
        return {"failed": _short(stderr), "stderr": stderr[-3000:], **seen}
    try:
        return {**json.loads(stdout.strip().splitlines()[-1]), **seen}
    except (IndexError, ValueError):
        return {"failed": f"no result: {_short(stderr)}", **seen}


def _server_cpu(azurite_pid: int) -> tuple[float, float]:
    """CPU seconds so far of Azurite and of this process (the proxy's thread: the main one only waits)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    try:
        fields = Path(f"/proc/{azurite_pid}/stat").read_text().rsplit(")", 1)[1].split()
        azurite = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, IndexError, ValueError):
        azurite = 0.0
    return azurite, own.ru_utime + own.ru_stime


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}, {len(os.sched_getaffinity(0))} CPUs (nproc)"


def check_proxy(service, connection: str, proxy, latency_s: float) -> tuple[list[str], str]:
    """Known requests through the proxy, and what it must have counted: the problems found, and a summary."""
    from concurrent.futures import ThreadPoolExecutor

    from azure.storage.blob import BlobClient

    payload = bytes(range(256)) * 4096  # 1 MiB
    service.get_blob_client(CONTAINER, "_check.bin").upload_blob(payload, overwrite=True)
    blob = BlobClient.from_connection_string(connection, CONTAINER, "_check.bin")
    problems = []

    def expect(what: str, counts, **wanted) -> None:
        got = {k: getattr(counts, k) for k in wanted}
        if got != wanted:
            problems.append(f"{what}: counted {got}, expected {wanted}")

    blob.download_blob(0, 100).readall()  # a first connection, not counted below
    proxy.reset()
    started = time.perf_counter()
    for i in range(5):
        assert blob.download_blob(i * 1000, 1000).readall() == payload[i * 1000:(i + 1) * 1000]
    serial_s = time.perf_counter() - started
    expect("5 GETs one after the other", proxy.reset(), gets=5, heads=0, bytes_out=5000, waves=5, rounds=5,
           max_in_flight=1)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: blob.download_blob(0, 10).readall(), range(8)))  # connections for 8, not counted
        proxy.reset()
        barrier_start = time.perf_counter() + 0.05
        def at_once(i: int) -> bytes:
            time.sleep(max(0.0, barrier_start - time.perf_counter()))
            return blob.download_blob(i * 4096, 4096).readall()
        list(pool.map(at_once, range(8)))
        expect("8 GETs at once", proxy.reset(), gets=8, bytes_out=8 * 4096, waves=1, rounds=1, max_in_flight=8)
    with ThreadPoolExecutor(4) as pool:  # 40 GETs, 4 at a time: ~10 rounds
        list(pool.map(lambda i: blob.download_blob(0, 10).readall(), range(4)))
        proxy.reset()
        list(pool.map(lambda i: blob.download_blob(i * 100, 100).readall(), range(40)))
    counts = proxy.reset()
    expect("40 GETs, 4 at a time", counts, gets=40, max_in_flight=4)
    if not 10 <= counts.rounds <= 13 or counts.waves > counts.rounds:  # waves: 1 to ~10, as the four threads fall in step
        problems.append(f"40 GETs, 4 at a time: {counts.rounds} rounds, {counts.waves} waves (expected 10-13 rounds)")
    blob.get_blob_properties()
    expect("1 HEAD", proxy.reset(), gets=0, heads=1, waves=1)
    if latency_s and serial_s < 5 * latency_s:
        problems.append(f"5 serial GETs took {serial_s:.3f} s, less than 5 x {latency_s:g} s: no latency added?")
    blob.delete_blob()
    proxy.reset()
    return problems, (f"5 GETs one after the other = 5 waves, 5 rounds; 8 at once = 1 wave, 1 round; 40 four at a time = "
                      f"{counts.waves} wave(s), {counts.rounds} rounds; bytes exact")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted([*FILES, FIVE_M.name]), action="append", help="a file (repeatable)")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"of {','.join(TOOLS + MORE_TOOLS)}")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="added to every request (default 10)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per tool and file, in seconds (default 600)")
    parser.add_argument("--with-5m", action="store_true", help="also the 5-million-chunk file (ncrefs only)")
    parser.add_argument("--json", metavar="FILE", help="write every row to this file")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown too")
    parser.add_argument("--extra-path", metavar="DIR", help="on PYTHONPATH for the other tools only (not ncrefs, whose "
                        "confined parser may not read it): e.g. scipy, which kerchunk's NetCDF3ToZarr needs and the "
                        "dev requirements lack (pip install --no-deps --target DIR scipy)")
    parser.add_argument("--check", action="store_true", help="only check the proxy's counts on known requests")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0

    from azure.storage.blob import BlobServiceClient

    from benchmarks.counting_proxy import CountingProxy
    from scripts.azurite import start_azurite

    specs = [FILES[n] if n in FILES else FIVE_M for n in (args.only or [*FILES, *([FIVE_M.name] if args.with_5m else [])])]
    tools = [t for t in args.tools.split(",") if t]
    unknown = set(tools) - set(TOOLS + MORE_TOOLS)
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    latency = args.latency_ms / 1000
    model_latency = latency or 0.010  # with no latency added, the model still prices a round trip at 10 ms
    load_start = _load()
    print(f"start: {load_start}", flush=True)

    paths = {} if args.check else {spec.name: build(spec.name + ".nc", spec.build, spec.chunks) for spec in specs}
    warmups = {kind: build(*entry) for kind, entry in WARMUPS.items()}
    azurite = start_azurite()
    rows: list[dict] = []
    try:
        proxy = CountingProxy(azurite.port, CONTAINER, latency_s=latency).start()
        proxied = azurite.connection_string.replace(f":{azurite.port}/", f":{proxy.port}/")
        assert proxied != azurite.connection_string
        service = BlobServiceClient.from_connection_string(azurite.connection_string)  # uploads skip the proxy
        for container in (CONTAINER, WARMUP, "refs"):
            service.create_container(container)
        problems, summary = check_proxy(service, proxied, proxy, latency)
        print("proxy check: " + (f"ok ({summary})" if not problems else "PROBLEMS: " + "; ".join(problems)), flush=True)
        if args.check:
            return 1 if problems else 0
        for kind, path in warmups.items():
            with open(path, "rb") as handle:
                service.get_blob_client(WARMUP, path.name).upload_blob(handle, overwrite=True)
        env = {**os.environ, "PARSE_TIMEOUT_S": str(args.timeout)}  # ncrefs's own limit must not cut the measurement
        other_env = dict(env)
        if args.extra_path:
            other_env["PYTHONPATH"] = os.pathsep.join(p for p in (args.extra_path, env.get("PYTHONPATH")) if p)
        for spec in specs:
            path = paths[spec.name]
            with open(path, "rb") as handle:  # once per file, straight to Azurite
                service.get_blob_client(CONTAINER, f"{spec.name}.nc").upload_blob(handle, overwrite=True, max_concurrency=4)
            size = path.stat().st_size
            for tool in tools:
                if spec.tools and tool not in spec.tools:
                    continue
                while proxy.in_flight:  # nothing left over from the last run
                    time.sleep(0.1)
                proxy.reset()
                cpu_before = _server_cpu(azurite.process.pid)
                job = {"tool": tool, "name": spec.name, "kind": spec.kind, "connection": proxied, "port": proxy.port}
                print(f"{spec.name} {tool} ...", end=" ", file=sys.stderr, flush=True)
                measured = _run_child(job, {**env, **dict(spec.env)} if tool == "ncrefs" else other_env, args.timeout)
                time.sleep(0.2)
                counts = proxy.reset()
                azurite_cpu, proxy_cpu = (after - before for after, before in zip(_server_cpu(azurite.process.pid), cpu_before))
                row = {"file": spec.name, "file_mb": round(size / 1e6, 1), "tool": tool, "gets": counts.gets,
                       "heads": counts.heads, "waves": counts.waves, "rounds": counts.rounds,
                       "max_in_flight": counts.max_in_flight, "mb_read": round(counts.bytes_out / 1e6, 3),
                       "modelled_s": round(counts.rounds * model_latency + counts.bytes_out / BANDWIDTH, 3),
                       "server_cpu_s": round(azurite_cpu + proxy_cpu, 2),
                       "azurite_cpu_s": round(azurite_cpu, 2), "proxy_cpu_s": round(proxy_cpu, 2), **measured}
                if "failed" not in measured and (measured["child_gets"], measured["child_heads"]) != (counts.gets, counts.heads):
                    row["notes"] = (row.get("notes", "") + f"; counts outside the timed call: "
                                    f"{counts.gets - measured['child_gets']} GETs").lstrip("; ")
                rows.append(row)
                print(row.get("failed") or f"{row['wall_s']} s", file=sys.stderr, flush=True)
                if "stderr" in measured:
                    print(measured.pop("stderr"), file=sys.stderr)
    finally:
        azurite.cleanup()
    load_end = _load()
    if args.json:
        Path(args.json).write_text(json.dumps({"latency_ms": args.latency_ms, "load_start": load_start,
                                               "load_end": load_end, "rows": rows}, indent=1))
    print_table(rows, model_latency)
    print()
    for line in targets(rows):
        print(line)
    print(f"\nstart: {load_start}\nend:   {load_end}")
    if args.markdown:
        print()
        print_markdown(rows)
    return 0


# -- the report ------------------------------------------------------------------------------------
COLUMNS = [  # (key, heading)
    ("file", "file"), ("file_mb", "MB"), ("tool", "tool"), ("wall_s", "wall_s"), ("elapsed_s", "elapsed_s"),
    ("gets", "GETs"), ("heads", "HEADs"), ("waves", "waves"), ("rounds", "rounds"), ("max_in_flight", "max_fl"), ("mb_read", "MB_read"),
    ("modelled_s", "model_s"), ("other_requests", "writes"), ("tool_cpu_s", "cpu"), ("azurite_cpu_s", "az_cpu"), ("proxy_cpu_s", "px_cpu"), ("peak_rss_mb", "RSS_MB"), ("ref", "ref"),
    ("chunks", "chunk_refs"), ("plan", "plan"), ("notes", "notes"),
]


def _cells(row: dict) -> list[str]:
    if "failed" in row:
        return [str(row["file"]), str(row["file_mb"]), row["tool"], "failed: " + row["failed"]]
    cells = []
    for key, _ in COLUMNS:
        if key == "ref":
            value = row.get("reference_bytes")
            cells.append("" if value is None else f"{value / 1e6:.2f} MB {row.get('format', '')}")
        elif key == "chunks" and row.get("chunks") is not None:
            cells.append(f"{row['chunks']:,}")
        else:
            value = row.get(key)
            cells.append("" if value is None else str(value))
    return cells


def print_table(rows: list[dict], model_latency: float) -> None:
    headings = [h for _, h in COLUMNS]
    table = [_cells(r) for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in table if len(c) == len(headings) or i < 3)]) for i, h in enumerate(headings)]
    print("  ".join(h.ljust(w) for h, w in zip(headings, widths)))
    for cells in table:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    print(f"\nwall_s: the tool's call in its process (imports and a warm-up on a tiny file before, off the clock); "
          f"elapsed_s: ncrefs's own.\nwaves: a source request arriving while none was in flight; rounds: the longest "
          f"chain of requests each arriving after the one before had finished;\nmax_fl: the most in flight at once; "
          f"writes: other requests (ncrefs writing its reference and STAC item);\ncpu: CPU s of the tool's process in its "
          f"call (ncrefs's parser process not included); az_cpu, px_cpu: CPU s of Azurite and of the latency proxy in that run "
          f"(they share the machine's CPUs with the tool).\n"
          f"model_s = rounds x {model_latency * 1000:g} ms + MB_read / 100 MB/s; RSS_MB: peak of the process and its children.")


def print_markdown(rows: list[dict]) -> None:
    headings = [h for _, h in COLUMNS]
    print("| " + " | ".join(headings) + " |")
    print("|" + " --- |" * len(headings))
    for row in rows:
        cells = _cells(row)
        cells += [""] * (len(headings) - len(cells))
        print("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")


def _both(row: dict) -> str:
    """The two peaks (process, parser processes), and the most both held at one moment (sampled)."""
    own, children = row.get("rss_self_mb"), row.get("rss_children_mb")
    return "" if own is None else (f" (process {own:.0f} MB, parser {children:.0f} MB; "
                                   f"both at once, sampled: {row.get('rss_sum_mb', 0):.0f} MB)")


def _copied(notes: str) -> list[str]:
    for part in notes.split("; "):
        if part.startswith("coords copied: "):
            return part[len("coords copied: "):].split(",")
    return []


def targets(rows: list[dict]) -> list[str]:
    """Issue 12's targets for ncrefs, as PASS/FAIL (n/a where a figure is missing)."""
    ok = [r for r in rows if "failed" not in r]
    by = {(r["file"], r["tool"]): r for r in ok}
    files = list(dict.fromkeys(r["file"] for r in rows))
    lines = ["targets (ncrefs, at the latency above):"]

    def line(verdict: bool | None, text: str) -> None:
        lines.append(f"  {'n/a ' if verdict is None else 'PASS' if verdict else 'FAIL'}  {text}")

    for name in files:
        mine = by.get((name, "ncrefs"))
        if mine is None:
            failed = [r for r in rows if r["file"] == name and r["tool"] == "ncrefs"]
            if failed:
                line(False, f"{name}: ncrefs failed: {failed[0]['failed'][:200]} "
                     f"(peak RSS seen, all its processes: {failed[0].get('rss_sum_mb', 0):.0f} MB)")
            else:
                line(None, f"{name}: ncrefs not run")
            continue
        others = [r for r in ok if r["file"] == name and r["tool"] != "ncrefs"]
        best_wall = min(others, key=lambda r: r["wall_s"]) if others else None
        elapsed = mine["elapsed_s"]
        if name == "nc4-1gb":
            line(elapsed <= 0.35, f"{name}: elapsed {elapsed:.3f} s <= 0.35 s")
            if best_wall:
                line(elapsed <= best_wall["wall_s"] / 2, f"{name}: elapsed {elapsed:.3f} s <= half the best other's wall "
                     f"({best_wall['tool']} {best_wall['wall_s']:.3f} s / 2 = {best_wall['wall_s'] / 2:.3f} s)")
        elif name == "chunks-50k":
            line(elapsed <= 1.0, f"{name}: elapsed {elapsed:.3f} s <= 1 s")
        elif name == "nc3-records":
            line(elapsed <= 1.0, f"{name}: elapsed {elapsed:.3f} s <= 1 s")
            notes = mine.get("notes", "")
            line("time" in _copied(notes), f"{name}: the time coordinate copied into the reference ({notes or 'not checked'})")
        elif name == "cmip6":
            if best_wall:
                line(elapsed <= best_wall["wall_s"], f"{name}: elapsed {elapsed:.3f} s <= the best other's wall "
                     f"({best_wall['tool']} {best_wall['wall_s']:.3f} s)")
        elif name == "chunks-1m":
            line(elapsed <= 30, f"{name}: elapsed {elapsed:.1f} s <= 30 s")
            line(mine["peak_rss_mb"] <= 600, f"{name}: peak RSS {mine['peak_rss_mb']:.0f} MB <= 600 MB{_both(mine)}")
        elif name == "chunks-5m":
            line(mine["peak_rss_mb"] <= 2048, f"{name}: peak RSS {mine['peak_rss_mb']:.0f} MB <= 2048 MB (a 2 GB instance)"
                 f"{_both(mine)}")
        if best_wall is None and name not in ("chunks-50k", "chunks-1m", "chunks-5m"):
            line(None, f"{name}: no other tool's figures to compare with")
        compared = [r for r in others if r["tool"] == "kerchunk"] if name == "nc3-records" else others
        if compared:
            best = min(compared, key=lambda r: r["modelled_s"])
            line(mine["modelled_s"] <= best["modelled_s"], f"{name}: modelled {mine['modelled_s']:.3f} s <= "
                 f"{best['tool']}'s {best['modelled_s']:.3f} s")
    return lines


if __name__ == "__main__":
    sys.exit(main())
