"""What a tile request's ``url=`` may name, and opening it (no titiler import here).

``url=`` is a per-file reference (``.json`` / ``.parquet`` in the refs container), a dataset's name,
or one of a dataset's outputs (``…/_datasets/<name>/<name>.icechunk|.parquet|.json``). It is parsed,
never fetched: ``shared.paths.parse_location(..., allow_local=False)``, then the configured account
(``Storage.check_account``) and containers. Refused before any request to storage: local paths,
``file://``, other hosts or accounts, other containers, raw NetCDF blobs (parsing one in the server
process is what the sandboxed ingestion path exists to avoid), ncrefs's own ``_…`` names other than
dataset outputs. A JSON reference's chunk URLs must all point into the source container of the
configured account; Parquet chunks are read through adlfs on the configured account only.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import InvalidRequest, SourceNotAllowed, SourceNotFound
from shared.paths import RESERVED_MARK, BlobLocation, parse_location
from shared.settings import Settings
from shared.storage import Storage

REFERENCE_SUFFIXES = (".json", ".parquet")
# How long an opened dataset is reused (a reference rewritten or a dataset updated shows after this).
CACHE_TTL_S = 30.0
CACHE_SIZE = 32


@dataclass(frozen=True)
class Target:
    """What ``url=`` resolved to: a per-file reference, or a dataset (by name, in one of its outputs)."""

    kind: str  # "reference" | "dataset"
    url: str  # abfs://refs/... for a reference; the dataset's name for a dataset
    output: str | None = None  # the dataset output asked for (None: the best one it has)

    @property
    def key(self) -> str:
        """The string handed to titiler's Reader as ``src_path`` (and back to :func:`resolve`)."""
        return self.url if self.kind == "reference" else f"dataset:{self.url}" + (f":{self.output}" if self.output else "")


def resolve(text: str, settings: Settings, storage: Storage) -> Target:
    """The target ``text`` names, or an NcrefsError (400/403/404) saying why not. Never touches storage."""
    from shared.datasets.model import DATASETS_PREFIX, NAME_RE, OUTPUT_SUFFIXES

    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("url= is empty.", hint="Give a reference URL (abfs://refs/a/b.json), a dataset name or a dataset output URL.")
    if text.startswith("dataset:"):  # a key of ours coming back: re-check it all the same
        name, _, output = text[len("dataset:"):].partition(":")
        if not NAME_RE.match(name) or output not in ("", *OUTPUT_SUFFIXES):
            raise InvalidRequest(f"url= {text!r} is not a dataset.")
        return Target("dataset", name, output or None)
    if NAME_RE.match(text):
        return Target("dataset", text)
    location = parse_location(text, what="url", allow_local=False)
    if not isinstance(location, BlobLocation):  # parse_location refuses these already; be explicit
        raise SourceNotAllowed(f"url= {text!r} is a local file; only blobs of the configured account are served.")
    storage.check_account(location)
    if location.container != settings.refs_container:
        raise SourceNotAllowed(
            f"url= {text!r} is in container {location.container!r}; tiles are served from references and datasets "
            f"in {settings.refs_container!r} only.",
            hint=f"Give the file's reference (abfs://{settings.refs_container}/<path>.json) or a dataset name; "
                 "`ncrefs virtualize` writes one for a NetCDF file.")
    path = location.path.rstrip("/")
    parts = path.split("/")
    if parts[0] == DATASETS_PREFIX:
        suffixes = {suffix: output for output, suffix in OUTPUT_SUFFIXES.items()}
        name = parts[1] if len(parts) == 3 else ""
        stem, dot, suffix = parts[-1].rpartition(".")
        if not (NAME_RE.match(name) and stem == name and f".{suffix}" in suffixes):
            raise SourceNotAllowed(f"url= {text!r} is inside {DATASETS_PREFIX}/ but is not a dataset's output.",
                                   hint="Give the dataset's name, or _datasets/<name>/<name>.icechunk|.parquet|.json.")
        return Target("dataset", name, suffixes[f".{suffix}"])
    if parts[0].startswith(RESERVED_MARK):
        raise SourceNotAllowed(f"url= {text!r} is one of ncrefs's own records, not a reference.")
    if not path.lower().endswith(REFERENCE_SUFFIXES):
        raise InvalidRequest(f"url= {text!r} is not a reference (.json or .parquet).",
                             hint="Give a per-file reference, a dataset name or a dataset output URL.")
    return Target("reference", BlobLocation(location.container, path).url("abfs"))


class Opener:
    """Opens targets with the server's own connection, reusing each for ``CACHE_TTL_S`` seconds."""

    def __init__(self, settings: Settings, storage: Storage | None = None, ttl_s: float = CACHE_TTL_S):
        self.settings = settings
        self.storage = storage or Storage(settings)
        self.ttl_s = ttl_s
        self._cache: dict[tuple, tuple[float, object]] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}

    def __call__(self, src_path: str, group: str | None = None, decode_times: bool = True, **_ignored):
        """titiler's ``opener`` hook: ``src_path`` is a :attr:`Target.key`."""
        target = resolve(src_path, self.settings, self.storage)
        key = (target.key, group, bool(decode_times))
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:  # one open per target at a time; the others wait and reuse it
            now = time.monotonic()
            hit = self._cache.get(key)
            if hit and now - hit[0] < self.ttl_s:
                return hit[1]
            dataset = self.open(target, group=group, decode_times=decode_times)
            with self._lock:
                self._cache[key] = (now, dataset)
                if len(self._cache) > CACHE_SIZE:
                    oldest = min(self._cache, key=lambda k: self._cache[k][0])
                    self._cache.pop(oldest, None)
            return dataset

    def open(self, target: Target, *, group: str | None = None, decode_times: bool = True):
        from shared.datasets import load_definition
        from shared.datasets.model import output_location

        kwargs = {"decode_times": decode_times}
        if group:
            kwargs["group"] = group
        if target.kind == "reference":
            return self._open_reference(target.url, kwargs)
        definition = load_definition(self.settings, self.storage, target.url)
        if definition.container != self.settings.source_container:
            raise SourceNotAllowed(f"Dataset {definition.name!r} reads container {definition.container!r}; the tile "
                                   f"server serves data of {self.settings.source_container!r} only.")
        output = target.output or next(o for o in ("icechunk", "parquet", "json") if o in definition.outputs)
        if output not in definition.outputs:
            raise SourceNotFound(f"Dataset {definition.name!r} has no {output} output.",
                                 hint=f"Its outputs: {', '.join(definition.outputs)}.")
        location = output_location(self.settings.refs_container, definition.name, output)
        if output == "icechunk":
            from shared.datasets import icechunk_repo

            return icechunk_repo.open_xarray(self.storage, location, [definition.container], **kwargs)
        return self._open_reference(location.url("abfs"), kwargs)

    def _open_reference(self, url: str, kwargs: dict):
        import xarray as xr

        options = self.storage.fsspec_options()
        location = parse_location(url, what="url", allow_local=False)
        if url.endswith(".parquet"):
            from fsspec.implementations.reference import LazyReferenceMapper
            import fsspec

            if not self.storage.list_under(location):
                raise SourceNotFound(f"There is no reference {url}.")
            refs = LazyReferenceMapper(url.split("://", 1)[1], fs=fsspec.filesystem("abfs", **options))
        else:
            found = self.storage.get(location)
            if found is None:
                raise SourceNotFound(f"There is no reference {url}.", hint="`ncrefs virtualize` writes one for a NetCDF file.")
            try:
                refs = json.loads(found[0])
            except ValueError:
                raise InvalidRequest(f"{url} is not a JSON reference.") from None
            self.check_chunk_urls(refs, url)
        # Chunks are read through adlfs on the configured account whatever a reference says.
        return xr.open_dataset("reference://", engine="zarr", **kwargs, backend_kwargs={
            "consolidated": False, "zarr_format": 2,
            "storage_options": {"fo": refs, "remote_protocol": "abfs", "remote_options": {**options, "asynchronous": True}}})

    def check_chunk_urls(self, refs: dict, url: str) -> None:
        """Every chunk of a JSON reference must live in the source container of the configured account."""
        entries = refs.get("refs", refs) if isinstance(refs, dict) else None
        if not isinstance(entries, dict):
            raise InvalidRequest(f"{url} is not a kerchunk reference.")
        seen: set[str] = set()
        for value in entries.values():
            if not (isinstance(value, list) and value):
                continue
            target = value[0]
            if target in seen:
                continue
            seen.add(target)
            if not isinstance(target, str) or urlsplit(target).scheme.lower() not in ("abfs", "az", "abfss"):
                raise SourceNotAllowed(f"{url} points a chunk at {str(target)[:200]!r}; only abfs:// chunks in the source "
                                       "container are read.")
            location = parse_location(target, what="chunk URL", allow_local=False)
            self.storage.check_account(location)
            if location.container != self.settings.source_container:
                raise SourceNotAllowed(f"{url} points a chunk into container {location.container!r}, not the source "
                                       f"container {self.settings.source_container!r}.")

    def list_references(self, prefix: str = "", limit: int = 1000) -> list[dict]:
        """Per-file references under ``prefix`` in the refs container (ncrefs's own ``_…`` names left out)."""
        from shared.paths import validate_blob_name

        if prefix:
            validate_blob_name(prefix.rstrip("/") or "x", what="prefix")
        found: dict[str, dict] = {}
        for blob in self.storage.list_blobs(self.settings.refs_container, prefix):
            name = blob.path
            if name.split("/", 1)[0].startswith(RESERVED_MARK):
                continue
            if name.lower().endswith(".json"):
                found[name] = {"url": f"abfs://{self.settings.refs_container}/{name}", "format": "json"}
            elif ".parquet/" in name.lower():
                root = name[: name.lower().index(".parquet/") + len(".parquet")]
                found.setdefault(root, {"url": f"abfs://{self.settings.refs_container}/{root}", "format": "parquet"})
            if len(found) >= limit:
                break
        return [{"name": name, **info} for name, info in sorted(found.items())]
