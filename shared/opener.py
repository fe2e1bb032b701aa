"""Open what ncrefs writes (and what it reads) with xarray: one call for every form.

``open_dataset(url)`` takes a JSON or Parquet reference, a raw NetCDF blob (the slow path: the
original through adlfs, which it says) or a local file, with the storage forms of the CLI: a
connection string, an account name with a credential (``az login`` / managed identity through
azure-identity), or the environment (``DATA_STORAGE``, ``AZURE_STORAGE_CONNECTION_STRING``).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import warnings
import weakref
from pathlib import Path
from urllib.parse import urlsplit

import xarray as xr

from shared.paths import NETCDF_SUFFIXES

log = logging.getLogger("ncrefs.opener")


def storage_options(connection_string: str | None = None, account_name: str | None = None,
                    credential=None) -> dict:
    """adlfs options from what the caller gave, else from the environment, as the CLI takes them."""
    if connection_string:
        return {"connection_string": connection_string}
    if account_name:
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential()
        return {"account_name": account_name, "credential": credential}
    for name in ("DATA_STORAGE", "AZURE_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage"):
        if os.environ.get(name):
            return {"connection_string": os.environ[name]}
    raise ValueError("No storage connection: pass connection_string=... or account_name=..., "
                     "or set DATA_STORAGE / AZURE_STORAGE_CONNECTION_STRING.")


def open_dataset(url: str, *, group: str | None = None, connection_string: str | None = None,
                 account_name: str | None = None, credential=None, **kwargs) -> xr.Dataset:
    """The dataset behind ``url``: a reference (``.json``, ``.parquet``), a NetCDF file, local or in storage.

    Other keyword arguments go to ``xarray.open_dataset``; ``remote_protocol`` overrides the
    scheme of a Parquet reference's chunk URLs (default: abfs, or local paths).
    """
    # atexit runs last-registered first: (re-)register after adlfs' finalizers exist, so the
    # clean-up runs before weakref's own exit hook calls them.
    atexit.unregister(detach_loopless_adlfs_finalizers)
    atexit.register(detach_loopless_adlfs_finalizers)
    scheme = urlsplit(url).scheme.lower()
    local = scheme in ("", "file") or len(scheme) == 1
    path = urlsplit(url).path if scheme == "file" else url
    name = url.rstrip("/").lower()
    if local and not name.endswith((".json", ".parquet")):
        return xr.open_dataset(path, group=group, **kwargs)
    options = {} if local else storage_options(connection_string, account_name, credential)
    if name.endswith((".json", ".parquet")):
        return _open_reference(path if local else url, options, group, kwargs)
    if name.endswith(NETCDF_SUFFIXES):
        warnings.warn(f"{url} is the original file: reading it through adlfs fetches far more than a reference "
                      "would. Reference it (ncrefs virtualize) and open the reference.", stacklevel=2)
        import fsspec

        handle = fsspec.open(url, "rb", **options).open()
        return xr.open_dataset(handle, engine="h5netcdf", group=group, **kwargs)
    raise ValueError(f"{url} is neither a reference (.json, .parquet) nor a NetCDF file ({', '.join(NETCDF_SUFFIXES)}).")


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
    remote_options = {**options, "asynchronous": True} if remote != "file" else {}
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
