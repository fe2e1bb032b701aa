"""What state an archive's references are in: ``ncrefs status`` and ``GET /api/status``.

For the NetCDF sources under a prefix of the source container: how many have a current reference
(it records the source's ETag), a stale one (it records another ETag: the source changed since), none
(missing), and how many failed at their current version, by error code (error records,
``refs/_errors/...``). Then the reference queue and its poison queue (approximate message counts),
and the datasets that hold files under the prefix (members, last update, last error).

Cost: one listing of the source container under the prefix and one of the refs container (the
references' folder and their error records; one listing when the prefix has no folder), with
metadata: a reference's ``ncrefs_source``/``ncrefs_source_etag`` and an error record's
``ncrefs_error_code`` come with it, so no blob is looked at one by one. Then one request per queue,
and two small reads per dataset (definition and state).
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections import Counter
from datetime import datetime
from typing import Literal
from urllib.parse import unquote

from pydantic import BaseModel, Field

from shared.errors import InvalidRequest, NcrefsError, StorageMisconfigured
from shared.paths import ERRORS_PREFIX, MAX_BLOB_NAME, BlobLocation, is_netcdf_name, reference_location
from shared.settings import Settings
from shared.storage import Storage
from shared.writer import ZMETADATA

log = logging.getLogger("ncrefs.status")


class QueueCount(BaseModel):
    name: str
    state: Literal["ok", "absent", "unreachable"]
    approximate_messages: int = 0  # the service's approximate count (includes messages being processed)
    error: str | None = None


class DatasetStatus(BaseModel):
    name: str
    prefix: str
    members: int
    updated_at: datetime | None = None
    last_error: dict | None = None  # shared.datasets.model.DatasetError: source, etag, code, message, hint, at


class StatusReport(BaseModel):
    """What ``ncrefs status --json`` prints and ``GET /api/status`` answers."""

    container: str
    prefix: str
    refs_container: str
    sources: int = 0  # NetCDF blobs under the prefix
    current: int = 0  # their own reference records their current ETag
    stale: int = 0  # they have a reference, for another ETag (the source changed since)
    missing: int = 0  # no reference
    failed: int = 0  # of the stale and missing: their error record is for their current ETag
    failed_by_code: dict[str, int] = Field(default_factory=dict)
    other_error_records: int = 0  # error records of earlier versions, or of sources no longer there
    queue: QueueCount
    poison_queue: QueueCount
    datasets: list[DatasetStatus] = Field(default_factory=list)
    elapsed_s: float = 0.0


def check_prefix(prefix: str | None) -> str:
    prefix = prefix or ""
    if not isinstance(prefix, str):
        raise InvalidRequest("The prefix must be text.")
    if len(prefix) > MAX_BLOB_NAME:
        raise InvalidRequest(f"The prefix is {len(prefix)} characters; blob names have at most {MAX_BLOB_NAME}.")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in prefix):
        raise InvalidRequest("The prefix contains control characters.", hint="Give the start of blob names, e.g. cmip6/tas/.")
    return prefix


def status(settings: Settings, storage: Storage, prefix: str | None = "") -> StatusReport:
    started = time.perf_counter()
    prefix = check_prefix(prefix)
    container = settings.source_container
    sources = {b.path: b.etag.strip('"') for b in storage.list_blobs(container, prefix) if is_netcdf_name(b.path)}
    refs, records = _refs_and_records(settings, storage, prefix)
    from shared.fanout import poison_queue_name

    report = StatusReport(container=container, prefix=prefix, refs_container=settings.refs_container,
                          sources=len(sources), queue=queue_count(settings, storage, settings.reference_queue),
                          poison_queue=queue_count(settings, storage, poison_queue_name(settings)))
    failed = Counter()
    seen_records = set()
    for path, etag in sources.items():
        source = BlobLocation(container, path)
        state = _reference_state(refs, source, etag, settings)
        setattr(report, state, getattr(report, state) + 1)
        record = records.get(str(source))
        if record is not None:
            seen_records.add(str(source))
            if state != "current" and record[0] == etag:
                failed[record[1]] += 1
            else:
                report.other_error_records += 1
    report.other_error_records += len(set(records) - seen_records)
    report.failed, report.failed_by_code = sum(failed.values()), dict(sorted(failed.items()))
    report.datasets = _datasets(settings, storage, container, prefix)
    report.elapsed_s = round(time.perf_counter() - started, 3)
    return report


def _refs_and_records(settings: Settings, storage: Storage, prefix: str) -> tuple[dict[str, dict], dict[str, tuple[str, str]]]:
    """Reference name -> metadata (the folder the prefix lies in) and source -> (ETag, error code) of the
    error records under the prefix."""
    folder = prefix[: prefix.rfind("/") + 1]
    errors = f"{ERRORS_PREFIX}/{prefix}"
    refs: dict[str, dict] = {}
    records: dict[str, tuple[str, str]] = {}
    listings = [folder] if not folder else [folder, errors]  # the whole container already holds _errors/
    try:
        for listing in listings:
            for blob in storage.list_blobs(settings.refs_container, listing, metadata=True):
                if blob.path.startswith(errors):
                    if "ncrefs_source" in blob.metadata:
                        records[unquote(blob.metadata["ncrefs_source"])] = (
                            blob.metadata.get("ncrefs_source_etag", ""), blob.metadata.get("ncrefs_error_code", "internal"))
                elif "ncrefs_source" in blob.metadata:
                    refs[blob.path] = blob.metadata
    except StorageMisconfigured:  # no refs container yet: nothing is referenced
        return {}, {}
    return refs, records


def _reference_state(refs: dict[str, dict], source: BlobLocation, etag: str, settings: Settings) -> str:
    try:
        names = [reference_location(source, fmt=fmt, refs_container=settings.refs_container,
                                    source_container=settings.source_container).path + suffix
                 for fmt, suffix in (("json", ""), ("parquet", "/" + ZMETADATA))]
    except NcrefsError:  # a name that cannot have a reference (the pipeline refuses it)
        return "missing"
    owned = [refs[n] for n in names if n in refs and unquote(refs[n].get("ncrefs_source", "")) == str(source)]
    if any(m.get("ncrefs_source_etag") == etag for m in owned):
        return "current"
    return "stale" if owned else "missing"


def queue_count(settings: Settings, storage: Storage, name: str) -> QueueCount:
    """A queue's approximate message count; ``absent`` when it does not exist, ``unreachable`` (and why)
    when the queue service cannot be asked. Never raises: the rest of the report stands."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    from shared.fanout import describe_queue_failure, queue_client

    try:
        client = queue_client(settings, storage, name, retries=1)
    except NcrefsError as error:
        return QueueCount(name=name, state="unreachable", error=error.message)
    try:
        count = client.get_queue_properties().approximate_message_count
    except ResourceNotFoundError:
        return QueueCount(name=name, state="absent")
    except AzureError as error:
        failure = describe_queue_failure(error, client, "counting messages")
        return QueueCount(name=name, state="unreachable", error=failure.message)
    return QueueCount(name=name, state="ok", approximate_messages=count or 0)


def _datasets(settings: Settings, storage: Storage, container: str, prefix: str) -> list[DatasetStatus]:
    """The datasets over files under the prefix (their prefix lies within it, or it within theirs)."""
    from shared.datasets import list_definitions
    from shared.datasets.service import _load_state

    try:
        definitions = list_definitions(settings, storage)
    except StorageMisconfigured:
        return []
    found = []
    for definition in definitions:
        overlaps = definition.prefix.startswith(prefix) or prefix.startswith(definition.prefix)
        if definition.container != container or not overlaps:
            continue
        state, _ = _load_state(settings, storage, definition.name)
        found.append(DatasetStatus(name=definition.name, prefix=definition.prefix, members=len(state.members),
                                   updated_at=state.updated_at,
                                   last_error=state.error.model_dump(mode="json") if state.error else None))
    return found


def describe(report: StatusReport) -> str:
    """The report for a person: a short aligned block."""
    width = 8
    codes = ", ".join(f"{code} {count}" for code, count in report.failed_by_code.items())
    rows = [
        ("sources", report.sources, f"NetCDF files under {report.container}/{report.prefix}"),
        ("current", report.current, f"reference in {report.refs_container} records the source's ETag"),
        ("stale", report.stale, "reference older than its source"),
        ("missing", report.missing, "no reference"),
        ("failed", report.failed, (codes + "; " if codes else "") + "at their current version (among stale and missing)"),
    ]
    lines = [f"status of {report.container}/{report.prefix} ({report.elapsed_s:.1f} s)"]
    lines += [f"  {label:<{width}} {count:>8,}  {note}" for label, count, note in rows]
    if report.other_error_records:
        lines.append(f"  {'':<{width}} {report.other_error_records:>8,}  more error records: earlier versions or sources gone")
    for label, queue in (("queue", report.queue), ("poison", report.poison_queue)):
        shown = {"ok": f"~{queue.approximate_messages:,} messages", "absent": "absent",
                 "unreachable": f"unreachable: {queue.error}"}[queue.state]
        lines.append(f"  {label:<{width}} {queue.name}: {shown}")
    if not report.datasets:
        lines.append(f"  {'datasets':<{width}} none over this prefix")
    for dataset in report.datasets:
        updated = dataset.updated_at.isoformat(timespec="seconds") if dataset.updated_at else "never"
        error = (f"last error [{dataset.last_error['code']}] {dataset.last_error['message']}" if dataset.last_error
                 else "no error")
        lines.append(f"  {'dataset':<{width}} {dataset.name} ({dataset.prefix}): {dataset.members} members, "
                     f"updated {updated}, {error}")
    return "\n".join(lines)
