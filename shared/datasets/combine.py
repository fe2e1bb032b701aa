"""Combine per-file references into one virtual dataset, refusing what would be silently wrong.

Members are opened from their per-file references (never from the NetCDF sources) as
virtualizarr datasets, with the dimension coordinates loaded and times decoded, so a file
whose time units differ is re-encoded to the dataset's, not concatenated raw.

kerchunk and VirtualiZarr combine anything whose shapes line up: a file with another
``scale_factor``, ``_FillValue``, dtype or codec would read back wrong without a word. So
each file's *signature* (per variable: dims, dtype, chunk shape, codecs, CF encoding
attributes; the concat coordinate's calendar) must equal the dataset's, or the file gets
``not_combinable`` naming the variable, the property and both values.
"""

from __future__ import annotations

import base64
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from shared.errors import NotCombinable
from shared.storage import Storage

# CF attributes that change what the stored numbers mean.
ENCODING_ATTRIBUTES = ("scale_factor", "add_offset", "_FillValue", "missing_value", "units", "calendar", "_Unsigned")
OPEN_THREADS = 16


@dataclass
class Piece:
    """One member's virtual dataset and what is known about it."""

    source: str
    reference: str
    dataset: object  # xarray.Dataset of ManifestArrays (+ loaded coordinates)
    signature: dict
    first: object
    last: object
    length: int


def open_piece(storage: Storage, source: str, reference: str, concat_dim: str, source_container: str) -> Piece:
    """A member's per-file reference as a virtual dataset (one GET for a JSON reference)."""
    from obspec_utils.registry import ObjectStoreRegistry
    from virtualizarr import open_virtual_dataset
    from virtualizarr.parsers import KerchunkJSONParser, KerchunkParquetParser

    refs_container = reference.split("://", 1)[1].split("/", 1)[0]
    registry = ObjectStoreRegistry({f"abfs://{refs_container}": storage.object_store(refs_container),
                                    f"abfs://{source_container}": storage.object_store(source_container)})
    if reference.rstrip("/").endswith(".parquet"):
        parser = KerchunkParquetParser(reader_options={"storage_options": storage.fsspec_options()})
    else:
        parser = KerchunkJSONParser()
    dataset = open_virtual_dataset(reference, registry=registry, parser=parser, decode_times=True)
    if concat_dim not in dataset.dims:
        raise NotCombinable(f"{source} has no dimension {concat_dim!r} to concatenate along "
                            f"(its dimensions: {', '.join(map(str, dataset.dims)) or 'none'}).")
    if concat_dim not in dataset.coords:
        raise NotCombinable(f"{source} has no {concat_dim!r} coordinate, so it cannot be placed along {concat_dim}.",
                            hint="Files of a dataset need a coordinate variable for the concat dimension.")
    values = dataset[concat_dim].values
    if len(values) == 0:
        raise NotCombinable(f"{source} has no steps along {concat_dim!r}.")
    if len(values) > 1 and not np.all(values[1:] > values[:-1]):
        raise NotCombinable(f"{source}'s {concat_dim!r} values are not increasing.")
    return Piece(source, reference, dataset, signature(dataset, concat_dim), values[0], values[-1], len(values))


def open_pieces(storage: Storage, members: list[tuple[str, str]], concat_dim: str, source_container: str) -> list[Piece]:
    with ThreadPoolExecutor(min(OPEN_THREADS, max(1, len(members)))) as pool:
        return list(pool.map(lambda m: open_piece(storage, m[0], m[1], concat_dim, source_container), members))


def signature(dataset, concat_dim: str) -> dict:
    """What must be equal in every member for the combination to mean the same as each file."""
    from virtualizarr.manifests import ManifestArray

    variables: dict[str, dict] = {}
    for name, variable in dataset.variables.items():
        entry: dict[str, object] = {
            "dims": [str(d) for d in variable.dims],
            "shape": {str(d): int(n) for d, n in zip(variable.dims, variable.shape) if d != concat_dim},
        }
        attributes = {**variable.encoding, **variable.attrs}
        if name == concat_dim:
            if np.issubdtype(variable.dtype, np.datetime64):  # decoded: units may differ, the calendar may not
                entry["calendar"] = str(attributes.get("calendar", "standard"))
            else:
                entry["units"] = _plain(attributes.get("units"))
                entry["dtype"] = str(variable.dtype)
            variables[str(name)] = entry
            continue
        if isinstance(variable.data, ManifestArray):
            metadata = variable.data.metadata
            entry["dtype"] = str(metadata.data_type)
            entry["chunks"] = list(metadata.chunk_grid.chunk_shape)
            entry["codecs"] = [codec.to_dict() for codec in metadata.codecs]
            entry["fill_value"] = _plain(metadata.fill_value)
        else:
            entry["dtype"] = str(variable.dtype)
            if concat_dim not in variable.dims:  # a loaded coordinate (lat, lon): its values must be the same
                entry["values_sha256"] = hashlib.sha256(np.ascontiguousarray(variable.values).tobytes()).hexdigest()
        entry["encoding"] = {k: _plain(_decoded_fill(attributes[k], variable.dtype) if "Value" in k else attributes[k])
                             for k in ENCODING_ATTRIBUTES if k in attributes}
        variables[str(name)] = entry
    return {"concat_dim": concat_dim, "variables": variables}


def _decoded_fill(value, dtype):
    """A fill value as a number: references carry float fills base64-encoded ('AAAAAAAA+H8=' is NaN)."""
    if isinstance(value, str) and dtype.kind in "fiuc":
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            return value
        if len(raw) == dtype.itemsize:
            return np.frombuffer(raw, dtype=dtype.newbyteorder("<"))[0]
    return value


def _plain(value):
    """A JSON-comparable form of an attribute or fill value (NaN compares equal to NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def check_fits(expected: dict, piece: Piece, dataset_name: str) -> None:
    """Raise not_combinable naming the first difference between the dataset's signature and the file's."""
    mine, theirs = expected["variables"], piece.signature["variables"]
    concat_dim = expected["concat_dim"]

    def refuse(what: str, got, wanted, hint: str | None = None):
        def shown(value):
            return "not set" if value is None else repr(value)

        raise NotCombinable(f"{piece.source} cannot join dataset {dataset_name!r}: {what} is {shown(got)} in the file "
                            f"and {shown(wanted)} in the dataset.", hint=hint)

    missing, extra = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
    if missing or extra:
        refuse("the set of variables", sorted(theirs), sorted(mine),
               hint=f"Missing in the file: {', '.join(missing) or 'none'}; not in the dataset: {', '.join(extra) or 'none'}. "
                    "Every file of a dataset must hold the same variables (a missing one would make the whole "
                    "dataset unreadable); give the file its own dataset or fix it.")
    for name in sorted(mine):
        for key in ("dims", "shape", "calendar", "units", "encoding", "dtype", "chunks", "codecs", "fill_value", "values_sha256"):
            want, got = mine[name].get(key), theirs[name].get(key)
            if want == got:
                continue
            if key == "chunks" and concat_dim in mine[name]["dims"]:
                axis = mine[name]["dims"].index(concat_dim)
                if want[:axis] + want[axis + 1:] == got[:axis] + got[axis + 1:]:
                    refuse(f"the chunk length of {name!r} along {concat_dim!r}", got[axis], want[axis],
                           hint="Zarr cannot yet hold chunks of different lengths along one dimension (variable-length "
                                "chunks, ZEP003), so these files cannot be combined without rewriting them. Keep "
                                "them as per-file references, or rechunk them to one length.")
            if key == "encoding":
                for attribute in ENCODING_ATTRIBUTES:  # scale_factor first: what changes the values most
                    if (want or {}).get(attribute) != (got or {}).get(attribute):
                        refuse(f"{attribute} of {name!r}", (got or {}).get(attribute), (want or {}).get(attribute))
            label = {"values_sha256": "the values of coordinate", "shape": "the shape (besides the concat dimension) of"}.get(key, f"the {key} of")
            refuse(f"{label} {name!r}", got, want)


def order(pieces: list[Piece], concat_dim: str, dataset_name: str) -> list[Piece]:
    """Members sorted along the concat dimension; overlapping members and ragged chunking refused."""
    ordered = sorted(pieces, key=lambda p: p.first)
    for before, after in zip(ordered, ordered[1:]):
        if after.first <= before.last:
            raise NotCombinable(f"{after.source} overlaps {before.source} along {concat_dim!r} in dataset {dataset_name!r} "
                                f"({as_text(after.first)} is not after {as_text(before.last)}).",
                                hint="Each step may come from one file only: remove the duplicate file.")
    for piece in ordered[:-1]:  # only the last member may end in a partial chunk
        for name, entry in piece.signature["variables"].items():
            if "chunks" in entry and concat_dim in entry["dims"]:
                step = entry["chunks"][entry["dims"].index(concat_dim)]
                if piece.length % step:
                    raise NotCombinable(
                        f"{piece.source} has {piece.length} steps along {concat_dim!r} but {name!r} is chunked by {step}, "
                        "so the files after it would not start on a chunk boundary.",
                        hint="Zarr needs every chunk but the last to be full (variable-length chunks, ZEP003, are not "
                             "available yet): keep these files as per-file references.")
    return ordered


def concatenate(pieces: list[Piece], concat_dim: str):
    import xarray as xr

    if len(pieces) == 1:
        return pieces[0].dataset
    return xr.concat([p.dataset for p in pieces], dim=concat_dim, coords="minimal", data_vars="minimal",
                     compat="override", join="override", combine_attrs="override")


def as_text(value) -> str:
    """A concat coordinate value as text (ISO for times): messages, and members' first/last in the state."""
    if isinstance(value, np.datetime64):
        return np.datetime_as_string(value, unit="auto")
    return str(value.item() if isinstance(value, np.generic) else value)
