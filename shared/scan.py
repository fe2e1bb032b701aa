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

from shared.chunkrefs import Reference
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


def scan_refs(reference: Reference | dict[str, Any]) -> ScanReport:
    """Per-variable layout and warnings from a reference (or a ``{"version": 1, "refs": {...}}`` dict)."""
    if not isinstance(reference, Reference):
        reference = Reference.from_kerchunk(reference)
    table = reference.entries
    in_entries = reference.chunk_entries()

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
        copied = in_entries.get(name, {})
        ranges = reference.tables.get(name)
        count = len(copied) + (ranges.count() if ranges is not None else 0)
        stored = sum(_stored_length(value) for value in copied.values()) + (ranges.stored_bytes() if ranges is not None else 0)
        codecs = [c["id"] for c in (zarray.get("filters") or [])] + ([zarray["compressor"]["id"]] if zarray.get("compressor") else [])
        report = VariableReport(
            name=name,
            dimensions=zattrs.get("_ARRAY_DIMENSIONS", []),
            shape=shape,
            dtype=str(zarray["dtype"]),
            chunks=chunks,
            codecs=codecs,
            chunk_count=count,
            chunk_grid_count=math.prod(math.ceil(s / c) for s, c in zip(shape, chunks) if c) if shape else 1,
            inlined_chunks=sum(1 for value in copied.values() if not isinstance(value, list)),
            stored_bytes=stored,
            mean_chunk_bytes=stored // count if count else 0,
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
