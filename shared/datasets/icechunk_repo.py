"""A dataset's Icechunk repository in the refs container, with the source container as its
virtual chunk container, built from the same connection as everything else.

Chunks stay in the NetCDF sources: the repository holds their ``abfs://<source container>/…``
byte ranges. Readers are authorized for that one container only, and every chunk reference is
pinned to its source's ETag, so a source overwritten later fails loudly on read instead of
serving other bytes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

from shared.errors import DatasetNotFound, InvalidRequest
from shared.paths import BlobLocation
from shared.storage import Storage


def _config(storage: Storage) -> dict[str, str]:
    """object_store options: the endpoint unless it is the public cloud's default for the account."""
    url = storage.blob_url
    if url == f"https://{storage.account_name}.blob.core.windows.net":
        return {}
    config = {"endpoint": url}
    if urlsplit(url).scheme == "http":
        config["allow_http"] = "true"
    return config


def _credentials(storage: Storage, *, refreshable: bool) -> dict:
    """Keyword arguments for icechunk's Azure storage (``refreshable=False``) or credentials from the
    configured connection: the account key, the SAS token, or a token from your sign-in."""
    key = getattr(storage.service.credential, "account_key", None)
    if key:
        return {"access_key": key}
    query = urlsplit(storage.service.url).query
    if query:
        return {"sas_token": query}
    tokens = _BearerToken(storage.settings.client_id)
    # The repository's own storage takes a token (valid about an hour: enough for one build); virtual
    # chunk reads refresh theirs.
    return {"get_credentials": tokens} if refreshable else {"bearer_token": tokens.token().token}


class _BearerToken:
    """A picklable token source for icechunk's refreshable credentials (az login / managed identity)."""

    def __init__(self, client_id: str | None):
        self.client_id = client_id

    def token(self):
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(managed_identity_client_id=self.client_id).get_token("https://storage.azure.com/.default")

    def __call__(self):
        import icechunk

        token = self.token()
        return icechunk.AzureRefreshableCredential.BearerToken(token.token, datetime.fromtimestamp(token.expires_on, timezone.utc))


def virtual_prefix(container: str) -> str:
    return f"abfs://{container}/"


def _storage(storage: Storage, location: BlobLocation):
    import icechunk

    return icechunk.azure_storage(account=storage.account_name, container=location.container, prefix=location.path,
                                  config=_config(storage) or None, **_credentials(storage, refreshable=False))


def _virtual_config(storage: Storage, containers: list[str]):
    """Our own definition of each source container's store: a repository's stored one is never trusted
    with our credentials (it could name another endpoint)."""
    import icechunk
    from icechunk.storage import azure_store

    config = icechunk.RepositoryConfig.default()
    for container in containers:
        config.set_virtual_chunk_container(icechunk.VirtualChunkContainer(
            virtual_prefix(container), azure_store(account=storage.account_name, config=_config(storage) or None)))
    return config


def open_repository(storage: Storage, location: BlobLocation, containers: list[str] | None = None, *, create: bool = False):
    """The repository at ``location``, reading virtual chunks from ``containers`` of the configured
    account (default: the ``abfs://<container>/`` ones it records). ``create``: make it if missing."""
    import icechunk

    ice_storage = _storage(storage, location)
    if containers is None:
        stored = icechunk.Repository.fetch_config(ice_storage)
        if stored is None:
            raise DatasetNotFound(f"There is no Icechunk repository at {location.url('abfs')}.")
        containers = [prefix[len("abfs://"):].strip("/") for prefix in (stored.virtual_chunk_containers or {})
                      if prefix.startswith("abfs://") and prefix.count("/") == 3]
    config = _virtual_config(storage, containers)
    authorization = icechunk.containers_credentials(
        {virtual_prefix(c): icechunk.azure_credentials(**_credentials(storage, refreshable=True)) for c in containers})
    if create and not icechunk.Repository.exists(ice_storage):
        try:
            return icechunk.Repository.create(ice_storage, config, authorize_virtual_chunk_access=authorization)
        except icechunk.IcechunkError:  # created by someone else meanwhile
            pass
    try:
        return icechunk.Repository.open(ice_storage, config, authorize_virtual_chunk_access=authorization)
    except icechunk.IcechunkError as error:
        raise DatasetNotFound(f"There is no Icechunk repository at {location.url('abfs')}: {str(error).splitlines()[0]}") from None


def exists(storage: Storage, location: BlobLocation) -> bool:
    import icechunk

    return icechunk.Repository.exists(_storage(storage, location))


def write(repo, combined, pieces: list[tuple[object, str]], *, concat_dim: str, message: str, metadata: dict,
          last_updated_at: datetime, append_dim: str | None = None) -> str:
    """Commit ``combined`` (a virtual dataset) to ``main``: appended along ``append_dim``, or replacing
    everything. ``pieces``: the members it is made of, in order, with their sources' ETags. Returns the
    snapshot id.

    Every chunk reference is pinned to its source's ETag (and, as virtualizarr writes them, to the
    sources' Last-Modified): a source overwritten afterwards, even within the same second, fails the
    read of an old snapshot instead of serving the new file's bytes as the old one's.
    """
    import zarr

    session = repo.writable_session("main")
    first_step = 0
    if append_dim:
        group = zarr.open_group(session.store, mode="r", zarr_format=3)
        first_step = next(array.shape[array.metadata.dimension_names.index(append_dim)] for _, array in group.arrays()
                          if append_dim in (array.metadata.dimension_names or ()))
    mode = "a" if append_dim else "w"  # "w": a rebuild replaces the whole root group
    combined.vz.to_icechunk(session.store, mode=mode, append_dim=append_dim, last_updated_at=last_updated_at)
    _pin_to_etags(session.store, pieces, concat_dim, first_step, appended=bool(append_dim))
    return session.commit(message, metadata=metadata)


def _pin_to_etags(store, pieces: list[tuple[object, str]], concat_dim: str, first_step: int, *, appended: bool) -> None:
    """Write each member's virtual chunk references again, checksummed with its source's ETag."""
    import numpy as np
    from virtualizarr.manifests import ManifestArray
    from virtualizarr.manifests.manifest import INLINED_CHUNK_PATH

    step = first_step
    for index, (piece, etag) in enumerate(pieces):
        for name, variable in piece.dataset.variables.items():
            if not isinstance(variable.data, ManifestArray):
                continue
            along = concat_dim in variable.dims
            if not along and (appended or index > 0):
                continue  # written once, from the first member
            manifest = variable.data.manifest
            offset = [0] * manifest.ndim_chunk_grid
            if along:
                axis = variable.dims.index(concat_dim)
                offset[axis] = step // variable.data.metadata.chunk_grid.chunk_shape[axis]
            paths = manifest._paths.flatten()  # noqa: SLF001 - the flat arrays virtualizarr itself passes
            locations = np.where(paths == INLINED_CHUNK_PATH, "", paths)
            if not (locations != "").any():
                continue
            failed = store.set_virtual_refs_arr(
                array_path=str(name), chunk_grid_shape=manifest.shape_chunk_grid, locations=locations.tolist(),
                offsets=manifest._offsets.flatten(), lengths=manifest._lengths.flatten(),  # noqa: SLF001
                validate_containers=False, arr_offset=tuple(offset) if any(offset) else None, checksum=f'"{etag}"')
            if failed:
                raise RuntimeError(f"icechunk refused {len(failed)} chunk references of {name!r} from {piece.source}")
        step += piece.length


def history(repo, limit: int | None = None) -> list[dict]:
    snapshots = []
    for info in repo.ancestry(branch="main"):
        snapshots.append({"id": info.id, "message": info.message, "time": info.written_at.isoformat()})
        if limit and len(snapshots) >= limit:
            break
    return snapshots


def open_xarray(storage: Storage, location: BlobLocation, containers: list[str] | None = None, *,
                version: str | None = None, **kwargs):
    """The dataset at ``version`` (a snapshot id or a tag; default: the tip of main) as xarray."""
    import icechunk
    import xarray as xr

    repo = open_repository(storage, location, containers)
    if version is None:
        session = repo.readonly_session("main")
    elif version in repo.list_tags():
        session = repo.readonly_session(tag=version)
    else:
        try:
            session = repo.readonly_session(snapshot_id=version)
        except icechunk.IcechunkError as error:
            raise InvalidRequest(f"{version!r} is neither a tag nor a snapshot of this dataset: {error}".splitlines()[0],
                                 hint="`ncrefs dataset show NAME` lists its snapshots.") from None
    kwargs.setdefault("chunks", None)  # xarray's lazy arrays, as open_dataset gives; chunks={} for dask
    return xr.open_zarr(session.store, consolidated=False, zarr_format=3, **kwargs)


def write_empty(repo, message: str, metadata: dict) -> str:
    """Commit an empty root group to ``main`` (a dataset whose last members were deleted); the snapshot id."""
    import zarr

    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="w", zarr_format=3)  # "w": replaces the root group and every array
    return session.commit(message, metadata=metadata)
