"""Real files: every reference reads back what xarray reads from the original, or says what it
left out. Each category of file that once read back wrong has a small generated file here;
``../shared/corpus`` (48 files other projects wrote) is the outside check."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest

from shared.errors import ERROR_TABLE
from tests.conftest import blob_names
from tests.fidelity import assert_same_as_original

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text()) if CORPUS.is_dir() else {}


def test_the_corpus_is_there_in_ci():
    """CI runs beside ../shared; a clone elsewhere skips the corpus, CI must not."""
    if os.environ.get("CI"):
        assert len(MANIFEST) == 48, f"{CORPUS} is missing or incomplete"


@pytest.fixture
def check(settings, service, upload, call_http, open_reference):
    """Reference ``path`` through the HTTP function on Azurite and compare it with the original."""

    def _check(path: Path) -> dict:
        status, body, _ = call_http("generate_reference", {"netcdf_url": upload(path, f"real/{path.name}")})
        assert status == 200, body
        name = body["output"].split("/", 3)[3]
        refs = json.loads(service.get_blob_client(settings.refs_container, name).download_blob().readall())
        assert_same_as_original(lambda group, **options: open_reference(body["output"], group=group, **options), refs, path)
        return body

    return _check


# -- categories ---------------------------------------------------------------------------------
def test_netcdf_c_bookkeeping(tmp_path, check):
    """A variable named like a dimension it does not span (_nc4_non_coord_), a dimension without a
    variable (a NAME-marked scale), and a coordinate never written (reads as fill)."""
    path = tmp_path / "bookkeeping.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("x", 2)
        nc.createDimension("y", 3)
        nc.createDimension("unused", 5)
        nc.createDimension("time", 4)
        nc.createVariable("y", "f4", ("x", "y"))[:] = np.arange(6, dtype="f4").reshape(2, 3)
        nc.createVariable("time", "i4", ("time",))  # never written
        nc.createVariable("v", "f8", ("time",))[:] = [1.5, 2.5, 3.5, 4.5]
    with h5py.File(path) as f:
        assert "_nc4_non_coord_y" in f and "unused" in f
    body = check(path)
    assert sorted(body["variables"]) == ["time", "v", "y"]


def test_netcdf3_names_padded_with_nul(tmp_path, check):
    path = tmp_path / "nul.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("ii", 4)
        nc.createVariable("yy", "i2", ("ii",))[:] = [1, 2, 3, 4]
    data = bytearray(path.read_bytes())
    at = data.find(b"\x00\x00\x00\x02yy\x00\x00")  # name length 2, "yy" padded to 4
    struct.pack_into(">I", data, at, 3)  # "yy\0": the NUL is now inside the declared length
    path.write_bytes(bytes(data))
    assert check(path)["variables"] == ["yy"]


def test_netcdf3_integer_variable_with_a_nan_fill_value(tmp_path, check):
    """As in ERA-Interim files: a short variable whose _FillValue is a NaN double."""
    path = tmp_path / "nan_fill.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("x", 4)
        u = nc.createVariable("u", "i2", ("x",))
        u[:] = [1, 2, -32767, 4]
        u.setncattr("_FillValuX", np.float64(np.nan))  # netCDF-C refuses to write it; renamed below
        u.scale_factor = 0.5
    data = bytearray(path.read_bytes())
    at = data.find(b"_FillValuX")
    data[at : at + 10] = b"_FillValue"
    path.write_bytes(bytes(data))
    body = check(path)
    assert any("'_FillValue'" in w and "masks nothing" in w for w in body["warnings"])


def test_packed_variables_with_float32_attributes_say_how_they_decode(tmp_path, check):
    """scale_factor/add_offset stored as float32: xarray decodes the original to float32, a
    reference (JSON attributes) to float64; the reference says so and the values agree."""
    path = tmp_path / "packed.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("x", 5)
        v = nc.createVariable("t", "i2", ("x",))
        v.scale_factor = np.float32(0.01)
        v.add_offset = np.float32(273.15)
        v.set_auto_maskandscale(False)
        v[:] = np.array([0, 100, -100, 2000, 32000], dtype="i2")
    body = check(path)
    assert any("'t' decodes to float64" in w and "float32" in w for w in body["warnings"])


def test_fixed_length_strings_split_into_characters(tmp_path, check):
    path = tmp_path / "chars.nc"
    times = ["2020-01-01T00:00:00", "2020-01-01T06:00:00", "2020-01-01T12:00:00"]
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", 3)
        nc.createDimension("strlen", 19)
        nc.createVariable("TIME_UTC", "S1", ("time", "strlen"))[:] = netCDF4.stringtochar(np.array(times, dtype="S19"))
        labelled = nc.createVariable("label", "S1", ("time", "strlen"))
        labelled._Encoding = "utf-8"  # decoded to str by xarray, not bytes
        labelled[:] = np.array(["north", "süd", "west"])  # netCDF4 splits str into UTF-8 characters
    check(path)


def test_plain_hdf5_datasets_of_different_shapes_get_phony_dimensions_per_size(tmp_path, check):
    path = tmp_path / "shapes.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.arange(3, dtype="i4")
        f["b"] = np.arange(7, dtype="i4")
        f["c"] = np.arange(21, dtype="f4").reshape(3, 7)
        f["d"] = np.arange(49, dtype="i2").reshape(7, 7)
        f.create_group("g")["e"] = np.arange(4, dtype="i4")
    check(path)


def test_two_dimension_scales_on_one_axis(tmp_path, check):
    path = tmp_path / "two_scales.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(4.0)
        f["x"].make_scale("x")
        f["x2"] = np.arange(4.0) * 10
        f["x2"].make_scale("x2")
        f["v"] = np.arange(4, dtype="i4")
        f["v"].dims[0].attach_scale(f["x"])
        f["v"].dims[0].attach_scale(f["x2"])
    check(path)


def test_attributes_are_decoded_as_netcdf_decodes_them_and_unstorable_ones_are_named(tmp_path, check):
    path = tmp_path / "attributes.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("x", 2)
        v = nc.createVariable("v", "i4", ("x",))
        v[:] = [1, 2]
    with h5py.File(path, "a") as f:
        f.attrs["latin1"] = np.bytes_(b"caf\xe9 \x80")  # not UTF-8
        f["v"].attrs["pair"] = np.array([(1, 2.5)], dtype=[("i", "<i4"), ("f", "<f8")])
        f["v"].attrs["z"] = np.complex128(1 + 2j)
    body = check(path)
    assert any("'pair'" in w and "compound" in w for w in body["warnings"])
    assert any("'z'" in w and "complex" in w for w in body["warnings"])


def test_compound_records_with_padding_are_left_out_and_named(tmp_path, check):
    path = tmp_path / "padded.h5"
    padded = np.dtype([("a", "i1"), ("b", "f8")], align=True)  # 7 bytes of padding after a
    assert padded.itemsize == 16
    with h5py.File(path, "w") as f:
        f["records"] = np.array([(1, 2.5), (3, 4.5)], dtype=padded)
        f["values"] = np.arange(2, dtype="i4")
    body = check(path)
    assert "padding" in body["skipped_variables"]["records"]


def test_lz4_compressed_variables_are_referenced(tmp_path, check):
    import hdf5plugin

    path = tmp_path / "lz4.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=np.linspace(0, 1, 1000, dtype="f4"), chunks=(100,), **hdf5plugin.LZ4())
    body = check(path)
    assert "imagecodecs_lz4h5" in body["scan"]["variables"][0]["codecs"]


# -- the corpus ---------------------------------------------------------------------------------
# Where the original itself cannot be the measure, and why (the reference is compared with what HDF5 reads).
NETCDF_C_UNINITIALIZED = {"ncc__nc_test_f03tst_open_mem.nc"}


@pytest.mark.skipif(not MANIFEST, reason="../shared/corpus is not beside the project")
@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus_file_meets_its_manifest(name, settings, service, upload, call_http, open_reference, monkeypatch):
    expect = MANIFEST[name]["expect"]
    source = upload(CORPUS / name, f"corpus/{name}")
    status, body, _ = call_http("generate_reference", {"netcdf_url": source})
    if expect == "refused":
        assert status in (403, 404, 422) and not ERROR_TABLE[body["error"]["code"]].retryable
        assert blob_names(service, settings.refs_container) == []
        return
    if expect == "ok_or_refused" and status != 200:
        assert body["error"]["code"] == "not_virtualizable" and body["error"]["variable"], body
        assert blob_names(service, settings.refs_container) == []
        return
    assert status == 200, body
    if expect == "ok":
        assert not body.get("skipped_variables"), body["skipped_variables"]
    refs = json.loads(service.get_blob_client(settings.refs_container, body["output"].split("/", 3)[3]).download_blob().readall())
    if name in NETCDF_C_UNINITIALIZED:
        # netCDF-C returns uninitialized memory for a never-written variable with fill mode off
        # (different values on every open); h5py, h5netcdf and the reference read HDF5's fill.
        monkeypatch.setattr("tests.fidelity.open_original", _open_with_h5netcdf)
    assert_same_as_original(lambda group, **options: open_reference(body["output"], group=group, **options),
                            refs, CORPUS / name)


def _open_with_h5netcdf(path, group=None, **options):
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf", group=None if group in (None, "/") else group, **options) as ds:
        return ds.load()
