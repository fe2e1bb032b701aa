"""HDF5 storage layouts a byte range alone cannot describe: each reads back exactly what xarray
reads from the original, or is left out and named.

- compact datasets keep their data inside their object header (no byte range of their own):
  the reference holds their values;
- a chunk HDF5 stored without some of its variable's filters (its filter mask) would be misread
  by the variable's one Zarr codec chain: the reference holds it re-encoded, or, past what a
  reference may hold, leaves the variable out.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import h5py
import netCDF4
import numpy as np

from shared.cli import main
from shared.models import ReferenceRequest
from shared.pipeline import generate_reference
from tests.fidelity import assert_same_as_original, skipped_variables


# -- files ----------------------------------------------------------------------------------------
def _compact(group, name: str, values: np.ndarray, fill=None):
    """A dataset stored compact (inside its object header); h5py's high-level API cannot make one.
    With ``fill``, its fill value and _FillValue attribute, as netCDF-C writes them."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    if fill is not None:
        dcpl.set_fill_value(np.array(fill, dtype=values.dtype))
    space = h5py.h5s.create_simple(values.shape) if values.shape else h5py.h5s.create(h5py.h5s.SCALAR)
    dataset = h5py.Dataset(h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(values.dtype), space, dcpl=dcpl))
    dataset[...] = values
    if fill is not None:
        dataset.attrs["_FillValue"] = np.array([fill], dtype=values.dtype)
    return dataset


def compact_variables(directory: Path) -> Path:
    """NetCDF4 dimensions and a chunked variable, beside compact variables added with h5py: int32
    (x), big-endian float64 (y, x) with attributes, a float32 scalar, an int16 with a _FillValue."""
    path = directory / "compact.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("y", 3)
        nc.createDimension("x", 4)
        nc.createVariable("x", "i4", ("x",))[:] = np.arange(4) * 10
        nc.createVariable("normal", "f4", ("y", "x"), zlib=True)[:] = np.arange(12, dtype="f4").reshape(3, 4)
    with h5py.File(path, "r+") as f:
        counts = _compact(f, "counts", np.array([5, -1, 7, 2**31 - 1], dtype="<i4"))
        counts.dims[0].attach_scale(f["x"])
        field = _compact(f, "field", (np.arange(12).reshape(3, 4) / 4 - 1).astype(">f8"))
        field.dims[0].attach_scale(f["y"])
        field.dims[1].attach_scale(f["x"])
        field.attrs["units"] = "m"
        _compact(f, "offset", np.array(2.5, dtype="<f4"))
        masked = _compact(f, "masked", np.array([1, -999, 3, 4], dtype="<i2"), fill=-999)
        masked.dims[0].attach_scale(f["x"])
        for name in ("counts", "field", "offset", "masked"):
            assert f[name].id.get_create_plist().get_layout() == h5py.h5d.COMPACT
        assert f["field"].dtype == np.dtype(">f8")
    return path


MASKED_VALUES = {  # chunk index along time -> (filter mask, values written into it)
    1: (0b11, 1000.0),  # stored as plain bytes: neither shuffle nor zlib applied
    2: (0b01, -5.0),  # zlib applied, shuffle not
}


def masked_chunks(directory: Path, big: bool = False) -> Path:
    """NetCDF4 ``temp`` (shuffle + zlib, one chunk per time step) with time step 1 stored past both
    filters and time step 2 past shuffle only, time step 3 never written (it reads as netCDF's
    default fill value); with ``big``, also ``field``, whose chunks stored past shuffle decode to
    more than a reference may hold (9 x 1 MB)."""
    path = directory / ("masked_big.nc" if big else "masked.nc")
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", 5)
        nc.createDimension("y", 8)
        nc.createDimension("x", 10)
        temp = nc.createVariable("temp", "f4", ("time", "y", "x"), zlib=True, shuffle=True, chunksizes=(1, 8, 10))
        temp.units = "K"
        noise = np.random.default_rng(5).normal(280, 5, (5, 8, 10)).astype("f4")  # too big to be inlined whole
        temp[:3] = noise[:3]
        temp[4] = noise[4]  # time step 3 never written
        if big:
            nc.createDimension("n", 10 * 131072)
            field = nc.createVariable("field", "f8", ("n",), zlib=True, shuffle=True, chunksizes=(131072,))
            field[:] = np.zeros(10 * 131072)
    with h5py.File(path, "r+") as f:
        temp = f["temp"]
        assert list(temp._filters) == ["shuffle", "zlib"] or list(temp._filters) == ["shuffle", "gzip"]
        for step, (mask, value) in MASKED_VALUES.items():
            raw = np.full((1, 8, 10), value, dtype="<f4") + np.arange(80, dtype="<f4").reshape(1, 8, 10)
            stored = raw.tobytes() if mask == 0b11 else zlib.compress(raw.tobytes())
            temp.id.write_direct_chunk((step, 0, 0), stored, filter_mask=mask)
        for step, (mask, value) in MASKED_VALUES.items():  # HDF5 itself reads them as meant
            np.testing.assert_array_equal(temp[step], value + np.arange(80, dtype="f4").reshape(8, 10))
        masks = {}
        temp.id.chunk_iter(lambda info: masks.__setitem__(info.chunk_offset[0], info.filter_mask))
        assert masks == {0: 0, 1: 0b11, 2: 0b01, 4: 0}
        if big:
            # Not zeros: HDF5 (2.0.0) keeps the old filter mask when a direct write has the old chunk's size.
            for i in range(9):
                raw = np.full(131072, float(i + 1), dtype="<f8").tobytes()
                f["field"].id.write_direct_chunk((i * 131072,), zlib.compress(raw), filter_mask=0b01)
            masks = []
            f["field"].id.chunk_iter(lambda info: masks.append(info.filter_mask))
            assert masks == [0b01] * 9 + [0] and f["field"][8 * 131072] == 9.0
    return path


# -- tests ----------------------------------------------------------------------------------------
def _reference(path: Path, name: str, settings, storage, upload, service):
    result = generate_reference(ReferenceRequest(source=upload(path, name)), settings, storage)
    assert result.status == "success", result
    blob = result.output.removeprefix(f"abfs://{settings.refs_container}/")
    refs = json.loads(service.get_blob_client(settings.refs_container, blob).download_blob().readall())
    return result, refs


def _check(open_reference, result, refs, path: Path) -> None:
    assert_same_as_original(lambda group, **options: open_reference(result.output, group, **options), refs, path)


def test_compact_variables_read_back_like_the_original(tmp_path, settings, storage, upload, service, open_reference):
    path = compact_variables(tmp_path)
    result, refs = _reference(path, "layouts/compact.nc", settings, storage, upload, service)
    assert result.skipped_variables == {}
    assert {"counts", "field", "offset", "masked"} <= set(result.variables)
    table = refs["refs"]
    for key in ("counts/0", "field/0.0", "offset/0", "masked/0"):  # the values are in the reference
        assert isinstance(table[key], str) and table[key].startswith("base64:"), key
    assert json.loads(table["field/.zarray"])["dtype"] == ">f8"
    _check(open_reference, result, refs, path)
    with open_reference(result.output) as ds:  # not zeros, not fill: the values written
        assert ds["counts"].values.tolist() == [5, -1, 7, 2**31 - 1]
        assert ds["field"].values[2, 3] == 1.75
        assert float(ds["offset"]) == 2.5
        assert np.isnan(ds["masked"].values[1])


def test_chunks_stored_past_some_filters_are_copied_re_encoded(tmp_path, settings, storage, upload, service, open_reference):
    path = masked_chunks(tmp_path)
    result, refs = _reference(path, "layouts/masked.nc", settings, storage, upload, service)
    assert result.skipped_variables == {}
    table = refs["refs"]
    # The two masked chunks are in the reference; the others stay byte ranges into the file.
    assert [isinstance(table[f"temp/{t}.0.0"], str) for t in (0, 1, 2, 4)] == [False, True, True, False]
    _check(open_reference, result, refs, path)
    with open_reference(result.output) as ds:
        for step, (_, value) in MASKED_VALUES.items():
            np.testing.assert_array_equal(ds["temp"].values[step], value + np.arange(80, dtype="f4").reshape(8, 10))


def test_masked_chunks_past_the_copy_limit_leave_their_variable_out(tmp_path, settings, storage, upload, service,
                                                                    open_reference, capsys):
    path = masked_chunks(tmp_path, big=True)
    result, refs = _reference(path, "layouts/masked_big.nc", settings, storage, upload, service)
    reason = result.skipped_variables["field"]
    assert "9 chunk(s)" in reason and "filter" in reason and "8,388,608" in reason
    assert "field" in skipped_variables(refs) and "field" not in result.variables
    assert any("'field' left out" in w for w in result.warnings)
    assert not any(key.startswith("field/") for key in refs["refs"])
    _check(open_reference, result, refs, path)  # temp still reads back exactly

    source = f"{settings.source_container}/layouts/masked_big.nc"
    code = main(["virtualize", source, "--strict", "--output", f"{settings.refs_container}/strict.json", "--json"])
    error = json.loads(capsys.readouterr().out)["error"]
    assert (code, error["code"]) == (2, "not_virtualizable")
    assert "field" in error["message"] and "filter" in error["message"]
