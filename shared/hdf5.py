"""Walk an HDF5 file's structure as if it were hostile, and build its virtual Zarr groups.

virtualizarr's ``HDFParser`` trusts the file: it follows every link (an external link opens
another file; a link to an ancestor recurses forever), lets h5py read external raw storage
and virtual datasets (other files, with the worker's rights), sizes empty chunk grids from
the array shape (a 4 KB header asks for gigabytes) and names dimensions through h5py's
``.name``, which searches the whole file for each one (quadratic in the number of
variables). So ncrefs walks the file itself and builds each array from virtualizarr's pieces:

- **nothing outside the blob**: external raw storage and virtual datasets are refused before
  any data is read; external links are never followed (reported as warnings);
- **links are names, not objects**: each object is referenced once, at its first name in
  the walk; soft links, second hard links and dangling links are reported, so cycles end;
- **sized before allocated**: attribute values (against the file's size), chunk counts
  (``MAX_CHUNKS``, counted while the index is read, so a looping index stops too), and
  never-written variables (no chunk grid at all);
- **dimension names from addresses** collected during the walk (linear), and axes without a
  scale named as netCDF-C names them;
- **read as netCDF reads it**: netCDF-C's bookkeeping undone (dimension-only scales,
  ``_nc4_non_coord_``), attributes decoded as netCDF4-python decodes them, compact data and
  chunks stored past some filters copied into the reference;
- **partial, never silent**: a variable Zarr cannot reference exactly, or an attribute a Zarr
  attribute cannot hold, is left out and named with its reason (strict mode refuses instead).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
from numcodecs.compat import ensure_bytes
from virtualizarr.codecs import zarr_codec_config_to_v3
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import INLINED_CHUNK_PATH
from virtualizarr.manifests.utils import create_v3_array_metadata
from virtualizarr.parsers.hdf import hdf as vz_hdf
from virtualizarr.parsers.hdf.filters import codecs_from_dataset
from virtualizarr.parsers.utils import encode_cf_fill_value

from shared import codecs  # noqa: F401 - registers the HDF5 plugin codecs with zarr
from shared.cf import PACKING, packing_note
from shared.errors import CorruptFile, LimitsExceeded, NotVirtualizable

# Attribute values a file may hold in all (they are copied into the reference).
MAX_ATTRIBUTE_BYTES = 64 << 20
# Elements of a variable-length string or compound variable read to copy it into the reference.
MAX_COPIED_ELEMENTS = 1_000_000
NON_COORDINATE_PREFIX = "_nc4_non_coord_"
# netCDF-C's NAME attribute on a dimension scale that only defines a dimension.
NOT_A_VARIABLE = b"This is a netCDF dimension but not a netCDF variable"
# Attributes that are HDF5 or netCDF-C bookkeeping, which netCDF readers do not show (exact names:
# an older file's _NCPROPERTIES is an ordinary attribute to netCDF-C, and shown).
HIDDEN_ATTRIBUTES = {"REFERENCE_LIST", "CLASS", "DIMENSION_LIST", "NAME", "_Netcdf4Dimid", "_Netcdf4Coordinates",
                     "_nc3_strict", "_NCProperties", "_IsNetcdf4", "_SuperblockVersion"}


@dataclass
class _Node:
    """One group as walked: its datasets and child groups, by the names they are referenced under."""

    path: str  # "/" or "/a/b"
    group: Any
    datasets: dict[str, Any] = field(default_factory=dict)
    children: dict[str, _Node] = field(default_factory=dict)


@dataclass
class Hdf5Layout:
    root: _Node
    groups: list[str]
    chunk_count: int  # chunk-grid cells of chunked variables, from their headers
    chunked_datasets: int
    warnings: list[str]
    paths: dict[tuple, str]  # object address -> the path it is referenced under
    bare: set[str]  # paths of objects without attributes (h5py's attribute iteration is slow)
    skipped: dict[str, str]  # variables left out -> why
    strict: bool


def inspect(f: h5py.File, *, file_size: int, max_chunks: int, strict: bool = False) -> Hdf5Layout:
    """Walk every group's object headers (no chunk index, no data) to vet the file and plan reads.

    A variable Zarr cannot reference exactly is left out, with its reason (``skipped``);
    ``strict`` refuses the file instead.
    """
    paths: dict[tuple, str] = {}
    skipped: dict[str, str] = {}
    bare: set[str] = set()
    notes: list[str] = []
    groups: list[str] = []
    counts = {"chunks": 0, "chunked": 0, "attribute_bytes": 0, "scales": 0}

    def vet_attributes(obj, where: str) -> None:
        for name in obj.attrs:
            attr = obj.attrs.get_id(name)
            nbytes = math.prod(attr.shape or ()) * attr.dtype.itemsize
            if nbytes > file_size:
                raise CorruptFile(f"Attribute {name!r} of {where} claims {nbytes:,} bytes, but the file has {file_size:,}.")
            counts["attribute_bytes"] += nbytes
            if counts["attribute_bytes"] > MAX_ATTRIBUTE_BYTES:
                raise LimitsExceeded(f"The file's attributes hold more than {MAX_ATTRIBUTE_BYTES >> 20} MB; "
                                     "ncrefs copies attributes into the reference and stops there.")

    def vet_dataset(name: str, obj, has_attributes: bool) -> bool:
        """Whether the variable is referenced (else it is left out, with the reason recorded)."""
        refuse_outside_data(name, obj)
        reason = unsupported(obj)
        if reason is not None:
            if strict:
                raise NotVirtualizable(f"Variable {name!r} {reason}.", variable=name,
                                       hint="Convert or drop that variable, or reference the file without strict mode.")
            skipped[name] = reason
            return False
        if has_attributes:
            vet_attributes(obj, f"variable {name!r}")
            if obj.attrs.get("CLASS") == b"DIMENSION_SCALE":
                counts["scales"] += 1
        if obj.chunks is not None:
            counts["chunked"] += 1
            counts["chunks"] += math.prod(math.ceil(s / c) for s, c in zip(obj.shape, obj.chunks) if c)
        return True

    def walk(node: _Node) -> None:
        # Low-level h5py calls: a file may hold tens of thousands of objects. Objects are told
        # apart by H5Gget_objinfo's address; H5Oget_info would read every chunk index.
        groups.append(node.path)
        prefix = "" if node.path == "/" else node.path
        for key in node.group.keys():
            path = f"{prefix}/{key}"
            name = key.encode()
            kind = node.group.id.links.get_info(name).type
            if kind == h5py.h5l.TYPE_EXTERNAL:
                link = node.group.get(key, getlink=True)
                notes.append(f"{path}: external link to {link.path!r} in file {link.filename!r} not followed "
                             "(a reference never reads outside its own file).")
                continue
            if kind not in (h5py.h5l.TYPE_HARD, h5py.h5l.TYPE_SOFT):  # user-defined link types
                notes.append(f"{path}: a link of an unknown kind ({kind}); not followed.")
                continue
            try:
                oid = h5py.h5o.open(node.group.id, name)
            except KeyError:
                target = node.group.get(key, getlink=True).path
                notes.append(f"{path}: link to {target!r}, which does not exist; left out.")
                continue
            info = h5py.h5g.get_objinfo(oid)
            if info.objno in paths:
                what = "soft link" if kind == h5py.h5l.TYPE_SOFT else "second name"
                notes.append(f"{path}: {what} of {paths[info.objno]!r}, which is referenced under that name only.")
                continue
            paths[info.objno] = path
            attributes = h5py.h5a.get_num_attrs(oid) > 0
            if not attributes:
                bare.add(path)
            if info.type == h5py.h5g.GROUP:
                group = h5py.Group(oid)
                if attributes:
                    vet_attributes(group, f"group {path!r}")
                node.children[key] = child = _Node(path, group)
                walk(child)
            elif info.type == h5py.h5g.DATASET:
                dataset = h5py.Dataset(oid)
                if vet_dataset(path.lstrip("/"), dataset, attributes):
                    node.datasets[key] = dataset
            else:  # a named datatype: not data
                notes.append(f"{path}: a named datatype, not a variable; left out.")

    root = _Node("/", f)
    paths[h5py.h5g.get_objinfo(f.id).objno] = "/"
    vet_attributes(f, "the root group")
    walk(root)
    if counts["chunks"] > max_chunks:
        notes.append(f"The file's variables have up to {counts['chunks']:,} chunks in all; "
                     f"referencing fails if more than MAX_CHUNKS={max_chunks:,} were written.")
    netcdf = "_NCProperties" in f.attrs or counts["scales"] > 0
    if not netcdf:
        notes.insert(0, "The file is HDF5 without NetCDF4 dimensions: dimensions are named phony_dim_N.")
    return Hdf5Layout(root, groups, counts["chunks"], counts["chunked"], notes, paths, bare, skipped, strict)


def refuse_outside_data(name: str, dataset) -> None:
    """Refuse the file when a variable's bytes are not all in it: nothing outside the blob is read."""
    dcpl = dataset.id.get_create_plist()
    if dcpl.get_external_count() > 0:
        files = ", ".join(repr(dcpl.get_external(i)[0].decode(errors="replace")) for i in range(dcpl.get_external_count()))
        raise NotVirtualizable(
            f"Variable {name!r} keeps its data in external file(s) {files}, outside the blob; "
            "ncrefs never reads outside the file it references.",
            hint="Rewrite the file with the data inside it (e.g. nccopy or h5repack), then upload it again.",
            variable=name,
        )
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        raise NotVirtualizable(
            f"Variable {name!r} is an HDF5 virtual dataset (its data is mapped from other datasets or files); "
            "ncrefs never reads outside the file it references.",
            hint="Materialize the virtual dataset (e.g. h5repack -l CONTI), then upload the file again.",
            variable=name,
        )


def unsupported(dataset) -> str | None:
    """Why Zarr cannot reference this variable exactly, or None."""
    dtype = dataset.dtype
    if dtype.kind == "O" and h5py.check_vlen_dtype(dtype) not in (str, bytes):
        what = "object references" if h5py.check_ref_dtype(dtype) else "variable-length arrays"
        return f"holds {what} ({dtype}), which Zarr cannot reference"
    if dtype.names is not None and _has_padding(dtype):
        return "holds compound records with padding between fields, which a Zarr record type cannot describe"
    try:
        codecs = codecs_from_dataset(dataset)
    except Exception as error:  # noqa: BLE001 - an HDF5 filter with no numcodecs equivalent
        filters = ", ".join(f"{k}{v if v else ''}" for k, v in dataset._filters.items()) or "unknown"
        return f"uses the HDF5 filter(s) {filters}, which no Zarr codec reads ({error})"
    steps = dataset.id.get_create_plist().get_nfilters()
    if len(codecs) != steps:  # h5py lists filters by id: one used twice would be decoded once
        return f"has {steps} HDF5 filter steps that map onto {len(codecs)} Zarr codecs (a filter used twice?)"
    return None


def _has_padding(dtype: np.dtype) -> bool:
    """Whether a record type's fields leave gaps (Zarr's record dtypes are packed)."""
    if dtype.names is None:
        return dtype.subdtype is not None and _has_padding(dtype.subdtype[0])
    packed = 0
    for name in dtype.names:
        field_dtype, offset = dtype.fields[name][:2]
        if offset != packed or _has_padding(field_dtype):
            return True
        packed += field_dtype.itemsize
    return packed != dtype.itemsize


# -- building the virtual groups ----------------------------------------------------------------
# Chunks stored past some of their variable's filters are copied into the reference re-encoded,
# up to this many bytes (decoded or stored, whichever is larger) per file.
MAX_MASKED_CHUNK_BYTES = 8 << 20


@dataclass
class _Budget:
    """Chunks the file may still reference (MAX_CHUNKS), spent while chunk indexes are read;
    and bytes of chunks stored past some of their filters it may still copy (re-encoded)."""

    remaining: int
    limit: int
    masked_bytes: int = MAX_MASKED_CHUNK_BYTES

    def exceeded(self, variable: str) -> LimitsExceeded:
        return LimitsExceeded(
            f"Variable {variable!r} takes the file past MAX_CHUNKS={self.limit:,} chunks.",
            hint="Raise MAX_CHUNKS (and PARSE_MEMORY_MB) if the file is genuine, or rechunk it with larger chunks.",
            variable=variable,
        )


@dataclass
class Built:
    group: ManifestGroup
    # Variables that were never written, with the chunk shape their .zarray must show.
    unwritten_chunks: dict[str, tuple[int, ...]]
    # Attributes that a Zarr attribute cannot hold: {"<variable or group path>": {"<attribute>": why}}.
    skipped_attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    # Variables that decode differently through a reference (shared/cf.py): {"<variable>": why}.
    decoding_notes: dict[str, str] = field(default_factory=dict)


def build(layout: Hdf5Layout, url: str, *, file_size: int, max_chunks: int,
          announce: Callable[[list[tuple[int, int]]], None] | None = None) -> Built:
    """The file's groups as virtualizarr ManifestGroups (this reads the chunk indexes).

    ``announce``: told the byte ranges of each group's 1-D dimension scales (coordinates) before the
    other variables' indexes are read, so the reader can fetch the ones it will copy with them."""
    budget = _Budget(max_chunks, max_chunks)
    early: dict[str, ChunkManifest | None] = {}  # path -> a coordinate's manifest, read ahead of its turn
    unwritten: dict[str, tuple[int, ...]] = {}
    skipped_attributes: dict[str, dict[str, str]] = {}
    decoding_notes: dict[str, str] = {}

    def attributes(obj, path: str) -> dict:
        if path in layout.bare:
            return {}
        values, skipped = _attributes(obj)
        if skipped:  # keyed as variables are named ("group/var"); the root group is "/"
            skipped_attributes[path.lstrip("/") or "/"] = skipped
        return values

    phony = _PhonyDimensions(layout.root)

    def build_group(node: _Node) -> ManifestGroup:
        prefix = "" if node.path == "/" else node.path
        skip = _dimension_only_scales(node, layout.bare)
        phony_names = phony.by_group[node.path]
        if announce is not None:
            _announce_coordinates(node, prefix, skip, url, budget, file_size, early, announce)
        arrays = {}
        for key, dataset in node.datasets.items():
            if key in skip:
                continue
            path = f"{prefix}/{key}"
            dims = _dimension_names(dataset, path, node.path, layout.paths, phony_names.get(key))
            name = _variable_name(key)
            try:
                values = attributes(dataset, path)
                note = packing_note(dataset.dtype, {k: dataset.attrs[k] for k in PACKING if k in values})
                if note:
                    decoding_notes[f"{prefix}/{name}".lstrip("/")] = note
                arrays[name] = _build_array(url, dataset, values, dims, f"{prefix}/{name}", budget, file_size, unwritten,
                                            early.pop(f"{prefix}/{name}", _NOT_READ))
            except (NotVirtualizable, ValueError, TypeError, NotImplementedError) as error:
                # A type the Zarr side cannot express (virtualizarr or zarr refused it): leave it out, say why.
                reason = error.message if isinstance(error, NotVirtualizable) else f"cannot be represented in Zarr ({error})"
                if layout.strict:
                    raise NotVirtualizable(f"Variable {path.lstrip('/')!r} {reason}.", variable=path.lstrip("/")) from error
                layout.skipped[path.lstrip("/")] = reason
        groups = {key: build_group(child) for key, child in node.children.items()}
        return ManifestGroup(arrays=arrays, groups=groups, attributes=attributes(node.group, node.path))

    return Built(build_group(layout.root), unwritten, skipped_attributes, decoding_notes)


_NOT_READ = object()  # no manifest read ahead


def _variable_name(key: str) -> str:
    """The name a dataset is shown under: netCDF-C stores a variable named like a dimension it is not the
    coordinate of under a prefix (beside a dimension-only scale of that name) and shows it under its own name."""
    return key.removeprefix(NON_COORDINATE_PREFIX) or key


def _announce_coordinates(node: _Node, prefix: str, skip, url: str, budget: _Budget, file_size: int,
                          early: dict, announce: Callable[[list[tuple[int, int]]], None]) -> None:
    """Read the chunk indexes of a group's numeric 1-D dimension scales first (usually a node or two in
    the header) and announce their chunks' byte ranges. Same manifests as in their turn; one that
    cannot be read here is read again in its turn, where its error is reported in order."""
    for key, dataset in node.datasets.items():
        if key in skip or dataset.ndim != 1 or dataset.dtype.kind not in "iuf" or not h5py.h5ds.is_scale(dataset.id):
            continue
        path = f"{prefix}/{_variable_name(key)}"
        try:
            manifest = _chunk_manifest(url, dataset, vz_hdf._chunk_shape(dataset), path.lstrip("/"), budget, file_size)
        except Exception:  # noqa: BLE001 - read again in its turn
            continue
        early[path] = manifest
        if manifest is not None:
            lengths = manifest._lengths.ravel()
            offsets = manifest._offsets.ravel()[lengths > 0]
            announce([(int(o), int(o + n)) for o, n in zip(offsets, lengths[lengths > 0])])


def _build_array(url: str, dataset, attrs: dict, dims: list[str], path: str, budget: _Budget,
                 file_size: int, unwritten: dict[str, tuple[int, ...]], early=_NOT_READ) -> ManifestArray:
    """virtualizarr's ``_construct_manifest_array``, with sized reads and a manifest for
    never-written variables that allocates nothing."""
    dtype = dataset.dtype
    vlen_string = h5py.check_vlen_dtype(dtype) in (str, bytes)
    compound = None
    if vlen_string or (dtype.names is not None and any(dtype[n].kind == "O" for n in dtype.names)):
        if dataset.size > MAX_COPIED_ELEMENTS:
            raise LimitsExceeded(f"Variable {path.lstrip('/')!r} holds {dataset.size:,} variable-length values; ncrefs copies "
                                 f"at most {MAX_COPIED_ELEMENTS:,} into a reference.", variable=path.lstrip("/"))
    if not vlen_string and dtype.names is not None and any(dtype[n].kind == "O" for n in dtype.names):
        compound, _ = vz_hdf._read_compound(dataset, False)
        dtype = compound.dtype
    if vlen_string:
        dtype = np.dtypes.StringDType()

    if "_FillValue" in attrs and dtype.kind not in ("S", "U", "O", "T"):
        attrs["_FillValue"] = encode_cf_fill_value(attrs["_FillValue"], dtype)

    if vlen_string or compound is not None:
        # Their chunks hold heap pointers: the values are read now and copied into the reference.
        chunks = vz_hdf._vlen_string_chunk_shape(dataset)
        codec_configs: list[dict] = []
        fill_value = vz_hdf._get_fill_value(dataset) if vlen_string else None
        if vlen_string:
            manifest = vz_hdf._inlined_vlen_string_manifest(dataset, chunks=chunks, fill_value=fill_value)
        else:
            manifest = vz_hdf._inlined_array_manifest(compound, chunks=chunks)
    else:
        chunks = vz_hdf._chunk_shape(dataset)
        codec_configs = [zarr_codec_config_to_v3(codec.get_config()) for codec in codecs_from_dataset(dataset)]
        fill_value = vz_hdf._get_fill_value(dataset)
        manifest = _chunk_manifest(url, dataset, chunks, path.lstrip("/"), budget, file_size) if early is _NOT_READ else early
        if manifest is None:  # never written: one empty chunk-grid cell; the real chunk shape is restored later
            unwritten[path.lstrip("/")] = chunks
            chunks = tuple(max(s, 1) for s in dataset.shape)
            manifest = ChunkManifest(entries={}, shape=(1,) * len(chunks))
    metadata = create_v3_array_metadata(shape=dataset.shape, data_type=dtype, chunk_shape=chunks, fill_value=fill_value,
                                        codecs=codec_configs, dimension_names=dims, attributes=attrs)
    return ManifestArray(metadata=metadata, chunkmanifest=manifest)


def _chunk_manifest(url: str, dataset, chunks: tuple[int, ...], name: str, budget: _Budget,
                    file_size: int) -> ChunkManifest | None:
    """The byte ranges of a dataset's chunks, or None when none was ever written. Compact
    data and chunks stored past some of the variable's filters are copied into the manifest."""
    dsid = dataset.id
    if dataset.chunks is None:
        if dsid.get_create_plist().get_layout() == h5py.h5d.COMPACT:
            return _compact_manifest(dataset, name, budget)
        offset = dsid.get_offset()
        if offset is None:
            return None
        if budget.remaining < 1:
            raise budget.exceeded(name)
        budget.remaining -= 1
        shape = (1,) * len(dataset.shape)
        return ChunkManifest.from_arrays(
            paths=np.full(shape, url, dtype=np.dtypes.StringDType()),
            offsets=np.full(shape, offset, dtype=np.uint64),
            lengths=np.full(shape, dsid.get_storage_size(), dtype=np.uint64),
            validate_paths=False,
        )

    grid = tuple(math.ceil(s / c) for s, c in zip(dataset.shape, chunks))
    cells = math.prod(grid)
    # The index as flat arrays, not a million StoreInfo objects (~200 bytes each).
    corners, byte_offsets, sizes, flagged = array("Q"), array("Q"), array("Q"), []
    limit = min(cells, budget.remaining)

    def take(info):
        corners.extend(info.chunk_offset)
        byte_offsets.append(info.byte_offset)
        sizes.append(info.size)
        if info.filter_mask:
            flagged.append(info)
        return True if len(byte_offsets) > limit else None  # a looping index stops here

    dsid.chunk_iter(take)
    count = len(byte_offsets)
    if not count:
        return None
    if count > budget.remaining:
        raise budget.exceeded(name)
    if count > cells:
        raise CorruptFile(f"Variable {name!r}'s chunk index lists more chunks than its shape holds: the file is damaged.",
                          variable=name)
    masked = _masked_chunks(dataset, flagged, name, budget, file_size)
    budget.remaining -= count
    keys = np.frombuffer(corners, dtype=np.uint64).reshape(count, len(grid)) // np.array(chunks, dtype=np.uint64)
    outside = (keys >= np.array(grid, dtype=np.uint64)).any(axis=1)
    cells_listed = np.ravel_multi_index(tuple(keys.T.astype(np.intp)), grid) if not outside.any() else None
    del keys
    if cells_listed is None or np.count_nonzero(np.bincount(cells_listed, minlength=cells)) != count:
        bad = "outside the grid" if cells_listed is None else "listed twice"
        raise CorruptFile(f"Variable {name!r}'s chunk index is inconsistent (a chunk {bad}).", variable=name)
    offsets = np.zeros(cells, dtype=np.uint64)
    lengths = np.zeros(cells, dtype=np.uint64)
    offsets[cells_listed] = np.frombuffer(byte_offsets, dtype=np.uint64)
    if chunks != dataset.chunks:  # trimmed: each chunk read as the chunk shape Zarr is told
        lengths[cells_listed] = math.prod(chunks) * dataset.dtype.itemsize
    else:
        lengths[cells_listed] = np.frombuffer(sizes, dtype=np.uint64)
    offsets, lengths = offsets.reshape(grid), lengths.reshape(grid)
    paths = np.full(cells, "", dtype=np.dtypes.StringDType())  # "" marks a chunk never written
    paths[cells_listed] = url
    paths = paths.reshape(grid)
    inlined = _reencoded_chunks(dataset, masked, chunks, name)
    for key, data in inlined.items():  # never a byte range: the codec chain would misread it
        paths[key] = INLINED_CHUNK_PATH
        offsets[key] = 0
        lengths[key] = len(data)
    return ChunkManifest.from_arrays(paths=paths, offsets=offsets, lengths=lengths, validate_paths=False,
                                     inlined=inlined or None)


# HDF5 keeps a compact dataset's data in its object header, behind a 16-bit size.
MAX_COMPACT_BYTES = (1 << 16) - 1


def _compact_manifest(dataset, name: str, budget: _Budget) -> ChunkManifest | None:
    """A compact dataset's values as its one chunk, copied into the manifest: HDF5 keeps them in
    the object header (already read), at no byte range of their own, and never filters them."""
    if dataset.size == 0:
        return None
    nbytes = dataset.size * dataset.dtype.itemsize
    if nbytes > MAX_COMPACT_BYTES:
        raise NotVirtualizable(f"is stored compact (inside its object header) but claims {nbytes:,} bytes, more than "
                               "a header holds: the header is damaged", variable=name)
    if dataset.id.get_create_plist().get_nfilters():
        raise NotVirtualizable("is stored compact (inside its object header) yet lists filters, which HDF5 never "
                               "applies to compact data: the header is damaged", variable=name)
    if budget.remaining < 1:
        raise budget.exceeded(name)
    budget.remaining -= 1
    # In the file's own type and byte order (h5py reads into dataset.dtype), as the .zarray says.
    data = np.ascontiguousarray(dataset[...], dtype=dataset.dtype).tobytes()
    shape = (1,) * dataset.ndim
    return ChunkManifest.from_arrays(
        paths=np.full(shape, INLINED_CHUNK_PATH, dtype=np.dtypes.StringDType()),
        offsets=np.zeros(shape, dtype=np.uint64),
        lengths=np.full(shape, len(data), dtype=np.uint64),
        inlined={(0,) * dataset.ndim: data},
    )


def _masked_chunks(dataset, flagged: list, name: str, budget: _Budget, file_size: int) -> list:
    """The chunks HDF5 stored past some of the variable's filters (a filter mask bit i set:
    filter i was not applied, e.g. an optional compression that did not shrink the chunk), sized
    before any is read (``flagged``: the chunks with any mask bit). Zarr applies one codec chain
    to every chunk, so these are copied into the reference re-encoded (:func:`_reencoded_chunks`)
    or the variable is left out."""
    filters = dataset.id.get_create_plist().get_nfilters()
    pipeline = (1 << filters) - 1  # bits past the pipeline's filters mean nothing to HDF5
    masked = [info for info in flagged if info.filter_mask & pipeline]
    if not masked:
        return []
    chunk_bytes = math.prod(dataset.chunks) * dataset.dtype.itemsize
    total = sum(max(info.size, chunk_bytes) for info in masked)
    if total > budget.masked_bytes:
        left = "" if budget.masked_bytes == MAX_MASKED_CHUNK_BYTES else f" ({budget.masked_bytes:,} left)"
        raise NotVirtualizable(
            f"has {len(masked):,} chunk(s) stored without some of its HDF5 filters (a per-chunk filter mask), which "
            f"its Zarr codecs would misread; copying them re-encoded would take {total:,} bytes, more than the "
            f"{MAX_MASKED_CHUNK_BYTES:,} ncrefs copies per file{left}",
            hint="Rewrite the file so every chunk passes all its filters (e.g. h5repack or nccopy), then upload it again.",
            variable=name)
    for info in masked:
        if info.byte_offset + info.size > file_size:
            raise CorruptFile(f"Variable {name!r} needs bytes up to {info.byte_offset + info.size}, but the file ends at "
                              f"{file_size}: it is truncated.", variable=name)
    budget.masked_bytes -= total
    return masked


def _reencoded_chunks(dataset, masked: list, chunks: tuple[int, ...], name: str) -> dict[tuple[int, ...], bytes]:
    """Each chunk of ``masked`` decoded through the filters HDF5 did apply to it (in reverse
    pipeline order), then encoded through the variable's whole codec chain, as Zarr reads it."""
    if not masked:
        return {}
    codecs = codecs_from_dataset(dataset)
    filters = dataset.id.get_create_plist().get_nfilters()
    if len(codecs) != filters or chunks != dataset.chunks:
        raise NotVirtualizable(f"has chunks stored without some of its HDF5 filters, and its {filters} filter(s) do not "
                               f"map one to one onto Zarr codecs ({len(codecs)}), so they cannot be re-encoded", variable=name)
    chunk_bytes = math.prod(dataset.chunks) * dataset.dtype.itemsize
    inlined = {}
    for info in masked:
        key = tuple(a // b for a, b in zip(info.chunk_offset, chunks))
        mask, data = dataset.id.read_direct_chunk(info.chunk_offset)
        try:
            for i in reversed(range(filters)):
                if not mask & (1 << i):
                    data = ensure_bytes(codecs[i].decode(data))
        except Exception as error:  # noqa: BLE001 - damaged bytes: the original cannot read them either
            raise NotVirtualizable(f"has a chunk {key} stored without some of its HDF5 filters whose bytes do not decode "
                                   f"({type(error).__name__}: {str(error)[:120]}): the file is damaged", variable=name) from error
        if len(data) != chunk_bytes:
            raise NotVirtualizable(f"has a chunk {key} stored without some of its HDF5 filters that decodes to "
                                   f"{len(data):,} bytes, not {chunk_bytes:,}: the file is damaged", variable=name)
        for codec in codecs:
            data = ensure_bytes(codec.encode(data))
        inlined[key] = data
    return inlined


def _attributes(obj) -> tuple[dict[str, Any], dict[str, str]]:
    """An object's attributes as netCDF4-python shows them, JSON-ready; and those a Zarr
    attribute cannot hold (compound, complex, references), with why. Never fails the file."""
    values: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in obj.attrs:
        if name in HIDDEN_ATTRIBUTES:
            continue
        try:
            value = obj.attrs[name]
        except Exception as error:  # noqa: BLE001 - an attribute h5py cannot read: say so, keep the rest
            skipped[name] = f"unreadable ({type(error).__name__}: {str(error)[:120]})"
            continue
        try:
            values[name] = _json_value(value)
        except _Unrepresentable as why:
            skipped[name] = str(why)
    return values, skipped


class _Unrepresentable(Exception):
    pass


def _json_value(value) -> Any:
    """netCDF4-python's view of an attribute value, in JSON types (text decoded as it decodes it)."""
    if isinstance(value, h5py.Empty):
        return ""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    array = np.asarray(value)
    if array.dtype.names is not None:
        raise _Unrepresentable("compound values cannot be stored in a Zarr attribute")
    if array.dtype.kind == "c":
        raise _Unrepresentable("complex values cannot be stored in a Zarr attribute")
    if array.dtype.kind == "S":
        decoded = [bytes(v).decode("utf-8", errors="replace") for v in array.ravel()]
        return decoded[0] if array.size == 1 else decoded
    if array.dtype.kind == "O":
        if any(isinstance(v, h5py.Reference) for v in array.ravel()):
            raise _Unrepresentable("object references cannot be stored in a Zarr attribute")
        decoded = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in array.ravel()]
        if not all(isinstance(v, (str, int, float)) for v in decoded):
            raise _Unrepresentable(f"values of type {type(decoded[0]).__name__} cannot be stored in a Zarr attribute")
        return decoded[0] if array.size == 1 else decoded
    if array.dtype.kind not in "biuf":
        raise _Unrepresentable(f"values of dtype {array.dtype} cannot be stored in a Zarr attribute")
    return array.ravel()[0].item() if array.size == 1 else array.ravel().tolist()


def _dimension_names(dataset, path: str, group: str, paths: dict[tuple, str], phony: list[str] | None) -> list[str]:
    """virtualizarr's ``_dataset_dims``, naming dimension scales by the address map of the walk
    (h5py's ``.name`` of a dereferenced scale searches the whole file) and axes without a scale
    as netCDF-C does (``phony``, from :class:`_PhonyDimensions`)."""
    dims = []
    for axis in range(len(dataset.shape)):
        scales = dataset.dims[axis]
        count = len(scales)
        if h5py.h5ds.is_scale(dataset.id) and count == 0:
            dims.append(path)
        elif count:
            # With several scales on one axis, netCDF-C (and h5netcdf) name it after the last attached.
            scale = scales[count - 1]
            dims.append(paths.get(h5py.h5g.get_objinfo(scale.id).objno) or str(scale.name))
        else:
            dims.append(phony[axis] if phony else f"phony_dim_{axis}")
    prefix = "" if group == "/" else group
    return [d.removeprefix(prefix).removeprefix("/") for d in dims]


class _PhonyDimensions:
    """netCDF-C's names for axes without a dimension scale, as xarray shows them (h5netcdf's
    ``phony_dims="sort"`` mimics netCDF-C). As netCDF-C reads a group, it reads its subgroups
    first (in name order), then names its own: for each size, as many dimensions as one of its
    variables needs, the group's dimension scales of that size first, then ``phony_dim_N``
    numbered across the file. Axes of one size take them in order, so a (3, 7) and a (7, 7)
    variable share the first size-7 dimension."""

    def __init__(self, root: _Node):
        self.count = 0
        self.by_group: dict[str, dict[str, list[str]]] = {}
        self._visit(root)

    def _visit(self, node: _Node) -> None:
        for child in node.children.values():
            self._visit(child)
        self.by_group[node.path] = self._names(node)

    def _names(self, node: _Node) -> dict[str, list[str]]:
        scales, unlabeled, wanted = [], {}, Counter()
        for key, dataset in node.datasets.items():
            if h5py.h5ds.is_scale(dataset.id):
                scales.append((key, dataset.shape[0] if dataset.shape else 0))
            elif dataset.shape and all(len(dataset.dims[axis]) == 0 for axis in range(len(dataset.shape))):
                unlabeled[key] = dataset.shape
                wanted |= Counter(dataset.shape)
        dimensions = list(scales)
        have = Counter(size for _, size in scales)
        for size, count in wanted.items():
            for _ in range(have[size], count):
                dimensions.append((f"phony_dim_{self.count}", size))
                self.count += 1
        names = {}
        for key, shape in unlabeled.items():
            used: Counter = Counter()
            names[key] = []
            for size in shape:
                names[key].append([name for name, length in dimensions if length == size][used[size]])
                used[size] += 1
        return names


def _dimension_only_scales(node: _Node, bare: set[str]) -> set[str]:
    """netCDF-C's dimensions that are not variables: scales whose NAME says so. (virtualizarr also
    drops scales that were never written, but those are coordinates that read as fill in netCDF.)"""
    dropped = set()
    prefix = "" if node.path == "/" else node.path
    for key, dataset in node.datasets.items():
        if f"{prefix}/{key}" in bare:
            continue
        name = dataset.attrs.get("NAME")
        if isinstance(name, bytes) and name.startswith(NOT_A_VARIABLE):
            dropped.add(key)
    return dropped
