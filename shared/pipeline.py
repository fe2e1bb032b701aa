"""The one entry point: locate -> sniff -> virtualize -> scan -> write.

The CLI, the HTTP function and the blob trigger all build a :class:`ReferenceRequest` and
call :func:`generate_reference`. It is a pure function of the request, the settings and the
storage it talks to, so it can run in any process or behind any trigger.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from shared.errors import InternalError, InvalidRequest, NcrefsError, SourceNotAllowed
from shared.models import ErrorInfo, ReferenceRequest, ReferenceResult
from shared.paths import (
    BlobLocation,
    LocalLocation,
    Location,
    error_record_location,
    format_for_target,
    is_reserved,
    parse_location,
    reference_location,
)
from shared.reader import FIRST_READ, RangeReader
from shared.sandbox import Parsed, parser_pool
from shared.scan import scan_refs
from shared.settings import Settings
from shared.storage import Storage
from shared.writer import Listed, Provenance, ReferenceLookAhead, write_reference

log = logging.getLogger("ncrefs")
SIDE_THREADS = 8  # look-ups, facts and catalog writes beside the parse and the reference's write


@dataclass(frozen=True)
class AccessPolicy:
    """What a caller may touch. The CLI may use any container and local files; the HTTP API
    and the blob trigger only the configured source and refs containers."""

    allow_local: bool = True
    source_containers: frozenset[str] | None = None
    target_containers: frozenset[str] | None = None

    @classmethod
    def configured(cls, settings: Settings) -> AccessPolicy:
        return cls(
            allow_local=False,
            source_containers=frozenset({settings.source_container}),
            target_containers=frozenset({settings.refs_container}),
        )

    def check(self, location: Location, containers: frozenset[str] | None, what: str) -> None:
        if isinstance(location, BlobLocation) and containers is not None and location.container not in containers:
            raise SourceNotAllowed(
                f"The {what} is in container {location.container!r}; only {', '.join(sorted(containers))} may be used here."
            )


@dataclass
class Batch:
    """What a run over many files (backfill) shares with each file's reference."""

    listed: Listed | None = None  # its listing of the refs container, a moment ago
    catalog_links: set[str] = field(default_factory=set)  # STAC items to link in once, at the end


def generate_reference(
    request: ReferenceRequest, settings: Settings, storage: Storage, policy: AccessPolicy = AccessPolicy(),
    batch: Batch | None = None,
) -> ReferenceResult:
    """Reference one file; raise an :class:`NcrefsError` for anything that goes wrong.

    ``batch``: what a run over many files (backfill) shares: its listing of the refs container (look-ups
    and deletes of blobs it shows absent are skipped), and the catalog links it makes once at the end.
    """
    started = time.perf_counter()
    source = parse_location(request.source, what="source", allow_local=policy.allow_local)
    policy.check(source, policy.source_containers, "source")
    storage.check_account(source)
    target = _target(request, source, settings, storage, policy)
    if target is None and not request.scan_only:  # a source whose reference would fall in a reserved name: refuse it now
        reference_location(source, fmt="json", refs_container=settings.refs_container, source_container=settings.source_container)

    # Side work in threads: look-ups of the refs container while the source is opened and parsed, the
    # STAC item's facts while the reference is written, and the writes that follow it.
    with ThreadPoolExecutor(SIDE_THREADS, thread_name_prefix="ncrefs-side") as side:
        opening = side.submit(storage.open_source, source, settings.read_block_size)  # its first GET goes out first
        ahead = None if request.scan_only else _look_ahead(settings, storage, source, target, batch, side)
        reader = opening.result()
        info = reader.info
        url = source.url(settings.url_scheme, _endpoint_for_urls(settings, storage))
        try:
            virtual = parse(reader, url, str(source), settings)
        except NcrefsError as error:
            error.source_etag = info.etag  # the version that failed: error records and backfill compare it
            raise
        report = scan_refs(virtual.reference)
        report.skipped_variables = virtual.skipped_variables
        chunk_count = sum(v.chunk_count for v in report.variables)
        fmt = _choose_format(request, target, chunk_count, settings)
        if target is None:
            target = reference_location(source, fmt=fmt, refs_container=settings.refs_container,
                                        source_container=settings.source_container)

        result = ReferenceResult(
            status="scanned" if request.scan_only else "success",
            input=url,
            output=None if request.scan_only else _display(target, settings, storage),
            format=None if request.scan_only else fmt,
            groups=virtual.groups,
            warnings=virtual.warnings + report.warnings,
            chunk_count=chunk_count,
            bytes_read=reader.stats.bytes_read,
            requests=reader.stats.requests,
            read_plan=virtual.plan,
            skipped_variables=virtual.skipped_variables,
            source_etag=info.etag,
            source_size=info.size,
            scan=report,
            **_summary(virtual.reference.entries),
        )
        if not request.scan_only:
            _write(settings, storage, source, target, fmt, virtual, info, reader, batch, result, side, ahead)
    result.requests, result.bytes_read = reader.stats.requests, reader.stats.bytes_read  # the catalog's reads too
    result.elapsed_s = round(time.perf_counter() - started, 3)
    return result


@dataclass
class LookAhead:
    """What the write will need from the refs container, asked while the source is parsed."""

    references: ReferenceLookAhead
    catalogs: CatalogLookAhead | None


def _look_ahead(settings: Settings, storage: Storage, source: Location, target: Location | None, batch: Batch | None,
                side: ThreadPoolExecutor) -> LookAhead | None:
    """Start the look-ups of the reference's blobs (either format) and of the catalogs its STAC item is
    linked into; a write uses each for its first attempt and stays conditional on what it saw."""
    from shared.catalog import CatalogLookAhead, catalogued

    if not isinstance(source, BlobLocation):
        return None
    if target is None:
        target = reference_location(source, fmt="json", refs_container=settings.refs_container,
                                    source_container=settings.source_container)
    listed = batch.listed if batch else None
    references = ReferenceLookAhead(storage, target, side.submit, listed)
    linking = batch is None and catalogued(settings, source, target)  # a batch links its items once, at the end
    return LookAhead(references, CatalogLookAhead(settings, storage, source, side.submit) if linking else None)


def _write(settings: Settings, storage: Storage, source: Location, target: Location, fmt: str, virtual: Parsed, info,
           reader: RangeReader, batch: Batch | None, result: ReferenceResult, side: ThreadPoolExecutor,
           ahead: LookAhead | None) -> None:
    """Write the reference, then what follows it: the other format's copy and a stale error record removed,
    the STAC item (``shared/catalog``: a catalog failure never fails the reference; it becomes a warning
    and `ncrefs stac build` repairs it). Every read was pinned to ``info.etag`` (If-Match): a source replaced
    while it was read raised SourceChanged before anything was written."""
    from shared.catalog import catalogued, describe_reference, reference_written

    listed = batch.listed if batch else None
    # The item's facts are worked out (CPU) while the reference is written (round trips).
    facts = side.submit(describe_reference, storage, source, virtual.reference, reader) \
        if catalogued(settings, source, target) else None
    written = write_reference(storage, virtual.reference, target, fmt, Provenance(str(source), info), listed,
                              ahead.references if ahead else None)
    result.reference_bytes = written.size
    if written.replaced is not None:  # one reference per source: the other format's is gone, say so
        result.warnings.append(f"Replaced this source's {'Parquet' if fmt == 'json' else 'JSON'} reference "
                               f"{_display(written.replaced, settings, storage)}.")
    removing = None
    if isinstance(source, BlobLocation):  # a stale record of an earlier failure no longer holds
        record = error_record_location(source, refs_container=settings.refs_container,
                                       source_container=settings.source_container)
        removing = None if listed is not None and listed.absent(record) else side.submit(storage.delete, record)
    deferred = batch.catalog_links if batch else None
    if facts is not None and (warning := reference_written(settings, storage, source, target, fmt, info, facts,
                                                           deferred, ahead.catalogs if ahead else None)) is not None:
        result.warnings.append(warning)
    if removing is not None:
        removing.result()


def parse(reader: RangeReader, url: str, name: str, settings: Settings) -> Parsed:
    """The file's reference, parsed in a confined parser process under the configured limits."""
    head = reader.read_at(0, min(FIRST_READ, reader.size))  # already fetched by the first GET
    options = {"block_size": settings.read_block_size, "inline_threshold": settings.inline_threshold,
               "max_chunks": settings.max_chunks, "strict": settings.strict}
    return parser_pool(settings).parse(reader, head, url=url, name=name, options=options)


def preload() -> None:
    """Import what referencing a file and describing it for STAC use. The CLI and the Functions host
    import these lazily (quick to start; paid at first use); a batch that knows it will need them
    loads them in a thread while its first parser process starts."""
    import numcodecs  # noqa: F401
    import pystac  # noqa: F401
    import xarray  # noqa: F401
    import zarr.core.metadata.v2  # noqa: F401

    import shared.catalog.store  # noqa: F401
    import shared.chunkrefs  # noqa: F401


def ensure_refs_container(request: ReferenceRequest, storage: Storage, settings: Settings) -> None:
    """Create the refs container for a blob source's mapped reference, if missing (CLI and API
    convenience; failures are left for the pipeline to report properly)."""
    try:
        source = parse_location(request.source)
    except Exception:  # noqa: BLE001 - the pipeline reports a bad source properly
        return
    if isinstance(source, BlobLocation):
        try:
            storage.ensure_container(settings.refs_container)
        except Exception:  # noqa: BLE001 - the pipeline reports storage failures properly
            return


def run_request(request: ReferenceRequest, settings: Settings, storage: Storage,
                policy: AccessPolicy = AccessPolicy(), batch: Batch | None = None) -> ReferenceResult:
    """:func:`generate_reference`, with every failure turned into an error result."""
    try:
        return generate_reference(request, settings, storage, policy, batch)
    except Exception as error:  # noqa: BLE001 - every failure becomes a typed result
        return error_result(request.source, error)


def error_result(source: str, error: Exception) -> ReferenceResult:
    if not isinstance(error, NcrefsError):
        correlation_id = uuid.uuid4().hex
        log.exception("internal error %s while referencing %s", correlation_id, source)
        error = InternalError(f"An unexpected error occurred (correlation id {correlation_id}).")
        info = ErrorInfo(**error.to_dict(), correlation_id=correlation_id)
    else:
        info = ErrorInfo(**error.to_dict())
    return ReferenceResult(status="error", input=source, error=info, source_etag=error.source_etag)


def _target(request: ReferenceRequest, source: Location, settings: Settings, storage: Storage,
            policy: AccessPolicy) -> Location | None:
    if request.target is None:
        return None  # the mapped location, once the format is known
    target = parse_location(request.target, what="target", allow_local=policy.allow_local)
    policy.check(target, policy.target_containers, "target")
    storage.check_account(target)
    if is_reserved(target, settings.refs_container):
        raise InvalidRequest(f"The target {request.target!r} is in a reserved part of the {settings.refs_container} container "
                             "(names starting with '_' hold ncrefs's own records).",
                             hint="Give a target whose first folder does not start with '_'.")
    implied = format_for_target(target)
    if implied is None:
        raise InvalidRequest(f"The target {request.target!r} must end in .json or .parquet.",
                             hint="Name the reference file, e.g. refs/a/b/file.json.")
    if request.format in ("json", "parquet") and request.format != implied:
        raise InvalidRequest(f"The target {request.target!r} is a {implied} name but format {request.format!r} was asked for.")
    if isinstance(source, LocalLocation) is not isinstance(target, LocalLocation):
        raise InvalidRequest("A local source needs a local target, and a blob source a blob target.")
    return target


def _choose_format(request: ReferenceRequest, target: Location | None, chunk_count: int, settings: Settings) -> str:
    if target is not None:
        return format_for_target(target)  # type: ignore[return-value]
    fmt = request.format or settings.reference_format
    if fmt == "auto":
        return "parquet" if chunk_count > settings.parquet_chunk_threshold else "json"
    return fmt


def _endpoint_for_urls(settings: Settings, storage: Storage) -> str | None:
    """Only https URLs name the endpoint (the configured one); abfs/az URLs leave it to the reader's options."""
    return storage.blob_url if settings.url_scheme == "https" else None


def _display(target: Location, settings: Settings, storage: Storage) -> str:
    if isinstance(target, LocalLocation):
        return str(target.path)
    return target.url(settings.url_scheme, _endpoint_for_urls(settings, storage))


def _summary(table: dict) -> dict:
    """Dimensions, variable names and global attributes (from the reference's metadata), as the seed API reported them."""
    dimensions: dict[str, int] = {}
    variables: list[str] = []
    for key in sorted(table):
        if not key.endswith("/.zarray"):
            continue
        name = key[: -len("/.zarray")]
        group = name.rpartition("/")[0]
        shape = json.loads(table[key])["shape"]
        dims = json.loads(table.get(f"{name}/.zattrs", "{}")).get("_ARRAY_DIMENSIONS", [])
        for dim, size in zip(dims, shape):
            dimensions[f"{group}/{dim}" if group else dim] = size
        variables.append(name)
    attributes = json.loads(table.get(".zattrs", "{}"))
    return {"dimensions": dimensions, "variables": variables, "attributes": attributes}
