"""Turn a NetCDF/HDF5 file's header into a kerchunk reference, with virtualizarr.

virtualizarr parses the file (HDFParser / NetCDF3Parser) through our :class:`RangeReader`
and writes each group's kerchunk references. Around it this module:

- looks at an HDF5 file's layout first (all groups, chunk counts, codecs, dtypes) to plan
  the reads and to refuse what cannot be referenced, naming the variable;
- nests every HDF5 group into the one reference (``group/var/...``);
- makes the reference read back what the original file reads: no Zarr fill value where the
  NetCDF variable has no ``_FillValue`` (xarray masks a Zarr fill value), and chunks that
  were never written materialized with the file's fill value;
- refuses references that point past the end of the file (a truncated upload);
- copies small chunks and small dimension coordinates into the reference.
"""

from __future__ import annotations

import base64
import json
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numcodecs
import numpy as np
from obspec_utils.registry import ObjectStoreRegistry
from virtualizarr.parsers import HDFParser, NetCDF3Parser

from shared.errors import CorruptFile, NotNetCDF, NotVirtualizable
from shared.formats import FileFormat
from shared.reader import BANDWIDTH_BPS, REQUEST_LATENCY_S, RangeReader

# A v1 B-tree leaf of a chunked HDF5 dataset indexes 32 to 64 chunks: estimate 48.
CHUNKS_PER_INDEX_READ = 48
# Never fetch a whole file larger than this in one go, whatever the plan says (memory).
WHOLE_FILE_MAX = 32 << 20
# Dimension coordinates up to this many stored bytes are copied into the reference whole,
# so opening a dataset needs no request for its index values.
COORDINATE_INLINE_BYTES = 64 << 10
# Ranges to inline closer than this are fetched in one GET.
COALESCE_GAP = 256 << 10
# At most this many bytes of materialized fill chunks go into one reference.
MAX_FILL_BYTES = 8 << 20


@dataclass
class Virtualized:
    refs: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=lambda: ["/"])
    plan: str = "ranged"


class _ReaderStore:
    """The obspec face of a RangeReader, for parsers that open their own reader (NetCDF3Parser)."""

    def __init__(self, reader: RangeReader):
        self.reader = reader

    def head(self, path: str) -> dict[str, Any]:
        return {"path": path, "size": self.reader.size, "e_tag": None, "last_modified": None, "version": None}

    def get_range(self, path: str, *, start: int, end: int | None = None, length: int | None = None) -> bytes:
        length = length if length is not None else (end or self.reader.size) - start
        return self.reader.read_at(start, length)

    def get_ranges(self, path: str, *, starts, ends=None, lengths=None) -> list[bytes]:
        lengths = lengths if lengths is not None else [e - s for s, e in zip(starts, ends)]
        return [self.reader.read_at(s, n) for s, n in zip(starts, lengths)]


def virtualize(reader: RangeReader, fmt: FileFormat, url: str, *, inline_threshold: int) -> Virtualized:
    """Parse the file behind ``reader`` and return its kerchunk reference (chunk URLs = ``url``)."""
    result = Virtualized(refs={})
    parts = urlsplit(url)
    registry = ObjectStoreRegistry({f"{parts.scheme}://{parts.netloc}": _ReaderStore(reader)})
    if fmt is FileFormat.HDF5:
        layout = _inspect_hdf5(reader)
        result.groups = layout.groups
        result.warnings += layout.warnings
        result.plan = _plan_reads(reader, layout)
        parser = HDFParser(reader_factory=lambda store, path: reader)
    else:
        parser = NetCDF3Parser()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            manifest_store = parser(url=url, registry=registry)
            # One virtual dataset per group, unaligned (a DataTree would force child groups'
            # dimensions to agree with their parents', which NetCDF does not require).
            datasets = manifest_store._group.to_virtual_datasets()
            group_refs = {path: ds.vz.to_kerchunk(format="dict")["refs"] for path, ds in datasets.items()}
        except (NotVirtualizable, CorruptFile, NotNetCDF):
            raise
        except Exception as error:
            raise _classify_parse_error(error, fmt) from error
    result.warnings += [f"virtualizarr: {w.message}" for w in caught if _worth_reporting(str(w.message))]

    refs: dict[str, Any] = {}
    for path, group in group_refs.items():
        refs.update({(f"{path}/{key}" if path else key): value for key, value in group.items()})
    _fix_scalar_keys(refs)
    _check_ranges(refs, reader.size)
    result.warnings += _fix_fill_values(refs)
    _inline_small_chunks(refs, reader, inline_threshold)
    result.refs = {"version": 1, "refs": refs}
    return result


# -- HDF5 layout --------------------------------------------------------------------------------
@dataclass
class _Hdf5Layout:
    groups: list[str]
    chunk_count: int
    chunked_datasets: int
    warnings: list[str]


def _inspect_hdf5(reader: RangeReader) -> _Hdf5Layout:
    """Walk every group's object headers (no chunk index is read) to plan and to vet."""
    import h5py
    from virtualizarr.parsers.hdf.filters import codecs_from_dataset

    groups = ["/"]
    chunk_count = chunked = 0
    dimension_scales = False
    problems: list[NotVirtualizable] = []

    def vet(name: str, obj) -> None:
        nonlocal chunk_count, chunked, dimension_scales
        dimension_scales = dimension_scales or obj.attrs.get("CLASS") == b"DIMENSION_SCALE"
        dtype = obj.dtype
        if dtype.kind == "O" and h5py.check_vlen_dtype(dtype) not in (str, bytes):
            what = "object references" if h5py.check_ref_dtype(dtype) else "variable-length arrays"
            problems.append(NotVirtualizable(f"Variable {name!r} holds {what} ({dtype}), which Zarr cannot reference.", variable=name))
            return
        try:
            codecs_from_dataset(obj)
        except Exception as error:  # an HDF5 filter with no numcodecs equivalent
            filters = ", ".join(f"{k}{v if v else ''}" for k, v in obj._filters.items()) or "unknown"
            problems.append(NotVirtualizable(
                f"Variable {name!r} uses the HDF5 filter(s) {filters}, which no Zarr codec reads ({error}).", variable=name))
            return
        if obj.chunks is not None:
            chunked += 1
            chunk_count += math.prod(math.ceil(s / c) for s, c in zip(obj.shape, obj.chunks) if c)

    def walk(group, prefix: str) -> None:
        # Group.keys()/get() read object headers only; h5py's visit/visititems ask HDF5 for
        # object info that includes the size of every chunk index, reading all of them.
        for key in group.keys():
            obj = group.get(key)
            name = f"{prefix}{key}"
            if isinstance(obj, h5py.Group):
                groups.append(f"/{name}")
                walk(obj, f"{name}/")
            elif isinstance(obj, h5py.Dataset):
                vet(name, obj)

    try:
        with h5py.File(reader, mode="r") as f:
            walk(f, "")
            netcdf = "_NCProperties" in f.attrs or dimension_scales
    except Exception as error:
        raise _classify_parse_error(error, FileFormat.HDF5) from error
    if problems:
        raise problems[0]
    notes = [] if netcdf else ["The file is HDF5 without NetCDF4 dimensions: dimensions are named phony_dim_N."]
    return _Hdf5Layout(groups, chunk_count, chunked, notes)


def _plan_reads(reader: RangeReader, layout: _Hdf5Layout) -> str:
    """Read the whole file at once when its chunk index is spread so wide that fetching it
    piece by piece would cost more (in requests) than fetching every byte."""
    index_reads = layout.chunked_datasets + layout.chunk_count / CHUNKS_PER_INDEX_READ
    whole_file_cost = REQUEST_LATENCY_S + reader.size / BANDWIDTH_BPS
    if reader.size <= WHOLE_FILE_MAX and whole_file_cost < index_reads * REQUEST_LATENCY_S:
        reader.prefetch_all()
        return "whole-file"
    return "ranged"


def _classify_parse_error(error: Exception, fmt: FileFormat) -> Exception:
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, (EOFError, OSError, ValueError, KeyError, RuntimeError)) or "truncat" in text.lower():
        kind = "NetCDF3" if fmt is FileFormat.NETCDF3 else "HDF5"
        return CorruptFile(f"The {kind} structure could not be read ({text[:300]}): the file is damaged or truncated.")
    if isinstance(error, NotImplementedError):
        return NotVirtualizable(f"The file holds data Zarr cannot reference: {text[:300]}")
    return error


def _worth_reporting(message: str) -> bool:
    """Drop warnings about Zarr V3 data types: the reference is written as Zarr V2."""
    return "Zarr V3 specification" not in message and "oversized" not in message.lower()


# -- reference post-processing ------------------------------------------------------------------
def _fix_scalar_keys(refs: dict[str, Any]) -> None:
    """virtualizarr 2.8 keys a scalar's only chunk ``var/``; Zarr V2 readers look for ``var/0``."""
    for key in [k for k in refs if k.endswith("/") and not k.endswith("//")]:
        refs[key + "0"] = refs.pop(key)


def _chunk_refs(refs: dict[str, Any]):
    """(key, [url, offset, length]) for every byte-range reference."""
    for key, value in refs.items():
        if isinstance(value, list) and len(value) == 3:
            yield key, value


def _check_ranges(refs: dict[str, Any], size: int) -> None:
    for key, (_, offset, length) in _chunk_refs(refs):
        if offset + length > size:
            variable = key.rsplit("/", 1)[0]
            raise CorruptFile(
                f"Variable {variable!r} needs bytes up to {offset + length}, but the file ends at {size}: it is truncated.",
                variable=variable,
            )


def _arrays(refs: dict[str, Any]):
    for key in list(refs):
        if key == ".zarray" or key.endswith("/.zarray"):
            path = key[: -len(".zarray")].rstrip("/")
            zattrs_key = f"{path}/.zattrs" if path else ".zattrs"
            yield path, json.loads(refs[key]), json.loads(refs.get(zattrs_key, "{}"))


def _fix_fill_values(refs: dict[str, Any]) -> list[str]:
    """Make the Zarr fill value mean what ``_FillValue`` means in NetCDF, and nothing else."""
    notes = []
    chunks_per_array = Counter(key.rsplit("/", 1)[0] for key in refs if not key.rsplit("/", 1)[-1].startswith("."))
    for path, zarray, zattrs in _arrays(refs):
        fill = zarray.get("fill_value")
        if "_FillValue" in zattrs or fill is None:
            continue
        # No _FillValue in the file: xarray must not mask anything, so no Zarr fill value;
        # chunks never written then read as what the original file gives for them.
        zarray["fill_value"] = None
        refs[f"{path}/.zarray"] = json.dumps(zarray, separators=(",", ":"))
        if _decoded_fill(zarray, fill) is not None:  # zeros need no materializing
            missing = _missing_chunk_keys(refs, path, zarray, chunks_per_array[path])
            if missing:
                notes += _materialize(refs, path, zarray, fill, missing)
    return notes


def _decoded_fill(zarray: dict, fill) -> Any:
    """The file's fill value when it differs from what Zarr gives for a missing chunk (zeros)."""
    dtype = np.dtype(zarray["dtype"]) if not isinstance(zarray["dtype"], list) else None
    if dtype is None or dtype.kind in "OUSV":
        return None
    value = np.array(fill, dtype=dtype) if not isinstance(fill, str) else np.array(float(fill), dtype=dtype)
    return None if not value.any() else value


def _missing_chunk_keys(refs: dict, path: str, zarray: dict, present: int) -> list[str]:
    grid = [math.ceil(s / c) if c else 1 for s, c in zip(zarray["shape"], zarray["chunks"])]
    if any(n == 0 for n in grid) or present >= math.prod(grid):
        return []
    keys = [".".join(map(str, idx)) for idx in np.ndindex(*grid)] if grid else ["0"]
    return [k for k in keys if f"{path}/{k}" not in refs]


def _materialize(refs: dict, path: str, zarray: dict, fill, missing: list[str]) -> list[str]:
    dtype = np.dtype(zarray["dtype"])
    chunk = np.full(tuple(zarray["chunks"]) or (), _decoded_fill(zarray, fill), dtype=dtype)
    data = chunk.tobytes()
    for codec in zarray.get("filters") or []:
        data = numcodecs.get_codec(codec).encode(data)
    if zarray.get("compressor"):
        data = numcodecs.get_codec(zarray["compressor"]).encode(data)
    data = bytes(data)
    if len(data) * len(missing) > MAX_FILL_BYTES:
        raise NotVirtualizable(
            f"Variable {path!r} has {len(missing)} chunks that were never written; filling them with its fill value "
            f"would add {len(data) * len(missing)} bytes to the reference.",
            hint="Write the variable in full (or give it a _FillValue) before referencing the file.",
            variable=path,
        )
    encoded = "base64:" + base64.b64encode(data).decode()
    for key in missing:
        refs[f"{path}/{key}"] = encoded
    return [f"{path}: {len(missing)} chunk(s) never written; they read as the file's fill value {fill}."]


def _inline_small_chunks(refs: dict[str, Any], reader: RangeReader, threshold: int) -> None:
    """Copy small variables (scalars, short coordinates) into the reference, in few GETs.

    Whole variables, not single chunks: a variable of many tiny chunks stays referenced, so
    the reference never becomes a copy of the data. Dimension coordinates up to
    ``COORDINATE_INLINE_BYTES`` are copied too, so opening a dataset reads no index values.
    """
    if threshold <= 0:
        return
    coordinates = set()
    for path, zarray, zattrs in _arrays(refs):
        dims = zattrs.get("_ARRAY_DIMENSIONS", [])
        if len(dims) == 1 and dims[0] == path.rsplit("/", 1)[-1]:
            coordinates.add(path)
    stored: dict[str, int] = {}
    for key, (_, _, length) in _chunk_refs(refs):
        variable = key.rsplit("/", 1)[0]
        stored[variable] = stored.get(variable, 0) + length
    small = {v for v, size in stored.items()
             if size <= threshold or (v in coordinates and size <= COORDINATE_INLINE_BYTES)}
    wanted = sorted((offset, length, key) for key, (_, offset, length) in _chunk_refs(refs)
                    if key.rsplit("/", 1)[0] in small)
    start = 0
    while start < len(wanted):
        end = start
        span_end = wanted[start][0] + wanted[start][1]
        while end + 1 < len(wanted) and wanted[end + 1][0] - span_end <= COALESCE_GAP:
            end += 1
            span_end = max(span_end, wanted[end][0] + wanted[end][1])
        span_start = wanted[start][0]
        data = reader.read_at(span_start, span_end - span_start)
        for offset, length, key in wanted[start : end + 1]:
            piece = data[offset - span_start : offset - span_start + length]
            refs[key] = "base64:" + base64.b64encode(piece).decode()
        start = end + 1
