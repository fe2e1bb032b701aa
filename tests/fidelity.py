"""The one fidelity check: a reference reads back what xarray reads from the original file.

Every group, every variable (values, dtype, dimensions, attributes, encoding-free), every
dimension and every global attribute must be equal; a variable the reference has and the
original does not counts as a failure too. Variables the reference says it left out
(``skipped_variables`` in its root attributes) are compared as absent, and must be absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

SKIPPED_ATTRIBUTE = "ncrefs_skipped_variables"
SKIPPED_ATTRIBUTES = "ncrefs_skipped_attributes"
DECODING_NOTES = "ncrefs_decoding_notes"


def original_groups(path: Path) -> list[str]:
    """The file's groups as xarray names them ("/" and "/a/b"), read with netCDF4 (or h5py for plain HDF5)."""
    try:
        with netCDF4.Dataset(path) as nc:
            found = []

            def walk(group, name):
                found.append(name)
                for child, sub in group.groups.items():
                    walk(sub, f"{name.rstrip('/')}/{child}")

            walk(nc, "/")
            return found
    except OSError:
        import h5py

        with h5py.File(path, "r") as f:
            found = ["/"]
            f.visit(lambda name: found.append("/" + name) if isinstance(f[name], h5py.Group) else None)
            return found


def open_original(path: Path, group: str | None = None, **options) -> xr.Dataset:
    """The original as a user opens it, loaded: netCDF4 where it can, else h5netcdf (phony
    dimensions as netCDF-C names them; HDF5 filter plugins registered)."""
    group = None if group in (None, "/") else group
    try:
        with xr.open_dataset(path, engine="netcdf4", group=group, **options) as ds:
            return ds.load()
    except (OSError, KeyError, RuntimeError):  # not netCDF, a type netCDF-C cannot show, a filter it lacks
        import hdf5plugin  # noqa: F401 - registers the filters h5netcdf may need

        with xr.open_dataset(path, engine="h5netcdf", group=group, phony_dims="sort", **options) as ds:
            return ds.load()


def _same_dtype(got, expected) -> bool:
    """Strings are strings (zarr's variable-length StringDType, numpy's U or object); else exactly equal."""
    return got == expected or (got.kind in "OUT" and expected.kind in "OUT")


def reference_groups(refs: dict) -> list[str]:
    table = refs["refs"]
    return sorted({"/" + key[: -len(".zgroup")].rstrip("/") for key in table if key == ".zgroup" or key.endswith("/.zgroup")})


def skipped_variables(refs: dict, group: str = "/") -> dict[str, str]:
    prefix = "" if group == "/" else group.strip("/") + "/"
    attrs = json.loads(refs["refs"].get(f"{prefix}.zattrs", "{}"))
    return dict(attrs.get(SKIPPED_ATTRIBUTE, {}))


def skipped_attributes(refs: dict) -> dict[str, dict[str, str]]:
    return dict(json.loads(refs["refs"].get(".zattrs", "{}")).get(SKIPPED_ATTRIBUTES, {}))


def assert_same_as_original(open_reference_group, refs: dict, path: Path) -> None:
    """``open_reference_group(group, **options)`` opens one group of the reference with xarray."""
    groups = original_groups(path)
    assert reference_groups(refs) == sorted(groups), "the groups differ"
    try:
        open_original(path).close()
        options = {}
    except ValueError:  # e.g. time units xarray cannot decode: users open both without decoding times
        options = {"decode_times": False}
    for group in groups:
        with (open_original(path, group, **options) as original,
              open_reference_group(None if group == "/" else group.lstrip("/"), **options) as ref):
            assert_group_equal(ref.load(), original.load(), group=group, refs=refs)


def _check_decoding_notes(got: xr.Dataset, expected: xr.Dataset, group: str, refs: dict | None) -> xr.Dataset:
    """A variable the reference says decodes to another float type (float32 packing attributes
    read from JSON: shared/cf.py) must hold the same values to within the rounding of the
    original's float arithmetic; it is then compared as the original for everything else."""
    prefix = "" if group == "/" else group.strip("/") + "/"
    notes = json.loads(refs["refs"].get(".zattrs", "{}")).get(DECODING_NOTES, {}) if refs else {}
    for path in notes:
        name = path[len(prefix):] if path.startswith(prefix) else None
        if name is None or "/" in name or name not in got.variables:
            continue
        a, b = got[name].values.astype(expected[name].dtype), expected[name].values
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{path}: missing values differ"
        present = ~np.isnan(b)
        if present.any():  # scale * value + offset in float32 rounds at the scale of the largest value
            scale = np.finfo(b.dtype).eps * float(np.max(np.abs(b[present])))
            np.testing.assert_allclose(a[present], b[present], rtol=0, atol=4 * scale)
        replaced = got[name].copy(data=b)
        got = got.assign_coords({name: replaced}) if name in got.coords else got.assign({name: replaced})
    return got


def assert_group_equal(got: xr.Dataset, expected: xr.Dataset, *, group: str = "/", refs: dict | None = None) -> None:
    """One group read through a reference (``got``) against the original; with ``refs``, what the
    reference says it left out is compared as absent (and must be absent)."""
    skipped = skipped_variables(refs, group) if refs else {}
    expected = expected.drop_vars([v for v in skipped if v in expected.variables])
    assert not set(skipped) & set(got.variables), f"{group}: variables said to be left out are present"
    for where, names in (skipped_attributes(refs) if refs else {}).items():
        parent, _, name = where.rpartition("/")
        if "/" + where.lstrip("/") == group:  # the group's own attributes ("/" is the root)
            owner = expected
        elif "/" + parent == group or (not parent and group == "/"):
            owner = expected.get(name)
        else:
            continue
        for attribute in names:
            if owner is not None:
                owner.attrs.pop(attribute, None)
    # xarray's zarr backend hides attributes named _nc* (NCZarr's), so a reference cannot show
    # them; they are in the reference's raw attributes, which is checked instead.
    raw = json.loads(refs["refs"].get(f"{'' if group == '/' else group.strip('/') + '/'}.zattrs", "{}")) if refs else None
    for name in [a for a in expected.attrs if a.lower().startswith("_nc")]:
        if raw is not None:
            assert name in raw, f"{group}: attribute {name} is missing from the reference"
        del expected.attrs[name]
    for attr in (SKIPPED_ATTRIBUTE, SKIPPED_ATTRIBUTES, DECODING_NOTES):  # the reference's own records
        got.attrs.pop(attr, None)
    got = _check_decoding_notes(got, expected, group, refs)
    xr.testing.assert_identical(got, expected)
    for name in got.variables:
        assert _same_dtype(got[name].dtype, expected[name].dtype), f"{group}{name}: {got[name].dtype} != {expected[name].dtype}"
