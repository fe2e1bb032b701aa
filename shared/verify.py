"""Verify references against their originals: ``ncrefs verify`` and ``VERIFY_AFTER_WRITE``.

For each reference, a few chunks per variable (the first, or ``sample`` spread over the chunk grid)
are read twice and compared element by element (exact equality; NaN equals NaN):

- **through the reference**, as readers do: zarr over fsspec's reference file system (the chunk
  bytes come from the original's byte ranges and are decoded by the reference's codecs);
- **from the original**, in a parser process (``shared/sandbox``, ``shared/regions.py``): h5py for
  HDF5, the header's offsets for NetCDF3, through the same ETag-pinned ranged reader as referencing.
  The original is untrusted: it is never parsed in this process.

Both sides are the stored values (no scale, offset or mask applied), so a packed variable is compared
as its integers. Reads are pinned to the ETag the reference records: a source replaced since is
``stale``, never compared with a reference to its old version. It reads data on purpose, so the
bytes it will read are known (from the reference's chunk lengths) and reported before reading.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import numpy as np
from pydantic import BaseModel, Field

from shared.errors import (
    InvalidRequest,
    LimitsExceeded,
    NcrefsError,
    SourceNotFound,
    StorageUnavailable,
    VerificationFailed,
)
from shared.models import ErrorInfo
from shared.paths import (
    RESERVED_MARK,
    BlobLocation,
    format_for_target,
    is_reserved,
    parse_location,
    reference_location,
    validate_blob_name,
)
from shared.reader import FIRST_READ, SMALL_FILE
from shared.settings import Settings
from shared.storage import Storage
from shared.writer import ZMETADATA

log = logging.getLogger("ncrefs.verify")

DEFAULT_MAX_BYTES = 1 << 30  # both sides together, for one `ncrefs verify` run
SKIPPED_VARIABLES = "ncrefs_skipped_variables"  # the root attribute shared/virtualize.py writes
# Files up to this size are usually read whole by the reader's cost model (a few requests cost as much).
WHOLE_FILE_LIKELY = 4 * SMALL_FILE


class VariableCheck(BaseModel):
    variable: str
    status: Literal["ok", "mismatch", "skipped"]
    chunks: list[str] = Field(default_factory=list)  # the chunk keys compared
    index: list[int] | None = None  # the first differing element, in the variable's index space
    reference_value: str | None = None
    original_value: str | None = None
    reason: str | None = None


class FileCheck(BaseModel):
    source: str
    reference: str
    status: Literal["ok", "mismatch", "stale", "error"]
    source_etag: str | None = None
    variables: list[VariableCheck] = Field(default_factory=list)
    planned_reference_bytes: int = 0
    planned_original_bytes: int = 0
    original_bytes_read: int = 0
    error: ErrorInfo | None = None


class VerifySummary(BaseModel):
    status: Literal["ok", "mismatch"]
    references: int = 0
    ok: int = 0
    mismatched: int = 0
    stale: int = 0
    errors: int = 0
    planned_reference_bytes: int = 0
    planned_original_bytes: int = 0
    original_bytes_read: int = 0
    files: list[FileCheck] = Field(default_factory=list)
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class Target:
    """A reference to verify and the source it records (``ncrefs_source``, ``ncrefs_source_etag``)."""

    source: BlobLocation
    reference: BlobLocation
    fmt: str
    etag: str
    size: int | None = None


@dataclass
class _Chunk:
    key: str
    region: list[list[int]]  # [[start, stop], ...] per dimension
    url: str | None  # None: inline in the reference, or not written (fill)
    length: int  # bytes read through the reference (0 when inline)
    nbytes: int  # decoded bytes of the region


@dataclass
class _Variable:
    name: str
    chunks: list[_Chunk] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class _Plan:
    target: Target
    variables: list[_Variable] = field(default_factory=list)
    problem: NcrefsError | None = None

    @property
    def reference_bytes(self) -> int:
        return sum(c.length for v in self.variables for c in v.chunks)

    @property
    def original_bytes(self) -> int:
        """An estimate: the same stored chunks (or the region's bytes for inline ones) and the first read of the
        header. A file of a few MB counts whole, and then some: the reader fetches such a file whole once a few
        requests would cost as much (``shared/reader.py``). The chunk index reads of a large HDF5 file come on
        top (a few KB to a few hundred KB)."""
        chunks = sum(c.length if c.url else c.nbytes for v in self.variables for c in v.chunks)
        if not any(v.chunks for v in self.variables):
            return 0
        size = self.target.size
        if size is not None and size <= WHOLE_FILE_LIKELY:
            return size + min(FIRST_READ, size)
        return chunks + (min(FIRST_READ, size) if size is not None else FIRST_READ)


# -- which references -----------------------------------------------------------------------------------
def targets(settings: Settings, storage: Storage, what: str | None = None, prefix: str | None = None) -> list[Target]:
    """The references to verify: one (a source blob, or a reference in the refs container), or every
    reference under ``prefix`` of the refs container."""
    if (what is None) == (prefix is None):
        raise InvalidRequest("Give either a SOURCE (or reference) or --prefix, not both and not neither.",
                             hint="e.g. ncrefs verify raw-netcdf/a/b.nc, or ncrefs verify --prefix a/")
    if prefix is not None:
        if prefix.startswith(RESERVED_MARK):
            raise InvalidRequest(f"The prefix {prefix!r} is in ncrefs's own part of the {settings.refs_container} container.",
                                 hint="Give the path of references as they map from sources, e.g. cmip6/.")
        if prefix:
            validate_blob_name(prefix.rstrip("/") or "/", what="prefix")
        found = []
        for blob in storage.list_blobs(settings.refs_container, prefix, metadata=True):
            if blob.path.startswith(RESERVED_MARK):
                continue
            if blob.path.endswith(f".parquet/{ZMETADATA}"):
                location, fmt = BlobLocation(settings.refs_container, blob.path[: -len(ZMETADATA) - 1]), "parquet"
            elif blob.path.endswith(".json"):
                location, fmt = BlobLocation(settings.refs_container, blob.path), "json"
            else:
                continue
            target = _target(location, fmt, blob.metadata)
            if target is not None:
                found.append(target)
        return found
    location = parse_location(what, what="source")
    if not isinstance(location, BlobLocation):
        raise InvalidRequest(f"{what!r} is a local file: verify compares references in storage with their originals there.",
                             hint="Give a blob (raw-netcdf/a/b.nc) or its reference (refs/a/b.json); to check a local "
                                  "reference, open it with ncrefs.open_dataset and compare with the file.")
    storage.check_account(location)
    if location.container == settings.refs_container:
        if is_reserved(location, settings.refs_container):
            raise InvalidRequest(f"{what!r} is one of ncrefs's own records, not a reference.")
        fmt = format_for_target(location)
        if fmt is None:
            raise InvalidRequest(f"{what!r} is in the refs container but is not a reference (.json or .parquet).")
        candidates = [(BlobLocation(location.container, location.path.rstrip("/")), fmt)]
    else:
        candidates = []
        for fmt in ("json", "parquet"):
            candidates.append((reference_location(location, fmt=fmt, refs_container=settings.refs_container,
                                                  source_container=settings.source_container), fmt))
    for reference, fmt in candidates:
        head = storage.head(reference if fmt == "json" else BlobLocation(reference.container, f"{reference.path}/{ZMETADATA}"))
        if head is not None:
            target = _target(reference, fmt, head.metadata)
            if target is None:
                raise InvalidRequest(f"{reference} was not written by ncrefs (it records no source).",
                                     hint="Verify references ncrefs wrote; reference the file with ncrefs virtualize.")
            if location.container != settings.refs_container and str(target.source) != str(location):
                continue  # another source's reference at the mapped name
            return [target]
    raise SourceNotFound(f"There is no reference of {what}.",
                         hint=f"Reference it first (ncrefs virtualize {what}), or give the reference itself (refs/...).")


def _target(reference: BlobLocation, fmt: str, metadata: dict[str, str]) -> Target | None:
    owner = unquote(metadata.get("ncrefs_source", ""))
    container, _, path = owner.partition("/")
    if not path:
        return None
    size = metadata.get("ncrefs_source_size", "")
    return Target(BlobLocation(container, path), reference, fmt, metadata.get("ncrefs_source_etag", "").strip('"'),
                  int(size) if size.isdigit() else None)


# -- planning: which chunks, how many bytes ---------------------------------------------------------------
def plan(storage: Storage, target: Target, *, sample: int = 1, budget: int | None = None) -> _Plan:
    """The chunks to compare per variable (``sample`` spread over each variable's chunk grid). ``budget``:
    variables whose chunks would take the planned bytes (both sides) past it are skipped, with why."""
    result = _Plan(target)
    try:
        get, keys = _open_references(storage, target)
        root = _json(get(".zattrs")) or {}
    except NcrefsError as error:
        result.problem = error
        return result
    left_out = root.get(SKIPPED_VARIABLES) if isinstance(root.get(SKIPPED_VARIABLES), dict) else {}
    for name, why in sorted(left_out.items()):
        result.variables.append(_Variable(str(name), skipped=f"left out of the reference: {why}"))
    spent = 0
    for name in sorted(k[: -len("/.zarray")] for k in keys if k.endswith("/.zarray")):
        variable = _Variable(name)
        result.variables.append(variable)
        try:
            zarray = _json(get(f"{name}/.zarray"))
            variable.chunks = _choose(name, zarray, get, sample)
        except (TypeError, ValueError, KeyError) as error:
            variable.skipped = f"its array metadata cannot be read ({type(error).__name__}: {error})"
            continue
        if not variable.chunks:
            variable.skipped = "it holds no values (a dimension of length 0)"
            continue
        cost = sum(c.length + (c.length if c.url else c.nbytes) for c in variable.chunks)
        if budget is not None and spent + cost > budget:
            variable.skipped = f"its chunks ({cost:,} bytes, both sides) are over the verification budget ({budget:,} bytes)"
            variable.chunks = []
            continue
        spent += cost
    return result


def _open_references(storage: Storage, target: Target):
    """``get(key)`` and ``keys()`` of a stored reference (JSON whole; Parquet: metadata, chunks on demand)."""
    from shared.catalog.store import read_references

    refs = read_references(storage, target.reference, target.fmt)
    return refs.get, refs.keys()


def _json(value) -> Any:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        if value.startswith("base64:"):
            import base64

            value = base64.b64decode(value[7:]).decode()
        return json.loads(value)
    return value


def _choose(name: str, zarray: dict, get, sample: int) -> list[_Chunk]:
    shape, chunk_shape = list(zarray["shape"]), list(zarray["chunks"])
    separator = zarray.get("dimension_separator") or "."
    dtype = np.dtype(_zarr_dtype(zarray["dtype"]))
    if 0 in shape:
        return []
    grid = [math.ceil(s / c) for s, c in zip(shape, chunk_shape)]
    total = math.prod(grid)
    count = min(max(sample, 1), total)
    picks = sorted({round(i * (total - 1) / (count - 1)) for i in range(count)}) if count > 1 else [0]
    chunks = []
    for flat in picks:
        index = [int(i) for i in np.unravel_index(flat, grid)] if grid else []
        key = f"{name}/{separator.join(map(str, index)) or '0'}"
        region = [[i * c, min((i + 1) * c, s)] for i, c, s in zip(index, chunk_shape, shape)]
        nbytes = math.prod(b - a for a, b in region) * dtype.itemsize
        value = get(key)
        if isinstance(value, (list, tuple)) and len(value) == 3:
            chunks.append(_Chunk(key, region, str(value[0]), int(value[2]), nbytes))
        elif isinstance(value, (list, tuple)) and len(value) == 1:
            raise ValueError(f"chunk {key} refers to a whole file, which verify does not read")
        else:
            chunks.append(_Chunk(key, region, None, 0, nbytes))
    return chunks


def _zarr_dtype(text):
    """A Zarr v2 dtype (a string, or a list of fields for records) as numpy takes it; object types as 'O'."""
    if isinstance(text, list):
        return [tuple(f) if isinstance(f, list) else f for f in text]
    return "O" if text in ("|O", "O") else text


# -- checking -------------------------------------------------------------------------------------------
def check(settings: Settings, storage: Storage, planned: _Plan) -> FileCheck:
    """Read the planned chunks through the reference and from the original, and compare them."""
    from shared.pipeline import error_result

    target = planned.target
    reference = target.reference.url("abfs") + ("/" if target.fmt == "parquet" else "")
    result = FileCheck(source=str(target.source), reference=reference,
                       status="ok", source_etag=target.etag, planned_reference_bytes=planned.reference_bytes,
                       planned_original_bytes=planned.original_bytes)
    try:
        if planned.problem is not None:
            raise planned.problem
        result.variables = [VariableCheck(variable=v.name, status="skipped", reason=v.skipped)
                            for v in planned.variables if v.skipped]
        wanted = [v for v in planned.variables if not v.skipped]
        if wanted:
            originals, read = _read_originals(settings, storage, target, wanted)
            result.original_bytes_read = read
            if originals is None:
                result.status = "stale"
                result.variables = []
                result.error = ErrorInfo(code="source_changed", retryable=True, message=(
                    f"{target.source} changed since its reference was written (the reference records ETag "
                    f"{target.etag}): the reference describes a version that no longer exists."),
                    hint="The blob trigger writes it again; or run `ncrefs virtualize` / `ncrefs backfill` for it.")
                return result
            references = _read_references(storage, target, wanted)
            for variable in wanted:
                result.variables.append(_compare_variable(variable, references[variable.name], originals[variable.name], target))
        result.variables.sort(key=lambda v: v.variable)
        if any(v.status == "mismatch" for v in result.variables):
            result.status = "mismatch"
    except Exception as error:  # noqa: BLE001 - one reference that cannot be verified never stops the others
        if not isinstance(error, NcrefsError) and _transient(error):
            error = StorageUnavailable(f"Storage did not answer while reading through {result.reference}: "
                                       f"{type(error).__name__}: {str(error)[:200]}")
        result.status = "error"
        result.error = error_result(str(target.source), error).error
        if isinstance(error, SourceNotFound) and "There is no blob" in error.message:
            result.error.hint = "Its source no longer exists: `ncrefs prune` removes what ncrefs holds for it."
    return result


def _read_originals(settings: Settings, storage: Storage, target: Target, variables: list[_Variable]):
    """Per variable, per planned chunk: the original's stored values (or why not), read in a parser process;
    None when the source is no longer the version the reference records."""
    from shared.sandbox import parser_pool

    reader = storage.open_source(target.source, settings.read_block_size)
    try:
        if reader.info.etag.strip('"') != target.etag:
            return None, reader.stats.bytes_read
        regions = [{"variable": v.name, "region": c.region} for v in variables for c in v.chunks]
        head = reader.read_at(0, min(FIRST_READ, reader.size))
        # The read budget of a verify run covers the chunks it reads (not only a header's worth).
        needed_mb = math.ceil((sum(c.nbytes + c.length for v in variables for c in v.chunks) + FIRST_READ) / (1 << 20)) + 1
        pool_settings = settings if needed_mb <= settings.max_read_mb else settings.model_copy(update={"max_read_mb": max(
            needed_mb, 1 << math.ceil(math.log2(needed_mb)))})  # powers of two: few distinct pools
        values = parser_pool(pool_settings).read_regions(reader, head, name=str(target.source), regions=regions,
                                                         block_size=settings.read_block_size)
    finally:
        reader.close()
    answers: dict[str, list] = {}
    position = 0
    for variable in variables:
        answers[variable.name] = values[position: position + len(variable.chunks)]
        position += len(variable.chunks)
    return answers, reader.stats.bytes_read


def _read_references(storage: Storage, target: Target, variables: list[_Variable]) -> dict[str, list]:
    """Per variable, per planned chunk: the values read through the reference (zarr over fsspec's reference
    file system, as ``ncrefs.open_dataset`` reads it), or the exception that reading raised."""
    import atexit

    import zarr
    from zarr.storage import FsspecStore

    from shared import codecs  # noqa: F401 - the HDF5 plugin codecs (lz4, bzip2, lzf)
    from shared.opener import detach_loopless_adlfs_finalizers

    # As ncrefs.open_dataset does: quiet adlfs's "Loop is not running" at exit (after its finalizers exist).
    atexit.unregister(detach_loopless_adlfs_finalizers)
    atexit.register(detach_loopless_adlfs_finalizers)

    fo, remote = _reference_store(storage, target, variables)
    remote_options = {"asynchronous": True}
    if remote in ("abfs", "az", "abfss"):
        remote_options.update(storage.fsspec_options())
    store = FsspecStore.from_url("reference://", read_only=True, storage_options={
        "fo": fo, "remote_protocol": remote, "remote_options": remote_options})
    out: dict[str, list] = {}
    for variable in variables:
        values: list = []
        try:
            array = zarr.open_array(store=store, path=variable.name, mode="r", zarr_format=2)
        except Exception as error:  # noqa: BLE001 - a reference that cannot be opened is a finding
            out[variable.name] = [error] * len(variable.chunks)
            continue
        for chunk in variable.chunks:
            try:
                values.append(np.asarray(array[tuple(slice(a, b) for a, b in chunk.region)] if chunk.region else array[()]))
            except Exception as error:  # noqa: BLE001 - bytes that do not decode are a finding
                values.append(error)
        out[variable.name] = values
    return out


def _reference_store(storage: Storage, target: Target, variables: list[_Variable]):
    if target.fmt == "json":
        found = storage.get(target.reference)
        if found is None:
            raise SourceNotFound(f"There is no reference {target.reference}.")
        fo = json.loads(found[0])
    else:
        import fsspec
        from fsspec.implementations.reference import LazyReferenceMapper

        fs = fsspec.filesystem("abfs", **storage.fsspec_options())
        fo = LazyReferenceMapper(f"{target.reference.container}/{target.reference.path}", fs=fs)
    url = next((c.url for v in variables for c in v.chunks if c.url), None)
    remote = urlsplit(url).scheme if url and "://" in url else "abfs"
    return fo, remote


def _compare_variable(variable: _Variable, references: list, originals: list, target: Target) -> VariableCheck:
    result = VariableCheck(variable=variable.name, status="ok", chunks=[c.key for c in variable.chunks])
    source_urls = {target.source.url("abfs"), target.source.url("az")}
    for chunk, through, original in zip(variable.chunks, references, originals):
        if isinstance(original, str):
            return result.model_copy(update={"status": "skipped", "reason": f"chunk {chunk.key}: {original}"})
        own = chunk.url in source_urls or str(chunk.url).endswith(f"/{target.source.container}/{target.source.path}")
        if chunk.url and not own:
            return result.model_copy(update={"status": "mismatch", "index": [a for a, _ in chunk.region], "reason": (
                f"chunk {chunk.key} points at {chunk.url}, not at its source {target.source}")})
        if isinstance(through, Exception):
            if _transient(through):  # storage did not answer: nothing is known about the reference
                raise through
            return result.model_copy(update={"status": "mismatch", "index": [a for a, _ in chunk.region], "reason": (
                f"chunk {chunk.key} could not be read through the reference ({type(through).__name__}: "
                f"{str(through)[:200]})")})
        difference = first_difference(through, original)
        if difference is not None:
            where, reason = difference
            index = [a + i for (a, _), i in zip(chunk.region, where)] if where is not None else [a for a, _ in chunk.region]
            update = {"status": "mismatch", "index": index, "reason": f"chunk {chunk.key}: {reason}"}
            if where is not None:
                update["reference_value"] = _show(through[tuple(where)])
                update["original_value"] = _show(original[tuple(where)])
            return result.model_copy(update=update)
    return result


def _transient(error: Exception) -> bool:
    """A failure of storage or the network (not of the reference's bytes): the file is not verified, not wrong.
    A range past the end of the blob (416) is the reference's fault."""
    from azure.core.exceptions import AzureError, HttpResponseError

    if isinstance(error, HttpResponseError) and error.status_code == 416:
        return False
    try:
        import aiohttp

        network = (aiohttp.ClientError,)
    except ImportError:  # pragma: no cover - adlfs brings it
        network = ()
    return isinstance(error, (AzureError, ConnectionError, TimeoutError, *network))


def first_difference(a: np.ndarray, b: np.ndarray) -> tuple[list[int] | None, str] | None:
    """Where two arrays of stored values first differ (exact; NaN equals NaN), or None when they are equal."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return None, f"shape {list(a.shape)} through the reference, {list(b.shape)} in the original"
    if a.dtype.hasobject or b.dtype.hasobject:
        def text(v):
            return v.decode("utf-8", "replace") if isinstance(v, bytes) else v

        equal = np.array([text(x) == text(y) for x, y in zip(a.reshape(-1).tolist(), b.reshape(-1).tolist())],
                         dtype=bool).reshape(a.shape)
    elif a.dtype.names or b.dtype.names:
        try:
            equal = a == b.astype(a.dtype)
        except (TypeError, ValueError):
            return None, f"record type {a.dtype} through the reference, {b.dtype} in the original"
        equal = np.asarray(equal, dtype=bool)
    else:
        with np.errstate(invalid="ignore"):
            equal = np.asarray(a == b, dtype=bool)
        if a.dtype.kind in "fc" and b.dtype.kind in "fc":
            equal |= np.isnan(a) & np.isnan(b)
    if equal.shape != a.shape:  # a comparison numpy could not make elementwise
        return None, f"values of type {a.dtype} and {b.dtype} cannot be compared"
    if equal.all():
        return None
    where = [int(i) for i in np.argwhere(~equal)[0]] if a.ndim else []
    return where, f"{int((~equal).sum()):,} of {equal.size:,} values differ"


def _show(value) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text[:100]


# -- a run over many references (ncrefs verify) ------------------------------------------------------------
def verify(settings: Settings, storage: Storage, found: list[Target], *, sample: int = 1,
           max_bytes: int = DEFAULT_MAX_BYTES, say=None) -> VerifySummary:
    """Plan every reference, refuse past ``max_bytes`` (both sides), say what it will read, then check each."""
    started = time.perf_counter()
    plans = [plan(storage, target, sample=sample) for target in found]
    reference_bytes = sum(p.reference_bytes for p in plans)
    original_bytes = sum(p.original_bytes for p in plans)
    chunks = sum(len(v.chunks) for p in plans for v in p.variables)
    variables = sum(1 for p in plans for v in p.variables if v.chunks)
    if reference_bytes + original_bytes > max_bytes:
        raise LimitsExceeded(
            f"Verifying {len(plans)} reference(s) would read {_size(reference_bytes)} through the references and about "
            f"{_size(original_bytes)} from the originals, {_size(reference_bytes + original_bytes)} in all: more than "
            f"--max-bytes {_size(max_bytes)}.",
            hint="Narrow it (--prefix, one SOURCE), compare fewer chunks (--sample), or raise --max-bytes.")
    if say:
        say(f"verify: {len(plans)} reference(s), {variables} variables, {chunks} chunks: reading "
            f"{_size(reference_bytes)} through the references and about {_size(original_bytes)} from the originals "
            f"(--max-bytes {_size(max_bytes)})")
    summary = VerifySummary(status="ok", references=len(plans), planned_reference_bytes=reference_bytes,
                            planned_original_bytes=original_bytes)
    for planned in plans:
        result = check(settings, storage, planned)
        summary.files.append(result)
        summary.original_bytes_read += result.original_bytes_read
        if result.status == "ok":
            summary.ok += 1
        elif result.status == "mismatch":
            summary.mismatched += 1
        elif result.status == "stale":
            summary.stale += 1
        else:
            summary.errors += 1
    if summary.ok != summary.references:
        summary.status = "mismatch"
    summary.elapsed_s = round(time.perf_counter() - started, 3)
    return summary


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def parse_size(text: str) -> int:
    """``1G``, ``256M``, ``512K``, ``1000`` (bytes) as a number of bytes."""
    units = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}
    value = text.strip().upper()
    number = value.rstrip("KMGB")
    unit = value[len(number):]
    try:
        amount = float(number)
    except ValueError:
        amount = -1
    if unit not in units or amount <= 0:
        raise ValueError(f"{text!r} is not a size such as 1G, 256M or 1000000")
    return int(amount * units[unit])


# -- after a write (VERIFY_AFTER_WRITE) -------------------------------------------------------------------
def verify_written(settings: Settings, storage: Storage, source: BlobLocation, target: BlobLocation, fmt: str,
                   etag: str, size: int | None) -> FileCheck:
    """Check the first chunk of each variable of a reference just written, within ``MAX_READ_MB`` (variables
    whose first chunk would not fit are skipped, with why)."""
    planned = plan(storage, Target(source, target, fmt, etag.strip('"'), size), sample=1, budget=settings.max_read_mb << 20)
    return check(settings, storage, planned)


def verification_error(result: FileCheck) -> VerificationFailed:
    """The error a mismatching reference is recorded with (it names every variable that differs)."""
    bad = [v for v in result.variables if v.status == "mismatch"]
    details = "; ".join(f"{v.variable} at {v.index}: {v.reason}" + (
        f" (reference {v.reference_value}, original {v.original_value})" if v.reference_value is not None else "")
        for v in bad[:5])
    more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
    return VerificationFailed(
        f"The reference of {result.source} did not read back the original's stored values: {details}{more}. "
        f"The reference {result.reference} was removed (a wrong reference is worse than none).",
        variable=bad[0].variable if bad else None)


def verify_after_write(settings: Settings, storage: Storage, source: BlobLocation, result) -> NcrefsError | None:
    """``VERIFY_AFTER_WRITE``: check the reference the pipeline just wrote (``result``). A mismatch removes it
    (a wrong reference is worse than none) and its STAC item, and returns the error to record; a check that
    cannot run (the source replaced meanwhile, a limit) keeps the reference and is logged."""
    from shared.catalog import remove_items
    from shared.catalog.store import relative_source
    from shared.writer import remove_owned_reference

    target = parse_location(result.output, what="reference", allow_local=False)
    checked = verify_written(settings, storage, source, target, result.format, result.source_etag or "", result.source_size)
    if checked.status != "mismatch":
        if checked.status != "ok":
            log.warning("%s: its reference was not verified (%s): %s", source, checked.status,
                        checked.error.message if checked.error else "")
        return None
    error = verification_error(checked)
    error.source_etag = result.source_etag
    log.error("%s: %s", source, error.message)
    remove_owned_reference(storage, target, result.format, str(source))
    try:
        remove_items(settings, storage, {relative_source(source, settings)})
    except Exception as problem:  # noqa: BLE001 - `ncrefs stac build` removes an item whose reference is gone
        log.warning("STAC item of %s not removed: %s", source, problem)
    return error
