"""Blob trigger: every blob created in the source container gets its reference."""

import logging
import os

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

bp = func.Blueprint()

# EventGrid in Azure (Flex Consumption supports only that); LogsAndContainerScan (polling)
# for Core Tools on Azurite, as local.settings.sample.json sets it.
_SOURCE = os.environ.get("BLOB_TRIGGER_SOURCE", func.BlobSource.EVENT_GRID.value)
try:
    TRIGGER_SOURCE = func.BlobSource(_SOURCE)
except ValueError:
    raise ValueError(f"BLOB_TRIGGER_SOURCE={_SOURCE!r}: use {func.BlobSource.EVENT_GRID.value} or "
                     f"{func.BlobSource.LOGS_AND_CONTAINER_SCAN.value}") from None


@bp.function_name("reference_from_blob")
@bp.blob_trigger(arg_name="client", path="%SOURCE_CONTAINER%/{name}", connection="DATA_STORAGE", source=TRIGGER_SOURCE)
def reference_from_blob(client: blob.BlobClient) -> None:
    # The SDK-type BlobClient only names the blob: the host never downloads it, and the core
    # reads the header ranges it needs. A retryable failure raises so the host retries.
    from shared.events import reference_created_blob  # the core loads at first use, not at the host's start
    from shared.settings import get_settings
    from shared.storage import shared_storage

    settings = get_settings()
    outcome = reference_created_blob(client.container_name, client.blob_name, settings, shared_storage(settings))
    logging.info("%s: %s", outcome.source, outcome.action)
