"""A blob was created in the source container: write its reference, or record why not.

- A name that is not a NetCDF candidate is skipped (logged, not an error).
- A permanent failure (not NetCDF, not virtualizable, corrupt, ...) writes an error record at
  ``<refs>/_errors/<path>.json`` and returns normally, so the host does not retry a file that
  can never succeed.
- A retryable failure (storage unavailable, source changed) raises, so the host retries and
  finally moves the event to the poison queue.
- A success updates every dataset whose prefix holds the file (``shared/datasets``).
- A success (here or through the API or CLI) removes a stale error record. Running twice for the same blob, even at once,
  leaves one valid reference: each write is an atomic overwrite of the same content.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, Field

from shared.datasets import DatasetChange, update_for_source
from shared.errors import NcrefsError
from shared.models import ReferenceRequest, ReferenceResult
from shared.paths import BlobLocation, is_netcdf_name
from shared.pipeline import AccessPolicy, error_result, generate_reference
from shared.records import record_failure
from shared.settings import Settings
from shared.storage import Storage

log = logging.getLogger("ncrefs.events")


class BlobOutcome(BaseModel):
    action: Literal["referenced", "skipped", "recorded_error", "unrecorded_error"]
    source: str
    result: ReferenceResult | None = None
    error_record: str | None = None
    datasets: list[DatasetChange] = Field(default_factory=list)


def reference_created_blob(container: str, name: str, settings: Settings, storage: Storage) -> BlobOutcome:
    """Handle one BlobCreated event; raises :class:`NcrefsError` only when retrying can help."""
    source = BlobLocation(container, name)
    if not is_netcdf_name(name):
        log.info("skipping %s: not a NetCDF name", source)
        return BlobOutcome(action="skipped", source=str(source))
    try:
        result = generate_reference(ReferenceRequest(source=str(source)), settings, storage, AccessPolicy.configured(settings))
    except NcrefsError as error:
        if error.retryable:
            log.warning("retryable failure for %s: [%s] %s", source, error.code, error.message)
            raise
        failed = error_result(str(source), error)
    except Exception as error:  # noqa: BLE001 - a bug: record it with a correlation id, don't retry
        failed = error_result(str(source), error)
    else:  # the pipeline removed any stale error record
        log.info("referenced %s -> %s (%d bytes read)", source, result.output, result.bytes_read)
        # VERIFY_AFTER_WRITE: a reference that does not read back the original is removed and recorded below.
        wrong = _verify_after_write(settings, storage, source, result) if settings.verify_after_write else None
        if wrong is None:
            # Then the datasets that hold it: a file that does not fit one is recorded there; a retryable
            # failure raises, and the retry finds the reference current and the dataset update still due.
            changes = update_for_source(settings, storage, source, result)
            return BlobOutcome(action="referenced", source=str(source), result=result, datasets=changes)
        failed = error_result(str(source), wrong)

    log.error("cannot reference %s: [%s] %s", source, failed.error.code, failed.error.message)
    try:
        record = record_failure(storage, settings, source, failed)
    except NcrefsError as error:
        if error.retryable:
            raise
        # E.g. no right to write the refs container either: retrying cannot help, the log says why.
        log.error("could not record the failure of %s: [%s] %s", source, error.code, error.message)
        return BlobOutcome(action="unrecorded_error", source=str(source), result=failed)
    return BlobOutcome(action="recorded_error", source=str(source), result=failed, error_record=str(record))


def _verify_after_write(settings: Settings, storage: Storage, source: BlobLocation,
                        result: ReferenceResult) -> NcrefsError | None:
    """The first chunk of each variable read through the new reference and from the original (``shared/verify.py``);
    on a mismatch the reference (and its STAC item) is removed and the error to record returned."""
    from shared.verify import verify_after_write

    return verify_after_write(settings, storage, source, result)
