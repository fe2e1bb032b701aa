"""Storage I/O: blob properties, ranged reads pinned to one blob version, atomic reference writes.

Ranged reads of sources go through obstore (what virtualizarr's parsers are built on); the
rest (properties, uploads with metadata, listings) through azure-storage-blob. Both come
from the same settings: a connection string (Azurite, or an account key), or a blob
service URI with a managed identity. Local files are served too, for the CLI.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from urllib.parse import urlsplit

import obstore
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContentSettings, ExponentialRetry
from obstore.exceptions import PermissionDeniedError, PreconditionError, UnauthenticatedError
from obstore.store import AzureStore

from shared.errors import (
    AccessDenied,
    InvalidRequest,
    NcrefsError,
    SourceChanged,
    SourceNotAllowed,
    SourceNotFound,
    StorageMisconfigured,
    StorageUnavailable,
)
from shared.paths import BlobLocation, LocalLocation, Location, account_of_host, blob_endpoint
from shared.reader import FIRST_READ, RangeReader
from shared.settings import Settings

# Fail over to "storage unavailable" (retryable) within seconds, not minutes: the caller
# (the Functions host, the backfill loop) owns the longer retry policy.
_OBSTORE_RETRY = {"max_retries": 3, "retry_timeout": timedelta(seconds=15),
                  "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2), "base": 2}}
_SDK_RETRY = {"retry_policy": ExponentialRetry(initial_backoff=0.2, increment_base=1.5, retry_total=3),
              "connection_timeout": 10, "read_timeout": 60}


@dataclass(frozen=True)
class SourceInfo:
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class ListedBlob:
    path: str
    size: int
    etag: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class BlobHead:
    etag: str
    metadata: dict[str, str]


class WriteRaced(Exception):
    """A conditional write lost: someone wrote the blob between our look and our write."""


# The role each kind of operation needs (for access_denied messages).
_READ_ROLE = "Storage Blob Data Reader"
_WRITE_ROLE = "Storage Blob Data Contributor"


def _unavailable(error: Exception, what: str) -> StorageUnavailable:
    text = str(error)
    certificate = next((line.strip() for line in text.splitlines() if "certificate" in line.lower()), None)
    if certificate:  # the cause is on a later line of obstore's message; say it
        return StorageUnavailable(f"Storage's TLS certificate was not trusted while {what}: {certificate[:300]}",
                                  hint="Trust the endpoint's CA (SSL_CERT_FILE for ranged reads, REQUESTS_CA_BUNDLE for the "
                                       "rest) or fix the endpoint's certificate, then retry.")
    return StorageUnavailable(f"Storage did not answer while {what}: {type(error).__name__}: {text.splitlines()[0][:300] if text else ''}")


def _is_denied(error: Exception) -> bool:
    if isinstance(error, (ClientAuthenticationError, PermissionDeniedError, UnauthenticatedError)):
        return True
    return isinstance(error, HttpResponseError) and error.status_code in (401, 403)


def _no_sign_in(error: Exception) -> bool:
    """The credential found no sign-in, so storage was never asked (the SDK: no HTTP response; obstore: its
    credential provider failed)."""
    if isinstance(error, ClientAuthenticationError):
        return getattr(error, "response", None) is None
    return isinstance(error, UnauthenticatedError) and "credential provider" in str(error)


def _missing_refs_container(container: str) -> StorageMisconfigured:
    return StorageMisconfigured(f"There is no container {container!r} to write references into.")


def _deleted_while_read(location: BlobLocation) -> SourceNotFound:
    return SourceNotFound(f"{location} was deleted while it was being read; nothing was written.",
                          hint="Upload the file again if it should have a reference.")


def _not_found(location: BlobLocation) -> SourceNotFound:
    return SourceNotFound(f"There is no blob {location.path!r} in container {location.container!r}.")


class Storage:
    """Talks to one storage account (and the local file system)."""

    def __init__(self, settings: Settings, connection_string: str | None = None):
        self.settings = settings
        self._connection_string = connection_string or settings.connection_string
        self._stores: dict[str, AzureStore] = {}

    # -- clients ---------------------------------------------------------------------------
    @cached_property
    def _credential(self):
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

        if (self.settings.credential or "").lower() == "managedidentity":
            return ManagedIdentityCredential(client_id=self.settings.client_id)
        return DefaultAzureCredential(managed_identity_client_id=self.settings.client_id)

    @cached_property
    def service(self) -> BlobServiceClient:
        if self._connection_string:
            try:
                return BlobServiceClient.from_connection_string(self._connection_string, **_SDK_RETRY)
            except ValueError as error:
                raise InvalidRequest(f"The storage connection string is malformed: {error}",
                                     hint="Set DATA_STORAGE to a full connection string, or UseDevelopmentStorage=true for Azurite.") from error
        if self.settings.blob_service_uri:
            if urlsplit(self.settings.blob_service_uri).scheme.lower() != "https":
                raise InvalidRequest(
                    f"Signing in to storage needs an https blob endpoint, not {self.settings.blob_service_uri!r}.",
                    hint="Give https://<account>.blob.core.windows.net (or your cloud's endpoint); for Azurite use a "
                         "connection string (UseDevelopmentStorage=true).")
            return BlobServiceClient(self.settings.blob_service_uri, credential=self._credential, **_SDK_RETRY)
        raise InvalidRequest(
            "No storage connection is configured.",
            hint="Set DATA_STORAGE (a connection string) or DATA_STORAGE__blobServiceUri, or pass --connection-string.",
        )

    @property
    def account_name(self) -> str:
        # The SDK knows *.blob.core.* hosts and path-style URLs, not DNS-zone ones (acct.z12.blob.storage.azure.net).
        return self.service.account_name or account_of_host(urlsplit(self.service.url).hostname or "") or ""

    @property
    def blob_url(self) -> str:
        """The configured blob service URL, without a SAS token: what https chunk URLs are built under."""
        return self.service.url.split("?", 1)[0].rstrip("/")

    def identity(self) -> str:
        """Who storage sees, for messages (never the secret itself)."""
        if self._connection_string:
            return f"the account key of storage account {self.account_name!r} (connection string)"
        if (self.settings.credential or "").lower() == "managedidentity":
            return f"managed identity {self.settings.client_id or '(system-assigned)'}"
        return "the default Azure credential (az login, environment or managed identity)"

    def _failure(self, error: Exception, what: str, container: str, write: bool = False) -> NcrefsError:
        """A storage exception as the error ncrefs reports."""
        if _no_sign_in(error):
            return AccessDenied(
                f"No Azure sign-in could get a token for storage while {what} ({self.identity()}).",
                hint="Run `az login` (or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET, or run where a "
                     "managed identity is assigned), or give --connection-string / DATA_STORAGE instead.",
            )
        if _is_denied(error):
            role = _WRITE_ROLE if write else _READ_ROLE
            return AccessDenied(
                f"Storage refused access while {what}: {self.identity()} may not {'write' if write else 'read'} "
                f"container {container!r}.",
                hint=f"Grant that identity {role} on container {container!r} (or fix the account key), then retry.",
            )
        return _unavailable(error, what)

    def object_store(self, container: str) -> AzureStore:
        """An obstore store for one container (what virtualizarr reads through)."""
        if container not in self._stores:
            url = urlsplit(self.service.url)  # a SAS connection string puts its token in the query
            endpoint = f"{url.scheme}://{url.netloc}{url.path}".rstrip("/")
            options = {"allow_http": True} if url.scheme == "http" else None
            key = getattr(self.service.credential, "account_key", None)
            if key:
                auth = {"account_key": key}
            elif url.query:
                auth = {"sas_key": url.query}
            else:
                from obstore.auth.azure import AzureCredentialProvider

                auth = {"credential_provider": AzureCredentialProvider(self._credential)}
            self._stores[container] = AzureStore(
                container, account_name=self.account_name, endpoint=endpoint,
                client_options=options, retry_config=_OBSTORE_RETRY, **auth,
            )
        return self._stores[container]

    def fsspec_options(self) -> dict:
        """adlfs options for the same connection (for readers built on fsspec)."""
        if self._connection_string:
            return {"connection_string": self._connection_string}
        from azure.identity.aio import DefaultAzureCredential

        host = urlsplit(self.blob_url).netloc
        return {"account_name": self.account_name, "account_host": host,
                "credential": DefaultAzureCredential(managed_identity_client_id=self.settings.client_id)}

    def check_account(self, location: Location) -> None:
        """Refuse a blob URL that names another endpoint or storage account than the one configured.

        A URL with an endpoint (``https://<account>.blob…``, path-style ``http://127.0.0.1:<port>/<account>/…``)
        must name the configured blob endpoint: same scheme, host (any case; ``.dfs.`` is the account's
        ``.blob.``), port (80/443 when left out) and, path-style, account. ``abfs://container@<account>.dfs…``
        names only an account, which must be the configured one.
        """
        if not isinstance(location, BlobLocation):
            return
        if location.endpoint is not None and location.endpoint != blob_endpoint(self.service.url):
            configured = self.service.url.split("?", 1)[0]  # never show a SAS token from the connection string
            raise SourceNotAllowed(
                f"The URL names the blob endpoint {location.endpoint}, not the configured one ({configured}).",
                hint=f"Give the blob as abfs://{location.container}/<path>, {location.container}/<path>, "
                     f"or a URL under {configured}.",
            )
        if location.account and location.account != self.account_name:
            raise SourceNotAllowed(
                f"{location.account!r} is not the configured storage account ({self.account_name!r}).",
                hint="Give a blob in the configured account, or configure the connection for that account.",
            )

    # -- sources ---------------------------------------------------------------------------
    def source_info(self, location: Location) -> SourceInfo:
        if isinstance(location, LocalLocation):
            try:
                stat = location.path.stat()
            except FileNotFoundError as error:
                raise SourceNotFound(f"There is no local file {location}.",
                                     hint="Check the path; for a blob give container/path or abfs://container/path.") from error
            if not location.path.is_file():
                raise InvalidRequest(f"{location} is not a file.")
            return SourceInfo(stat.st_size, f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
                              datetime.fromtimestamp(stat.st_mtime, timezone.utc))
        try:
            props = self.service.get_blob_client(location.container, location.path).get_blob_properties()
        except ResourceNotFoundError as error:
            raise _not_found(location) from error
        except (HttpResponseError, AzureError) as error:
            raise self._failure(error, f"reading the properties of {location}", location.container) from error
        return SourceInfo(props.size, props.etag, props.last_modified)

    def head(self, location: BlobLocation) -> BlobHead | None:
        """A blob's ETag and metadata, or None when it does not exist."""
        try:
            props = self.service.get_blob_client(location.container, location.path).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except (HttpResponseError, AzureError) as error:
            raise self._failure(error, f"reading the properties of {location}", location.container) from error
        return BlobHead(props.etag, dict(props.metadata or {}))

    def open_source(self, location: Location, block_size: int) -> RangeReader:
        """A reader over one version of the source, and that version's properties (``reader.info``).

        The first GET fetches the file's first ``FIRST_READ`` bytes and, with them, its size
        and ETag (no separate HEAD). Every later GET carries ``If-Match`` with that ETag, so a
        source overwritten while it is read fails the read instead of mixing two versions.
        """
        if isinstance(location, LocalLocation):
            info = self.source_info(location)
            handle = location.path.open("rb")

            def read_local(start: int, end: int) -> bytes:
                return os.pread(handle.fileno(), end - start, start)

            reader = RangeReader(read_local, info.size, block_size=block_size, name=str(location))
            reader.close = handle.close  # type: ignore[method-assign]
            reader.info = info
            return reader

        store = self.object_store(location.container)
        try:
            first = obstore.get(store, location.path, options={"range": (0, FIRST_READ)})
            head = first.bytes().to_bytes()
            meta = first.meta
            info = SourceInfo(meta["size"], meta["e_tag"] or "", meta["last_modified"])
        except FileNotFoundError as error:
            raise _not_found(location) from error
        except Exception as error:  # obstore: GenericError; 416 for an empty blob
            # Match the status line, not a bare "416": error texts carry ports, request ids and timings.
            if "416 Range Not Satisfiable" not in str(error):
                raise self._failure(error, f"reading {location}", location.container) from error
            head, info = b"", self.source_info(location)

        def fetch(start: int, end: int) -> bytes:
            try:
                result = obstore.get(store, location.path, options={"range": (start, end), "if_match": info.etag})
                return result.bytes().to_bytes()
            except PreconditionError as error:  # another version, or none at all
                try:
                    self.source_info(location)
                except SourceNotFound:
                    raise _deleted_while_read(location) from error
                raise SourceChanged(f"{location} was overwritten while it was being read; nothing was written.") from error
            except FileNotFoundError as error:
                raise _deleted_while_read(location) from error
            except Exception as error:  # obstore raises GenericError for connection failures
                raise self._failure(error, f"reading {location}", location.container) from error

        reader = RangeReader(fetch, info.size, block_size=block_size, name=str(location))
        reader.add_fetched(0, head)
        reader.info = info
        return reader

    def list_blobs(self, container: str, prefix: str = "", *, metadata: bool = False) -> Iterator[ListedBlob]:
        try:
            client = self.service.get_container_client(container)
            for blob in client.list_blobs(name_starts_with=prefix or None, include=["metadata"] if metadata else None):
                yield ListedBlob(blob.name, blob.size, blob.etag, dict(blob.metadata or {}))
        except ResourceNotFoundError as error:
            if container == self.settings.refs_container:
                raise _missing_refs_container(container) from error
            raise SourceNotFound(f"There is no container {container!r}.") from error
        except (HttpResponseError, AzureError) as error:
            raise self._failure(error, f"listing {container}/{prefix}", container) from error

    def list_folders(self, container: str, prefix: str) -> list[str]:
        """The names of the folders directly under ``prefix`` (one listing page per 5,000, not every blob)."""
        try:
            client = self.service.get_container_client(container)
            return [item.name[len(prefix):].rstrip("/") for item in client.walk_blobs(name_starts_with=prefix, delimiter="/")
                    if item.name.endswith("/")]
        except ResourceNotFoundError as error:
            raise _missing_refs_container(container) from error
        except (HttpResponseError, AzureError) as error:
            raise self._failure(error, f"listing {container}/{prefix}", container) from error

    # -- writes ----------------------------------------------------------------------------
    def ensure_container(self, container: str) -> None:
        """Create a container if it is missing; an existing one is only looked at, which a Reader may do."""
        client = self.service.get_container_client(container)
        try:
            if client.exists():
                return
        except (HttpResponseError, AzureError) as error:
            raise self._failure(error, f"looking for container {container}", container) from error
        try:
            client.create_container()
        except ResourceExistsError:
            pass
        except (HttpResponseError, AzureError) as error:
            raise self._failure(error, f"creating container {container}", container, write=True) from error

    def get(self, location: BlobLocation) -> tuple[bytes, str] | None:
        """A small blob's bytes and ETag, or None when it does not exist."""
        try:
            download = self.service.get_blob_client(location.container, location.path).download_blob()
            return download.readall(), download.properties.etag
        except ResourceNotFoundError:
            return None
        except (HttpResponseError, AzureError) as error:
            raise self._failure(error, f"reading {location}", location.container) from error

    @contextmanager
    def lease(self, location: BlobLocation, *, wait_s: float, busy: Callable[[], NcrefsError]) -> Iterator[None]:
        """Hold a lease on ``location`` (created empty if missing) while the block runs: one holder at a time.

        Waits up to ``wait_s`` for another holder, then raises ``busy()``. The lease lasts 60 s and
        is renewed every 15 s while held, so a holder that dies frees it within a minute.
        """
        client = self.service.get_blob_client(location.container, location.path)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                lease = client.acquire_lease(lease_duration=60)
                break
            except ResourceNotFoundError:
                try:
                    client.upload_blob(b"", overwrite=False)
                except ResourceExistsError:
                    pass
                except ResourceNotFoundError as error:
                    raise _missing_refs_container(location.container) from error
            except ResourceExistsError:  # 409 LeaseAlreadyPresent
                if time.monotonic() > deadline:
                    raise busy() from None
                time.sleep(random.uniform(0.05, 0.3))
            except (HttpResponseError, AzureError) as error:
                raise self._failure(error, f"leasing {location}", location.container, write=True) from error
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(15):
                try:
                    lease.renew()
                except AzureError:
                    return

        renewer = threading.Thread(target=renew, daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            try:
                lease.release()
            except AzureError:
                pass  # it expires by itself within a minute

    def put(self, location: Location, data: bytes, *, content_type: str, metadata: dict[str, str] | None = None,
            if_etag: str | None = None, if_absent: bool = False) -> None:
        """Write one object atomically: readers see the old object or the whole new one.

        ``if_etag`` / ``if_absent`` make the write conditional (the blob is still that version,
        or still does not exist); a lost race raises :class:`WriteRaced`.
        """
        if isinstance(location, LocalLocation):
            location.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=location.path.parent, prefix=".ncrefs-", delete=False) as handle:
                handle.write(data)
            # A temporary file is private (0600); the reference gets the mode any new file of the user gets.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(handle.name, 0o666 & ~umask)
            os.replace(handle.name, location.path)
            return
        conditions = {}
        if if_etag:
            conditions = {"etag": if_etag, "match_condition": MatchConditions.IfNotModified}
        elif if_absent:
            conditions = {"match_condition": MatchConditions.IfMissing}
        try:
            # One Put Blob (or Put Block List) call: the blob becomes visible only when it commits.
            self.service.get_blob_client(location.container, location.path).upload_blob(
                data, overwrite=True, metadata=metadata, content_settings=ContentSettings(content_type=content_type),
                **conditions,
            )
        except (ResourceModifiedError, ResourceExistsError) as error:
            if conditions:
                raise WriteRaced(str(location)) from error
            raise self._failure(error, f"writing {location}", location.container, write=True) from error
        except ResourceNotFoundError as error:
            raise _missing_refs_container(location.container) from error
        except (HttpResponseError, AzureError) as error:
            raise self._failure(error, f"writing {location}", location.container, write=True) from error

    def delete(self, location: Location, *, if_etag: str | None = None) -> bool:
        """Delete one object if it exists; True when something was deleted.

        ``if_etag``: only that version (a blob written meanwhile raises :class:`WriteRaced`)."""
        if isinstance(location, LocalLocation):
            if location.path.is_dir():
                shutil.rmtree(location.path)
                return True
            try:
                location.path.unlink()
                return True
            except FileNotFoundError:
                return False
        conditions = {"etag": if_etag, "match_condition": MatchConditions.IfNotModified} if if_etag else {}
        try:
            self.service.get_blob_client(location.container, location.path).delete_blob(**conditions)
            return True
        except ResourceNotFoundError:
            return False
        except ResourceModifiedError as error:
            if conditions:
                raise WriteRaced(str(location)) from error
            raise self._failure(error, f"deleting {location}", location.container, write=True) from error
        except (HttpResponseError, AzureError) as error:
            raise self._failure(error, f"deleting {location}", location.container, write=True) from error

    def list_under(self, location: Location) -> list[Location]:
        """The objects inside a directory-like reference (a Parquet reference)."""
        if isinstance(location, LocalLocation):
            if not location.path.is_dir():
                return []
            return [LocalLocation(p) for p in sorted(location.path.rglob("*")) if p.is_file()]
        prefix = location.path.rstrip("/") + "/"
        return [BlobLocation(location.container, b.path, location.account)
                for b in self.list_blobs(location.container, prefix)]


_shared: dict[int, Storage] = {}


def shared_storage(settings: Settings) -> Storage:
    """One Storage per settings object, reused across invocations (its clients are thread-safe)."""
    storage = _shared.get(id(settings))
    if storage is None or storage.settings is not settings:
        storage = _shared[id(settings)] = Storage(settings)
    return storage
