"""Open what ncrefs writes (and what it reads) with xarray: one call for every form.

``open_dataset(url)`` takes a JSON or Parquet reference, a raw NetCDF blob (the slow path: the
original through adlfs, which it says) or a local file, with the storage forms of the CLI: a
connection string, an account name or blob endpoint with a credential (``az login`` / managed
identity through azure-identity), or the environment as the CLI reads it (``DATA_STORAGE``,
``DATA_STORAGE__blobServiceUri``, ``AZURE_STORAGE_CONNECTION_STRING``, ``AZURE_STORAGE_ACCOUNT``).
Blobs may be named ``abfs://container/path`` or by their ``https://`` (or Azurite ``http://``) URL.
"""

from __future__ import annotations

import atexit
import json
import logging
import warnings
import weakref
from pathlib import Path
from urllib.parse import urlsplit

import xarray as xr

from shared.paths import NETCDF_SUFFIXES

log = logging.getLogger("ncrefs.opener")


def storage_options(connection_string: str | None = None, account_name: str | None = None,
                    credential=None, blob_endpoint: str | None = None) -> dict:
    """adlfs options from what the caller gave, else from the environment, as the CLI takes them."""
    from shared.settings import Settings
    from shared.storage import Storage

    settings = Settings().with_connection(connection_string=connection_string, account_name=account_name,
                                          blob_endpoint=blob_endpoint)
    if not (settings.connection_string or settings.blob_service_uri):
        raise ValueError("No storage connection: pass connection_string=..., account_name=... (az login) or "
                         "blob_endpoint=..., or set DATA_STORAGE / AZURE_STORAGE_CONNECTION_STRING / AZURE_STORAGE_ACCOUNT.")
    options = Storage(settings).fsspec_options()
    if credential is not None and "credential" in options:
        options["credential"] = credential
    return options


def open_dataset(url: str, *, group: str | None = None, connection_string: str | None = None,
                 account_name: str | None = None, credential=None, blob_endpoint: str | None = None,
                 version: str | None = None, **kwargs) -> xr.Dataset:
    """The dataset behind ``url``: a reference (``.json``, ``.parquet``), a dataset (its name, or its
    Icechunk repository ``….icechunk``), a NetCDF file, local or in storage.

    ``version``: a snapshot id or tag of an Icechunk dataset (default: its latest state). Other
    keyword arguments go to ``xarray.open_dataset``; ``remote_protocol`` overrides the scheme of a
    Parquet reference's chunk URLs (default: abfs, or local paths).
    """
    # atexit runs last-registered first: (re-)register after adlfs' finalizers exist, so the
    # clean-up runs before weakref's own exit hook calls them.
    atexit.unregister(detach_loopless_adlfs_finalizers)
    atexit.register(detach_loopless_adlfs_finalizers)
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):  # a blob's URL: adlfs names it abfs://container/path
        from shared.paths import parse_location

        url = parse_location(url, allow_local=False).url("abfs")
        scheme = "abfs"
    local = scheme in ("", "file") or len(scheme) == 1
    path = urlsplit(url).path if scheme == "file" else url
    name = url.rstrip("/").lower()
    if name.endswith(".icechunk") or (local and _is_dataset_name(url)):
        connection = {"connection_string": connection_string, "account_name": account_name, "blob_endpoint": blob_endpoint}
        return _open_dataset_output(url, connection, version, group, kwargs)
    if version is not None:
        raise ValueError(f"version= applies to Icechunk datasets (a dataset name or a ….icechunk URL), not to {url}.")
    if local and not name.endswith((".json", ".parquet")):
        return xr.open_dataset(path, group=group, **kwargs)
    options = {} if local else storage_options(connection_string, account_name, credential, blob_endpoint)
    if name.endswith((".json", ".parquet")):
        return _open_reference(path if local else url, options, group, kwargs)
    if name.endswith(NETCDF_SUFFIXES):
        warnings.warn(f"{url} is the original file: reading it through adlfs fetches far more than a reference "
                      "would. Reference it (ncrefs virtualize) and open the reference.", stacklevel=2)
        import fsspec

        handle = fsspec.open(url, "rb", **options).open()
        return xr.open_dataset(handle, engine="h5netcdf", group=group, **kwargs)
    raise ValueError(f"{url} is neither a reference (.json, .parquet) nor a NetCDF file ({', '.join(NETCDF_SUFFIXES)}).")


def _is_dataset_name(text: str) -> bool:
    from shared.datasets.model import NAME_RE

    return bool(NAME_RE.match(text)) and not Path(text).exists()


def _open_dataset_output(url: str, connection: dict, version: str | None, group: str | None, kwargs: dict) -> xr.Dataset:
    """A dataset by name (its Icechunk output, else its Parquet or JSON one) or its Icechunk repository's URL."""
    from shared.datasets import icechunk_repo, load_definition
    from shared.datasets.model import output_location
    from shared.paths import parse_location
    from shared.settings import Settings
    from shared.storage import Storage

    storage = Storage(Settings().with_connection(**connection))
    if group is not None:
        kwargs["group"] = group
    if url.rstrip("/").lower().endswith(".icechunk"):
        location = parse_location(url.rstrip("/"), allow_local=False)
        storage.check_account(location)
        return icechunk_repo.open_xarray(storage, location, version=version, **kwargs)
    definition = load_definition(storage.settings, storage, url)
    output = next(o for o in ("icechunk", "parquet", "json") if o in definition.outputs)
    location = output_location(storage.settings.refs_container, definition.name, output)
    if output == "icechunk":
        return icechunk_repo.open_xarray(storage, location, [definition.container], version=version, **kwargs)
    if version is not None:
        raise ValueError(f"Dataset {url!r} has no Icechunk output, so it keeps no versions.")
    return _open_reference(location.url("abfs"), storage.fsspec_options(), None, kwargs)


def _open_reference(url: str, options: dict, group: str | None, kwargs: dict) -> xr.Dataset:
    import fsspec

    protocol = urlsplit(url).scheme or "file"
    remote = kwargs.pop("remote_protocol", None)
    if url.rstrip("/").endswith(".parquet"):
        from fsspec.implementations.reference import LazyReferenceMapper

        fs = fsspec.filesystem(protocol, **options)
        refs = LazyReferenceMapper(url.rstrip("/") if protocol == "file" else url.split("://", 1)[1].rstrip("/"), fs=fs)
    else:
        with fsspec.open(url, "rb", **options) as handle:
            refs = json.load(handle)
        first = next((v[0] for v in refs.get("refs", refs).values() if isinstance(v, list) and v), "")
        remote = remote or (urlsplit(first).scheme if "://" in first else "file")
    # Chunk URLs are in REFERENCE_URL_SCHEME (abfs by default) beside the reference, or plain paths locally.
    remote = remote or ("file" if protocol == "file" else "abfs")
    # abfs chunks use the storage options; https chunk URLs (REFERENCE_URL_SCHEME=https) are read as
    # plain HTTP (a public container, or a SAS the caller adds through remote_options).
    remote_options = kwargs.pop("remote_options", None)
    if remote_options is None:
        remote_options = ({**options, "asynchronous": True} if remote in ("abfs", "az", "abfss")
                          else {"asynchronous": True} if remote in ("http", "https") else {})
    return xr.open_dataset("reference://", engine="zarr", group=group, **kwargs, backend_kwargs={
        "consolidated": False, "zarr_format": 2,
        "storage_options": {"fo": refs, "remote_protocol": remote, "remote_options": remote_options}})


def detach_loopless_adlfs_finalizers() -> int:
    """Quiet a known adlfs shutdown error (fsspec/adlfs#495): at exit, the finalizers of
    asynchronous adlfs instances (zarr's) raise "Loop is not running" after a clean run; their
    clients die with the process anyway, so those callbacks are detached."""
    from fsspec.asyn import sync

    detached = 0
    for finalizer in list(weakref.finalize._registry):  # noqa: SLF001 - no public registry
        info = weakref.finalize._registry.get(finalizer)  # noqa: SLF001
        if info is not None and info.func is sync and info.args and info.args[0] is None:
            finalizer.detach()
            detached += 1
    return detached


atexit.register(detach_loopless_adlfs_finalizers)
