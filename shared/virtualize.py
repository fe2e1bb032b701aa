"""Turn a NetCDF/HDF5 file's header into a kerchunk reference, with virtualizarr's pieces.

This runs inside a parser process (``shared/sandbox``): the file is untrusted. It

- walks an HDF5 file itself (``shared/hdf5.py``: nothing outside the blob is read, links do
  not loop, everything is sized before it is allocated) and plans the reads;
- parses a NetCDF3 header with virtualizarr's header parser and checks its record count
  against the file's size before any per-record array exists;
- nests every HDF5 group into the one reference (``group/var/...``);
- makes the reference read back what the original file reads: no Zarr fill value where the
  NetCDF variable has no ``_FillValue`` (xarray masks a Zarr fill value), and chunks that
  were never written materialized with the file's fill value;
- refuses references that point past the end of the file (a truncated upload);
- copies small variables and small dimension coordinates into the reference.
"""

from __future__ import annotations

import base64
import json
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numcodecs
import numpy as np
from virtualizarr.manifests import ManifestArray, ManifestGroup
from virtualizarr.parsers import netcdf3 as vz_netcdf3

from shared import btree, chunkrefs, hdf5
from shared.chunkrefs import ChunkTable, Reference
from shared.cf import PACKING, packing_note
from shared.errors import CorruptFile, LimitsExceeded, NcrefsError, NotVirtualizable
from shared.formats import FileFormat
from shared.reader import BANDWIDTH_BPS, REQUEST_LATENCY_S, WHOLE_FILE_MAX, RangeReader

# A v1 B-tree leaf of a chunked HDF5 dataset indexes 32 to 64 chunks: estimate 48.
CHUNKS_PER_INDEX_READ = 48
# Dimension coordinates up to this many stored bytes are copied into the reference whole,
# so opening a dataset needs no request for its index values.
COORDINATE_INLINE_BYTES = 64 << 10
# At most this many bytes of materialized fill chunks go into one reference.
MAX_FILL_BYTES = 8 << 20
# Root attributes listing what the reference leaves out: {"<variable>": why}, {"<path>": {"<attribute>": why}}.
SKIPPED_VARIABLES = "ncrefs_skipped_variables"
SKIPPED_ATTRIBUTES = "ncrefs_skipped_attributes"
DECODING_NOTES = "ncrefs_decoding_notes"


@dataclass
class Virtualized:
    reference: Reference
    warnings: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=lambda: ["/"])
    plan: str = "ranged"
    skipped_variables: dict[str, str] = field(default_factory=dict)  # left out -> why


def virtualize(reader: RangeReader, fmt: FileFormat, url: str, *, inline_threshold: int, max_chunks: int,
               strict: bool = False) -> Virtualized:
    """Parse the file behind ``reader`` and return its kerchunk reference (chunk URLs = ``url``).

    A variable Zarr cannot reference exactly is left out and named, with why, in the result,
    its warnings and the reference's own attributes; ``strict`` refuses the file instead.
    """
    result = Virtualized(reference=Reference({}))
    # Parsing runs one file at a time per process, so catching warnings here cannot mix
    # two invocations' warnings (warnings.catch_warnings is process-wide, not thread-safe).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if fmt is FileFormat.HDF5:
                root, unwritten, left_out, notes = _hdf5_group(reader, url, max_chunks, strict, result)
            else:
                root, notes, left_out = _netcdf3_group(reader, url, max_chunks)
                unwritten = {}
            # One virtual dataset per group, unaligned (a DataTree would force child groups'
            # dimensions to agree with their parents', which NetCDF does not require).
            reference = Reference({})
            for path, ds in root.to_virtual_datasets().items():
                _add_group(reference, f"{path}/" if path else "", ds)
        except NcrefsError:
            raise
        except Exception as error:
            raise classify_parse_error(error, fmt) from error
    result.warnings += [f"virtualizarr: {w.message}" for w in caught if _worth_reporting(str(w.message))]

    for path in unwritten:  # built as one empty cell, not a grid of nothing
        reference.tables.pop(path, None)
    _restore_chunk_shapes(reference.entries, unwritten)
    result.warnings += _record_left_out(reference.entries, result.skipped_variables, left_out, notes)
    _check_ranges(reference, reader.size)
    result.warnings += _fix_fill_values(reference)
    _inline_small_chunks(reference, reader, inline_threshold)
    result.reference = reference
    return result


def _add_group(reference: Reference, prefix: str, ds) -> None:
    """One group's references: virtualizarr writes the metadata (.zgroup, .zarray, .zattrs), the
    chunks' byte ranges go into tables (``shared/chunkrefs``: a whole array at a time)."""
    inlined = {}
    for name, variable in ds.variables.items():
        if isinstance(variable.data, ManifestArray):
            inlined.update(chunkrefs.inlined_entries(variable.data.manifest, f"{prefix}{name}/"))
            reference.tables[f"{prefix}{name}"] = chunkrefs.take_table(variable.data.manifest)
    reference.entries.update({prefix + key: value for key, value in ds.vz.to_kerchunk(format="dict")["refs"].items()})
    reference.entries.update(inlined)


def _hdf5_group(reader: RangeReader, url: str, max_chunks: int, strict: bool, result: Virtualized):
    import h5py

    if reader.concurrent:  # fetch a chunk index a level at a time, not a node at a time
        reader.read_ahead = btree.ReadAhead(reader.prefetch_ranges, reader.read_at, reader.size)
    # No HDF5 file locking (the reader is a stream, not a path) and no other file opened by name.
    with h5py.File(reader, mode="r", locking=False) as f:
        layout = hdf5.inspect(f, file_size=reader.size, max_chunks=max_chunks, strict=strict)
        result.skipped_variables = layout.skipped
        result.groups = layout.groups
        result.warnings += layout.warnings
        result.plan = _plan_reads(reader, layout)
        # Coordinates small enough to be copied ride along with the index reads (a round trip saved).
        announce = (lambda ranges: reader.add_riders(ranges) if sum(e - s for s, e in ranges) <= COORDINATE_INLINE_BYTES
                    else None) if reader.concurrent else None
        built = hdf5.build(layout, url, file_size=reader.size, max_chunks=max_chunks, announce=announce)
    reader.read_ahead = None  # the indexes are read: later reads (copied variables) are not index nodes
    return built.group, built.unwritten_chunks, built.skipped_attributes, built.decoding_notes


def _netcdf3_group(reader: RangeReader, url: str, max_chunks: int):
    """virtualizarr's NetCDF3 parser over our reader, with the header checked before any
    per-record array is allocated (a 308-byte header can claim two billion records); the
    variables that decode differently through a reference (``shared/cf.py``); and the
    attributes left out."""
    reader.seek(0)
    header = _without_nul_padding(vz_netcdf3._parse_header(reader))
    if header.numrecs == vz_netcdf3._STREAMING:
        header.numrecs = vz_netcdf3._resolve_streaming_numrecs(header, reader.size)
    records = [v for v in header.variables if v.is_record]
    for var in header.variables:
        if var.is_record:
            end = var.begin + max(header.numrecs - 1, 0) * header.recsize + vz_netcdf3._record_nbytes(var)
        else:
            end = var.begin + math.prod(var.shape) * var.dtype.itemsize
        if (var.is_record and header.numrecs > 0 or not var.is_record and 0 not in var.shape) and end > reader.size:
            claim = f"for the {header.numrecs:,} records its header claims" if var.is_record else "for its data"
            raise CorruptFile(
                f"Variable {var.name!r} needs bytes up to {end:,} {claim}, but the file ends at {reader.size:,}: "
                "it is truncated or its header is damaged.", variable=var.name)
    chunks = header.numrecs * len(records) + len(header.variables) - len(records)
    if chunks > max_chunks:
        raise LimitsExceeded(f"The file's {header.numrecs:,} records make {chunks:,} chunks, more than MAX_CHUNKS={max_chunks:,}.",
                             hint="Raise MAX_CHUNKS (and PARSE_MEMORY_MB) if the file is genuine.")
    left_out = _integer_fill_values_that_are_not_integers(header)
    arrays = {var.name: vz_netcdf3._build_manifest_array(var, header, url) for var in header.variables}
    packing = _netcdf3_packing_types(reader)
    notes = {var.name: note for var in header.variables
             if (note := packing_note(var.dtype, packing.get(var.name, {})))}
    return ManifestGroup(arrays=arrays, attributes=header.attributes), notes, left_out


def _integer_fill_values_that_are_not_integers(header) -> dict[str, dict[str, str]]:
    """An integer variable whose _FillValue is NaN (or not a whole number) cannot mask anything:
    xarray ignores such a fill value in the original, so the reference leaves it out, and says so."""
    left_out = {}
    for var in header.variables:
        fill = var.attributes.get("_FillValue")
        if var.dtype.kind in "iu" and isinstance(fill, float) and not (math.isfinite(fill) and fill.is_integer()):
            del var.attributes["_FillValue"]
            left_out[var.name] = {"_FillValue": f"{fill} is no value of the integer type {var.dtype.name}; "
                                                "it masks nothing (xarray ignores it in the original too)"}
    return left_out


def _netcdf3_packing_types(reader: RangeReader) -> dict[str, dict[str, np.generic]]:
    """Each variable's scale_factor/add_offset with the type the header gives them (virtualizarr's
    header parser returns plain Python numbers); a second walk of the header, in the cache."""
    reader.seek(0)
    r = vz_netcdf3._HeaderReader(reader, reader.read(4)[3])
    r.size()  # numrecs

    def attributes() -> dict[str, np.generic]:
        r.int32()
        typed = {}
        for _ in range(r.size()):
            name = _netcdf3_name(r.name())
            nc_type = r.int32()
            r._check_type(nc_type)
            value = r.values(nc_type, r.size())
            if name in PACKING and not isinstance(value, (str, list)):
                typed[name] = vz_netcdf3._NC_TYPES[nc_type].type(value)
        return typed

    r.int32()
    for _ in range(r.size()):  # dimensions
        r.name()
        r.size()
    attributes()  # global
    r.int32()
    found = {}
    for _ in range(r.size()):
        name = _netcdf3_name(r.name())
        for _ in range(r.size()):
            r.size()  # dimension ids
        found[name] = attributes()
        r.int32(), r.size(), r.offset()  # type, vsize, begin
    return found


def _netcdf3_name(name: str) -> str:
    """A NetCDF3 name as netCDF-C reads it: up to the first NUL (some writers pad names with
    NULs inside their declared length, e.g. ``yy\x00``)."""
    return name.split("\x00", 1)[0]


def _without_nul_padding(header):
    def clean_attributes(attributes: dict) -> dict:
        return {_netcdf3_name(k): v for k, v in attributes.items()}

    header.dimensions = {_netcdf3_name(k): v for k, v in header.dimensions.items()}
    header.attributes = clean_attributes(header.attributes)
    for var in header.variables:
        var.name = _netcdf3_name(var.name)
        var.dimensions = tuple(_netcdf3_name(d) for d in var.dimensions)
        var.attributes = clean_attributes(var.attributes)
    return header


def _plan_reads(reader: RangeReader, layout: hdf5.Hdf5Layout) -> str:
    """Read the whole file at once when its chunk index is spread so wide that fetching it
    piece by piece would cost more (in requests) than fetching every byte."""
    index_reads = layout.chunked_datasets + layout.chunk_count / CHUNKS_PER_INDEX_READ
    whole_file_cost = REQUEST_LATENCY_S + reader.size / BANDWIDTH_BPS
    if reader.size <= WHOLE_FILE_MAX and whole_file_cost < index_reads * REQUEST_LATENCY_S:
        reader.prefetch_all()
        return "whole-file"
    return "ranged"


def classify_parse_error(error: BaseException, fmt: FileFormat) -> NcrefsError:
    """A parser's exception, as what it says about the file (never ``internal``)."""
    kind = "NetCDF3" if fmt is FileFormat.NETCDF3 else "HDF5"
    text = f"{type(error).__name__}: {str(error)[:300]}"
    if isinstance(error, MemoryError):
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]  # the parser process runs under PARSE_MEMORY_MB
        named = f" past PARSE_MEMORY_MB={limit >> 20} MB" if limit != resource.RLIM_INFINITY else ""
        return LimitsExceeded(f"Parsing the {kind} structure ran out of memory{named} ({text}).",
                              hint="Raise PARSE_MEMORY_MB if the file is genuine; a damaged header can claim any size.")
    if isinstance(error, RecursionError):
        return CorruptFile(f"The {kind} structure is nested too deeply to read ({text}): the file is damaged or hostile.")
    if isinstance(error, NotImplementedError):
        return NotVirtualizable(f"The file holds data Zarr cannot reference: {text}")
    truncated = isinstance(error, EOFError) or "truncat" in text.lower()
    what = "truncated" if truncated else "damaged"
    return CorruptFile(f"The {kind} structure could not be read ({text}): the file is {what}.",
                       hint="Upload the file again in full, then retry." if truncated else
                       "The file is damaged or is not valid NetCDF/HDF5; check it with ncdump -h or h5dump -H.")


def _worth_reporting(message: str) -> bool:
    """Drop warnings about Zarr V3 data types (the reference is written as Zarr V2) and about
    groups whose variables are all copied into the reference (they are meant to be)."""
    return ("Zarr V3 specification" not in message and "oversized" not in message.lower()
            and "entirely non-virtual" not in message)


# -- reference post-processing ------------------------------------------------------------------
def _record_left_out(refs: dict[str, Any], variables: dict[str, str], attributes: dict[str, dict[str, str]],
                     notes: dict[str, str]) -> list[str]:
    """Say in the reference itself what it does not hold or shows differently, and why
    (``ncrefs_skipped_variables``, ``ncrefs_skipped_attributes``, ``ncrefs_decoding_notes`` in
    the root group's attributes), and return the same as warnings."""
    records = {SKIPPED_VARIABLES: variables, SKIPPED_ATTRIBUTES: attributes, DECODING_NOTES: notes}
    if not any(records.values()):
        return []
    root = json.loads(refs.get(".zattrs", "{}"))
    root.update({key: value for key, value in records.items() if value})
    refs[".zattrs"] = json.dumps(root, separators=(",", ":"))
    return ([f"variable {name!r} left out: it {why}." for name, why in variables.items()]
            + [f"{path}: attribute {name!r} left out: {why}." for path, names in attributes.items() for name, why in names.items()]
            + [f"variable {name!r} {why}." for name, why in notes.items()])


def _restore_chunk_shapes(refs: dict[str, Any], unwritten: dict[str, tuple[int, ...]]) -> None:
    """A never-written variable was built as one empty chunk (no grid to allocate); its
    reference shows the file's chunk shape, so missing chunks read as fill chunk by chunk."""
    for path, chunks in unwritten.items():
        zarray = json.loads(refs[f"{path}/.zarray"])
        zarray["chunks"] = list(chunks)
        refs[f"{path}/.zarray"] = json.dumps(zarray, separators=(",", ":"))


def _check_ranges(reference: Reference, size: int) -> None:
    for variable, table in reference.tables.items():
        if (end := table.max_end()) > size:
            raise CorruptFile(f"Variable {variable!r} needs bytes up to {end}, but the file ends at {size}: it is truncated.",
                              variable=variable)


def _arrays(refs: dict[str, Any]):
    for key in list(refs):
        if key == ".zarray" or key.endswith("/.zarray"):
            path = key[: -len(".zarray")].rstrip("/")
            zattrs_key = f"{path}/.zattrs" if path else ".zattrs"
            yield path, json.loads(refs[key]), json.loads(refs.get(zattrs_key, "{}"))


def _fix_fill_values(reference: Reference) -> list[str]:
    """Make the Zarr fill value mean what ``_FillValue`` means in NetCDF, and nothing else."""
    notes = []
    refs = reference.entries
    in_entries = Counter(key.rsplit("/", 1)[0] for key in refs if not key.rsplit("/", 1)[-1].startswith("."))
    for path, zarray, zattrs in _arrays(refs):
        fill = zarray.get("fill_value")
        if "_FillValue" in zattrs or fill is None:
            continue
        # No _FillValue in the file: xarray must not mask anything, so no Zarr fill value;
        # chunks never written then read as what the original file gives for them.
        zarray["fill_value"] = None
        refs[f"{path}/.zarray"] = json.dumps(zarray, separators=(",", ":"))
        if _decoded_fill(zarray, fill) is not None:  # zeros need no materializing
            table = reference.tables.get(path)
            present = in_entries[path] + (table.count() if table is not None else 0)
            notes += _materialize(refs, path, zarray, fill, present, table)
    return notes


def _decoded_fill(zarray: dict, fill) -> Any:
    """The file's fill value when it differs from what Zarr gives for a missing chunk (zeros)."""
    dtype = np.dtype(zarray["dtype"]) if not isinstance(zarray["dtype"], list) else None
    if dtype is None or dtype.kind in "OUSV":
        return None
    value = np.array(fill, dtype=dtype) if not isinstance(fill, str) else np.array(float(fill), dtype=dtype)
    return None if not value.any() else value


def _missing_chunk_keys(refs: dict, path: str, grid: list[int], table: ChunkTable | None) -> list[str]:
    if table is not None:  # the cells with no byte range
        keys = table.keys(np.flatnonzero(~table.present()))
    else:
        keys = [".".join(map(str, idx)) for idx in np.ndindex(*grid)] if grid else ["0"]
    return [k for k in keys if f"{path}/{k}" not in refs]


def _materialize(refs: dict, path: str, zarray: dict, fill, present: int, table: ChunkTable | None) -> list[str]:
    """Write the never-written chunks of ``path`` as chunks of its fill value, sized first:
    the chunk and the total are checked before any chunk is encoded or any key enumerated."""
    dtype = np.dtype(zarray["dtype"])
    shape = tuple(zarray["chunks"]) or ()
    grid = [math.ceil(s / c) if c else 1 for s, c in zip(zarray["shape"], zarray["chunks"])]
    missing_count = math.prod(grid) - present  # an empty grid (a zero-length axis) has nothing missing
    if missing_count <= 0:
        return []
    chunk_bytes = math.prod(shape) * dtype.itemsize

    def refuse(total: int) -> NotVirtualizable:
        return NotVirtualizable(
            f"Variable {path!r} has {missing_count:,} chunks that were never written; filling them with its fill value "
            f"would add about {total:,} bytes to the reference (at most {MAX_FILL_BYTES:,}).",
            hint="Write the variable in full (or give it a _FillValue) before referencing the file.",
            variable=path,
        )

    if chunk_bytes > MAX_FILL_BYTES * 8:  # too big to encode even once
        raise refuse(chunk_bytes * missing_count)
    data = np.full(shape, _decoded_fill(zarray, fill), dtype=dtype).tobytes()
    for codec in zarray.get("filters") or []:
        data = numcodecs.get_codec(codec).encode(data)
    if zarray.get("compressor"):
        data = numcodecs.get_codec(zarray["compressor"]).encode(data)
    encoded = "base64:" + base64.b64encode(bytes(data)).decode()
    # What each entry adds to the reference: its key ("path/i.j.k") and the encoded chunk.
    entry_bytes = len(encoded) + len(path) + 8 + 2 * len(shape) * len(str(max(zarray["shape"], default=0)))
    if entry_bytes * missing_count > MAX_FILL_BYTES:
        raise refuse(entry_bytes * missing_count)
    missing = _missing_chunk_keys(refs, path, grid, table)
    for key in missing:
        refs[f"{path}/{key}"] = encoded
    return [f"{path}: {len(missing)} chunk(s) never written; they read as the file's fill value {fill}."]


def _inline_small_chunks(reference: Reference, reader: RangeReader, threshold: int) -> None:
    """Copy small variables (scalars, short coordinates) into the reference, in few GETs.

    Whole variables, not single chunks: a variable of many tiny chunks stays referenced, so
    the reference never becomes a copy of the data. Dimension coordinates up to
    ``COORDINATE_INLINE_BYTES`` are copied too, so opening a dataset reads no index values.
    """
    if threshold <= 0:
        return
    refs = reference.entries
    coordinates = set()
    for path, zarray, zattrs in _arrays(refs):
        dims = zattrs.get("_ARRAY_DIMENSIONS", [])
        if len(dims) == 1 and dims[0] == path.rsplit("/", 1)[-1]:
            coordinates.add(path)
    small = {path: table for path, table in reference.tables.items()
             if (size := table.stored_bytes()) <= threshold or (path in coordinates and size <= COORDINATE_INLINE_BYTES)}
    wanted = []  # (offset, length, key) of every chunk of a small variable
    for path, table in small.items():
        flat = np.flatnonzero(table.present())
        keys = [f"{path}/{key}" for key in table.keys(flat)]
        wanted += zip(table.offsets[flat].tolist(), table.lengths[flat].tolist(), keys)
    # All at once (the reader merges close pieces into one GET): a NetCDF3 record variable (time) is one
    # small piece per record, a GET each.
    reader.prefetch_ranges([(offset, offset + length) for offset, length, _ in wanted])
    for offset, length, key in wanted:
        refs[key] = "base64:" + base64.b64encode(reader.read_at(offset, length)).decode()
    for path in small:  # their bytes are in the entries now
        del reference.tables[path]
