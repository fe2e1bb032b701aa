"""One error taxonomy for the CLI, the HTTP API and the blob trigger.

Every failure the core reports is an :class:`NcrefsError` with a stable code, a message
saying what is wrong, a hint saying what to do, and whether trying again can help.
``ERROR_TABLE`` maps each code to its HTTP status and CLI exit code, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class ErrorKind:
    http_status: int
    exit_code: int
    retryable: bool


# CLI exit codes: 2 = permanent (bad input, fix it and run again), 1 = retryable or internal.
ERROR_TABLE: dict[str, ErrorKind] = {
    "invalid_request": ErrorKind(400, 2, False),
    "source_not_allowed": ErrorKind(403, 2, False),
    "source_not_found": ErrorKind(404, 2, False),
    "not_netcdf": ErrorKind(422, 2, False),
    "not_virtualizable": ErrorKind(422, 2, False),
    "corrupt_file": ErrorKind(422, 2, False),
    "limits_exceeded": ErrorKind(422, 2, False),
    "conflict": ErrorKind(409, 2, False),
    "access_denied": ErrorKind(403, 2, False),
    "not_combinable": ErrorKind(422, 2, False),
    "dataset_not_found": ErrorKind(404, 2, False),
    "verification_failed": ErrorKind(422, 2, False),
    "source_changed": ErrorKind(409, 1, True),
    "dataset_busy": ErrorKind(503, 1, True),
    "storage_unavailable": ErrorKind(503, 1, True),
    "storage_misconfigured": ErrorKind(503, 1, True),
    "internal": ErrorKind(500, 1, False),
}


class NcrefsError(Exception):
    code: ClassVar[str] = "internal"
    default_hint: ClassVar[str] = "This is a bug in ncrefs; report it with the correlation id."

    def __init__(self, message: str, *, hint: str | None = None, variable: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint
        self.variable = variable
        self.source_etag: str | None = None  # the source version the failure concerns, once known

    def __reduce__(self):
        # Errors cross from the parser processes; keep the hint and variable on the way.
        return _rebuild, (type(self), self.message, self.hint, self.variable, self.source_etag)

    @property
    def kind(self) -> ErrorKind:
        return ERROR_TABLE[self.code]

    @property
    def retryable(self) -> bool:
        return self.kind.retryable

    def to_dict(self) -> dict[str, object]:
        info: dict[str, object] = {"code": self.code, "message": self.message, "hint": self.hint, "retryable": self.retryable}
        if self.variable:
            info["variable"] = self.variable
        return info


class InvalidRequest(NcrefsError):
    code = "invalid_request"
    default_hint = "Check the request's fields and values against the documentation, then try again."


class SourceNotAllowed(NcrefsError):
    code = "source_not_allowed"
    default_hint = "Give a blob in the configured storage account and its source or refs container."


class SourceNotFound(NcrefsError):
    code = "source_not_found"
    default_hint = "Check the container and blob name (they are case-sensitive) and that the upload finished."


class NotNetCDF(NcrefsError):
    code = "not_netcdf"
    default_hint = "Only NetCDF3 (classic, 64-bit offset, CDF5) and NetCDF4/HDF5 files can be referenced."


class NotVirtualizable(NcrefsError):
    code = "not_virtualizable"
    default_hint = "Convert this variable (e.g. with nccopy or xarray) to a supported codec/dtype, or drop it."


class CorruptFile(NcrefsError):
    code = "corrupt_file"
    default_hint = "The file is damaged or incomplete: upload it again in full, then retry."


class LimitsExceeded(NcrefsError):
    code = "limits_exceeded"
    default_hint = "The file needs more than this deployment allows; raise the named setting if the file is genuine."


class Conflict(NcrefsError):
    code = "conflict"
    default_hint = "Two sources map to the same reference: rename one of them, or give an explicit output."


class AccessDenied(NcrefsError):
    code = "access_denied"
    default_hint = (
        "Give the identity ncrefs runs as the role it needs on the container: Storage Blob Data Reader on the "
        "source container, Storage Blob Data Contributor on the refs container (or check the account key)."
    )


class NotCombinable(NcrefsError):
    code = "not_combinable"
    default_hint = ("The file keeps its own reference; the dataset keeps its last good version. Fix or move the file, "
                    "or define a separate dataset for files encoded this way.")


class DatasetNotFound(NcrefsError):
    code = "dataset_not_found"
    default_hint = "List the datasets with `ncrefs dataset list`, or define one with `ncrefs dataset create`."


class DatasetBusy(NcrefsError):
    code = "dataset_busy"
    default_hint = "Another update of this dataset is running; try again in a minute (the blob trigger retries by itself)."


class VerificationFailed(NcrefsError):
    code = "verification_failed"
    default_hint = ("The reference did not read back the original's values, so it was removed. Check the file "
                    "(ncrefs verify names the variable and the first differing element) and report it with the file.")


class SourceChanged(NcrefsError):
    code = "source_changed"
    default_hint = "The source was overwritten while it was read; run again to reference the new version."


class StorageUnavailable(NcrefsError):
    code = "storage_unavailable"
    default_hint = "Storage did not answer; check the connection settings and try again shortly."


class StorageMisconfigured(NcrefsError):
    code = "storage_misconfigured"
    default_hint = "Create the container (ncrefs backfill creates the refs container) or fix REFS_CONTAINER, then retry."


class InternalError(NcrefsError):
    code = "internal"


def _rebuild(cls, message, hint, variable, source_etag):
    error = cls(message, hint=hint, variable=variable)
    error.source_etag = source_etag
    return error
