"""Pre-flight warnings, from references shaped like the layouts the seed guidance names."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.scan import scan_refs


def reference(shape, chunks, dtype="<f4", lengths=None, codecs=()):
    zarray = {"shape": shape, "chunks": chunks, "dtype": dtype, "fill_value": None, "order": "C", "zarr_format": 2,
              "filters": [{"id": c} for c in codecs] or None, "compressor": None}
    refs = {".zgroup": '{"zarr_format":2}', "v/.zarray": json.dumps(zarray),
            "v/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": ["t", "y", "x"][-len(shape):]})}
    grid = [-(-s // c) for s, c in zip(shape, chunks)]
    for i, (index, length) in enumerate(zip(np.ndindex(*grid), lengths or [])):
        refs["v/" + ".".join(map(str, index))] = ["abfs://c/f.nc", 1000 + i * length, length]
    return {"version": 1, "refs": refs}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (reference([365, 180, 360], [365, 180, 360], lengths=[365 * 180 * 360 * 4]), "stored as one piece"),
        (reference([3650, 180, 360], [3650, 1, 1], lengths=[3650 * 4] * 3), "VERY slow"),
        (reference([100, 6000, 6000], [1, 6000, 6000], lengths=[144_000_000] * 2), "uncompressed"),
        (reference([1000, 100, 100], [1, 10, 10], lengths=[400] * 150), "many requests"),
    ],
)
def test_each_bad_layout_warns(ref, expected):
    report = scan_refs(ref)
    assert len(report.warnings) == 1 and expected in report.warnings[0] and report.warnings[0].startswith("v:")


def test_balanced_chunks_do_not_warn():
    report = scan_refs(reference([365, 180, 360], [73, 90, 90], lengths=[300_000] * 40, codecs=["zlib"]))
    assert report.warnings == []
    (v,) = report.variables
    assert (v.chunk_count, v.chunk_grid_count, v.mean_chunk_bytes, v.codecs) == (40, 40, 300_000, ["zlib"])
    assert v.uncompressed_chunk_bytes == 73 * 90 * 90 * 4
