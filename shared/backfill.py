"""Bring every source under a prefix up to date: one reference per NetCDF blob.

A blob is skipped when its reference already records the blob's current ETag (unless
forced). The rest are referenced in parallel *processes* (HDF5 holds a process-wide lock,
so threads would take turns), each file on its own: retryable failures are tried again
with exponential backoff, and one bad file never stops the others. The unit of work,
:func:`reference_one`, depends only on the source and the settings, so it can move behind
a queue trigger unchanged.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from urllib.parse import unquote

from pydantic import BaseModel, Field

from shared.models import ReferenceRequest, ReferenceResult
from shared.paths import BlobLocation, is_netcdf_name
from shared.pipeline import run_request
from shared.settings import Settings
from shared.storage import Storage

MAX_ATTEMPTS = 4
FIRST_BACKOFF_S = 0.5


class BackfillSummary(BaseModel):
    container: str
    prefix: str
    candidates: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failed_by_code: dict[str, int] = Field(default_factory=dict)
    failures: list[ReferenceResult] = Field(default_factory=list)
    elapsed_s: float = 0.0


_worker: tuple[Settings, Storage] | None = None


def _init_worker(settings: Settings, connection_string: str | None) -> None:
    global _worker
    _worker = (settings, Storage(settings, connection_string))


def reference_one(source: str, settings: Settings, storage: Storage) -> ReferenceResult:
    """Reference one blob, retrying what may succeed later."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        result = run_request(ReferenceRequest(source=source), settings, storage)
        if result.status != "error" or not result.error.retryable or attempt == MAX_ATTEMPTS:
            return result
        time.sleep(FIRST_BACKOFF_S * 2 ** (attempt - 1))
    return result


def _reference_in_worker(source: str) -> ReferenceResult:
    assert _worker is not None
    return reference_one(source, *_worker)


def stale_sources(storage: Storage, settings: Settings, container: str, prefix: str, force: bool) -> tuple[list[str], int]:
    """The NetCDF blobs whose reference is missing or records another ETag; and how many were current."""
    sources = [b for b in storage.list_blobs(container, prefix) if is_netcdf_name(b.path)]
    recorded: dict[str, str] = {}
    if not force:
        refs_prefix = prefix if container == settings.source_container else f"{container}/{prefix}"
        for ref in storage.list_blobs(settings.refs_container, refs_prefix, metadata=True):
            if "ncrefs_source" in ref.metadata:
                recorded[unquote(ref.metadata["ncrefs_source"])] = ref.metadata.get("ncrefs_source_etag", "")
    stale = [str(BlobLocation(container, b.path)) for b in sources
             if force or recorded.get(str(BlobLocation(container, b.path))) != b.etag.strip('"')]
    return stale, len(sources) - len(stale)


def backfill(
    settings: Settings,
    *,
    connection_string: str | None = None,
    container: str | None = None,
    prefix: str = "",
    workers: int | None = None,
    force: bool = False,
    progress: bool | None = None,
) -> BackfillSummary:
    started = time.perf_counter()
    container = container or settings.source_container
    storage = Storage(settings, connection_string)
    storage.ensure_container(settings.refs_container)
    todo, current = stale_sources(storage, settings, container, prefix, force)
    summary = BackfillSummary(container=container, prefix=prefix, candidates=len(todo) + current, skipped=current)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    show = sys.stderr.isatty() if progress is None else progress

    def record(result: ReferenceResult) -> None:
        if result.status == "error":
            summary.failed += 1
            summary.failures.append(result)
        else:
            summary.done += 1

    bar = _progress_bar(len(todo), show)
    if workers == 1:
        for source in todo:
            record(reference_one(source, settings, storage))
            bar.update(1)
    else:
        # spawn: a fresh interpreter per worker; forking a process that has HDF5 and
        # obstore's runtime threads loaded is not safe.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(settings, connection_string)) as pool:
            futures = [pool.submit(_reference_in_worker, source) for source in todo]
            for future in as_completed(futures):
                record(future.result())
                bar.update(1)
    bar.close()
    summary.failed_by_code = dict(Counter(f.error.code for f in summary.failures if f.error))
    summary.elapsed_s = round(time.perf_counter() - started, 3)
    return summary


def _progress_bar(total: int, show: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", disable=not show, file=sys.stderr)
