"""Error records: why a source has no reference, kept at ``<refs>/_errors/<source path>.json``.

The blob trigger and backfill write one for every permanent failure, with the source's
ETag in its metadata, so backfill does not parse a file again that failed at the same
version (unless asked), and a later success removes it (``shared/pipeline.py``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import quote, unquote

from shared.models import ReferenceResult
from shared.paths import ERRORS_PREFIX, BlobLocation, error_record_location
from shared.settings import Settings
from shared.storage import Storage


def record_failure(storage: Storage, settings: Settings, source: BlobLocation, failed: ReferenceResult,
                   etag: str | None = None) -> BlobLocation:
    """Write the error record of ``source``; ``etag``: the version that failed, if the result does not say."""
    record = error_record_location(source, refs_container=settings.refs_container, source_container=settings.source_container)
    etag = (failed.source_etag or etag or "").strip('"')
    document = {"source": str(source), "recorded_at": datetime.now(timezone.utc).isoformat(),
                **failed.model_dump(mode="json", exclude_none=True)}
    metadata = {"ncrefs_source": quote(str(source), safe="/:@"), "ncrefs_source_etag": etag,
                "ncrefs_error_code": failed.error.code if failed.error else "internal"}
    storage.put(record, json.dumps(document, indent=2).encode(), content_type="application/json", metadata=metadata)
    return record


def recorded_failures(storage: Storage, settings: Settings, container: str, prefix: str) -> dict[str, str]:
    """Source -> the ETag its error record was written for, for the sources under a prefix."""
    relative = prefix if container == settings.source_container else f"{container}/{prefix}"
    failures = {}
    for blob in storage.list_blobs(settings.refs_container, f"{ERRORS_PREFIX}/{relative}", metadata=True):
        if "ncrefs_source" in blob.metadata:
            failures[unquote(blob.metadata["ncrefs_source"])] = blob.metadata.get("ncrefs_source_etag", "")
    return failures
