"""NetCDF and HDF5 files for the tests, written by real writers (netCDF4, xarray, h5py).

Each maker writes one file of one kind into ``directory`` and returns its path. ``GOOD``
(at the end) lists the kinds every round-trip test runs over; broken kinds are made by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pandas as pd
import xarray as xr


def nc4_chunked_cf_time(directory: Path) -> Path:
    """NetCDF4, zlib + shuffle, CF time, _FillValue with masked values, scale_factor/add_offset."""
    path = directory / "chunked_cf_time.nc"
    rng = np.random.default_rng(1)
    temp = rng.normal(280, 5, (6, 20, 30)).astype("float32")
    temp[0, 0, :5] = np.nan
    ds = xr.Dataset(
        {
            "tas": (("time", "lat", "lon"), temp, {"units": "K", "long_name": "near-surface temperature"}),
            "pr": (("time", "lat", "lon"), rng.gamma(1.0, 2.0, (6, 20, 30)), {"units": "mm/day"}),
        },
        coords={
            "time": pd.date_range("2050-01-01", periods=6, freq="D"),
            "lat": np.linspace(-90, 90, 20),
            "lon": np.linspace(-180, 179, 30),
        },
        attrs={"title": "chunked CF sample", "Conventions": "CF-1.8"},
    )
    encoding = {
        "tas": {"zlib": True, "shuffle": True, "complevel": 4, "chunksizes": (2, 10, 15), "_FillValue": -9999.0},
        "pr": {"zlib": True, "chunksizes": (3, 20, 30), "dtype": "int16", "scale_factor": 0.01, "add_offset": 5.0, "_FillValue": -32768},
        "time": {"units": "days since 2000-01-01", "calendar": "standard"},
    }
    ds.to_netcdf(path, engine="netcdf4", format="NETCDF4", encoding=encoding)
    return path


def nc4_contiguous(directory: Path) -> Path:
    """NetCDF4 with contiguous (unchunked) variables, zeros in the data and no _FillValue."""
    path = directory / "contiguous.nc4"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("x", 50)
        nc.createDimension("y", 40)
        v = nc.createVariable("field", "f8", ("y", "x"), contiguous=True, fill_value=False)
        data = np.arange(2000, dtype="f8").reshape(40, 50)
        data[0, :10] = 0.0
        v[:] = data
        i = nc.createVariable("counts", "i4", ("x",), contiguous=True)
        i[:] = np.arange(50) - 25
        nc.history = "written by tests"
    return path


def nc4_features(directory: Path) -> Path:
    """Unlimited dimension, scalar variables (one never written), a partly written chunked
    variable, char and byte variables, big-endian data, a variable-length string variable."""
    path = directory / "features.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", None)
        nc.createDimension("station", 4)
        nc.createDimension("name_len", 8)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "hours since 2020-01-01 00:00"
        t[:] = np.arange(7) * 6.0
        obs = nc.createVariable("obs", "f4", ("time", "station"), chunksizes=(3, 4), zlib=True)
        obs[:] = np.arange(28, dtype="f4").reshape(7, 4)
        big = nc.createVariable("big_endian", np.dtype(">f8"), ("station",), endian="big")
        big[:] = [1.5, -2.25, 0.0, 1e10]
        scalar = nc.createVariable("crs", "i4", ())
        scalar.grid_mapping_name = "latitude_longitude"
        scalar.assignValue(4326)
        nc.createVariable("unwritten", "f4", ())  # defined, never written
        partial = nc.createVariable("partial", "f4", ("station",), chunksizes=(1,))
        partial[:2] = [0.0, 2.5]  # chunks 2 and 3 never written: they read as the default fill value
        names = nc.createVariable("station_code", "S1", ("station", "name_len"))
        names[:] = netCDF4.stringtochar(np.array(["ALPHA", "BRAVO", "CHARLIE", "DELTA"], dtype="S8"))
        flags = nc.createVariable("quality", "i1", ("station",))
        flags[:] = np.array([-1, 0, 1, 127], dtype="i1")
        labels = nc.createVariable("label", str, ("station",))
        for i, text in enumerate(["north", "süd", "", "west station"]):
            labels[i] = text
        nc.summary = "feature sample"
    return path


def nc4_groups(directory: Path) -> Path:
    """Nested groups; a child group reuses a dimension name with another length."""
    path = directory / "groups.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("x", 5)
        nc.createVariable("x", "i4", ("x",))[:] = np.arange(5)
        nc.createVariable("root_var", "f4", ("x",))[:] = np.linspace(0, 1, 5)
        forecast = nc.createGroup("forecast")
        forecast.createDimension("step", 3)
        forecast.createVariable("step", "i4", ("step",))[:] = [0, 6, 12]
        forecast.createVariable("wind", "f4", ("step", "x"), zlib=True)[:] = np.arange(15, dtype="f4").reshape(3, 5)
        forecast.model = "sample"
        deep = forecast.createGroup("ensemble")
        deep.createDimension("x", 2)
        deep.createVariable("spread", "f8", ("x",))[:] = [0.5, 0.25]
    return path


def nc3_classic(directory: Path) -> Path:
    """NetCDF3 classic: record (unlimited) dimension, zeros and no _FillValue, char, short with scale."""
    path = directory / "classic.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", 6)
        nc.createDimension("lon", 8)
        nc.createDimension("strlen", 4)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "days since 1990-01-01"
        t[:] = np.arange(3)
        v = nc.createVariable("sst", "f4", ("time", "lat", "lon"), fill_value=False)
        data = np.arange(3 * 6 * 8, dtype="f4").reshape(3, 6, 8)
        data[1] = 0.0
        v[:] = data
        s = nc.createVariable("packed", "i2", ("lat",))
        s.scale_factor = 0.5
        s.add_offset = 10.0
        s[:] = np.arange(6) * 2.0 + 10.0
        c = nc.createVariable("code", "S1", ("lat", "strlen"))
        c[:] = netCDF4.stringtochar(np.array(["ab", "cd", "ef", "gh", "ij", "kl"], dtype="S4"))
        b = nc.createVariable("flag", "i1", ("lat",))
        b[:] = [0, 1, -1, 2, 3, 4]
        nc.title = "classic sample"
    return path


def nc3_64bit(directory: Path) -> Path:
    """NetCDF3 64-bit offset with a _FillValue and masked values."""
    path = directory / "offset64.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as nc:
        nc.createDimension("x", 10)
        v = nc.createVariable("depth", "f8", ("x",), fill_value=-1.0)
        v[:] = np.ma.masked_array(np.arange(10.0), mask=[i % 4 == 0 for i in range(10)])
    return path


def nc3_cdf5(directory: Path) -> Path:
    path = directory / "cdf5.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_DATA") as nc:
        nc.createDimension("x", 5)
        nc.createVariable("big", "u8", ("x",))[:] = np.array([0, 1, 2**40, 7, 9], dtype="u8")
    return path


def hdf5_plain(directory: Path) -> Path:
    """HDF5 written by h5py without NetCDF conventions."""
    path = directory / "plain.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("values", data=np.arange(24, dtype="i4").reshape(4, 6), chunks=(2, 3), compression="gzip")
    return path




# -- broken inputs ---------------------------------------------------------------------------
def empty(directory: Path) -> Path:
    path = directory / "empty.nc"
    path.write_bytes(b"")
    return path


def random_bytes(directory: Path) -> Path:
    path = directory / "random.nc"
    path.write_bytes(np.random.default_rng(7).bytes(50_000))
    return path


def truncated_nc4(directory: Path) -> Path:
    source = nc4_chunked_cf_time(directory)
    path = directory / "truncated4.nc"
    path.write_bytes(source.read_bytes()[: os.path.getsize(source) * 2 // 3])
    return path


def truncated_nc3(directory: Path) -> Path:
    source = nc3_classic(directory)
    path = directory / "truncated3.nc"
    path.write_bytes(source.read_bytes()[:-200])
    return path


def hdf5_object_references(directory: Path) -> Path:
    """HDF5 that is not NetCDF: a dataset of object references."""
    path = directory / "refs.h5"
    with h5py.File(path, "w") as f:
        target = f.create_dataset("target", data=np.arange(3))
        refs = f.create_dataset("pointers", (1,), dtype=h5py.ref_dtype)
        refs[0] = target.ref
    return path


def unsupported_codec(directory: Path) -> Path:
    """HDF5 with the scale-offset filter, which has no Zarr codec."""
    path = directory / "scaleoffset.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("lossy", data=np.arange(100, dtype="f4"), chunks=(50,), scaleoffset=2)
    return path


def nc4_large_chunks(directory: Path, megabytes: int = 16) -> Path:
    """A file mostly made of a few big incompressible chunks: its header is a tiny part of it."""
    path = directory / "large_chunks.nc"
    n = megabytes * 1024 * 1024 // 4 // (256 * 256)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", n)
        nc.createDimension("y", 256)
        nc.createDimension("x", 256)
        v = nc.createVariable("noise", "f4", ("time", "y", "x"), chunksizes=(1, 256, 256))
        v[:] = np.random.default_rng(3).random((n, 256, 256), dtype="f4")
    return path


def nc4_many_small_chunks(directory: Path) -> Path:
    """Thousands of tiny chunks whose index is spread through the file; also 1-element spatial chunks."""
    path = directory / "small_chunks.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", 200)
        nc.createDimension("y", 20)
        nc.createDimension("x", 20)
        v = nc.createVariable("pixels", "f4", ("time", "y", "x"), chunksizes=(200, 1, 1))
        v[:] = np.random.default_rng(4).random((200, 20, 20), dtype="f4")
    return path


def hdf5_with_user_block(directory: Path) -> Path:
    """NetCDF4-style data in an HDF5 file whose superblock follows a 1024-byte user block."""
    path = directory / "userblock.h5"
    with h5py.File(path, "w", userblock_size=1024) as f:
        f.create_dataset("temperature", data=np.linspace(250, 300, 60).reshape(6, 10), chunks=(3, 5))
    with open(path, "r+b") as handle:
        handle.write(b"user block: free text before the HDF5 superblock")
    return path


def nc4_late_metadata(directory: Path) -> Path:
    """A variable defined after 2 MB of data was written: its header lies far from the start."""
    path = directory / "late_metadata.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("x", 512 * 1024)
        nc.createVariable("early", "f4", ("x",), contiguous=True)[:] = np.arange(512 * 1024, dtype="f4")
    with netCDF4.Dataset(path, "a") as nc:
        nc.createVariable("late", "f8", ("x",), chunksizes=(65536,))[:] = np.linspace(0, 1, 512 * 1024)
    return path


# Every kind the round-trip tests run over.
GOOD = {
    "nc4_chunked_cf_time": nc4_chunked_cf_time,
    "nc4_contiguous": nc4_contiguous,
    "nc4_features": nc4_features,
    "nc4_groups": nc4_groups,
    "nc4_late_metadata": nc4_late_metadata,
    "nc3_classic": nc3_classic,
    "nc3_64bit": nc3_64bit,
    "nc3_cdf5": nc3_cdf5,
}


def daily(directory: Path, day: int, *, units: str = "days since 2000-01-01", steps: int = 1, chunk_steps: int = 1,
          scale_factor: float | None = None, fill_value: float | None = None, compress: bool = True,
          drop: str | None = None, calendar: str = "standard", seed: int | None = None, name: str | None = None) -> Path:
    """One file of a daily series shaped like CMIP6 output (time, lat, lon), starting at 2000-01-01 + ``day``.

    The options make the traps of combining files: other time units (same dates), packing,
    fill values, chunking, codecs, a variable missing.
    """
    origin = np.datetime64(units.split("since", 1)[1].strip()[:10])
    offset = int((np.datetime64("2000-01-01") - origin) / np.timedelta64(1, "D"))
    rng = np.random.default_rng(day if seed is None else seed)
    per_day = {"days": 1, "hours": 24}[units.split()[0]]
    times = (np.arange(day, day + steps, dtype="f8") + offset) * per_day
    tas = (250 + 50 * rng.random((steps, 18, 36))).astype("f4")
    pr = rng.random((steps, 18, 36)).astype("f4")
    dataset = xr.Dataset(
        {"tas": (("time", "lat", "lon"), tas, {"units": "K", "long_name": "near-surface air temperature"}),
         "pr": (("time", "lat", "lon"), pr, {"units": "kg m-2 s-1"})},
        coords={"time": ("time", times, {"units": units, "calendar": calendar, "standard_name": "time"}),
                "lat": ("lat", np.linspace(-85, 85, 18), {"units": "degrees_north"}),
                "lon": ("lon", np.arange(36) * 10.0, {"units": "degrees_east"})},
        attrs={"title": "daily sample", "Conventions": "CF-1.8"},
    )
    if drop:
        dataset = dataset.drop_vars(drop)
    encoding = {}
    for variable in dataset.data_vars:
        encoding[variable] = {"chunksizes": (chunk_steps, 18, 36), "zlib": compress}
        if scale_factor is not None and variable == "tas":
            encoding[variable].update(dtype="int16", scale_factor=scale_factor, add_offset=250.0, _FillValue=-32767)
        elif fill_value is not None:
            encoding[variable]["_FillValue"] = fill_value
    encoding["time"] = {"dtype": "f8"}
    path = directory / (name or f"tas_day_{day:03d}.nc")
    dataset.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return path


def smooth_daily(directory: Path, day: int, *, ny: int = 90, nx: int = 180, name: str | None = None) -> Path:
    """A daily file on a finer grid (``ny`` x ``nx``, 2° by default) with a smooth temperature field
    (warm equator, cold poles, a wave that moves east day by day): what a map should show."""
    lat = np.linspace(-89, 89, ny)
    lon = np.linspace(-179, 179, nx)
    la, lo = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    tas = 250 + 50 * np.cos(la) ** 2 + 8 * np.sin(3 * lo - 0.5 * day) * np.cos(2 * la)
    dataset = xr.Dataset(
        {"tas": (("time", "lat", "lon"), tas[None].astype("f4"), {"units": "K", "long_name": "near-surface air temperature"})},
        coords={"time": ("time", np.array([day], dtype="f8"), {"units": "days since 2000-01-01", "calendar": "standard"}),
                "lat": ("lat", lat, {"units": "degrees_north"}), "lon": ("lon", lon, {"units": "degrees_east"})},
        attrs={"title": "smooth daily sample", "Conventions": "CF-1.8"},
    )
    path = directory / (name or f"tas_smooth_{day:03d}.nc")
    dataset.to_netcdf(path, engine="h5netcdf", encoding={"tas": {"chunksizes": (1, 45, 90), "zlib": True}, "time": {"dtype": "f8"}})
    return path
