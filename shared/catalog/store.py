"""The static STAC catalog in the refs container, under the reserved prefix ``_stac/``:

    _stac/catalog.json                          the root: top-level folders, top-level items, collections
    _stac/catalogs/<folder>/catalog.json        one catalog per folder of sources: its sub-folders and items
    _stac/items/<source path>.json              one Item per referenced file (the error records' naming)
    _stac/collections/<dataset>/collection.json one Collection per dataset

Every link is relative, so the tree can be copied, browsed and validated as it is. Items and
collections are written whole; a catalog's links are changed by a conditional write (its ETag)
retried on a race, so concurrent updates never lose a link. ``build`` rewrites everything from
what exists (references, dataset definitions), removes what no longer does, and relinks the tree.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote, unquote

from shared.catalog import items as stac_items
from shared.catalog.facts import Facts, References, describe, iso
from shared.errors import DatasetNotFound, InvalidRequest, NcrefsError, SourceNotFound
from shared.paths import BlobLocation, is_reserved, parse_location, reference_location
from shared.reader import READ_BLOCK_SIZE
from shared.settings import Settings
from shared.storage import Storage, WriteRaced

log = logging.getLogger("ncrefs.catalog")

STAC_PREFIX = "_stac"
ROOT = f"{STAC_PREFIX}/catalog.json"
ITEMS = f"{STAC_PREFIX}/items/"
CATALOGS = f"{STAC_PREFIX}/catalogs/"
COLLECTIONS = f"{STAC_PREFIX}/collections/"
LINK_ATTEMPTS = 10
ZMETADATA = ".zmetadata"


# -- where things are ------------------------------------------------------------------------------
def relative_source(source: BlobLocation, settings: Settings) -> str:
    """A source's path as its reference and error record name it (``container/path`` outside the source container)."""
    return source.path if source.container == settings.source_container else f"{source.container}/{source.path}"


def item_path(relative: str) -> str:
    return f"{ITEMS}{relative}.json"


def folder_catalog_path(folder: str) -> str:
    return ROOT if not folder else f"{CATALOGS}{folder}/catalog.json"


def collection_path(name: str) -> str:
    return f"{COLLECTIONS}{name}/collection.json"


def _href(from_path: str, to_path: str) -> str:
    return posixpath.relpath(to_path, posixpath.dirname(from_path))


def _link(rel: str, from_path: str, to_path: str, title: str | None = None) -> dict:
    link = {"rel": rel, "href": _href(from_path, to_path), "type": "application/json"}
    if title:
        link["title"] = title
    return link


def _parent_folder(folder: str) -> str:
    return folder.rpartition("/")[0]


# -- items -----------------------------------------------------------------------------------------
def catalogued(settings: Settings, source, target) -> bool:
    """Whether a reference gets a STAC item: a blob source's reference in the refs container."""
    return isinstance(source, BlobLocation) and isinstance(target, BlobLocation) and target.container == settings.refs_container


def describe_reference(storage: Storage, source: BlobLocation, reference, reader=None) -> Facts:
    """The facts of a reference held in memory (``shared.chunkrefs.Reference``) for its Item; coordinates
    not in it are read through ``reader`` (the source's reader it was parsed from: the same version)."""
    return describe(References.from_reference(reference), fetch=_fetcher(storage, source, reader))


def reference_written(settings: Settings, storage: Storage, source, target, fmt: str, info, facts,
                      deferred_links: set[str] | None = None, catalogs: CatalogLookAhead | None = None) -> str | None:
    """The pipeline wrote ``target`` (``fmt``) for ``source``: write its Item from ``facts`` (those of
    :func:`describe_reference`, or a future of them) and link it in (or, for a batch, add it to
    ``deferred_links`` for :func:`link_items` at the end). ``catalogs``: the folder catalogs read ahead.

    Never raises: a catalog failure must not fail the reference. Returns a warning for the
    result when the item could not be written (``ncrefs stac build`` repairs the catalog)."""
    if not catalogued(settings, source, target):
        return None
    try:
        relative = relative_source(source, settings)
        # With the catalogs read ahead, the links go in beside the item (they need no facts); were the item
        # to fail, the warning below sends to `ncrefs stac build`, which drops links to missing items.
        linking = catalogs.link(settings, storage, relative) if catalogs is not None and deferred_links is None else None
        facts = facts.result() if isinstance(facts, Future) else facts
        write_item(settings, storage, source, target, fmt, facts, last_modified=info.last_modified, size=info.size)
        if deferred_links is not None:
            deferred_links.add(relative)
        elif linking is None:
            link_item(settings, storage, relative)
        for link in linking or ():
            link.result()
        return None
    except Exception as error:  # noqa: BLE001 - the reference is written; the catalog catches up later
        what = error.message if isinstance(error, NcrefsError) else f"{type(error).__name__}: {error}"
        log.warning("STAC item of %s not updated: %s", source, what)
        return f"The STAC item of {source} was not updated ({what}); run `ncrefs stac build` to bring the catalog up to date."


class CatalogLookAhead:
    """The folder catalogs an item of ``source`` is linked into (its folder's, up to the root), read ahead
    while the source is parsed: linking then costs no read, and nothing at all when the links are
    there. The writes stay conditional on the ETags these reads saw; each catalog is read again if it
    changed meanwhile. ``submit``: an executor's, so the reads and writes run beside other work."""

    def __init__(self, settings: Settings, storage: Storage, source: BlobLocation, submit):
        self.submit = submit
        self.found = {folder: submit(storage.get, BlobLocation(settings.refs_container, folder_catalog_path(folder)))
                      for folder, _ in _links(relative_source(source, settings))}

    def link(self, settings: Settings, storage: Storage, relative: str) -> list[Future]:
        """Link an item in: the catalogs that change are written at once."""
        return [self.submit(_change_links, settings, storage, folder, add=link, read_ahead=self.found.get(folder))
                for folder, link in _links(relative)]


def write_item(settings: Settings, storage: Storage, source: BlobLocation, target: BlobLocation, fmt: str,
               facts: Facts, *, last_modified: datetime | None, size: int | None) -> str:
    """Write the Item of a reference described by ``facts``; returns the source's relative path (the item's id)."""
    relative = relative_source(source, settings)
    item = stac_items.build_item(
        relative, facts, source_href=source.url("https", storage.blob_url),
        reference_href=target.url("https", storage.blob_url) + ("/" if fmt == "parquet" else ""),
        reference_format=fmt, scheme=stac_items.storage_scheme(storage.account_name, storage.blob_url),
        last_modified=last_modified, source_size=size)
    path = item_path(relative)
    folder = posixpath.dirname(relative)
    document = item.to_dict(include_self_link=False, transform_hrefs=False)
    document["links"] = [_link("root", path, ROOT), _link("parent", path, folder_catalog_path(folder))]
    storage.put(BlobLocation(settings.refs_container, path), _dump(document), content_type="application/json",
                metadata={"ncrefs_source": quote(str(source), safe="/:@"), "ncrefs_reference": quote(str(target), safe="/:@")})
    return relative


def _fetcher(storage: Storage, source: BlobLocation, reader=None) -> Callable[[list[list]], list[bytes | None]]:
    """Reads coordinates' byte ranges from the reference's own source, and nothing else, many at once
    (through ``reader`` when given: pinned to the version the reference was made from)."""
    opened = [reader]

    def fetch(refs: list[list]) -> list[bytes | None]:
        if opened[0] is None:  # a stored reference's source, opened only when a coordinate must be read
            opened[0] = storage.open_source(source, READ_BLOCK_SIZE)
        reader = opened[0]
        ranges = {}
        for at, ref in enumerate(refs):
            try:
                location = parse_location(str(ref[0]), allow_local=False)
            except NcrefsError:
                continue
            if (location.container, location.path) == (source.container, source.path) and len(ref) >= 3:
                start, length = int(ref[1]), int(ref[2])
                if 0 <= start and 0 < length and start + length <= reader.size:
                    ranges[at] = (start, start + length)
        fetched = dict(zip(ranges, reader.fetch_concurrently(list(ranges.values())))) if ranges else {}
        return [fetched.get(at) for at in range(len(refs))]

    return fetch


def _links(relative: str) -> list[tuple[str, dict]]:
    """(folder, link) for an item: into its folder's catalog, and that folder into each parent up to the root."""
    folder = posixpath.dirname(relative)
    links = [(folder, _link("item", folder_catalog_path(folder), item_path(relative)))]
    while folder:
        parent = _parent_folder(folder)
        links.append((parent, _link("child", folder_catalog_path(parent), folder_catalog_path(folder), title=folder)))
        folder = parent
    return links


def link_item(settings: Settings, storage: Storage, relative: str) -> None:
    """Link an item into its folder's catalog, and that folder into each parent up to the root."""
    for folder, link in _links(relative):
        _change_links(settings, storage, folder, add=link)


def link_items(settings: Settings, storage: Storage, relatives: set[str]) -> None:
    """Link many items in: one conditional write per folder catalog that changes, not one per item."""
    additions: dict[str, list[dict]] = {}
    for relative in relatives:
        for folder, link in _links(relative):
            if link not in (bucket := additions.setdefault(folder, [])):
                bucket.append(link)
    for folder, links in additions.items():
        _change_links(settings, storage, folder, add=links)


def remove_item(settings: Settings, storage: Storage, relative: str) -> bool:
    """Remove an item and its link (empty folder catalogs stay until ``build``)."""
    removed = storage.delete(BlobLocation(settings.refs_container, item_path(relative)))
    folder = posixpath.dirname(relative)
    _change_links(settings, storage, folder, remove=_href(folder_catalog_path(folder), item_path(relative)))
    return removed


def remove_items(settings: Settings, storage: Storage, relatives: set[str]) -> int:
    """Remove many items and their links: one conditional write per folder catalog that changes; the items removed."""
    removed, links = 0, {}
    for relative in sorted(relatives):
        removed += storage.delete(BlobLocation(settings.refs_container, item_path(relative)))
        folder = posixpath.dirname(relative)
        links.setdefault(folder, []).append(_href(folder_catalog_path(folder), item_path(relative)))
    for folder, hrefs in links.items():
        _change_links(settings, storage, folder, remove=hrefs)
    return removed


def _catalog_document(settings: Settings, folder: str) -> dict:
    import pystac

    path = folder_catalog_path(folder)
    if folder:
        document = {"type": "Catalog", "id": folder, "stac_version": pystac.get_stac_version(),
                    "description": f"NetCDF files referenced under {folder}/", "title": folder,
                    "links": [_link("root", path, ROOT), _link("parent", path, folder_catalog_path(_parent_folder(folder)))]}
    else:
        document = {"type": "Catalog", "id": "ncrefs", "stac_version": pystac.get_stac_version(),
                    "title": f"ncrefs: {settings.refs_container}",
                    "description": f"NetCDF files referenced by ncrefs in container {settings.refs_container}, "
                                   "and the datasets combined from them.",
                    "links": [_link("root", path, ROOT)]}
    return document


def _order(links: list[dict]) -> list[dict]:
    head = [link for link in links if link["rel"] in ("root", "parent")]
    rest = sorted((link for link in links if link["rel"] not in ("root", "parent")), key=lambda l: (l["rel"], l["href"]))
    return head + rest


def _change_links(settings: Settings, storage: Storage, folder: str, *, add: dict | list[dict] | None = None,
                  remove: str | list[str] | None = None, replace: list[dict] | None = None, read_ahead: Future | None = None) -> bool:
    """Add links to a folder catalog, remove some, or set all its child/item links, by a conditional write
    (``read_ahead``: the catalog read ahead, for the first attempt)."""
    adds = [add] if isinstance(add, dict) else (add or [])
    removes = [remove] if isinstance(remove, str) else (remove or [])
    location = BlobLocation(settings.refs_container, folder_catalog_path(folder))
    for attempt in range(LINK_ATTEMPTS):
        found = read_ahead.result() if attempt == 0 and read_ahead is not None else storage.get(location)
        etag = found[1] if found else None
        try:
            document = json.loads(found[0]) if found else None
        except ValueError:
            document = None  # a damaged catalog is rewritten (build relinks everything it lost)
        if not isinstance(document, dict) or not isinstance(document.get("links"), list):
            if found is None and (removes or replace == []):
                return False
            document = _catalog_document(settings, folder)
        links = [l for l in document["links"] if isinstance(l, dict) and "rel" in l and "href" in l]
        if replace is not None:
            links = [l for l in links if l["rel"] in ("root", "parent")] + replace
        for new in adds:
            if not any(l["rel"] == new["rel"] and l["href"] == new["href"] for l in links):
                links.append(new)
        if removes:
            links = [l for l in links if l["href"] not in removes]
        links = _order(links)
        if found is not None and links == document["links"]:
            return False
        document["links"] = links
        try:
            storage.put(location, _dump(document), content_type="application/json", if_etag=etag, if_absent=etag is None)
            return True
        except WriteRaced:
            continue
    raise WriteRaced(f"{location} kept changing ({LINK_ATTEMPTS} attempts)")


def _dump(document: dict) -> bytes:
    return json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False).encode()


# -- collections -----------------------------------------------------------------------------------
def dataset_changed(settings: Settings, storage: Storage, name: str) -> None:
    """A dataset's state was saved: rewrite its Collection (never raises; ``stac build`` repairs)."""
    try:
        write_collection(settings, storage, name)
        _change_links(settings, storage, "", add=_link("child", ROOT, collection_path(name), title=name))
    except Exception as error:  # noqa: BLE001 - the dataset is updated; its collection catches up later
        log.warning("STAC collection of dataset %s not updated: %s", name, error)


def dataset_deleted(settings: Settings, storage: Storage, name: str) -> None:
    try:
        storage.delete(BlobLocation(settings.refs_container, collection_path(name)))
        _change_links(settings, storage, "", remove=_href(ROOT, collection_path(name)))
    except Exception as error:  # noqa: BLE001
        log.warning("STAC collection of dataset %s not removed: %s", name, error)


def write_collection(settings: Settings, storage: Storage, name: str) -> dict:
    from shared.datasets import load_definition
    from shared.datasets.model import DatasetState, output_location, state_location

    definition = load_definition(settings, storage, name)
    found = storage.get(state_location(settings.refs_container, name))
    state = DatasetState.model_validate_json(found[0]) if found else DatasetState()
    members = state.members
    ends = [members[0], members[-1]] if members else []
    described = [_member_item(settings, storage, m.source, m.reference) for m in ends]
    described = [d for d in described if d]
    bbox = _union([d.get("bbox") for d in described])
    start, end = _times(described)
    dimensions = json.loads(json.dumps(described[0]["properties"].get("cube:dimensions", {}))) if described else {}
    variables = described[0]["properties"].get("cube:variables", {}) if described else {}
    concat = dimensions.get(definition.concat_dim)
    if concat and concat.get("type") == "temporal" and members:
        first, last = _parse(members[0].first), _parse(members[-1].last)
        if first and last:
            concat["extent"] = [iso(first), iso(last)]
            start, end = min(start or first, first), max(end or last, last)
    elif concat and len(described) == 2 and all(isinstance(v, (int, float)) for d in described
                                                  for v in d["properties"]["cube:dimensions"].get(definition.concat_dim, {}).get("extent", [None])):
        values = [v for d in described for v in d["properties"]["cube:dimensions"][definition.concat_dim]["extent"]]
        concat["extent"] = [min(values), max(values)]
    scheme = stac_items.storage_scheme(storage.account_name, storage.blob_url)
    outputs = {o: output_location(settings.refs_container, name, o).url("https", storage.blob_url) + ("" if o == "json" else "/")
               for o in definition.outputs}
    collection = stac_items.build_collection(
        name, f"Dataset {name}: {len(members)} files under {definition.container}/{definition.prefix} "
              f"combined along {definition.concat_dim}.",
        bbox=bbox, start=start, end=end, dimensions=dimensions, variables=variables, outputs=outputs, scheme=scheme,
        members=len(members))
    path = collection_path(name)
    document = collection.to_dict(include_self_link=False, transform_hrefs=False)
    document["links"] = [_link("root", path, ROOT), _link("parent", path, ROOT)]
    storage.put(BlobLocation(settings.refs_container, path), _dump(document), content_type="application/json",
                metadata={"ncrefs_dataset": name})
    return document


def _member_item(settings: Settings, storage: Storage, source: str, reference: str) -> dict | None:
    """A member's item as written, else described from its reference (never from the source)."""
    container, _, path = source.partition("/")
    relative = relative_source(BlobLocation(container, path), settings)
    found = storage.get(BlobLocation(settings.refs_container, item_path(relative)))
    if found:
        try:
            return json.loads(found[0])
        except ValueError:
            pass
    location = parse_location(reference, allow_local=False)
    fmt = "parquet" if location.path.rstrip("/").endswith(".parquet") else "json"
    facts = describe(read_references(storage, location, fmt))
    return {"bbox": facts.bbox, "properties": {"cube:dimensions": facts.dimensions, "cube:variables": facts.variables,
                                               **({"start_datetime": iso(facts.start), "end_datetime": iso(facts.end)}
                                                  if facts.start else {})}}


def _union(boxes: list) -> list[float] | None:
    """The box covering every member's, or None when any member has no footprint (nothing is guessed)."""
    if not boxes or any(not b for b in boxes):
        return None
    if all(b == boxes[0] for b in boxes):
        return list(boxes[0])
    if any(b[0] > b[2] for b in boxes):  # across the antimeridian: the whole band of latitudes
        return [-180.0, min(b[1] for b in boxes), 180.0, max(b[3] for b in boxes)]
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _times(documents: list[dict]) -> tuple[datetime | None, datetime | None]:
    starts, ends = [], []
    for d in documents:
        p = d.get("properties", {})
        if p.get("ncrefs:datetime_from") == "source_last_modified":
            continue
        s, e = _parse(p.get("start_datetime") or p.get("datetime")), _parse(p.get("end_datetime") or p.get("datetime"))
        if s and e:
            starts.append(s)
            ends.append(e)
    return (min(starts), max(ends)) if starts else (None, None)


def _parse(text) -> datetime | None:
    from shared.catalog.facts import _as_datetime, _parse_time

    if not isinstance(text, str):
        return None
    parsed = _parse_time(text)
    if parsed is None:
        try:
            import numpy as np

            parsed = _as_datetime(np.datetime64(text))
        except ValueError:
            return None
    return parsed


# -- reading references ------------------------------------------------------------------------------
def read_references(storage: Storage, location: BlobLocation, fmt: str) -> References:
    """A stored reference's keys (JSON: the whole document; Parquet: metadata, then chunks on demand)."""
    if fmt == "json":
        found = storage.get(location)
        if found is None:
            raise SourceNotFound(f"There is no reference {location}.")
        return References.from_dict(json.loads(found[0]))
    import fsspec
    from fsspec.implementations.reference import LazyReferenceMapper

    root = location.path.rstrip("/")
    found = storage.get(BlobLocation(location.container, f"{root}/{ZMETADATA}"))
    if found is None:
        raise SourceNotFound(f"There is no reference {location}.")
    metadata = json.loads(found[0]).get("metadata", {})
    fs = fsspec.filesystem("abfs", **storage.fsspec_options())
    mapper = LazyReferenceMapper(f"{location.container}/{root}", fs=fs)

    def get(key: str):
        if key in metadata:
            value = metadata[key]
            return value if isinstance(value, str) else json.dumps(value)
        try:
            return mapper._load_one_key(key)  # noqa: SLF001 - bytes (inline) or [url, offset, length]
        except (KeyError, ValueError):
            return None

    return References(get, lambda: list(metadata))


# -- building the whole catalog ---------------------------------------------------------------------
@dataclass
class BuildSummary:
    items: int = 0
    removed: int = 0
    collections: int = 0
    catalogs: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0


def existing_references(settings: Settings, storage: Storage) -> dict[str, tuple[BlobLocation, BlobLocation, str, dict]]:
    """relative source path -> (source, reference, format, reference metadata) for every ncrefs reference.

    When a source has several references (an explicit ``--output`` besides its mapped one), the mapped one wins."""
    found: dict[str, tuple[BlobLocation, BlobLocation, str, dict]] = {}
    for blob in storage.list_blobs(settings.refs_container, metadata=True):
        if blob.path.startswith("_"):
            continue
        if blob.path.endswith(f".parquet/{ZMETADATA}"):
            fmt, path = "parquet", blob.path[: -len(ZMETADATA) - 1]
        elif blob.path.endswith(".json"):
            fmt, path = "json", blob.path
        else:
            continue
        owner = unquote(blob.metadata.get("ncrefs_source", ""))
        container, _, source_path = owner.partition("/")
        if not source_path:
            continue
        source = BlobLocation(container, source_path)
        reference = BlobLocation(settings.refs_container, path)
        relative = relative_source(source, settings)
        try:
            mapped = reference_location(source, fmt=fmt, refs_container=settings.refs_container,
                                        source_container=settings.source_container)
        except NcrefsError:
            mapped = None
        if relative not in found or mapped == reference:
            found[relative] = (source, reference, fmt, blob.metadata)
    return found


def build(settings: Settings, storage: Storage, prefix: str = "", *, workers: int = 8) -> BuildSummary:
    """(Re)write the items of every reference under ``prefix`` (source paths as references name them), the
    collection of every dataset, remove items and collections whose reference or dataset is gone, relink."""
    from shared.datasets import list_definitions

    started = time.perf_counter()
    storage.ensure_container(settings.refs_container)
    summary = BuildSummary()
    references = {r: v for r, v in existing_references(settings, storage).items() if r.startswith(prefix)}

    def one(entry) -> tuple[str, str | None]:
        relative, (source, reference, fmt, metadata) = entry
        try:
            modified = metadata.get("ncrefs_source_last_modified")
            size = metadata.get("ncrefs_source_size")
            write_item(settings, storage, source, reference, fmt,
                       describe(read_references(storage, reference, fmt), fetch=_fetcher(storage, source)),
                       last_modified=datetime.fromisoformat(modified) if modified else None,
                       size=int(size) if size and size.isdigit() else None)
            return relative, None
        except Exception as error:  # noqa: BLE001 - one bad reference never stops the others
            return relative, error.message if isinstance(error, NcrefsError) else f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for relative, problem in pool.map(one, sorted(references.items())):
            if problem:
                summary.failed[relative] = problem
            else:
                summary.items += 1
    for blob in list(storage.list_blobs(settings.refs_container, ITEMS + prefix)):
        relative = blob.path[len(ITEMS): -len(".json")] if blob.path.endswith(".json") else None
        if relative is None or relative not in references:
            summary.removed += storage.delete(BlobLocation(settings.refs_container, blob.path))
    names = set()
    for definition in list_definitions(settings, storage):
        names.add(definition.name)
        try:
            write_collection(settings, storage, definition.name)
            summary.collections += 1
        except Exception as error:  # noqa: BLE001
            summary.failed[f"dataset {definition.name}"] = getattr(error, "message", str(error))
    for blob in list(storage.list_blobs(settings.refs_container, COLLECTIONS)):
        if blob.path.split("/")[2] not in names:
            summary.removed += storage.delete(BlobLocation(settings.refs_container, blob.path))
    summary.catalogs = relink(settings, storage)
    summary.elapsed_s = round(time.perf_counter() - started, 3)
    return summary


def relink(settings: Settings, storage: Storage) -> int:
    """Make every folder catalog link exactly the items and sub-folders that exist (and the root the
    collections); remove catalogs of folders left empty. Returns the catalogs written."""
    children: dict[str, list[dict]] = {"": []}
    for blob in storage.list_blobs(settings.refs_container, ITEMS):
        if not blob.path.endswith(".json"):
            continue
        for folder, link in _links(blob.path[len(ITEMS): -len(".json")]):
            if link not in (siblings := children.setdefault(folder, [])):
                siblings.append(link)
    for blob in storage.list_blobs(settings.refs_container, COLLECTIONS):
        if blob.path.endswith("/collection.json"):
            name = blob.path.split("/")[2]
            children[""].append(_link("child", ROOT, blob.path, title=name))
    written = 0
    for folder, links in children.items():
        written += _change_links(settings, storage, folder, replace=links)
    for blob in list(storage.list_blobs(settings.refs_container, CATALOGS)):
        folder = blob.path[len(CATALOGS): -len("/catalog.json")] if blob.path.endswith("/catalog.json") else None
        if folder is None or folder not in children:
            storage.delete(BlobLocation(settings.refs_container, blob.path))
    return written


# -- showing ---------------------------------------------------------------------------------------
def show(settings: Settings, storage: Storage, what: str) -> dict:
    """The Item of a source blob (or of a reference), or the Collection of a dataset, as stored."""
    from shared.datasets.model import NAME_RE, definition_location

    if NAME_RE.match(what) and "/" not in what:
        if storage.head(definition_location(settings.refs_container, what)) is None:
            raise DatasetNotFound(f"There is no dataset named {what!r}.",
                                  hint="Give a dataset name (ncrefs dataset list) or a blob such as raw-netcdf/a/b.nc.")
        found = storage.get(BlobLocation(settings.refs_container, collection_path(what)))
        if found is None:
            raise SourceNotFound(f"Dataset {what!r} has no STAC collection yet.", hint="Run `ncrefs stac build`.")
        return json.loads(found[0])
    location = parse_location(what, what="blob", allow_local=False)
    storage.check_account(location)
    if location.container == settings.refs_container:
        if is_reserved(location, settings.refs_container):
            raise InvalidRequest(f"{what!r} is one of ncrefs's own records, not a source or a reference.")
        head = storage.head(location) or storage.head(BlobLocation(location.container, f"{location.path.rstrip('/')}/{ZMETADATA}"))
        owner = unquote((head.metadata if head else {}).get("ncrefs_source", ""))
        if not owner:
            raise SourceNotFound(f"There is no reference {location}.", hint="Give the source blob, e.g. raw-netcdf/a/b.nc.")
        container, _, path = owner.partition("/")
        location = BlobLocation(container, path)
    found = storage.get(BlobLocation(settings.refs_container, item_path(relative_source(location, settings))))
    if found is None:
        raise SourceNotFound(f"There is no STAC item for {location}.",
                             hint=f"Reference it (ncrefs virtualize {location}), or run `ncrefs stac build` if it has a reference.")
    return json.loads(found[0])
