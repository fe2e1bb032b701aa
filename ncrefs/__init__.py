"""ncrefs: kerchunk references for NetCDF/HDF5 archives in Azure Blob Storage, read as Zarr.

    import ncrefs

    result = ncrefs.virtualize("abfs://raw-netcdf/cmip6/tas_2050.nc", connection_string=...)
    ds = ncrefs.open_dataset(result.output, connection_string=...)      # or account_name=... (az login)
    report = ncrefs.scan("raw-netcdf/cmip6/tas_2050.nc")

``virtualize`` and ``scan`` return the result model (the CLI's ``--json``) and raise
:class:`ncrefs.NcrefsError` (``.code``, ``.message``, ``.hint``) when the file cannot be
referenced. The core lives in the package ``shared`` (the Azure Functions convention); this
is its public face, importable whatever folders the caller's directory holds.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# The core package is called "shared": make sure that name means ncrefs's core, not a
# "shared/" folder that happens to be in the caller's working directory.
_CORE = Path(__file__).resolve().parent.parent / "shared"
if Path(getattr(sys.modules.get("shared"), "__file__", "") or "").parent != _CORE:
    _spec = importlib.util.spec_from_file_location("shared", _CORE / "__init__.py", submodule_search_locations=[str(_CORE)])
    sys.modules["shared"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["shared"])

from shared import __version__  # noqa: E402
from shared.errors import NcrefsError  # noqa: E402

__all__ = ["NcrefsError", "__version__", "open_dataset", "scan", "virtualize"]


def __getattr__(name: str):
    # xarray and the Azure SDKs load on first use, so `import ncrefs` and `python -m ncrefs --help` stay quick.
    if name == "open_dataset":
        from shared.opener import open_dataset

        return open_dataset
    raise AttributeError(f"module 'ncrefs' has no attribute {name!r}")


def virtualize(source: str, *, output: str | None = None, format: str | None = None, strict: bool = False,
               connection_string: str | None = None, account_name: str | None = None, blob_endpoint: str | None = None):
    """Write the reference of one file (as ``ncrefs virtualize``); returns the result model.

    Storage as the CLI takes it: ``connection_string``, or ``account_name`` / ``blob_endpoint``
    with your Azure sign-in (az login, managed identity), else the settings and environment."""
    return _run(source, output=output, format=format, strict=strict, scan_only=False,
                connection=dict(connection_string=connection_string, account_name=account_name, blob_endpoint=blob_endpoint))


def scan(source: str, *, strict: bool = False, connection_string: str | None = None, account_name: str | None = None,
         blob_endpoint: str | None = None):
    """Report a file's chunking and what its reference would hold, writing nothing (as ``ncrefs scan``)."""
    return _run(source, output=None, format=None, strict=strict, scan_only=True,
                connection=dict(connection_string=connection_string, account_name=account_name, blob_endpoint=blob_endpoint))


def _run(source, *, output, format, strict, scan_only, connection):
    from shared.models import ReferenceRequest
    from shared.pipeline import ensure_refs_container, generate_reference
    from shared.settings import Settings, load_local_settings
    from shared.storage import Storage

    load_local_settings()
    settings = Settings().with_connection(**connection)
    if strict:
        settings = settings.model_copy(update={"strict": True})
    storage = Storage(settings)
    request = ReferenceRequest(source=source, target=output, format=format, scan_only=scan_only)
    if not scan_only and output is None:
        ensure_refs_container(request, storage, settings)
    return generate_reference(request, settings, storage)
