"""STAC Items (one per referenced file) and Collections (one per dataset), built with pystac.

Asset hrefs are ``https`` URLs under the configured blob endpoint (what any HTTP client, a STAC
browser and xpystac's kerchunk reader fetch, once signed); the storage extension's
``storage:schemes`` says which account (``ms-azure`` for ``https://<account>.blob.core.windows.net``,
``custom-azure`` with the endpoint for any other cloud, DNS zone or Azurite). Chunk URLs inside
a reference stay ``abfs://`` (``remote_protocol="abfs"`` with the account's options).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from shared.catalog.facts import Facts, iso

DATACUBE = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
STORAGE = "https://stac-extensions.github.io/storage/v2.0.0/schema.json"
NETCDF = "application/x-netcdf"
JSON = "application/json"
PARQUET = "application/vnd.apache.parquet"
ICECHUNK = "application/vnd.zarr+icechunk"
SCHEME_KEY = "azure"
# Items and collections without a footprint still need a Collection extent: the whole globe,
# flagged so nobody takes it for a measured one.
WHOLE_GLOBE = [-180.0, -90.0, 180.0, 90.0]


def storage_scheme(account: str, endpoint: str) -> dict[str, Any]:
    """The storage extension's scheme for the account behind ``endpoint`` (``https://acct.blob.core.windows.net``)."""
    endpoint = endpoint.split("?", 1)[0].rstrip("/")
    if endpoint.lower() == f"https://{account}.blob.core.windows.net":
        return {"type": "ms-azure", "platform": "https://{account}.blob.core.windows.net", "account": account}
    platform = endpoint.replace(account, "{account}", 1) if account and account in endpoint else endpoint
    return {"type": "custom-azure", "platform": platform, "account": account}


def build_item(item_id: str, facts: Facts, *, source_href: str, reference_href: str, reference_format: str,
               scheme: dict[str, Any], last_modified: datetime | None, source_size: int | None = None):
    """One file's Item. ``facts`` from :func:`shared.catalog.facts.describe`."""
    import pystac

    properties: dict[str, Any] = {}
    if facts.title:
        properties["title"] = facts.title
    start, end = facts.start, facts.end
    if start is None:
        # STAC needs a time. A file that states none gets its source's Last-Modified, and says so.
        start = end = (last_modified or datetime.now(timezone.utc)).astimezone(timezone.utc)
        properties["ncrefs:datetime_from"] = "source_last_modified"
    else:
        properties["ncrefs:datetime_from"] = "time_coverage_attributes" if facts.time_from == "attributes" else "time_coordinate"
    if start == end:
        when = start
    else:
        when = None
        properties["start_datetime"], properties["end_datetime"] = iso(start), iso(end)
    if facts.notes:
        properties["ncrefs:notes"] = facts.notes[:20]
    item = pystac.Item(id=item_id, geometry=facts.geometry, bbox=facts.bbox, datetime=when, properties=properties,
                       stac_extensions=[DATACUBE, STORAGE])
    item.properties["cube:dimensions"] = facts.dimensions
    if facts.variables:
        item.properties["cube:variables"] = facts.variables
    item.properties["storage:schemes"] = {SCHEME_KEY: scheme}
    source = pystac.Asset(href=source_href, media_type=NETCDF, roles=["data", "source"], title="the original NetCDF file",
                          extra_fields={"storage:refs": [SCHEME_KEY]})
    if source_size is not None:
        source.extra_fields["ncrefs:size"] = source_size
    item.add_asset("source", source)
    item.add_asset("reference", reference_asset(reference_href, reference_format))
    return item


def reference_asset(href: str, fmt: str):
    import pystac

    if fmt == "parquet":
        return pystac.Asset(href=href, media_type=PARQUET, roles=["references"], title="kerchunk reference (Parquet)",
                            extra_fields={"storage:refs": [SCHEME_KEY]})
    return pystac.Asset(href=href, media_type=JSON, roles=["references"], title="kerchunk reference (JSON)",
                        extra_fields={"storage:refs": [SCHEME_KEY]})


def build_collection(name: str, description: str, *, bbox: list[float] | None, start: datetime | None,
                     end: datetime | None, dimensions: dict, variables: dict, outputs: dict[str, str],
                     scheme: dict[str, Any], members: int):
    """A dataset's Collection: its extent and its Icechunk / Parquet / JSON outputs as assets."""
    import pystac

    spatial = pystac.SpatialExtent([bbox or WHOLE_GLOBE])
    temporal = pystac.TemporalExtent([[start, end]])
    collection = pystac.Collection(id=name, description=description, extent=pystac.Extent(spatial, temporal),
                                   title=name, license="other", stac_extensions=[DATACUBE, STORAGE])
    if bbox is None:
        collection.extra_fields["ncrefs:spatial_extent"] = "unknown (its files have no footprint)"
    collection.extra_fields["cube:dimensions"] = dimensions
    if variables:
        collection.extra_fields["cube:variables"] = variables
    collection.extra_fields["storage:schemes"] = {SCHEME_KEY: scheme}
    collection.extra_fields["ncrefs:members"] = members
    titles = {"icechunk": ("Icechunk repository (virtual chunks in the source container)", ICECHUNK, ["data"]),
              "parquet": ("combined kerchunk reference (Parquet)", PARQUET, ["references"]),
              "json": ("combined kerchunk reference (JSON)", JSON, ["references"])}
    for output, href in outputs.items():
        title, media_type, roles = titles[output]
        collection.add_asset(output, pystac.Asset(href=href, media_type=media_type, roles=roles, title=title,
                                                  extra_fields={"storage:refs": [SCHEME_KEY]}))
    return collection
