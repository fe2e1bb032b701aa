"""Read regions of variables' stored values from an untrusted file: the original side of ``ncrefs verify``.

This runs inside a parser process (``shared/sandbox``), never in the process that holds credentials:
h5py parses the file's structure and its chunks there, through the same ETag-pinned ranged reader as
referencing does, and only the requested regions are read (a chunk's worth each, never the file).

- HDF5: the variable is found by hard links only (never an external or soft link) under the name the
  reference gives it (netCDF-C's ``_nc4_non_coord_<name>`` first); a variable whose data lives outside
  the file is never read (``shared/hdf5.refuse_outside_data``). Values are the stored ones (no
  scale, no mask): what a Zarr reader decodes from the chunk bytes.
- NetCDF3: offsets from the header (virtualizarr's header parser, as referencing uses it): a
  variable's region is one span of a non-record variable, or one span per record.

Each answer is ``{"descr", "shape", "data"}`` (numpy's ``.npy`` type description, base64 bytes),
``{"strings", "shape"}`` for variable-length strings, or ``{"skipped": why}``; JSON, as everything a
parser process sends.
"""

from __future__ import annotations

import base64
import math
import warnings

import numpy as np

from shared.formats import FileFormat

NON_COORDINATE_PREFIX = "_nc4_non_coord_"


def read_regions(reader, fmt: FileFormat, requests: list[dict]) -> list[dict]:
    """``requests``: ``[{"variable": "group/name", "region": [[start, stop], ...]}]``, in the variable's index space."""
    if fmt is FileFormat.HDF5:
        return _hdf5_regions(reader, requests)
    return _netcdf3_regions(reader, requests)


def encode(values: np.ndarray) -> dict:
    values = np.asarray(values)
    if values.dtype.hasobject:
        flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values.reshape(-1).tolist()]
        return {"strings": flat, "shape": list(values.shape)}
    values = np.array(values, order="C")  # (ascontiguousarray would make a scalar 1-d)
    with warnings.catch_warnings():  # h5py's type metadata (enum names, string kinds) is not needed to compare
        warnings.simplefilter("ignore", UserWarning)
        descr = np.lib.format.dtype_to_descr(values.dtype)
    return {"descr": descr, "shape": list(values.shape), "data": base64.b64encode(values.tobytes()).decode()}


def _slices(region: list[list[int]]) -> tuple:
    return tuple(slice(start, stop) for start, stop in region)


# -- HDF5 ---------------------------------------------------------------------------------------------
def _hdf5_regions(reader, requests: list[dict]) -> list[dict]:
    import h5py

    from shared.errors import NcrefsError
    from shared.hdf5 import refuse_outside_data

    answers = []
    with h5py.File(reader, mode="r", locking=False) as f:
        for request in requests:
            try:
                dataset = _find_dataset(f, request["variable"])
                if isinstance(dataset, str):
                    answers.append({"skipped": dataset})
                    continue
                refuse_outside_data(request["variable"], dataset)
                region = request["region"]
                if len(region) != len(dataset.shape):
                    answers.append({"skipped": f"the file's variable has {len(dataset.shape)} dimensions, "
                                               f"the reference's {len(region)}"})
                    continue
                if dataset.dtype.kind == "O" and h5py.check_string_dtype(dataset.dtype) is not None:
                    values = dataset.asstr(errors="replace")[_slices(region)] if region else dataset.asstr(errors="replace")[()]
                else:
                    values = dataset[_slices(region)] if region else dataset[()]
                answers.append(encode(np.asarray(values)))
            except NcrefsError as error:
                answers.append({"skipped": error.message})
            except MemoryError:
                raise
            except Exception as error:  # noqa: BLE001 - the original cannot be read there; a refused read is the
                # parent's error anyway (it refuses every later read too and reports that)
                answers.append({"skipped": _unreadable(error)})
    return answers


def _unreadable(error: Exception) -> str:
    return f"the original could not be read there ({type(error).__name__}: {str(error)[:200]})"


def _find_dataset(f, path: str):
    """The dataset a reference names ``path`` (hard links only), or why there is none."""
    import h5py

    node = f
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        # netCDF-C stores a variable named like a dimension but not its coordinate as _nc4_non_coord_<name>, beside
        # the dimension's own scale <name>: that one is the variable.
        for name in [NON_COORDINATE_PREFIX + part, part] if last else [part]:
            key = name.encode()
            if node.id.links.exists(key) and node.id.links.get_info(key).type == h5py.h5l.TYPE_HARD:
                child = node[name]
                if last and isinstance(child, h5py.Dataset):
                    return child
                if not last and isinstance(child, h5py.Group):
                    node = child
                    break
        else:
            return f"the file has no variable {path!r} (by hard links)"
    return f"the file has no variable {path!r}"


# -- NetCDF3 ------------------------------------------------------------------------------------------
def _netcdf3_regions(reader, requests: list[dict]) -> list[dict]:
    from virtualizarr.parsers import netcdf3 as vz_netcdf3

    from shared.virtualize import _without_nul_padding

    reader.seek(0)
    header = _without_nul_padding(vz_netcdf3._parse_header(reader))
    if header.numrecs == vz_netcdf3._STREAMING:
        header.numrecs = vz_netcdf3._resolve_streaming_numrecs(header, reader.size)
    variables = {var.name: var for var in header.variables}
    answers = []
    for request in requests:
        var = variables.get(request["variable"])
        if var is None:
            answers.append({"skipped": f"the file has no variable {request['variable']!r}"})
            continue
        region = request["region"]
        shape = ((header.numrecs,) + tuple(var.shape[1:])) if var.is_record else tuple(var.shape)
        if len(region) != len(shape) or any(not 0 <= a <= b <= s for (a, b), s in zip(region, shape)):
            answers.append({"skipped": f"the region {region} is not inside the file's variable of shape {list(shape)}"})
            continue
        dtype = np.dtype(var.dtype)
        try:
            if var.is_record:
                inner = region[1:]
                records = [_span(reader, var.begin + r * header.recsize, tuple(shape[1:]), inner, dtype)
                           for r in range(region[0][0], region[0][1])]
                values = np.stack(records) if records else np.empty([0] + [b - a for a, b in inner], dtype)
            else:
                values = _span(reader, var.begin, shape, region, dtype)
        except MemoryError:
            raise
        except Exception as error:  # noqa: BLE001 - see _hdf5_regions
            answers.append({"skipped": _unreadable(error)})
            continue
        answers.append(encode(values))
    return answers


def _span(reader, base: int, shape: tuple[int, ...], region: list[list[int]], dtype: np.dtype) -> np.ndarray:
    """The region of a C-ordered array stored at ``base``: one read from its first to its last element."""
    counts = [b - a for a, b in region]
    if 0 in counts:
        return np.empty(counts, dtype)
    if not shape:
        return np.frombuffer(reader.read_at(base, dtype.itemsize), dtype).reshape(())
    first = int(np.ravel_multi_index([a for a, _ in region], shape))
    last = int(np.ravel_multi_index([b - 1 for _, b in region], shape))
    data = reader.read_at(base + first * dtype.itemsize, (last - first + 1) * dtype.itemsize)
    flat = np.frombuffer(data, dtype)
    if flat.size != last - first + 1:
        raise ValueError(f"the file ends inside the variable ({flat.size} of {last - first + 1} values)")
    index = np.ravel_multi_index(np.ix_(*[np.arange(a, b) for a, b in region]), shape) - first
    return flat[index].reshape(counts) if math.prod(counts) else np.empty(counts, dtype)
