"""Datasets: define, build, keep current, show, delete.

One update of a dataset runs at a time (a blob lease on its definition folder): twenty
files arriving at once queue up and each lands, instead of twenty Icechunk commits from the
same snapshot conflicting. A file that extends the concat dimension is appended in one
commit; anything else (a file in the middle, a replaced member, a changed source) rebuilds
the dataset from the per-file references, never from the NetCDF sources.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from urllib.parse import unquote

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from shared.datasets import combine, icechunk_repo
from shared.datasets.model import (
    DATASETS_PREFIX,
    DatasetDefinition,
    DatasetError,
    DatasetState,
    Member,
    check_name,
    definition_location,
    error_location,
    folder,
    output_location,
    state_location,
)
from shared.errors import Conflict, DatasetBusy, DatasetNotFound, InvalidRequest, NcrefsError, NotCombinable
from shared.paths import BlobLocation, is_netcdf_name, reference_location
from shared.settings import Settings
from shared.storage import Storage, WriteRaced
from shared.chunkrefs import Reference
from shared.writer import ZMETADATA, write_parquet_directory

log = logging.getLogger("ncrefs.datasets")
LOCK_WAIT_S = 300.0
# Above this many chunk references a JSON output is not written (Parquet is).
JSON_MAX_REFS = 100_000


class DatasetView(BaseModel):
    """What ``dataset show --json`` and ``GET /api/datasets/{name}`` answer."""

    name: str
    container: str
    prefix: str
    concat_dim: str
    outputs: dict[str, str]
    members: list[Member] = Field(default_factory=list)
    snapshots: list[dict] = Field(default_factory=list)
    error: DatasetError | None = None
    updated_at: datetime | None = None


class DatasetChange(BaseModel):
    """What one build or update did."""

    name: str
    action: str  # "created", "appended", "rebuilt", "unchanged", "refused"
    members: int
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    refused: dict[str, str] = Field(default_factory=dict)  # source -> why
    snapshot: str | None = None
    elapsed_s: float = 0.0


# -- definitions ---------------------------------------------------------------------------------
def create(settings: Settings, storage: Storage, name: str, *, prefix: str, concat_dim: str = "time",
           outputs: list[str] | None = None, container: str | None = None, build_now: bool = True) -> DatasetChange | None:
    """Define a dataset (refused if the name is taken) and, by default, build it."""
    _check_url_scheme(settings)
    try:
        definition = DatasetDefinition(name=name, container=container or settings.source_container, prefix=prefix,
                                       concat_dim=concat_dim, outputs=outputs or ["icechunk"])
    except ValidationError as error:
        problem = error.errors()[0]
        raise InvalidRequest(f"Invalid dataset definition: {problem['loc'][0] if problem['loc'] else ''}: {problem['msg']}.") from None
    storage.ensure_container(settings.refs_container)
    try:
        storage.put(definition_location(settings.refs_container, name), definition.model_dump_json(indent=2).encode(),
                    content_type="application/json", if_absent=True)
    except WriteRaced:
        raise Conflict(f"There is already a dataset named {name!r}.",
                       hint="Choose another name, or `ncrefs dataset delete` the existing one first.") from None
    return build(settings, storage, name) if build_now else None


def load_definition(settings: Settings, storage: Storage, name: str) -> DatasetDefinition:
    found = storage.get(definition_location(settings.refs_container, check_name(name)))
    if found is None:
        raise DatasetNotFound(f"There is no dataset named {name!r}.")
    try:
        return DatasetDefinition.model_validate_json(found[0])
    except ValidationError as error:
        raise InvalidRequest(f"The definition of dataset {name!r} is not valid: {error.errors()[0]['msg']}.",
                             hint=f"Fix or rewrite {definition_location(settings.refs_container, name)}.") from None


def list_definitions(settings: Settings, storage: Storage) -> list[DatasetDefinition]:
    definitions = []
    for name in storage.list_folders(settings.refs_container, f"{DATASETS_PREFIX}/"):
        try:
            definitions.append(load_definition(settings, storage, name))
        except NcrefsError as error:  # a folder left by a half-finished delete, or a broken definition
            log.warning("skipping dataset %s: %s", name, error.message)
    return definitions


def show(settings: Settings, storage: Storage, name: str, *, snapshots: int | None = 50) -> DatasetView:
    definition = load_definition(settings, storage, name)
    state, _ = _load_state(settings, storage, name)
    history = []
    if "icechunk" in definition.outputs:
        location = output_location(settings.refs_container, name, "icechunk")
        if icechunk_repo.exists(storage, location):
            repo = icechunk_repo.open_repository(storage, location, [definition.container])
            history = icechunk_repo.history(repo, snapshots)
    return DatasetView(name=name, container=definition.container, prefix=definition.prefix, concat_dim=definition.concat_dim,
                       outputs=output_urls(settings, definition), members=state.members, snapshots=history,
                       error=state.error, updated_at=state.updated_at)


def output_urls(settings: Settings, definition: DatasetDefinition) -> dict[str, str]:
    return {output: output_location(settings.refs_container, definition.name, output).url("abfs")
            for output in definition.outputs}


def delete(settings: Settings, storage: Storage, name: str) -> int:
    """Remove a dataset's definition, state and outputs (never a source); returns the blobs removed."""
    load_definition(settings, storage, name)
    removed = 0
    base = folder(settings.refs_container, name)
    with storage.lease(_lock(settings, name), wait_s=LOCK_WAIT_S, busy=lambda: _busy(name)):
        for blob in list(storage.list_blobs(settings.refs_container, base.path + "/")):
            if blob.path.endswith("/.lock"):
                continue
            removed += storage.delete(BlobLocation(settings.refs_container, blob.path))
    storage.delete(_lock(settings, name))
    from shared.catalog import dataset_deleted  # STAC: its Collection goes with it (never raises)

    dataset_deleted(settings, storage, name)
    return removed


# -- building and keeping current ------------------------------------------------------------------
def build(settings: Settings, storage: Storage, name: str, *, rebuild: bool = False) -> DatasetChange:
    """Bring a dataset up to date with the sources under its prefix: missing or stale per-file
    references first, then one commit if anything changed (``rebuild``: from scratch)."""
    from shared.backfill import _link_catalog, plan, reference_one
    from shared.pipeline import Batch

    started = time.perf_counter()
    definition = load_definition(settings, storage, name)
    _check_url_scheme(settings)
    planned = plan(storage, settings, definition.container, definition.prefix, retry_failed=False)
    failed_files = {}
    batch = Batch(listed=planned.listed)  # one batch: the STAC items it writes are linked in at the end
    for candidate in planned.todo:  # the per-file references a combination is made from
        result = reference_one(str(candidate.source), settings, storage, batch)
        if result.status == "error":
            failed_files[str(candidate.source)] = f"[{result.error.code}] {result.error.message}"
    if batch.catalog_links:
        _link_catalog(settings, storage, batch.catalog_links)
    current = _current_references(settings, storage, definition)
    with storage.lease(_lock(settings, name), wait_s=LOCK_WAIT_S, busy=lambda: _busy(name)):
        state, etag = _load_state(settings, storage, name)
        have = {m.source: m.etag for m in state.members}
        want = {source: info[0] for source, info in current.items()}
        outputs_exist = _outputs_exist(settings, storage, definition)
        if have == want and not rebuild and outputs_exist:
            return DatasetChange(name=name, action="unchanged", members=len(have), refused=failed_files,
                                 elapsed_s=round(time.perf_counter() - started, 3))
        members = [(source, reference) for source, (_, reference, _) in sorted(current.items())]
        change = _rebuild(settings, storage, definition, state, members, current,
                          reason="rebuild" if rebuild else "build", keep_signature=not rebuild)
        change.refused.update(failed_files)
        _save_state(settings, storage, name, state, etag)
        _catalog_changed(settings, storage, name)  # STAC: the dataset's Collection follows its state
    change.elapsed_s = round(time.perf_counter() - started, 3)
    return change


def update_for_source(settings: Settings, storage: Storage, source: BlobLocation, result) -> list[DatasetChange]:
    """A source's reference was just written (``result``): update every dataset whose prefix holds it.

    A file that does not fit a dataset is refused there (recorded in the dataset's state and an
    error record) without failing the others; retryable failures raise.
    """
    changes = []
    for definition in list_definitions(settings, storage):
        if not definition.holds(source):
            continue
        try:
            changes.append(add_member(settings, storage, definition, source, result))
        except NcrefsError as error:
            if error.retryable:
                raise
            log.error("dataset %s: %s not added: [%s] %s", definition.name, source, error.code, error.message)
            changes.append(DatasetChange(name=definition.name, action="refused", members=-1,
                                         refused={str(source): f"[{error.code}] {error.message}"}))
    return changes


def add_member(settings: Settings, storage: Storage, definition: DatasetDefinition, source: BlobLocation, result) -> DatasetChange:
    """Add (or replace) one file in a dataset: an append commit when it extends the concat dimension."""
    started = time.perf_counter()
    name = definition.name
    etag = (result.source_etag or "").strip('"')
    reference = _abfs(result.output)
    with storage.lease(_lock(settings, name), wait_s=LOCK_WAIT_S, busy=lambda: _busy(name)):
        state, state_etag = _load_state(settings, storage, name)
        if any(m.source == str(source) and m.etag == etag for m in state.members):
            return DatasetChange(name=name, action="unchanged", members=len(state.members))  # the same event again
        try:
            change = _add(settings, storage, definition, state, source, etag, reference)
        except NotCombinable as error:  # it does not fit, or overlaps a member: the dataset stays as it was
            state, state_etag = _load_state(settings, storage, name)
            _refuse(settings, storage, definition, state, state_etag, source, etag, error)
            raise
        if state.error and state.error.source == str(source):
            state.error = None
            storage.delete(error_location(settings.refs_container, name, source))
        _save_state(settings, storage, name, state, state_etag)
        _catalog_changed(settings, storage, name)  # STAC: the dataset's Collection follows its state
    change.elapsed_s = round(time.perf_counter() - started, 3)
    return change


def _add(settings, storage, definition, state: DatasetState, source: BlobLocation, etag: str, reference: str) -> DatasetChange:
    piece = combine.open_piece(storage, str(source), reference, definition.concat_dim, definition.container)
    if state.signature is not None:
        combine.check_fits(state.signature, piece, definition.name)
    last_modified = _last_modified(storage, source)
    others = [m for m in state.members if m.source != str(source)]
    replaces = len(others) != len(state.members)
    tail = others[-1] if others else None  # members are kept in order along the concat dimension
    if tail and not replaces and piece.first > _key(tail.last, piece.first) and _ends_on_chunk(state, tail):
        return _append(settings, storage, definition, state, piece, etag, last_modified)
    members = [(m.source, m.reference) for m in others] + [(str(source), reference)]
    current = {m.source: (m.etag, m.reference, m.last_modified) for m in others}
    current[str(source)] = (etag, reference, last_modified)
    verb = "replaced" if replaces else "added"
    return _rebuild(settings, storage, definition, state, members, current,
                    reason=f"{verb} {source} (etag {etag})", keep_signature=True)


def _append(settings, storage, definition, state: DatasetState, piece, etag: str, last_modified: datetime) -> DatasetChange:
    name = definition.name
    message = f"add {piece.source} (etag {etag})"
    snapshot = None
    if "icechunk" in definition.outputs:
        repo = icechunk_repo.open_repository(storage, output_location(settings.refs_container, name, "icechunk"),
                                             [definition.container], create=True)
        snapshot = icechunk_repo.write(repo, piece.dataset, [(piece, etag)], concat_dim=definition.concat_dim,
                                       message=message, metadata={"ncrefs_sources": {piece.source: etag}},
                                       last_updated_at=last_modified, append_dim=definition.concat_dim)
    state.members.append(_member(piece, etag, last_modified))
    if {"parquet", "json"} & set(definition.outputs):  # kerchunk outputs are rewritten whole
        members = [(m.source, m.reference) for m in state.members]
        pieces = combine.order(combine.open_pieces(storage, members, definition.concat_dim, definition.container),
                               definition.concat_dim, name)
        _write_kerchunk(settings, storage, definition, combine.concatenate(pieces, definition.concat_dim))
    state.updated_at = datetime.now(timezone.utc)
    return DatasetChange(name=name, action="appended", members=len(state.members), added=[piece.source], snapshot=snapshot)


def _rebuild(settings, storage, definition, state: DatasetState, members: list[tuple[str, str]],
             current: dict[str, tuple], *, reason: str, keep_signature: bool,
             removed_sources: dict[str, str] | None = None) -> DatasetChange:
    """Combine ``members`` from their per-file references and replace every output with the result.

    ``removed_sources`` (source -> ETag): members that left because their source was deleted; the
    commit's metadata names them. When no member is left, the outputs become empty (a new Icechunk
    snapshot without arrays; the kerchunk outputs removed), so no output serves a deleted file."""
    name = definition.name
    pieces = combine.open_pieces(storage, members, definition.concat_dim, definition.container) if members else []
    pieces.sort(key=lambda p: p.first)
    signature = state.signature if keep_signature and state.signature else (pieces[0].signature if pieces else None)
    fitting, refused = [], {}
    for piece in pieces:
        try:
            combine.check_fits(signature, piece, name)
            fitting.append(piece)
        except NotCombinable as error:
            refused[piece.source] = f"[{error.code}] {error.message}"
            _record(settings, storage, definition, state, BlobLocation(*piece.source.split("/", 1)),
                    current[piece.source][0], error)
    ordered = combine.order(fitting, definition.concat_dim, name)
    previous = {m.source: m.etag for m in state.members}
    snapshot = None
    if ordered:
        combined = combine.concatenate(ordered, definition.concat_dim)
        last_modified = max(current[p.source][2] for p in ordered)
        if "icechunk" in definition.outputs:
            repo = icechunk_repo.open_repository(storage, output_location(settings.refs_container, name, "icechunk"),
                                                 [definition.container], create=True)
            changed = {p.source: current[p.source][0] for p in ordered if previous.get(p.source) != current[p.source][0]}
            snapshot = icechunk_repo.write(repo, combined, [(p, current[p.source][0]) for p in ordered],
                                           concat_dim=definition.concat_dim,
                                           message=f"{reason}: {len(ordered)} files" + _listing(changed),
                                           metadata={"ncrefs_sources": changed,
                                                     **({"ncrefs_removed": removed_sources} if removed_sources else {})},
                                           last_updated_at=last_modified)
        _write_kerchunk(settings, storage, definition, combined)
    elif previous:  # the last members are gone: nothing may still point at them
        snapshot = _empty_outputs(settings, storage, definition, f"{reason}: 0 files", removed_sources or {})
        signature = None  # the next file to arrive sets it again, as for a new dataset
    state.members = [_member(p, current[p.source][0], current[p.source][2]) for p in ordered]
    state.signature = signature
    state.updated_at = datetime.now(timezone.utc)
    action = "created" if not previous else "rebuilt"
    added = sorted(set(state_sources(state)) - set(previous))
    removed = sorted(set(previous) - set(state_sources(state)))
    return DatasetChange(name=name, action=action, members=len(ordered), added=added, removed=removed,
                         refused=refused, snapshot=snapshot)


def update_for_deleted_source(settings: Settings, storage: Storage, source: BlobLocation) -> list[DatasetChange]:
    """``source`` was deleted: a new version of every dataset that holds it, without it (``shared/prune.py``)."""
    changes = []
    for definition in list_definitions(settings, storage):
        if definition.holds(source):
            changes.append(remove_members(settings, storage, definition, [source]))
    return changes


def remove_members(settings: Settings, storage: Storage, definition: DatasetDefinition,
                   sources: list[BlobLocation]) -> DatasetChange:
    """Take deleted sources out of a dataset: one new version (a rebuild from the other members' per-file
    references) without those that are members, and their dataset error records gone.

    Under the dataset's lease each source is looked up again, so a source re-created meanwhile (its
    BlobCreated event may already have made it a member again) stays."""
    started = time.perf_counter()
    name = definition.name
    state, _ = _load_state(settings, storage, name)
    named = {str(s) for s in sources}
    if not named & {m.source for m in state.members} and not (state.error and state.error.source in named):
        # Not a member and not its last error: only a possible error record of the dataset to remove.
        for source in sources:
            storage.delete(error_location(settings.refs_container, name, source))
        return DatasetChange(name=name, action="unchanged", members=len(state.members),
                             elapsed_s=round(time.perf_counter() - started, 3))
    with storage.lease(_lock(settings, name), wait_s=LOCK_WAIT_S, busy=lambda: _busy(name)):
        state, state_etag = _load_state(settings, storage, name)
        gone = {str(s) for s in sources if storage.head(s) is None}
        # Members deleted earlier whose reference is gone too (an earlier removal that stopped half-way):
        # a rebuild cannot open them, so they leave now as well.
        present = _reference_names(settings, storage, definition)
        for member in state.members:
            if member.source not in gone and _reference_path(member.reference) not in present:
                if storage.head(BlobLocation(*member.source.split("/", 1))) is None:
                    gone.add(member.source)
        leaving = {m.source: m.etag for m in state.members if m.source in gone}
        for source in sorted(gone):  # why it could not join no longer matters
            storage.delete(error_location(settings.refs_container, name, BlobLocation(*source.split("/", 1))))
        cleared = state.error is not None and state.error.source in gone
        if cleared:
            state.error = None
        if not leaving:
            if cleared:
                _save_state(settings, storage, name, state, state_etag)
            return DatasetChange(name=name, action="unchanged", members=len(state.members),
                                 elapsed_s=round(time.perf_counter() - started, 3))
        others = [m for m in state.members if m.source not in leaving]
        current = {m.source: (m.etag, m.reference, m.last_modified) for m in others}
        listing = ", ".join(f"{source} (etag {etag})" for source, etag in sorted(leaving.items())[:20])
        more = f" and {len(leaving) - 20} more" if len(leaving) > 20 else ""
        change = _rebuild(settings, storage, definition, state, [(m.source, m.reference) for m in others], current,
                          reason=f"removed {listing}{more} (deleted)", keep_signature=True, removed_sources=leaving)
        _save_state(settings, storage, name, state, state_etag)
        _catalog_changed(settings, storage, name)  # STAC: the dataset's Collection follows its state
    change.elapsed_s = round(time.perf_counter() - started, 3)
    return change


def _reference_names(settings, storage, definition) -> set[str]:
    """Per-file references under the dataset's prefix, by blob name (a Parquet one by its directory), from one listing."""
    relative = definition.prefix if definition.container == settings.source_container else f"{definition.container}/{definition.prefix}"
    names = set()
    for blob in storage.list_blobs(settings.refs_container, relative[: relative.rfind("/") + 1]):
        names.add(blob.path[: -len(ZMETADATA) - 1] if blob.path.endswith("/" + ZMETADATA) else blob.path)
    return names


def _reference_path(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[-1].rstrip("/")


def _empty_outputs(settings, storage, definition, message: str, removed: dict[str, str]) -> str | None:
    """Every output of a dataset without members: an empty Icechunk snapshot, no kerchunk outputs."""
    snapshot = None
    if "icechunk" in definition.outputs:
        location = output_location(settings.refs_container, definition.name, "icechunk")
        if icechunk_repo.exists(storage, location):
            repo = icechunk_repo.open_repository(storage, location, [definition.container])
            snapshot = icechunk_repo.write_empty(repo, message, metadata={"ncrefs_sources": {}, "ncrefs_removed": removed})
    for output in ("parquet", "json"):
        if output in definition.outputs:
            target = output_location(settings.refs_container, definition.name, output)
            if output == "parquet":
                storage.delete(BlobLocation(target.container, f"{target.path}/{ZMETADATA}"))  # readers open it first
                for part in storage.list_under(target):
                    storage.delete(part)
            else:
                storage.delete(target)
    return snapshot


def state_sources(state: DatasetState) -> list[str]:
    return [m.source for m in state.members]


def _write_kerchunk(settings, storage, definition, combined) -> None:
    """The kerchunk outputs (Parquet directory, JSON) the definition asks for, each replaced atomically."""
    wanted = [o for o in ("parquet", "json") if o in definition.outputs]
    if not wanted:
        return
    refs = combined.vz.to_kerchunk(format="dict")
    for output in wanted:
        target = output_location(settings.refs_container, definition.name, output)
        if output == "parquet":
            write_parquet_directory(storage, Reference.from_kerchunk(refs), target, {"ncrefs_dataset": definition.name})
        elif len(refs.get("refs", refs)) <= JSON_MAX_REFS:
            storage.put(target, json.dumps(refs, separators=(",", ":")).encode(), content_type="application/json",
                        metadata={"ncrefs_dataset": definition.name})
        else:
            log.warning("dataset %s: %d references are too many for JSON; only Parquet is written",
                        definition.name, len(refs["refs"]))


# -- helpers -------------------------------------------------------------------------------------
def _current_references(settings, storage, definition) -> dict[str, tuple[str, str, datetime]]:
    """Source -> (ETag, reference URL, Last-Modified) for every source under the prefix whose own reference is current."""
    found = {}
    sources = {b.path: b for b in storage.list_blobs(definition.container, definition.prefix) if is_netcdf_name(b.path)}
    relative = definition.prefix if definition.container == settings.source_container else f"{definition.container}/{definition.prefix}"
    refs = {b.path: b.metadata for b in storage.list_blobs(settings.refs_container, relative[: relative.rfind("/") + 1],
                                                          metadata=True)}
    for path, blob in sources.items():
        source = BlobLocation(definition.container, path)
        etag = blob.etag.strip('"')
        for fmt, marker in (("json", ""), ("parquet", "/" + ZMETADATA)):
            try:
                target = reference_location(source, fmt=fmt, refs_container=settings.refs_container,
                                            source_container=settings.source_container)
            except NcrefsError:
                break
            metadata = refs.get(target.path + marker)
            if (metadata and unquote(metadata.get("ncrefs_source", "")) == str(source)
                    and metadata.get("ncrefs_source_etag") == etag):
                modified = datetime.fromisoformat(metadata["ncrefs_source_last_modified"])
                found[str(source)] = (etag, target.url("abfs"), modified)
                break
    return found


def _outputs_exist(settings, storage, definition) -> bool:
    for output in definition.outputs:
        location = output_location(settings.refs_container, definition.name, output)
        if output == "icechunk":
            if not icechunk_repo.exists(storage, location):
                return False
        elif storage.head(location if output == "json" else BlobLocation(location.container, f"{location.path}/{ZMETADATA}")) is None:
            return False
    return True


def _member(piece, etag: str, last_modified: datetime) -> Member:
    return Member(source=piece.source, etag=etag, last_modified=last_modified, reference=piece.reference,
                  first=combine.as_text(piece.first), last=combine.as_text(piece.last), length=piece.length)


def _key(text: str, like):
    """A recorded first/last value back in the type of ``like`` (a concat coordinate value), for comparisons."""
    if isinstance(like, np.datetime64):
        return np.datetime64(text).astype(like.dtype)
    return type(like)(text)


def _ends_on_chunk(state: DatasetState, tail: Member) -> bool:
    """Whether the dataset's last member fills its last chunk along the concat dimension (else: rebuild,
    and the ordering check says why it cannot combine)."""
    concat_dim = state.signature["concat_dim"]
    for entry in state.signature["variables"].values():
        if "chunks" in entry and concat_dim in entry["dims"]:
            if tail.length % entry["chunks"][entry["dims"].index(concat_dim)]:
                return False
    return True


def _last_modified(storage: Storage, source: BlobLocation) -> datetime:
    return storage.source_info(source).last_modified


def _refuse(settings, storage, definition, state, state_etag, source: BlobLocation, etag: str, error: NcrefsError) -> None:
    _record(settings, storage, definition, state, source, etag, error)
    _save_state(settings, storage, definition.name, state, state_etag)


def _record(settings, storage, definition, state: DatasetState, source: BlobLocation, etag: str, error: NcrefsError) -> None:
    """Say in the dataset's state and in an error record why a file is not in it."""
    state.error = DatasetError(source=str(source), etag=etag, code=error.code, message=error.message, hint=error.hint)
    document = state.error.model_dump(mode="json")
    storage.put(error_location(settings.refs_container, definition.name, source), json.dumps(document, indent=2).encode(),
                content_type="application/json")


def _load_state(settings, storage, name: str) -> tuple[DatasetState, str | None]:
    found = storage.get(state_location(settings.refs_container, name))
    if found is None:
        return DatasetState(), None
    return DatasetState.model_validate_json(found[0]), found[1]


def _save_state(settings, storage, name: str, state: DatasetState, etag: str | None) -> None:
    try:
        storage.put(state_location(settings.refs_container, name), state.model_dump_json(indent=1).encode(),
                    content_type="application/json", if_etag=etag, if_absent=etag is None)
    except WriteRaced:  # our lease ran out and another update got in: let the caller run again
        raise DatasetBusy(f"Dataset {name!r} was updated by another run meanwhile; this update was not recorded.") from None


def _catalog_changed(settings, storage, name: str) -> None:
    """Rewrite the dataset's STAC Collection (shared/catalog); never raises: a catalog failure is logged."""
    from shared.catalog import dataset_changed

    dataset_changed(settings, storage, name)


def _lock(settings, name: str) -> BlobLocation:
    base = folder(settings.refs_container, name)
    return BlobLocation(base.container, f"{base.path}/.lock")


def _busy(name: str) -> DatasetBusy:
    return DatasetBusy(f"Dataset {name!r} is being updated by another run, which did not finish within {LOCK_WAIT_S:.0f} s.")


def _abfs(url: str) -> str:
    """A per-file reference's URL in the abfs form virtual chunk containers and the registry use."""
    from shared.paths import parse_location

    return parse_location(url, allow_local=False).url("abfs")


def _listing(changed: dict[str, str]) -> str:
    if not changed:
        return ""
    names = [f"{source} (etag {etag})" for source, etag in sorted(changed.items())]
    shown = names[:20] + ([f"... and {len(names) - 20} more"] if len(names) > 20 else [])
    return "; changed: " + ", ".join(shown)


def _check_url_scheme(settings: Settings) -> None:
    if settings.url_scheme != "abfs":
        raise InvalidRequest(f"Datasets are combined from abfs:// chunk URLs, and REFERENCE_URL_SCHEME is {settings.url_scheme}.",
                             hint="Set REFERENCE_URL_SCHEME to abfs (the default) and reference the files again.")
