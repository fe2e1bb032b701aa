"""Serialize a reference (JSON or Parquet) and put it in place so no reader sees half of it.

A reference has one owner: the source named in its ``ncrefs_source`` metadata. A write
never replaces or deletes a reference another existing source owns (``conflict``), and the
check holds under races: the write is conditional on the version that was checked.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import ujson

from shared import __version__
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


def write_reference(storage: Storage, refs: dict, target: Location, fmt: str, provenance: Provenance,
                    listed: Listed | None = None) -> Written:
    """Write ``refs`` to ``target``; say its size and which other reference it replaced.

    JSON is one atomic upload. Parquet is a directory: its ``.zmetadata`` (what readers open
    first) is removed before the parts change and written last, so a reader finds the old
    reference, none, or the whole new one, never a mixture. The same reference in the other
    format is removed, if this source owns it. ``listed`` (a backfill's listing of the refs container)
    spares the look-ups of blobs it shows absent; the write itself stays conditional on that.
    """
    metadata = provenance.metadata()
    data = ujson.dumps(refs, escape_forward_slashes=False).encode() if fmt == "json" else b""
    for attempt in range(WRITE_ATTEMPTS):
        absent = attempt == 0 and listed is not None and listed.absent(_marker(target, fmt))
        version = None if absent else claim(storage, target, fmt, provenance.source)
        try:
            if fmt == "json":
                storage.put(target, data, content_type="application/json", metadata=metadata,
                            if_etag=version, if_absent=version is None)
                written = len(data)
            else:
                written = write_parquet_directory(storage, refs, target, metadata)
            break
        except WriteRaced:
            continue  # someone wrote it meanwhile: look again who owns it
    else:
        raise Conflict(f"{target} kept changing while it was written ({WRITE_ATTEMPTS} attempts); nothing was replaced.",
                       hint="Another writer is writing the same reference; try again when it is done.")
    other_fmt = "parquet" if fmt == "json" else "json"
    other = sibling(target, other_fmt)
    if listed is not None and listed.absent(_marker(other, other_fmt)):
        return Written(written)
    head = _head(storage, other, other_fmt)
    if head is not None and _owner(head) == provenance.source:
        _remove_reference(storage, other)
        return Written(written, other)
    return Written(written)


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


def _head(storage: Storage, target: Location, fmt: str) -> BlobHead | None:
    """The properties of the blob that says a reference exists (a Parquet reference's .zmetadata)."""
    if isinstance(target, LocalLocation):
        return None  # local references carry no owner
    return storage.head(target if fmt == "json" else child(target, ZMETADATA))


def _owner(head: BlobHead) -> str:
    return unquote(head.metadata.get("ncrefs_source", ""))


def claim(storage: Storage, target: Location, fmt: str, source: str) -> str | None:
    """The ETag of ``target`` if ``source`` may replace it, None if it does not exist yet;
    :class:`Conflict` when it belongs to another source that still exists."""
    head = _head(storage, target, fmt)
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


def write_parquet_directory(storage: Storage, refs: dict, target: Location, metadata: dict[str, str]) -> int:
    """Write ``refs`` as a Parquet reference directory; readers see the old one, none, or the whole new one."""
    from kerchunk.df import refs_to_dataframe

    with tempfile.TemporaryDirectory(prefix="ncrefs-parquet-") as tmp:
        out = Path(tmp) / "ref.parquet"
        refs_to_dataframe(refs, str(out))
        files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    storage.delete(child(target, ZMETADATA))
    for name, data in files.items():
        if name != ZMETADATA:
            storage.put(child(target, name), data, content_type="application/vnd.apache.parquet")
    for stale in storage.list_under(target):
        if _relative(stale, target) not in files:
            storage.delete(stale)
    # Absent since the delete above: a writer that got in meanwhile makes this fail (WriteRaced).
    storage.put(child(target, ZMETADATA), files[ZMETADATA], content_type="application/json", metadata=metadata,
                if_absent=True)
    return sum(len(d) for d in files.values())


def _relative(location: Location, directory: Location) -> str:
    if isinstance(location, LocalLocation):
        return location.path.relative_to(directory.path).as_posix()  # type: ignore[union-attr]
    return location.path[len(directory.path.rstrip("/")) + 1 :]


def _remove_reference(storage: Storage, target: Location) -> None:
    """Remove a reference in either form (one object, or a Parquet directory)."""
    storage.delete(target)
    for part in sorted(storage.list_under(target), key=lambda loc: str(loc).endswith(ZMETADATA), reverse=True):
        storage.delete(part)
