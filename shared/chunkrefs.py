"""A reference as metadata plus chunk tables: a million chunks as three arrays, not a million keys.

A kerchunk reference maps every chunk key to ``[url, offset, length]``. Held as a dict, a
file of a million chunks costs ~250 MB and ~15 µs a chunk to build, send and write. Here
each array's byte ranges stay in a :class:`ChunkTable` (three numpy arrays over its chunk
grid, in C order) from the parser to the writer: the parser fills it from virtualizarr's
manifest, the parser process sends it as raw bytes, the Parquet writer writes it a record at
a time, and only a JSON reference (at most ``PARQUET_CHUNK_THRESHOLD`` chunks) becomes a dict.

:class:`Reference` is the whole: ``entries`` (the kerchunk keys: metadata, and chunks whose
bytes are copied in) and ``tables`` (the byte ranges). A chunk is in one or the other, never both.

virtualizarr 2.8 gives no public access to a manifest's arrays (``_paths``, ``_offsets``,
``_lengths``, ``_inlined``); :func:`take_table` is the one place that reads them.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

NO_RANGE = -1  # a cell of ``which`` with no byte range: never written, or its bytes are in the entries


@dataclass
class ChunkTable:
    """One array's chunk byte ranges over its chunk grid (flattened, C order)."""

    grid: tuple[int, ...]  # chunks along each axis; () for a scalar (one chunk, key "0")
    urls: list[str]  # the distinct URLs the chunks point into (one, for a single file)
    which: np.ndarray  # int32 per cell: index into ``urls``, or NO_RANGE
    offsets: np.ndarray  # uint64 per cell
    lengths: np.ndarray  # uint64 per cell

    def present(self) -> np.ndarray:
        return self.which != NO_RANGE

    def count(self) -> int:
        return int(np.count_nonzero(self.present()))

    def stored_bytes(self) -> int:
        return int(self.lengths[self.present()].sum())

    def max_end(self) -> int:
        present = self.present()
        return int((self.offsets[present] + self.lengths[present]).max()) if present.any() else 0

    def keys(self, flat: np.ndarray) -> list[str]:
        """The chunk keys ("i.j.k") of the cells ``flat``, in order."""
        if not self.grid:
            return ["0"] * len(flat)
        columns = [list(map(str, axis.tolist())) for axis in np.unravel_index(flat, self.grid)]
        return [".".join(parts) for parts in zip(*columns)] if len(columns) > 1 else columns[0]

    def cell(self, key: str) -> int | None:
        """The flat cell of a chunk key, or None when the key is not one of this grid."""
        try:
            index = tuple(int(part) for part in key.split(".")) if self.grid else (0,) if key == "0" else None
        except ValueError:
            return None
        if index is None:
            return None
        if not self.grid:
            return 0
        if len(index) != len(self.grid) or not all(0 <= i < n for i, n in zip(index, self.grid)):
            return None
        return int(np.ravel_multi_index(index, self.grid))

    def ranges(self, prefix: str) -> dict[str, list]:
        """The byte ranges as kerchunk entries ``{prefix + key: [url, offset, length]}``."""
        flat = np.flatnonzero(self.present())
        which, offsets, lengths = self.which[flat].tolist(), self.offsets[flat].tolist(), self.lengths[flat].tolist()
        return {prefix + key: [self.urls[w], o, n] for key, w, o, n in zip(self.keys(flat), which, offsets, lengths)}

    # -- the parser process sends a table as JSON (grid, urls) plus three raw arrays --------------
    def header(self) -> dict:
        return {"grid": list(self.grid), "urls": self.urls}

    def frames(self) -> list[bytes]:
        return [self.which.tobytes(), self.offsets.tobytes(), self.lengths.tobytes()]

    @classmethod
    def from_frames(cls, header: dict, frames: list[bytes]) -> ChunkTable:
        """A table as a parser process sent it; ValueError when its parts do not fit together."""
        grid = header.get("grid")
        urls = header.get("urls")
        if (not isinstance(grid, list) or not all(type(n) is int and n >= 0 for n in grid)
                or not isinstance(urls, list) or not all(isinstance(u, str) for u in urls) or len(frames) != 3):
            raise ValueError("malformed chunk table")
        cells = math.prod(grid)
        which = np.frombuffer(frames[0], dtype=np.int32)
        offsets, lengths = (np.frombuffer(f, dtype=np.uint64) for f in frames[1:])
        if not which.size == offsets.size == lengths.size == cells:
            raise ValueError("chunk table arrays do not match its grid")
        return cls(tuple(grid), urls, which.copy(), offsets, lengths)


@dataclass
class Reference:
    """A kerchunk reference: ``entries`` (keys -> JSON text, ``base64:`` data or byte ranges)
    and ``tables`` (array path -> its chunks' byte ranges)."""

    entries: dict[str, Any]
    tables: dict[str, ChunkTable] = field(default_factory=dict)

    @classmethod
    def from_kerchunk(cls, refs: dict) -> Reference:
        return cls(dict(refs.get("refs", refs)))

    def to_kerchunk(self) -> dict:
        """``{"version": 1, "refs": {...}}`` with every table's byte ranges as keys."""
        refs = dict(self.entries)
        for path, table in self.tables.items():
            refs.update(table.ranges(f"{path}/"))
        return {"version": 1, "refs": refs}

    def get(self, key: str) -> Any:
        """A key's value as in the kerchunk dict, or None."""
        if key in self.entries:
            return self.entries[key]
        path, _, chunk = key.rpartition("/")
        table = self.tables.get(path)
        flat = table.cell(chunk) if table is not None else None
        if flat is None or table.which[flat] == NO_RANGE:
            return None
        return [table.urls[table.which[flat]], int(table.offsets[flat]), int(table.lengths[flat])]

    def keys(self) -> Iterator[str]:
        yield from self.entries
        for path, table in self.tables.items():
            for key in table.keys(np.flatnonzero(table.present())):
                yield f"{path}/{key}"

    def chunk_entries(self) -> dict[str, dict[str, Any]]:
        """Array path -> {chunk key: value} of the chunks held in ``entries``."""
        found: dict[str, dict[str, Any]] = {}
        for key, value in self.entries.items():
            path, _, chunk = key.rpartition("/")
            if path and not chunk.startswith("."):
                found.setdefault(path, {})[chunk] = value
        return found


def take_table(manifest) -> ChunkTable:
    """A virtualizarr ChunkManifest's byte ranges as a table; the manifest then shows
    virtualizarr's kerchunk writer no entries (it still writes the array's metadata).

    Inlined chunks are not byte ranges: they are returned by :func:`inlined_entries` first."""
    from virtualizarr.manifests.manifest import MISSING_CHUNK_PATH

    paths = manifest._paths.reshape(-1)
    present = paths != MISSING_CHUNK_PATH
    for index in manifest._inlined:  # those cells hold data, not a byte range
        present[np.ravel_multi_index(index, manifest._paths.shape) if manifest._paths.ndim else 0] = False
    first = paths[np.argmax(present)] if present.any() else ""
    if not present.any() or (paths[present] == first).all():  # one file: no sort of a million strings
        unique, which = [first], np.zeros(paths.size, dtype=np.int32)
    else:
        unique, which = np.unique(paths, return_inverse=True)
    urls = [_without_file_scheme(str(u)) for u in unique]
    table = ChunkTable(
        grid=tuple(manifest._paths.shape),
        urls=urls,
        which=np.where(present, which.reshape(-1), NO_RANGE).astype(np.int32),
        offsets=np.ascontiguousarray(manifest._offsets.reshape(-1), dtype=np.uint64),
        lengths=np.ascontiguousarray(manifest._lengths.reshape(-1), dtype=np.uint64),
    )
    _compact_urls(table)
    manifest.__class__ = _entries_taken_class()
    return table


def inlined_entries(manifest, prefix: str) -> dict[str, str]:
    """The chunks a manifest holds as data (``base64:``), keyed as kerchunk keys them."""
    keys = {}
    for index, data in manifest._inlined.items():
        key = ".".join(map(str, index)) if manifest._paths.ndim else "0"
        keys[prefix + key] = (b"base64:" + base64.b64encode(data)).decode()
    return keys


def _compact_urls(table: ChunkTable) -> None:
    """Keep only the URLs some cell points to (the missing-chunk path "" is none)."""
    used = np.unique(table.which[table.which != NO_RANGE])
    if len(used) == len(table.urls):
        return
    remap = np.full(len(table.urls) + 1, NO_RANGE, dtype=np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    table.which = np.where(table.which != NO_RANGE, remap[table.which], NO_RANGE).astype(np.int32)
    table.urls = [table.urls[i] for i in used.tolist()]


def _without_file_scheme(path: str) -> str:
    """A local file's URL as kerchunk writes it (virtualizarr's ``remove_file_uri_prefix``)."""
    return path.removeprefix("file://") if path.startswith("file:///") else path


@cache
def _entries_taken_class() -> type:
    from virtualizarr.manifests import ChunkManifest

    class EntriesTaken(ChunkManifest):
        """A manifest whose entries were taken into a table: virtualizarr's writer sees none."""

        def dict(self):  # type: ignore[override]
            return {}

    return EntriesTaken
