"""Hostile NetCDF and HDF5 files: tiny files that make a careless reader leak a local file,
recurse without end, crash, or allocate gigabytes.

Each maker writes one file into ``directory`` and returns its path; a maker whose file points
at another one (a virtual dataset's source, an external link's target) writes that one too and
says so. Files are written by h5py / netCDF4 and, where no writer makes the damage, patched
byte by byte. Open ``btree_self_loop`` only in a subprocess: it crashes the interpreter.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import h5py
import netCDF4
import numpy as np

# What a file that must never reach a reference holds (a stand-in for /proc/self/environ).
SECRET = b"NCREFS-HOSTILE-SECRET=hunter2;"


def secret_file(directory: Path) -> Path:
    """A local file whose bytes must never appear in a reference: ``SECRET``, repeated."""
    path = directory / "secret.txt"
    path.write_bytes(SECRET * 8)
    return path


def _patch(path: Path, offset: int, fmt: str, *values) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(bytes(data))


# -- data outside the file ----------------------------------------------------------------------
def external_storage(directory: Path, secret_path: Path, compound: bool = False) -> Path:
    """A dataset whose raw data HDF5 reads from ``secret_path`` (external storage), beside a
    normal dataset. Plain: 64 bytes of the secret as uint8. ``compound``: one record
    ``(raw: S64, name: vlen str)`` whose ``raw`` is the secret's first 64 bytes; the vlen part
    is read past the secret's end, where HDF5 reads zeros (an empty string), so the read
    succeeds, and a parser that reads compound records to inline them copies the secret."""
    path = directory / f"external_{'compound' if compound else 'plain'}.h5"
    with h5py.File(path, "w") as f:
        if compound:
            dtype = np.dtype([("raw", "S64"), ("name", h5py.string_dtype())])
            external = [(str(secret_path), 0, 64), (str(secret_path), 1 << 40, h5py.h5f.UNLIMITED)]
            f.create_dataset("leak", shape=(1,), dtype=dtype, external=external)
            f.create_dataset("values", data=np.array([7], dtype="i4"))
        else:
            f.create_dataset("leak", shape=(64,), dtype="u1", external=[(str(secret_path), 0, 64)])
            f.create_dataset("values", data=np.arange(64, dtype="i4"))
    return path


def virtual_dataset(directory: Path, secret_path: Path | None = None, compound: bool = False) -> Path:
    """A virtual dataset (VDS) mapped onto a dataset of another HDF5 file, ``secret_path``
    (written here, default ``vds_source.h5``), whose values are ``SECRET``: fixed-length
    strings, or with ``compound`` records ``(raw: S, name: vlen str)``; plus a normal dataset."""
    secret_path = secret_path or directory / "vds_source.h5"
    dtype = np.dtype(f"S{len(SECRET)}")
    if compound:
        dtype = np.dtype([("raw", dtype), ("name", h5py.string_dtype())])
    with h5py.File(secret_path, "w") as f:
        source = f.create_dataset("secret", shape=(4,), dtype=dtype)
        source[...] = np.array([(SECRET, SECRET.decode())] * 4 if compound else [SECRET] * 4, dtype=dtype)
    layout = h5py.VirtualLayout(shape=(4,), dtype=dtype)
    layout[:] = h5py.VirtualSource(str(secret_path), "secret", shape=(4,), dtype=dtype)
    path = directory / f"virtual_{'compound' if compound else 'plain'}.h5"
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("mirror", layout)
        f.create_dataset("values", data=np.arange(4, dtype="i4"))
    return path


def external_link(directory: Path) -> Path:
    """A normal dataset, an external link to a dataset of another file (``link_target.h5``,
    written here, holding ``SECRET``) and an external link into a file that does not exist."""
    target = directory / "link_target.h5"
    with h5py.File(target, "w") as f:
        f.create_dataset("secret", data=np.array([SECRET] * 4))
    path = directory / "external_link.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("values", data=np.arange(4, dtype="i4"))
        f["outside"] = h5py.ExternalLink(str(target), "/secret")
        f["missing"] = h5py.ExternalLink(str(directory / "no_such_file.h5"), "/x")
    return path


def external_link_root(directory: Path) -> Path:
    """An external link to the root group of the file itself (by its own name): a cycle that
    leaves the file and comes back, whatever driver resolves it."""
    path = directory / "external_link_root.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("values", data=np.arange(4, dtype="i4"))
        f["again"] = h5py.ExternalLink(path.name, "/")
    return path


# -- link graphs ----------------------------------------------------------------------------------
def soft_link_cycle(directory: Path) -> Path:
    """A soft link to its own group (``/a/loop -> /a``) beside a normal dataset ``/a/values``."""
    path = directory / "soft_link_cycle.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a/values", data=np.arange(3, dtype="i4"))
        f["a/loop"] = h5py.SoftLink("/a")
    return path


def hard_link_cycle(directory: Path) -> Path:
    """A hard link from a group to its grandparent (``/a/b/up`` is ``/a``), beside ``/a/b/values``."""
    path = directory / "hard_link_cycle.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a/b/values", data=np.arange(3, dtype="i4"))
        f["a/b/up"] = f["a"]
    return path


def dangling_link(directory: Path) -> Path:
    """A soft link to a path that does not exist, beside a normal dataset."""
    path = directory / "dangling_link.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("values", data=np.arange(3, dtype="i4"))
        f["ghost"] = h5py.SoftLink("/does/not/exist")
    return path


def hard_link_fanout(directory: Path, depth: int = 30) -> Path:
    """No cycle, but ``2**depth`` paths: groups g00..g{depth-1} each hold two hard links
    (``a``, ``b``) to the next, the last a dataset. A walk by path never ends (~37 KB file)."""
    path = directory / "hard_link_fanout.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("values", data=np.arange(3, dtype="i4"))
        groups = [f.create_group(f"g{i:02d}") for i in range(depth)]
        for parent, child in zip(groups, groups[1:]):
            parent["a"] = parent["b"] = child
        groups[-1].create_dataset("leaf", data=np.arange(3, dtype="i4"))
    return path


# -- damaged index and header fields --------------------------------------------------------------
def btree_self_loop(directory: Path) -> Path:
    """A 3.5 KB file whose chunked dataset ``x`` has a v1 B-tree chunk index (default libver)
    whose root node claims level 1 and names itself as its first child. HDF5 2.0 reports
    "cyclic B-tree detected" when reading data, but walking the index (``chunk_iter``,
    ``get_num_chunks``) recurses until the stack overflows: SIGSEGV."""
    path = directory / "btree_self_loop.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(16, dtype="i4"), chunks=(4,))
    node = path.read_bytes().find(b"TREE\x01")  # node type 1: raw data chunks (type 0 = group)
    # signature 4, type 1, level 1, entries used 2, left and right sibling 8 + 8 = 24 bytes;
    # then key 0 (chunk size 4, filter mask 4, one offset per dimension + 1, 8 each), child 0.
    key_size = 4 + 4 + 8 * (1 + 1)
    _patch(path, node + 5, "<B", 1)
    _patch(path, node + 24 + key_size, "<Q", node)
    return path


def netcdf3_huge_numrecs(directory: Path, numrecs: int = 0x7FFFFFFE) -> Path:
    """A 144-byte NetCDF3 classic file with a record variable whose header claims ``numrecs``
    records (bytes 4..8, big-endian) while holding 2."""
    path = directory / "huge_numrecs.nc"
    _record_file(path, "NETCDF3_CLASSIC")
    _patch(path, 4, ">I", numrecs)
    return path


def cdf5_huge_numrecs(directory: Path, numrecs: int = 2**40) -> Path:
    """As :func:`netcdf3_huge_numrecs` in CDF5, whose numrecs is 8 bytes (4..12): 2**40 records."""
    path = directory / "huge_numrecs_cdf5.nc"
    _record_file(path, "NETCDF3_64BIT_DATA")
    _patch(path, 4, ">Q", numrecs)
    return path


def _record_file(path: Path, fmt: str) -> None:
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        nc.createDimension("time", None)
        nc.createDimension("x", 2)
        nc.createVariable("x", "i4", ("x",))[:] = [1, 2]
        nc.createVariable("t", "f4", ("time",))[:] = [1.0, 2.0]


def netcdf3_huge_attribute(directory: Path, nelems: int = 0x7FFFFFF0) -> Path:
    """A 112-byte NetCDF3 classic file whose global text attribute ``title`` claims ``nelems``
    characters (~2 GB) in its header."""
    path = directory / "huge_attribute.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("x", 2)
        nc.createVariable("x", "i4", ("x",))[:] = [1, 2]
        nc.title = "tiny"
    # attribute: name length 4, name "title" padded to 8, nc_type 4, nelems 4, values
    _patch(path, path.read_bytes().find(b"title") + 8 + 4, ">I", nelems)
    return path


def hdf5_huge_attribute(directory: Path, length: int = 0x7FFFFFF0) -> Path:
    """A 6 KB HDF5 file whose dataset ``values`` has a variable-length string attribute
    ``claims_2gb`` whose stored sequence length says ``length`` bytes (the global heap object
    holds 12): HDF5 allocates that much before it finds the heap object's size differs.
    (Patching an attribute's dataspace instead claims nothing: HDF5 2.0 bounds the decode
    by the attribute message's size, and dense attributes are checksummed.)"""
    path = directory / "huge_attribute.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("values", data=np.arange(4, dtype="i4"))
        f["values"].attrs["claims_2gb"] = "twelve chars"
    data = path.read_bytes()
    name = data.find(b"claims_2gb\x00")
    # attribute message v1: version, reserved, name size (2), datatype size (2), dataspace size (2),
    # then name, datatype and dataspace each padded to 8 bytes, then the value: length (4), heap id.
    _, _, name_size, type_size, space_size = struct.unpack_from("<BBHHH", data, name - 8)
    value = name + sum(-(-size // 8) * 8 for size in (name_size, type_size, space_size))
    _patch(path, value, "<I", length)
    return path


# -- big claims, no bytes -------------------------------------------------------------------------
def hdf5_huge_chunk_grid(directory: Path, side: int = 10_000) -> Path:
    """A 1.4 KB file with a (side x side) float32 dataset of (1, 1) chunks, fill value -9999 and
    no chunk written: ``side**2`` chunks that exist only as a claim (10**8 by default; pass
    ``side=10**6`` for 10**12)."""
    path = directory / f"huge_chunk_grid_{side}.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("empty", shape=(side, side), dtype="f4", chunks=(1, 1), fillvalue=-9999.0)
    return path


def fill_materialization(directory: Path, cells: int = 4_000_000) -> Path:
    """NetCDF4 variable of ``cells`` float32 cells in (1, 1) chunks, none written, with no
    _FillValue attribute: its HDF5 fill value is NetCDF's default 9.96921e36, not zero."""
    path = directory / f"fill_materialization_{cells}.nc"
    side = math.isqrt(cells)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("y", side)
        nc.createDimension("x", side)
        nc.createVariable("unwritten", "f4", ("y", "x"), chunksizes=(1, 1))
    return path


def many_variables(directory: Path, n: int = 5000) -> Path:
    """NetCDF4 with ``n`` small variables sharing two dimensions (one with a coordinate)."""
    path = directory / f"many_variables_{n}.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", 2)
        nc.createDimension("x", 3)
        nc.createVariable("x", "i4", ("x",))[:] = np.arange(3)
        for i in range(n):
            nc.createVariable(f"v{i:05d}", "f4", ("time", "x"))[:] = np.full((2, 3), i, dtype="f4")
    return path


def many_groups(directory: Path, n: int = 10_000) -> Path:
    """HDF5 (h5py, libver latest: compact groups) with ``n`` groups of one tiny dataset each.
    (netCDF4 writes the same in ~60 s and ~180 MB; h5py in ~2 s and ~4 MB.)"""
    path = directory / f"many_groups_{n}.h5"
    with h5py.File(path, "w", libver="latest") as f:
        for i in range(n):
            f.create_group(f"g{i:05d}").create_dataset("v", data=np.array([i % 30_000, 1], dtype="i2"))
    return path


def netcdf3_many_records(directory: Path, records: int = 3_000_000) -> Path:
    """A genuine 12 MB NetCDF3 file of ``records`` one-value records: each record is a chunk,
    so its reference needs far more memory than its size suggests."""
    path = directory / f"many_records_{records}.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("time", None)
        nc.createVariable("t", "f4", ("time",))[:] = np.arange(records, dtype="f4")
    return path


def huge_dimension_only(directory: Path, length: int = 4_500_000_000) -> Path:
    """NetCDF4 with a dimension of ``length`` and no variable on it: netCDF-C stores a dimension
    scale of that shape, never written, whose NAME says it is not a variable; plus a small variable."""
    path = directory / "huge_dimension_only.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("lat", length)
        nc.createDimension("x", 3)
        nc.createVariable("values", "i4", ("x",))[:] = [0, 1, 2]
    return path
