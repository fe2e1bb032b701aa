"""What xarray's CF decoding makes of a variable through a reference, where that can differ
from the original.

A reference keeps attributes as JSON numbers. xarray picks the float type of a packed
variable (``scale_factor``/``add_offset``) from the *type* of those attributes: float32
attributes in the file decode to float32, the same numbers read from JSON to float64. No
Zarr reader can be told otherwise, so ncrefs says so, per variable, in the reference.
"""

from __future__ import annotations

import numpy as np
from xarray.coding.variables import _choose_float_dtype

PACKING = ("scale_factor", "add_offset")


def packing_note(stored: np.dtype, packing: dict[str, np.generic]) -> str | None:
    """Why the variable decodes differently through a reference (``packing``: its scale_factor /
    add_offset as typed in the file), or None when it decodes the same."""
    # As netCDF4-python hands them to xarray: numpy scalars (h5py gives one-element arrays).
    typed = {k: np.asarray(v).ravel()[0] for k, v in packing.items() if k in PACKING and np.asarray(v).size == 1}
    if not typed:
        return None
    original = np.dtype(_choose_float_dtype(np.dtype(stored), typed))
    through_json = np.dtype(_choose_float_dtype(np.dtype(stored), {k: v.item() for k, v in typed.items()}))
    if original == through_json:
        return None
    return (f"decodes to {through_json} through the reference where the original decodes to {original}: its "
            f"{' and '.join(typed)} {'is' if len(typed) == 1 else 'are'} {original} in the file, and Zarr attributes "
            f"are JSON numbers (values agree to within {original} rounding)")
