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
import xarray as xr

SKIPPED_ATTRIBUTE = "ncrefs_skipped_variables"
SKIPPED_ATTRIBUTES = "ncrefs_skipped_attributes"


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
    """The original as a user opens it: netCDF4 where it can, else h5netcdf (phony dims as netCDF-C names them)."""
    group = None if group in (None, "/") else group
    try:
        return xr.open_dataset(path, engine="netcdf4", group=group, **options)
    except (OSError, KeyError):  # not netCDF, or a type netCDF-C cannot show
        import hdf5plugin  # noqa: F401 - registers the filters h5netcdf may need

        return xr.open_dataset(path, engine="h5netcdf", group=group, phony_dims="sort", **options)


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
        skipped = skipped_variables(refs, group)
        with (open_original(path, group, **options) as original,
              open_reference_group(None if group == "/" else group.lstrip("/"), **options) as ref):
            expected = original.drop_vars([v for v in skipped if v in original.variables]).load()
            got = ref.load()
            assert not set(skipped) & set(got.variables), f"{group}: variables said to be left out are present"
            # Attributes the reference says it left out are compared as absent.
            for where, names in skipped_attributes(refs).items():
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
            # The reference records what it left out in its attributes; the original has no such attribute.
            got.attrs.pop(SKIPPED_ATTRIBUTE, None)
            got.attrs.pop(SKIPPED_ATTRIBUTES, None)
            xr.testing.assert_identical(got, expected)
            for name in got.variables:
                assert _same_dtype(got[name].dtype, expected[name].dtype), f"{group}{name}: {got[name].dtype} != {expected[name].dtype}"
