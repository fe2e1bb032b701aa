"""Bring every source under a prefix up to date: one reference per NetCDF blob.

A blob is skipped when its *mapped* reference exists and records the blob's current ETag,
or when its error record says it already failed at that ETag (unless ``retry_failed``);
``force`` redoes everything. The rest are referenced by a few threads (the parsing itself
runs in the confined parser processes of ``shared/sandbox``, so threads do not take turns
on the HDF5 lock), each file on its own: retryable failures are tried again with
exponential backoff, permanent ones get an error record, and one bad file never stops the
others. The unit of work, :func:`reference_one`, depends only on the source and the
settings, so it can move behind a queue trigger unchanged.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from urllib.parse import unquote

from pydantic import BaseModel, Field

from shared.errors import NcrefsError
from shared.models import ReferenceRequest, ReferenceResult
from shared.paths import ERRORS_PREFIX, BlobLocation, error_record_location, is_netcdf_name, reference_location
from shared.pipeline import Batch, preload, run_request
from shared.records import record_failure, recorded_failures
from shared.sandbox import parser_pool
from shared.settings import Settings
from shared.storage import Storage
from shared.writer import ZMETADATA, Listed

log = logging.getLogger("ncrefs.backfill")
MAX_ATTEMPTS = 4
FIRST_BACKOFF_S = 0.5
# Below this many files, one worker unless asked (starting more costs more than it saves).
SMALL_BATCH = 50
# Files in flight per parser process the machine could run (benchmarks/bench_backfill.py: 300 small files at
# 10 ms, 2 CPUs: 1 -> 25 files/s, 4 -> 38, 8 -> 40; CPU-bound beyond). Small files parse in milliseconds,
# so the pool keeps one parser busy and starts more only for long parses.
FILES_PER_PARSER = 8


class BackfillSummary(BaseModel):
    container: str
    prefix: str
    candidates: int = 0
    done: int = 0
    skipped: int = 0
    skipped_failed: int = 0
    failed: int = 0
    failed_by_code: dict[str, int] = Field(default_factory=dict)
    failures: list[ReferenceResult] = Field(default_factory=list)
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class Candidate:
    source: BlobLocation
    etag: str


def reference_one(source: str, settings: Settings, storage: Storage, batch: Batch | None = None) -> ReferenceResult:
    """Reference one blob, retrying what may succeed later (``batch``: what the run over many files shares)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        # A retry looks again: the listing may be out of date by then.
        shared = batch if attempt == 1 or batch is None else Batch(catalog_links=batch.catalog_links)
        result = run_request(ReferenceRequest(source=source), settings, storage, batch=shared)
        if result.status != "error" or not result.error.retryable or attempt == MAX_ATTEMPTS:
            return result
        time.sleep(FIRST_BACKOFF_S * 2 ** (attempt - 1))
    return result


@dataclass
class Plan:
    todo: list[Candidate]
    current: int = 0  # skipped: their reference records their ETag
    failed_before: int = 0  # skipped: their error record says they failed at this ETag
    listed: Listed | None = None  # what the refs container held, so writes need not look again


def plan(storage: Storage, settings: Settings, container: str, prefix: str, *, force: bool = False,
         retry_failed: bool = False) -> Plan:
    """The NetCDF blobs that need work, and what was skipped and why."""
    sources = [Candidate(BlobLocation(container, b.path), b.etag.strip('"'))
               for b in storage.list_blobs(container, prefix) if is_netcdf_name(b.path)]
    if force:
        return Plan(sources)
    relative = prefix if container == settings.source_container else f"{container}/{prefix}"
    folder = relative[: relative.rfind("/") + 1]
    refs = {b.path: b.metadata for b in storage.list_blobs(settings.refs_container, folder, metadata=True)}
    failed = {} if retry_failed else recorded_failures(storage, settings, container, prefix)
    names = set(refs)
    prefixes = [folder]
    if not retry_failed:  # the error records under the prefix were listed too
        prefixes.append(f"{ERRORS_PREFIX}/{relative}")
        names.update(error_record_location(BlobLocation(*source.split("/", 1)), refs_container=settings.refs_container,
                                           source_container=settings.source_container).path for source in failed)
    result = Plan([], listed=Listed(settings.refs_container, tuple(prefixes), frozenset(names)))
    for candidate in sources:
        if _reference_is_current(refs, candidate, settings):
            result.current += 1
        elif failed.get(str(candidate.source)) == candidate.etag:
            result.failed_before += 1
        else:
            result.todo.append(candidate)
    return result


def _reference_is_current(refs: dict[str, dict], candidate: Candidate, settings: Settings) -> bool:
    """Whether the source's own mapped reference (JSON or Parquet) records this source at this ETag."""
    try:
        names = [reference_location(candidate.source, fmt="json", refs_container=settings.refs_container,
                                    source_container=settings.source_container).path,
                 reference_location(candidate.source, fmt="parquet", refs_container=settings.refs_container,
                                    source_container=settings.source_container).path + "/" + ZMETADATA]
    except NcrefsError:  # a name that cannot have a reference: the pipeline says why
        return False
    for name in names:
        metadata = refs.get(name)
        if (metadata and unquote(metadata.get("ncrefs_source", "")) == str(candidate.source)
                and metadata.get("ncrefs_source_etag") == candidate.etag):
            return True
    return False


# The same rule for one file, given the metadata of its mapped reference names (the queue function, shared/fanout.py).
reference_is_current = _reference_is_current


def backfill(
    settings: Settings,
    *,
    connection_string: str | None = None,
    container: str | None = None,
    prefix: str = "",
    workers: int | None = None,
    force: bool = False,
    retry_failed: bool = False,
    progress: bool | None = None,
    say: Callable[[str], None] | None = None,
    verbose: bool = False,
) -> BackfillSummary:
    """Reference what needs it under ``container/prefix``. ``say`` gets lines for a person (what is about
    to happen; with ``verbose``, one per file); ``progress`` shows a bar on stderr (default: if a terminal)."""
    started = time.perf_counter()
    container = container or settings.source_container
    storage = Storage(settings, connection_string)
    # A parser's start (~1 s of CPU) and this process's imports for the first file overlap the listings.
    parser_pool(settings).warm()
    threading.Thread(target=preload, name="ncrefs-preload", daemon=True).start()
    storage.ensure_container(settings.refs_container)
    planned = plan(storage, settings, container, prefix, force=force, retry_failed=retry_failed)
    todo, current, failed_before = planned.todo, planned.current, planned.failed_before
    batch = Batch(listed=planned.listed)  # and the STAC items to link in once, at the end
    summary = BackfillSummary(container=container, prefix=prefix, candidates=len(todo) + current + failed_before,
                              skipped=current, skipped_failed=failed_before)
    # A parser process costs ~1 s of CPU to start: a small batch is quicker on one, and more than the
    # machine's CPUs only take turns (the pool starts more only when parses keep them busy).
    default = min(settings.parse_workers, os.cpu_count() or 1) if len(todo) >= SMALL_BATCH else 1
    workers = max(1, min(workers or default, len(todo) or 1))
    show = sys.stderr.isatty() if progress is None else progress
    say = say or (lambda line: None)
    if todo:
        say(f"backfill {container}/{prefix}: {len(todo)} to reference ({current} current, {failed_before} failed before); "
            f"starting {workers} parser process{'es' if workers > 1 else ''}...")
    parser_pool(settings, size=workers)

    def work(candidate: Candidate) -> ReferenceResult:
        result = reference_one(str(candidate.source), settings, storage, batch)
        if result.status == "error" and not result.error.retryable:
            try:
                record_failure(storage, settings, candidate.source, result, candidate.etag)
            except NcrefsError:
                pass  # the failure is in the summary either way
        return result

    bar = _progress_bar(len(todo), show)
    # More files in flight than parsers: while one file parses, others wait on storage (reads, writes).
    with ThreadPoolExecutor(workers * FILES_PER_PARSER) as pool:
        for future in as_completed([pool.submit(work, c) for c in todo]):
            result = future.result()
            if result.status == "error":
                summary.failed += 1
                summary.failures.append(result)
            else:
                summary.done += 1
            if verbose:
                if show:  # above the bar, not through it
                    bar.write(_file_line(result), file=sys.stderr)
                else:
                    say(_file_line(result))
            bar.update(1)
    bar.close()
    if batch.catalog_links:
        _link_catalog(settings, storage, batch.catalog_links)
    summary.failed_by_code = dict(Counter(f.error.code for f in summary.failures if f.error))
    summary.elapsed_s = round(time.perf_counter() - started, 3)
    return summary


def _link_catalog(settings: Settings, storage: Storage, items: set[str]) -> None:
    from shared.catalog import link_items

    try:
        link_items(settings, storage, items)
    except Exception as error:  # noqa: BLE001 - the references are written; `ncrefs stac build` relinks
        log.warning("STAC catalog links of %d items not updated (%s); run `ncrefs stac build`", len(items), error)


def _file_line(result: ReferenceResult) -> str:
    if result.status == "error":
        return f"failed  {result.input}: [{result.error.code}] {result.error.message}"
    return f"ok      {result.input} -> {result.output} ({result.chunk_count} chunks, {result.elapsed_s:.2f} s)"


def _progress_bar(total: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", disable=not show, file=sys.stderr)
