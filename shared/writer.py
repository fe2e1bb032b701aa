"""Serialize a reference (JSON or Parquet) and put it in place so no reader sees half of it.

A reference has one owner: the source named in its ``ncrefs_source`` metadata. A write
never replaces or deletes a reference another existing source owns (``conflict``), and the
check holds under races: the write is conditional on the version that was checked.
"""

from __future__ import annotations

import base64
import logging
import math
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import ujson

from shared import __version__
from shared.chunkrefs import NO_RANGE, Reference
from shared.errors import Conflict
from shared.paths import REFERENCE_SUFFIXES, BlobLocation, LocalLocation, Location, format_for_target
from shared.storage import BlobHead, SourceInfo, Storage, WriteRaced

log = logging.getLogger("ncrefs.writer")
WRITE_ATTEMPTS = 3

ZMETADATA = ".zmetadata"


@dataclass(frozen=True)
class Provenance:
    """Recorded on the reference (blob metadata) so a later run can tell whether it is current."""

    source: str
    info: SourceInfo

    def metadata(self) -> dict[str, str]:
        return {
            "ncrefs_source": quote(self.source, safe="/:@"),
            "ncrefs_source_etag": self.info.etag.strip('"'),
            "ncrefs_source_size": str(self.info.size),
            "ncrefs_source_last_modified": self.info.last_modified.isoformat(),
            "ncrefs_version": __version__,
        }


def sibling(target: Location, fmt: str) -> Location:
    """The same reference under the other format's name (``x.json`` <-> ``x.parquet``)."""
    name = target.path.name if isinstance(target, LocalLocation) else target.path
    current = format_for_target(target)  # the pipeline only writes to .json/.parquet names
    name = name[: -len(REFERENCE_SUFFIXES[current])] + REFERENCE_SUFFIXES[fmt]
    if isinstance(target, LocalLocation):
        return LocalLocation(target.path.with_name(name))
    return BlobLocation(target.container, name, target.account)


def child(location: Location, name: str) -> Location:
    if isinstance(location, LocalLocation):
        return LocalLocation(location.path / name)
    return BlobLocation(location.container, f"{location.path}/{name}", location.account)


@dataclass(frozen=True)
class Written:
    size: int  # bytes of the reference
    replaced: Location | None = None  # the same source's reference in the other format, now removed


def write_reference(storage: Storage, reference: Reference, target: Location, fmt: str, provenance: Provenance,
                    listed: Listed | None = None, looked: ReferenceLookAhead | None = None) -> Written:
    """Write ``reference`` to ``target``; say its size and which other reference it replaced.

    JSON is one atomic upload. Parquet is a directory: its ``.zmetadata`` (what readers open
    first) is removed before the parts change and written last, so a reader finds the old
    reference, none, or the whole new one, never a mixture. The same reference in the other
    format is removed, if this source owns it. ``listed`` (a backfill's listing of the refs container)
    spares the look-ups of blobs it shows absent, ``looked`` (:class:`ReferenceLookAhead`) those asked ahead; the
    write itself stays conditional on what they said.
    """
    metadata = provenance.metadata()
    data = ujson.dumps(reference.to_kerchunk(), escape_forward_slashes=False).encode() if fmt == "json" else b""
    other_fmt = "parquet" if fmt == "json" else "json"
    other = sibling(target, other_fmt)
    with ThreadPoolExecutor(1, thread_name_prefix="ncrefs-sibling") as side:
        # Whether the other format's reference exists is asked while this one is written (a round trip saved).
        other_head = None if listed is not None and listed.absent(_marker(other, other_fmt)) else \
            side.submit(_head, storage, other, other_fmt, looked)
        written = _write_claimed(storage, reference, data, target, fmt, provenance, metadata, listed, looked)
        head = other_head.result() if other_head is not None else None
    if head is not None and _owner(head) == provenance.source:
        _remove_reference(storage, other)
        return Written(written, other)
    return Written(written)


def _write_claimed(storage: Storage, reference: Reference, data: bytes, target: Location, fmt: str,
                   provenance: Provenance, metadata: dict[str, str], listed: Listed | None, looked: ReferenceLookAhead | None) -> int:
    """Write the reference if ``provenance.source`` may (it owns ``target``, or nobody does), conditionally."""
    for attempt in range(WRITE_ATTEMPTS):
        absent = attempt == 0 and listed is not None and listed.absent(_marker(target, fmt))
        version = None if absent else claim(storage, target, fmt, provenance.source, looked if attempt == 0 else None)
        try:
            if fmt == "json":
                storage.put(target, data, content_type="application/json", metadata=metadata,
                            if_etag=version, if_absent=version is None)
                return len(data)
            return write_parquet_directory(storage, reference, target, metadata)
        except WriteRaced:
            continue  # someone wrote it meanwhile: look again who owns it
    raise Conflict(f"{target} kept changing while it was written ({WRITE_ATTEMPTS} attempts); nothing was replaced.",
                   hint="Another writer is writing the same reference; try again when it is done.")


class ReferenceLookAhead:
    """The properties of the blobs that say a reference exists (``target`` and its other format's), asked
    ahead, while the source is parsed (a round trip off the write). A write uses them for its first attempt
    only and stays conditional on the ETag they said: anything written meanwhile makes it look again."""

    def __init__(self, storage: Storage, target: Location, submit, listed: Listed | None = None):
        self._heads = {}
        if isinstance(target, BlobLocation):
            for fmt in ("json", "parquet"):
                marker = _marker(sibling(target, fmt), fmt)
                if listed is None or not listed.absent(marker):
                    self._heads[marker] = submit(storage.head, marker)

    def head(self, marker: Location):
        """The marker's properties (None: absent) if it was looked up, else ``...``."""
        found = self._heads.get(marker)
        return ... if found is None else found.result()


@dataclass(frozen=True)
class Listed:
    """The names listings of the refs container under ``prefixes`` showed, a moment ago."""

    container: str
    prefixes: tuple[str, ...]
    names: frozenset[str]

    def absent(self, location: Location) -> bool:
        return (isinstance(location, BlobLocation) and location.container == self.container
                and location.path.startswith(self.prefixes) and location.path not in self.names)


def _marker(target: Location, fmt: str) -> Location:
    """The blob that says a reference exists (a Parquet reference's .zmetadata)."""
    return target if fmt == "json" else child(target, ZMETADATA)


def _head(storage: Storage, target: Location, fmt: str, looked: ReferenceLookAhead | None = None) -> BlobHead | None:
    """The properties of the blob that says a reference exists (a Parquet reference's .zmetadata)."""
    if isinstance(target, LocalLocation):
        return None  # local references carry no owner
    marker = _marker(target, fmt)
    if looked is not None and (head := looked.head(marker)) is not ...:
        return head
    return storage.head(marker)


def _owner(head: BlobHead) -> str:
    return unquote(head.metadata.get("ncrefs_source", ""))


def claim(storage: Storage, target: Location, fmt: str, source: str, looked: ReferenceLookAhead | None = None) -> str | None:
    """The ETag of ``target`` if ``source`` may replace it, None if it does not exist yet;
    :class:`Conflict` when it belongs to another source that still exists."""
    head = _head(storage, target, fmt, looked)
    if head is None:
        return None
    owner = _owner(head)
    if owner == source:
        return head.etag
    if not owner:
        raise Conflict(f"{target} exists and was not written by ncrefs for {source}; it is left as it is.",
                       hint="Give another output, or delete that blob if it is not needed.")
    container, _, path = owner.partition("/")
    if path and storage.head(BlobLocation(container, path)) is None:
        log.info("%s belonged to %s, which no longer exists: %s takes it over", target, owner, source)
        return head.etag
    raise Conflict(
        f"{target} is the reference of {owner}, and {source} maps to the same name: it was not replaced.",
        hint="Two sources differ only in their suffix (e.g. a.nc and a.h5): rename one, or give an explicit output.",
    )


def write_parquet_directory(storage: Storage, reference: Reference, target: Location, metadata: dict[str, str]) -> int:
    """Write ``reference`` as a Parquet reference directory, a record file at a time as it is built;
    readers see the old one, none, or the whole new one."""
    storage.delete(child(target, ZMETADATA))
    written = 0
    names = set()
    with tempfile.TemporaryDirectory(prefix="ncrefs-parquet-") as tmp:
        for name, data in parquet_parts(reference, Path(tmp)):
            if name == ZMETADATA:
                zmetadata = data
                continue
            storage.put(child(target, name), data, content_type="application/vnd.apache.parquet")
            written += len(data)
            names.add(name)
    for stale in storage.list_under(target):
        if _relative(stale, target) not in names:
            storage.delete(stale)
    # Absent since the delete above: a writer that got in meanwhile makes this fail (WriteRaced).
    storage.put(child(target, ZMETADATA), zmetadata, content_type="application/json", metadata=metadata, if_absent=True)
    return written + len(zmetadata)


# fsspec's LazyReferenceMapper layout, as kerchunk's refs_to_dataframe writes it (its defaults): a chunk
# key's row is its flat index in the chunk grid; RECORD_SIZE rows per file <field>/refs.<record>.parq.
RECORD_SIZE = 100_000
CATEGORICAL_THRESHOLD = 10


def parquet_parts(reference: Reference, tmp: Path) -> Iterator[tuple[str, bytes]]:
    """The files of ``reference`` as a Parquet reference (name, bytes), one record at a time, then
    ``.zmetadata``: what ``kerchunk.df.refs_to_dataframe`` writes, without a dict of every key."""
    import numpy as np

    metadata = {key: ujson.loads(value) for key, value in sorted(reference.entries.items()) if _is_meta(key)}
    copied = reference.chunk_entries()
    for field in sorted(set(copied) | {p for p, t in reference.tables.items() if t.count()}):
        zarray = metadata[f"{field}/.zarray"]
        grid = [math.ceil(s / c) for s, c in zip(zarray["shape"], zarray["chunks"])] or [1]
        table = reference.tables.get(field)
        by_record: dict[int, dict[int, Any]] = {}  # record -> {row: copied value}
        for key, value in copied.get(field, {}).items():
            cell = int(np.ravel_multi_index(tuple(map(int, key.split("."))), grid))
            by_record.setdefault(cell // RECORD_SIZE, {})[cell % RECORD_SIZE] = value
        urls = np.array([*(table.urls if table is not None else []), np.nan], dtype=object)  # NO_RANGE picks NaN
        for record in range(math.ceil(math.prod(grid) / RECORD_SIZE)):
            start, end = record * RECORD_SIZE, min(math.prod(grid), (record + 1) * RECORD_SIZE)
            rows = by_record.get(record, {})
            which = table.which[start:end] if table is not None else np.full(end - start, NO_RANGE, dtype=np.int32)
            has = which != NO_RANGE
            if not rows and not has.any():
                continue  # kerchunk writes no file for a record without references
            paths = np.full(RECORD_SIZE, np.nan, dtype=object)
            offsets = np.zeros(RECORD_SIZE, dtype="int64")
            sizes = np.zeros(RECORD_SIZE, dtype="int64")
            raws = np.full(RECORD_SIZE, np.nan, dtype=object)
            paths[: end - start] = urls[which]
            if table is not None:
                offsets[: end - start] = np.where(has, table.offsets[start:end], 0)
                sizes[: end - start] = np.where(has, table.lengths[start:end], 0)
            for row, value in rows.items():
                if isinstance(value, list):
                    paths[row], offsets[row], sizes[row] = value
                else:
                    raws[row] = _raw(value)
            name = f"{field}/refs.{record}.parq"
            yield name, _parquet_file(paths, offsets, sizes, raws, tmp / "part.parq")
    yield ZMETADATA, ujson.dumps({"metadata": metadata, "record_size": RECORD_SIZE}).encode()  # as fsspec writes it


def _parquet_file(paths, offsets, sizes, raws, path: Path) -> bytes:
    """One record file, encoded as fsspec's LazyReferenceMapper.write encodes it."""
    import pandas as pd

    frame = pd.DataFrame({"path": paths, "offset": offsets, "size": sizes, "raw": raws}, copy=False)
    if frame.path.count() / (frame.path.nunique() or 1) > CATEGORICAL_THRESHOLD:
        frame["path"] = frame["path"].astype("category")
    frame.to_parquet(path, engine="fastparquet", compression="zstd", index=False, stats=False,
                     object_encoding={"raw": "bytes", "path": "utf8"}, has_nulls=["path", "raw"])
    data = path.read_bytes()
    path.unlink()
    return data


def _is_meta(key: str) -> bool:
    """Metadata (``.zgroup``, ``.zarray``, ``.zattrs``) as LazyReferenceMapper tells it from a chunk key."""
    return key.startswith(".z") or "/.z" in key or "/" not in key


def _raw(value) -> bytes:
    """A copied chunk's bytes (kerchunk.df._proc_raw)."""
    data = value if isinstance(value, bytes) else value.encode()
    return base64.b64decode(data[7:]) if data.startswith(b"base64:") else data


def _relative(location: Location, directory: Location) -> str:
    if isinstance(location, LocalLocation):
        return location.path.relative_to(directory.path).as_posix()  # type: ignore[union-attr]
    return location.path[len(directory.path.rstrip("/")) + 1 :]


def _remove_reference(storage: Storage, target: Location) -> None:
    """Remove a reference in either form (one object, or a Parquet directory)."""
    storage.delete(target)
    for part in sorted(storage.list_under(target), key=lambda loc: str(loc).endswith(ZMETADATA), reverse=True):
        storage.delete(part)


# -- ownership, for callers outside the write path (shared/prune.py) ---------------------------------
def reference_owner(storage: Storage, target: Location, fmt: str) -> tuple[str, str] | None:
    """``(owner source, ETag of the blob that says the reference exists)``, or None when there is no reference."""
    head = _head(storage, target, fmt)
    return None if head is None else (_owner(head), head.etag)


def remove_owned_reference(storage: Storage, target: Location, fmt: str, source: str) -> bool:
    """Remove the reference at ``target`` only if ``source`` owns it, conditionally on the version checked:
    False when there is none, another source owns it, or it was rewritten meanwhile (that writer wins)."""
    found = reference_owner(storage, target, fmt)
    if found is None or found[0] != source:
        return False
    try:
        storage.delete(_marker(target, fmt), if_etag=found[1])
    except WriteRaced:
        return False
    if fmt == "parquet":  # its parts, now that no reader opens it (.zmetadata is gone)
        _remove_reference(storage, target)
    return True
