"""The chunking pre-flight report, computed from the reference itself (no second read).

The warnings follow the seed guidance: a whole variable in one piece is fetched whole for
any read; one-element chunks along spatial dimensions make maps very slow; chunks over
~100 MB are heavy; chunks under ~10 KB mean many requests.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np

from shared.models import ScanReport, VariableReport

SINGLE_PIECE_WARN_BYTES = 64 << 20
LARGE_CHUNK_BYTES = 100 << 20
SMALL_CHUNK_BYTES = 10 << 10
SMALL_CHUNK_MIN_COUNT = 100


def _stored_length(value: Any) -> int:
    if isinstance(value, list):
        return int(value[2])
    if isinstance(value, str) and value.startswith("base64:"):
        return len(base64.b64decode(value[7:]))
    return len(value.encode() if isinstance(value, str) else value)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def scan_refs(refs: dict[str, Any]) -> ScanReport:
    """Per-variable layout and warnings from a ``{"version": 1, "refs": {...}}`` reference."""
    table = refs["refs"]
    chunk_keys: dict[str, list[str]] = {}
    for key in table:
        parent, _, leaf = key.rpartition("/")
        if parent and not leaf.startswith("."):
            chunk_keys.setdefault(parent, []).append(key)

    variables: list[VariableReport] = []
    warnings: list[str] = []
    for key in sorted(table):
        if not key.endswith(".zarray"):
            continue
        name = key[: -len("/.zarray")]
        zarray = json.loads(table[key])
        zattrs = json.loads(table.get(f"{name}/.zattrs", "{}"))
        shape, chunks = zarray["shape"], zarray["chunks"]
        itemsize = np.dtype(zarray["dtype"]).itemsize if isinstance(zarray["dtype"], str) else 0
        keys = chunk_keys.get(name, [])
        lengths = [_stored_length(table[k]) for k in keys]
        inlined = sum(1 for k in keys if not isinstance(table[k], list))
        codecs = [c["id"] for c in (zarray.get("filters") or [])] + ([zarray["compressor"]["id"]] if zarray.get("compressor") else [])
        report = VariableReport(
            name=name,
            dimensions=zattrs.get("_ARRAY_DIMENSIONS", []),
            shape=shape,
            dtype=str(zarray["dtype"]),
            chunks=chunks,
            codecs=codecs,
            chunk_count=len(keys),
            chunk_grid_count=math.prod(math.ceil(s / c) for s, c in zip(shape, chunks) if c) if shape else 1,
            inlined_chunks=inlined,
            stored_bytes=sum(lengths),
            mean_chunk_bytes=sum(lengths) // len(lengths) if lengths else 0,
            uncompressed_chunk_bytes=math.prod(chunks) * itemsize,
        )
        variables.append(report)
        warnings += _warnings_for(report)
    return ScanReport(variables=variables, warnings=warnings)


def _warnings_for(v: VariableReport) -> list[str]:
    found = []
    whole = v.chunk_grid_count == 1 and v.shape and math.prod(v.shape) > 1
    if whole and v.stored_bytes > SINGLE_PIECE_WARN_BYTES:
        found.append(f"{v.name}: stored as one piece of {_mb(v.stored_bytes)} (contiguous or a single chunk): "
                     "every read fetches all of it. Consider rechunking if readers take small subsets.")
    if len(v.shape) >= 2 and any(c == 1 and s > 1 for c, s in zip(v.chunks[-2:], v.shape[-2:])):
        found.append(f"{v.name}: chunks {tuple(v.chunks)} hold one element along a spatial dimension: "
                     "map and tile reads will be VERY slow. Consider a physical conversion.")
    if v.uncompressed_chunk_bytes > LARGE_CHUNK_BYTES:
        found.append(f"{v.name}: chunks of {_mb(v.uncompressed_chunk_bytes)} uncompressed: small reads fetch and "
                     "decode far more than they need.")
    if v.chunk_count >= SMALL_CHUNK_MIN_COUNT and v.mean_chunk_bytes < SMALL_CHUNK_BYTES:
        found.append(f"{v.name}: {v.chunk_count} chunks of {v.mean_chunk_bytes} bytes on average: reads need many "
                     "requests. Acceptable, but not optimal.")
    return found
