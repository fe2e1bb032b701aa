"""Fan-out backfill: one queue message per file that needs work, referenced by a queue-triggered
function on as many Functions instances as the platform scales out to.

    ncrefs backfill --queue   enqueue(): the backfill plan (shared/backfill.plan), one message per file
    queue trigger             reference_queued(): the blob trigger's unit of work (shared/events)

A message names a blob and carries nothing else: ``{"container": ..., "name": ..., "etag": ...}``
(the ETag is the version that was planned; the function always references the current one). It is
base64 text (``TextBase64EncodePolicy``), as the Functions host expects (host.json ``messageEncoding``),
and at most ``MAX_MESSAGE_BYTES`` (48 KiB: 64 KiB, the service's limit, once base64-encoded).

The queue lives in the data account. Its endpoint comes from the same connection as the blobs:
a connection string's ``QueueEndpoint`` (or the one the SDK derives from ``AccountName`` and
``EndpointSuffix``), else the blob endpoint's (``<account>.blob.`` -> ``<account>.queue.``; on a
loopback Azurite, path-style, the next port, as Azurite lays them out: 10000 -> 10001); with an
identity, ``DATA_STORAGE__queueServiceUri`` (the Functions convention), else the same derivation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from shared.backfill import Candidate, plan, reference_is_current
from shared.errors import AccessDenied, InvalidRequest, NcrefsError, StorageUnavailable
from shared.events import BlobOutcome, reference_created_blob
from shared.paths import BlobLocation, validate_blob_name
from shared.settings import Settings
from shared.storage import Storage

log = logging.getLogger("ncrefs.fanout")

# host.json extensions.queues.maxDequeueCount (tests/test_queue.py keeps the two equal): the attempt
# after which the host moves a message to the poison queue.
MAX_DEQUEUE_COUNT = 5
POISON_SUFFIX = "-poison"
# Text of one message before base64 (4/3 of it must fit the service's 64 KiB).
MAX_MESSAGE_BYTES = 48 * 1024
# Messages sent at once by `backfill --queue` (one request each: the service has no batch send).
SEND_THREADS = 32
_MESSAGE_KEYS = {"container", "name", "etag"}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def poison_queue_name(settings: Settings) -> str:
    return settings.reference_queue + POISON_SUFFIX


# -- the queue client ------------------------------------------------------------------------------
def queue_endpoint_for(blob_url: str) -> str | None:
    """The queue endpoint of the account whose blob endpoint is ``blob_url``, or None when the URL does not say."""
    parts = urlsplit(blob_url.split("?", 1)[0])
    host = parts.hostname or ""
    labels = host.split(".")
    for service in ("blob", "dfs"):
        if service in labels[1:]:
            labels[labels.index(service, 1)] = "queue"
            netloc = ".".join(labels) + (f":{parts.port}" if parts.port else "")
            return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    if host in _LOOPBACK and parts.port:  # Azurite, path-style: blob, queue and table on consecutive ports
        return urlunsplit((parts.scheme, f"{host}:{parts.port + 1}", parts.path.rstrip("/"), "", ""))
    return None


def _connection_parts(text: str) -> dict[str, str]:
    parts = {}
    for item in text.split(";"):
        if "=" in item:
            key, value = item.split("=", 1)
            parts[key.strip()] = value.strip()
    return parts


def queue_client(settings: Settings, storage: Storage, name: str | None = None, *, retries: int = 3,
                 connections: int | None = None):
    """A client for ``name`` (default: the reference queue) in the data account, sending base64 text;
    ``retries``: how often a request is tried again before its error is reported; ``connections``: HTTP
    connections kept for threads sharing the client (default: the SDK's 10)."""
    from azure.storage.queue import ExponentialRetry, QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    name = name or settings.reference_queue
    options = {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy(),
               "retry_policy": ExponentialRetry(initial_backoff=0.2, increment_base=1.5, retry_total=retries),
               "connection_timeout": 10, "read_timeout": 30}
    if connections:
        import requests
        from azure.core.pipeline.transport import RequestsTransport

        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=connections, pool_maxsize=connections)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        options["transport"] = RequestsTransport(session=session, session_owner=True)
    connection_string = storage._connection_string  # the one Storage uses (--connection-string or the settings')
    if connection_string:
        parts = _connection_parts(connection_string)
        if "QueueEndpoint" not in parts and "UseDevelopmentStorage" not in parts and "BlobEndpoint" in parts:
            endpoint = queue_endpoint_for(parts["BlobEndpoint"])
            if endpoint is None:
                raise InvalidRequest(
                    "The storage connection string names a BlobEndpoint but no QueueEndpoint, and the queue endpoint "
                    "cannot be told from it.",
                    hint="Add QueueEndpoint=<the account's queue service URL> to the connection string.")
            connection_string = connection_string.rstrip(";") + f";QueueEndpoint={endpoint}"
        try:
            return QueueClient.from_connection_string(connection_string, name, **options)
        except ValueError as error:
            raise InvalidRequest(f"The storage connection string is malformed: {error}",
                                 hint="Set DATA_STORAGE to a full connection string, or UseDevelopmentStorage=true "
                                      "for Azurite.") from error
    endpoint = settings.queue_service_uri or (queue_endpoint_for(settings.blob_service_uri)
                                              if settings.blob_service_uri else None)
    if not endpoint:
        raise InvalidRequest("No queue service is configured for the data account.",
                             hint="Set DATA_STORAGE__queueServiceUri (https://<account>.queue.core.windows.net), "
                                  "or give a connection string.")
    if urlsplit(endpoint).scheme.lower() != "https":
        raise InvalidRequest(f"Signing in to storage needs an https queue endpoint, not {endpoint!r}.",
                             hint="Give https://<account>.queue.core.windows.net in DATA_STORAGE__queueServiceUri.")
    return QueueClient(endpoint, name, credential=storage._credential, **options)


def describe_queue_failure(error: Exception, client, what: str, *, write: bool = False) -> NcrefsError:
    """A queue SDK exception as the error ncrefs reports (what is wrong and what to do)."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    where = f"queue {client.queue_name!r} at {client.url.split('?', 1)[0].rsplit('/', 1)[0]}"
    status = getattr(error, "status_code", None)
    if isinstance(error, ClientAuthenticationError) or status in (401, 403):
        role = "Storage Queue Data Contributor" if write else "Storage Queue Data Reader"
        return AccessDenied(f"Storage refused access while {what} ({where}).",
                            hint=f"Grant your identity {role} on the queue (or fix the account key), then retry.")
    if isinstance(error, HttpResponseError) and status is not None:
        return StorageUnavailable(f"The queue service answered {status} while {what} ({where}): "
                                  f"{str(error).splitlines()[0][:300]}")
    return StorageUnavailable(
        f"The queue service did not answer while {what} ({where}): {type(error).__name__}.",
        hint="Retry later. If the queue service is elsewhere, say where: QueueEndpoint= in the connection string, "
             "or DATA_STORAGE__queueServiceUri (for Azurite start azurite-queue too; scripts/azurite.py).")


def ensure_queue(client) -> None:
    """Create the queue if it is missing (the Bicep deployment creates it in Azure)."""
    from azure.core.exceptions import AzureError, ResourceExistsError

    try:
        client.create_queue()
    except ResourceExistsError:
        pass
    except AzureError as error:
        if getattr(error, "status_code", None) == 403:
            return  # may send without the right to create: sending says what is wrong, if anything
        raise describe_queue_failure(error, client, "creating the queue", write=True) from error


# -- sending: ncrefs backfill --queue ---------------------------------------------------------------
class EnqueueSummary(BaseModel):
    """What ``ncrefs backfill --queue`` did (``--json`` prints it)."""

    container: str
    prefix: str
    queue: str
    candidates: int = 0
    queued: int = 0
    skipped: int = 0  # current: their reference records their ETag
    skipped_failed: int = 0  # their error record says they failed at this ETag
    elapsed_s: float = 0.0


def message_text(source: BlobLocation, etag: str) -> str:
    text = json.dumps({"container": source.container, "name": source.path, "etag": etag}, ensure_ascii=False)
    if len(text.encode()) > MAX_MESSAGE_BYTES:  # a blob name is at most 1,024 characters: cannot happen
        raise InvalidRequest(f"The queue message for {source} would be {len(text.encode()):,} bytes; at most "
                             f"{MAX_MESSAGE_BYTES:,} fit a queue message.")
    return text


def enqueue(settings: Settings, *, connection_string: str | None = None, container: str | None = None,
            prefix: str = "", force: bool = False, retry_failed: bool = False,
            say: Callable[[str], None] | None = None) -> EnqueueSummary:
    """Put one message per file that needs work (the backfill plan's rules) on the reference queue."""
    started = time.perf_counter()
    container = container or settings.source_container
    if container != settings.source_container:
        raise InvalidRequest(
            f"The queue function references only the source container ({settings.source_container!r}), "
            f"not {container!r}.",
            hint=f"Run `ncrefs backfill --container {container}` without --queue (here, in parallel), or point "
                 "SOURCE_CONTAINER at that container.")
    storage = Storage(settings, connection_string)
    storage.ensure_container(settings.refs_container)
    planned = plan(storage, settings, container, prefix, force=force, retry_failed=retry_failed)
    summary = EnqueueSummary(container=container, prefix=prefix, queue=settings.reference_queue,
                             candidates=len(planned.todo) + planned.current + planned.failed_before,
                             skipped=planned.current, skipped_failed=planned.failed_before)
    if planned.todo:
        client = queue_client(settings, storage, connections=SEND_THREADS)
        ensure_queue(client)
        texts = [message_text(c.source, c.etag) for c in planned.todo]
        if say:
            say(f"backfill {container}/{prefix}: queueing {len(texts)} files on {settings.reference_queue} "
                f"({planned.current} current, {planned.failed_before} failed before)...")
        summary.queued = _send_all(client, texts)
    summary.elapsed_s = round(time.perf_counter() - started, 3)
    return summary


def _send_all(client, texts: list[str]) -> int:
    from azure.core.exceptions import AzureError

    failure: list[Exception] = []

    def send(text: str) -> bool:
        if failure:  # one failed: stop sending (the rest would most likely fail the same way)
            return False
        try:
            client.send_message(text)
            return True
        except AzureError as error:
            failure.append(error)
            return False

    with ThreadPoolExecutor(min(SEND_THREADS, len(texts))) as pool:
        sent = sum(pool.map(send, texts))
    if failure:
        error = describe_queue_failure(failure[0], client, "sending messages", write=True)
        error.message = f"{error.message} {sent} of {len(texts)} messages were queued before."
        error.hint = (f"{error.hint} Running it again queues every file still to do; a message for a file "
                      "already done does nothing.")
        raise error
    return sent


# -- receiving: the queue trigger ---------------------------------------------------------------------
class BadMessage(ValueError):
    """A message the function can never act on: dropped (logged), never retried."""


class QueuedFile(BaseModel):
    container: str
    name: str
    etag: str | None = None


class QueueOutcome(BaseModel):
    """What one message did (the queue trigger logs it)."""

    action: Literal["referenced", "current", "gone", "dropped", "skipped", "recorded_error", "unrecorded_error"]
    source: str | None = None
    reason: str | None = None
    blob: BlobOutcome | None = None


def parse_message(body: bytes | str, settings: Settings) -> QueuedFile:
    """The file a message names; raises :class:`BadMessage` saying what is wrong with it."""
    raw = body.encode() if isinstance(body, str) else bytes(body or b"")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"it is {len(raw):,} bytes; a reference request is a blob name, at most {MAX_MESSAGE_BYTES:,}")
    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise BadMessage("it is not UTF-8 text") from None
    except RecursionError:
        raise BadMessage("its JSON is nested too deeply") from None
    except ValueError as error:
        raise BadMessage(f"it is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise BadMessage('it is not a JSON object {"container": ..., "name": ..., "etag": ...}')
    unknown = sorted(set(document) - _MESSAGE_KEYS)
    if unknown:
        raise BadMessage(f"unknown field(s) {', '.join(map(repr, unknown))}; a message has container, name and etag")
    container, name, etag = document.get("container"), document.get("name"), document.get("etag")
    if not isinstance(container, str) or not isinstance(name, str):
        raise BadMessage("container and name must both be given, as strings")
    if etag is not None and not isinstance(etag, str):
        raise BadMessage("etag must be a string")
    if container != settings.source_container:
        raise BadMessage(f"container {container[:100]!r} is not the source container {settings.source_container!r}; "
                         "the queue function references only that one")
    try:
        validate_blob_name(name, what="queued blob name")
    except NcrefsError as error:
        raise BadMessage(error.message) from None
    return QueuedFile(container=container, name=name, etag=etag)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    document: dict = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"the key {key!r} appears twice")
        document[key] = value
    return document


def reference_queued(body: bytes | str, dequeue_count: int | None, settings: Settings, storage: Storage, *,
                     max_dequeue_count: int = MAX_DEQUEUE_COUNT) -> QueueOutcome:
    """Handle one message of the reference queue: the blob trigger's unit of work for the file it names.

    - A malformed message (not JSON, another container, a name with ``..`` ...) is logged and dropped.
    - A blob that no longer exists, or whose reference already records its current ETag, is left alone.
    - Otherwise :func:`shared.events.reference_created_blob`: the reference, the datasets holding the
      file, an error record for a permanent failure.
    - A retryable failure raises, so the host tries again. At the last attempt (``dequeue_count`` >=
      ``max_dequeue_count``) it first leaves an error record (the retryable code, and a message saying it
      was given up), so a message the host moves to the poison queue is not silently lost.
    """
    try:
        item = parse_message(body, settings)
    except BadMessage as problem:
        preview = (body[:200] if isinstance(body, str) else bytes(body or b"")[:200].decode("utf-8", "replace"))
        log.error("dropping a message of queue %s: %s (it is not retried). It began: %r",
                  settings.reference_queue, problem, preview)
        return QueueOutcome(action="dropped", reason=str(problem))
    source = BlobLocation(item.container, item.name)
    attempt = dequeue_count or 1
    etag = item.etag
    try:
        head = _look(storage, source)
        if head is False:
            log.info("%s no longer exists: nothing to do", source)
            return QueueOutcome(action="gone", source=str(source), reason="the blob no longer exists")
        if head is not None:
            etag = head.etag.strip('"')
            if _reference_current(storage, settings, source, etag):
                log.info("%s: its reference is current (ETag %s): nothing to do", source, etag)
                return QueueOutcome(action="current", source=str(source), reason=f"its reference records ETag {etag}")
        outcome = reference_created_blob(source.container, source.path, settings, storage)
    except Exception as error:
        retryable = not isinstance(error, NcrefsError) or error.retryable
        if retryable and attempt >= max_dequeue_count:
            _give_up(settings, storage, source, error, attempt, etag)
        raise
    return QueueOutcome(action=outcome.action, source=str(source), blob=outcome,
                        reason=outcome.result.error.code if outcome.result and outcome.result.error else None)


def _look(storage: Storage, source: BlobLocation):
    """The source's ETag and metadata; False when it does not exist; None when the look failed for good
    (e.g. access denied): the unit of work then meets the same failure and reports it as it does."""
    try:
        head = storage.head(source)
    except NcrefsError as error:
        if error.retryable:
            raise
        return None
    return False if head is None else head


def _reference_current(storage: Storage, settings: Settings, source: BlobLocation, etag: str) -> bool:
    """Whether the source's own mapped reference (JSON or Parquet) records this ETag: one listing of the
    reference's name in the refs container (both formats start with it), not one look per format."""
    from shared.paths import reference_location

    try:
        json_name = reference_location(source, fmt="json", refs_container=settings.refs_container,
                                       source_container=settings.source_container).path
    except NcrefsError:
        return False  # a name that cannot have a reference: the unit of work says why
    stem = json_name[: -len(".json")]
    try:
        found = {b.path: b.metadata for b in storage.list_blobs(settings.refs_container, stem + ".", metadata=True)
                 if b.path in (json_name, f"{stem}.parquet/.zmetadata")}
    except NcrefsError as error:
        if error.retryable:
            raise
        return False
    return reference_is_current(found, Candidate(source, etag), settings)


def _give_up(settings: Settings, storage: Storage, source: BlobLocation, error: Exception, attempts: int,
             etag: str | None) -> None:
    """The last attempt failed with a retryable error: leave an error record (never raises)."""
    from shared.pipeline import error_result
    from shared.records import record_failure

    failed = error_result(str(source), error)
    failed.error.message = (f"Given up after {attempts} attempts (the message moves to queue "
                            f"{poison_queue_name(settings)}): {failed.error.message}")
    failed.error.hint = (f"{failed.error.hint} Once the cause is fixed, run `ncrefs backfill --queue --retry-failed` "
                         "(or `ncrefs backfill --retry-failed`) to try it again.")
    try:
        record_failure(storage, settings, source, failed, etag)
        log.error("gave up on %s after %d attempts: [%s] %s", source, attempts, failed.error.code, failed.error.message)
    except Exception as recording:  # noqa: BLE001 - storage may be what failed; the host still moves the message
        log.error("gave up on %s after %d attempts ([%s]); its error record could not be written either: %s",
                  source, attempts, failed.error.code, recording)
