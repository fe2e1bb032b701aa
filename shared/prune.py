"""Deletions: a source that is gone takes with it everything ncrefs made for it.

That is its reference (JSON, or a Parquet directory; only if the reference names this source as
its owner, ``ncrefs_source``), its error record, its STAC item, and its membership in datasets
(a new dataset version without it: an Icechunk snapshot, rewritten Parquet/JSON outputs).

- :func:`source_deleted` handles one ``BlobDeleted`` event (``functions/blob_deleted.py``).
  Events are at-least-once and unordered, so it acts only when the source is really gone now
  (a HEAD says 404): a blob deleted and uploaded again keeps everything, and the same event
  twice removes nothing the second time.
- :func:`prune` does the same for every reference, error record and STAC item under a prefix of the
  refs container whose source no longer exists (``ncrefs prune``): one listing of the refs
  container (three prefixes) and one of each source container tell which sources are gone; each
  of those is looked up once more just before anything of it is removed.

Order matters: datasets first (their rebuild reads the other members' per-file references, never a
deleted one's), then the reference, the error record and the STAC item. Every removal is
conditional on what was checked: a reference rewritten meanwhile (its source uploaded again) stays.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Literal
from urllib.parse import unquote

from pydantic import BaseModel, Field

from shared.datasets import DatasetChange
from shared.errors import InvalidRequest, NcrefsError, SourceNotFound
from shared.models import ErrorInfo
from shared.paths import (
    ERRORS_PREFIX,
    RESERVED_MARK,
    BlobLocation,
    error_record_location,
    reference_location,
    validate_blob_name,
)
from shared.settings import Settings
from shared.storage import Storage, WriteRaced
from shared.writer import ZMETADATA, remove_owned_reference

log = logging.getLogger("ncrefs.prune")

STAC_ITEMS = "_stac/items/"


class Removal(BaseModel):
    """What the deletion of one source removed (the event function's outcome, one line of ``prune``)."""

    source: str
    action: Literal["removed", "source_exists", "nothing_to_remove", "failed"]
    references: list[str] = Field(default_factory=list)  # abfs:// URLs of the references removed
    error_record: str | None = None
    stac_item: str | None = None
    datasets: list[DatasetChange] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    error: ErrorInfo | None = None


class Orphan(BaseModel):
    """A source that no longer exists, and what ncrefs still holds for it."""

    source: str
    references: list[str] = Field(default_factory=list)
    error_record: str | None = None
    stac_item: str | None = None
    datasets: list[str] = Field(default_factory=list)


class PruneSummary(BaseModel):
    status: Literal["success", "dry_run"]
    prefix: str
    references: int = 0  # references looked at under the prefix
    error_records: int = 0
    stac_items: int = 0
    orphans: list[Orphan] = Field(default_factory=list)  # gone sources (with --dry-run: what would be removed)
    removed: list[Removal] = Field(default_factory=list)
    recreated: list[str] = Field(default_factory=list)  # listed as gone, but back when it came to removing
    datasets: list[DatasetChange] = Field(default_factory=list)
    elapsed_s: float = 0.0


# -- one deleted source (the BlobDeleted event) --------------------------------------------------------
def source_deleted(container: str, name: str, settings: Settings, storage: Storage) -> Removal:
    """Handle one ``BlobDeleted`` event for ``container/name``; idempotent. Raises :class:`NcrefsError`
    only when retrying can help (storage unavailable, a dataset busy)."""
    source = BlobLocation(container, name)
    validate_blob_name(name, what="deleted blob")
    if storage.head(source) is not None:
        log.info("%s exists (deleted and uploaded again, or an old event): nothing removed", source)
        return Removal(source=str(source), action="source_exists")
    from shared.datasets import update_for_deleted_source

    datasets = _dataset_changes(lambda: update_for_deleted_source(settings, storage, source), str(source))
    removal = _remove_what_it_had(settings, storage, source, datasets=datasets)
    log.info("%s deleted: %s", source, removal.action if removal.action != "removed" else
             ", ".join(removal.references + [r for r in (removal.error_record, removal.stac_item) if r]))
    return removal


BLOB_DELETED = "Microsoft.Storage.BlobDeleted"
_SUBJECT_PREFIX = "/blobServices/default/containers/"


def blob_deleted_event(event_type: str, subject: str, data: dict | None, settings: Settings,
                       storage: Storage) -> Removal | None:
    """An Event Grid event from the data account: a ``BlobDeleted`` of a blob in the source container is
    handled (:func:`source_deleted`); anything else is ignored (None), with a log line."""
    if event_type != BLOB_DELETED:
        log.info("ignoring Event Grid event %s (%s)", event_type, subject)
        return None
    container, name = blob_of_event(subject, (data or {}).get("url"))
    if container != settings.source_container:
        log.info("ignoring the deletion of %s/%s: not in the source container %s", container, name, settings.source_container)
        return None
    try:
        return source_deleted(container, name, settings, storage)
    except NcrefsError as error:
        if error.retryable:
            raise  # Event Grid delivers it again (then dead-letters it)
        # Delivering it again cannot help (a name no reference can have, no right to the refs container): say why.
        log.error("the deletion of %s/%s was not handled: [%s] %s", container, name, error.code, error.message)
        return Removal(source=f"{container}/{name}", action="failed", error=ErrorInfo(**error.to_dict()))


def blob_of_event(subject: str, url: str | None = None) -> tuple[str, str]:
    """``(container, blob name)`` from a storage event's subject
    (``/blobServices/default/containers/<container>/blobs/<name>``), else from its ``data.url``."""
    if isinstance(subject, str) and subject.startswith(_SUBJECT_PREFIX):
        container, _, rest = subject[len(_SUBJECT_PREFIX):].partition("/")
        if rest.startswith("blobs/") and container and len(rest) > len("blobs/"):
            return container, rest[len("blobs/"):]
    if isinstance(url, str):
        from urllib.parse import urlsplit

        container, _, name = unquote(urlsplit(url).path).lstrip("/").partition("/")
        if container and name:
            return container, name
    raise InvalidRequest(f"The event names no blob: subject {str(subject)[:200]!r}, url {str(url)[:200]!r}.",
                         hint="Subscribe this function to Microsoft.Storage.BlobDeleted events of the data account.")


def _dataset_changes(update: Callable[[], list[DatasetChange]], source: str) -> list[DatasetChange]:
    try:
        return update()
    except NcrefsError as error:
        if error.retryable:
            raise  # the event is delivered again; nothing below has run yet
        log.error("datasets holding %s not updated: [%s] %s", source, error.code, error.message)
        return [DatasetChange(name="*", action="refused", members=-1, refused={source: f"[{error.code}] {error.message}"})]


def _remove_what_it_had(settings: Settings, storage: Storage, source: BlobLocation, *,
                        references: list[tuple[BlobLocation, str]] | None = None,
                        datasets: list[DatasetChange] | None = None, unlink_item: bool = True) -> Removal:
    """Remove the references of ``source`` (its mapped ones, and ``references`` found by a listing), its error
    record and its STAC item; each only if it is this source's."""
    owner = str(source)
    removal = Removal(source=owner, action="nothing_to_remove", datasets=datasets or [])
    targets = list(references or [])
    for fmt in ("json", "parquet"):
        try:
            mapped = reference_location(source, fmt=fmt, refs_container=settings.refs_container,
                                        source_container=settings.source_container)
        except NcrefsError:  # a name that never had a mapped reference (reserved, too long)
            break
        if (mapped, fmt) not in targets:
            targets.append((mapped, fmt))
    for target, fmt in targets:
        if remove_owned_reference(storage, target, fmt, owner):
            removal.references.append(target.url("abfs") + ("/" if fmt == "parquet" else ""))
    record = error_record_location(source, refs_container=settings.refs_container, source_container=settings.source_container)
    head = storage.head(record)
    if head is not None and unquote(head.metadata.get("ncrefs_source", owner)) == owner:
        try:
            if storage.delete(record, if_etag=head.etag):
                removal.error_record = str(record)
        except WriteRaced:
            pass  # written again meanwhile: that failure is of a new upload
    if unlink_item:
        from shared.catalog import item_path, remove_items
        from shared.catalog.store import relative_source

        relative = relative_source(source, settings)
        try:
            if remove_items(settings, storage, {relative}):
                removal.stac_item = f"{settings.refs_container}/{item_path(relative)}"
        except Exception as error:  # noqa: BLE001 - the catalog never fails a deletion; `ncrefs stac build` repairs it
            what = error.message if isinstance(error, NcrefsError) else f"{type(error).__name__}: {error}"
            removal.warnings.append(f"The STAC item of {source} was not removed ({what}); run `ncrefs stac build`.")
    if removal.references or removal.error_record or removal.stac_item or any(
            change.action not in ("unchanged", "refused") for change in removal.datasets):
        removal.action = "removed"
    return removal


# -- every gone source under a prefix (ncrefs prune) -----------------------------------------------------
def prune(settings: Settings, storage: Storage, prefix: str = "", *, dry_run: bool = False,
          say: Callable[[str], None] | None = None) -> PruneSummary:
    """Remove (``dry_run``: list) what ncrefs holds under ``prefix`` of the refs container for sources that
    no longer exist: references, error records, STAC items, dataset memberships."""
    started = time.perf_counter()
    _check_prefix(prefix, settings)
    summary = PruneSummary(status="dry_run" if dry_run else "success", prefix=prefix)
    orphans: dict[str, Orphan] = {}
    owned: dict[str, list[tuple[BlobLocation, str]]] = {}  # source -> its references found by the listing

    def orphan(source: str) -> Orphan:
        return orphans.setdefault(source, Orphan(source=source))

    # What ncrefs holds for which source, from the refs container (owners in blob metadata), and the
    # dataset members within the prefix.
    from shared.datasets import list_definitions, remove_members
    from shared.datasets.service import _load_state

    references, records, items = _listed_owners(settings, storage, prefix)
    summary.references, summary.error_records, summary.stac_items = len(references), len(records), len(items)
    members: dict[str, list] = {}
    for definition in list_definitions(settings, storage):
        state, _ = _load_state(settings, storage, definition.name)
        members[definition.name] = (definition, [m.source for m in state.members if _in_scope(m.source, prefix, settings)])
    owners = ({o for o, _, _ in references} | {o for o, _ in records} | {o for o, _ in items}
              | {source for _, sources in members.values() for source in sources})
    existing = _existing_sources(storage, owners)
    for owner, location, fmt in references:
        if owner not in existing:
            orphan(owner).references.append(location.url("abfs") + ("/" if fmt == "parquet" else ""))
            owned.setdefault(owner, []).append((location, fmt))
    for owner, location in records:
        if owner not in existing:
            orphan(owner).error_record = str(location)
    for owner, location in items:
        if owner not in existing:
            orphan(owner).stac_item = str(location)

    leaving: dict[str, list[BlobLocation]] = {}
    for name, (_, sources) in members.items():
        for source in sources:
            if source not in existing:
                orphan(source).datasets.append(name)
                leaving.setdefault(name, []).append(BlobLocation(*source.split("/", 1)))
    summary.orphans = sorted(orphans.values(), key=lambda o: o.source)
    if say:
        say(f"prune {settings.refs_container}/{prefix}: {len(references)} references, {len(records)} error records, "
            f"{len(items)} STAC items; {len(orphans)} sources no longer exist"
            + (" (dry run: nothing is changed)" if dry_run else ""))
    if dry_run or not orphans:
        summary.elapsed_s = round(time.perf_counter() - started, 3)
        return summary

    for name, sources in sorted(leaving.items()):  # first: a rebuild reads the remaining members' references
        summary.datasets += _dataset_changes(lambda: [remove_members(settings, storage, members[name][0], sources)],
                                             f"{len(sources)} sources")
    gone_items = set()
    for source_text in sorted(orphans):
        source = BlobLocation(*source_text.split("/", 1))
        if storage.head(source) is not None:  # uploaded again since the listing
            summary.recreated.append(source_text)
            continue
        removal = _remove_what_it_had(settings, storage, source, references=owned.get(source_text), unlink_item=False)
        if orphans[source_text].stac_item:
            gone_items.add(source_text)
        summary.removed.append(removal)
        if say:
            what = removal.references + ([removal.error_record] if removal.error_record else [])
            say(f"  {source_text}: removed {', '.join(what) or 'nothing'}")
    if gone_items:  # one conditional write per folder catalog, not one per item
        from shared.catalog import item_path, remove_items
        from shared.catalog.store import relative_source

        relatives = {s: relative_source(BlobLocation(*s.split("/", 1)), settings) for s in gone_items}
        try:
            remove_items(settings, storage, set(relatives.values()))
            for removal in summary.removed:
                if removal.source in gone_items:
                    removal.stac_item = f"{settings.refs_container}/{item_path(relatives[removal.source])}"
                    removal.action = "removed"
        except Exception as error:  # noqa: BLE001 - the catalog never fails a prune; `ncrefs stac build` repairs it
            what = error.message if isinstance(error, NcrefsError) else f"{type(error).__name__}: {error}"
            log.warning("STAC items not removed: %s", what)
    summary.elapsed_s = round(time.perf_counter() - started, 3)
    return summary


def _check_prefix(prefix: str, settings: Settings) -> None:
    if not prefix:
        return
    if prefix.startswith(RESERVED_MARK):
        raise InvalidRequest(f"The prefix {prefix!r} is in ncrefs's own part of the {settings.refs_container} container.",
                             hint="Give the path of references as they map from sources, e.g. cmip6/ for raw-netcdf/cmip6/.")
    validate_blob_name(prefix.rstrip("/") or "/", what="prefix")


def _listed_owners(settings: Settings, storage: Storage, prefix: str):
    """(owner, reference, format), (owner, error record), (owner, STAC item) under the prefix: one listing of the
    whole refs container, or three under a prefix (references, ``_errors/<prefix>``, ``_stac/items/<prefix>``)."""
    references, records, items = [], [], []
    listings = [""] if not prefix else [prefix, f"{ERRORS_PREFIX}/{prefix}", f"{STAC_ITEMS}{prefix}"]
    for listed in listings:
        for blob in storage.list_blobs(settings.refs_container, listed, metadata=True):
            owner = unquote(blob.metadata.get("ncrefs_source", ""))
            if "/" not in owner:
                continue  # not written by ncrefs for a blob (a local source, or someone else's file)
            location = BlobLocation(settings.refs_container, blob.path)
            if blob.path.startswith(f"{ERRORS_PREFIX}/"):
                records.append((owner, location))
            elif blob.path.startswith(STAC_ITEMS):
                items.append((owner, location))
            elif blob.path.startswith(RESERVED_MARK):
                continue  # datasets, catalogs, collections: not one source's
            elif blob.path.endswith(f".parquet/{ZMETADATA}"):
                references.append((owner, BlobLocation(settings.refs_container, blob.path[: -len(ZMETADATA) - 1]), "parquet"))
            elif blob.path.endswith(".json"):
                references.append((owner, location, "json"))
    return references, records, items


def _existing_sources(storage: Storage, owners: set[str]) -> set[str]:
    """The owners that exist, from one listing per container (under the owners' common prefix)."""
    existing: set[str] = set()
    by_container: dict[str, list[str]] = {}
    for owner in owners:
        container, _, path = owner.partition("/")
        by_container.setdefault(container, []).append(path)
    for container, paths in sorted(by_container.items()):
        try:
            existing.update(f"{container}/{blob.path}" for blob in storage.list_blobs(container, os.path.commonprefix(paths)))
        except SourceNotFound:  # the whole container is gone
            pass
    return existing


def _in_scope(source: str, prefix: str, settings: Settings) -> bool:
    container, _, path = source.partition("/")
    relative = path if container == settings.source_container else source
    return relative.startswith(prefix)
