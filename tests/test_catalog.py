"""The STAC catalog on Azurite: an Item per referenced file (footprint, time, datacube, assets),
a Collection per dataset, one static catalog under refs/_stac/ kept current by the pipeline and
the datasets service, rebuilt by ``ncrefs stac build``; every object validated offline against
the core schemas and the vendored extension schemas; an item's reference opened through xpystac."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr
from azure.storage.blob import BlobClient, BlobSasPermissions, generate_blob_sas
from pystac.validation import JsonSchemaSTACValidator, set_validator
from pystac.validation.stac_validator import GetSchemaError

from shared import catalog, datasets
from shared.catalog import items as stac_items
from shared.catalog.store import item_path
from shared.models import ReferenceRequest
from shared.pipeline import generate_reference
from tests import samples
from tests.test_cli import ncrefs as run_cli

# Data files stay beside the project, like ../shared/corpus (see SOURCES.md there).
SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "stac_schemas"
SCHEMA_FILES = {
    stac_items.DATACUBE: "datacube/v2.2.0/schema.json",
    stac_items.STORAGE: "storage/v2.0.0/schema.json",
    **{f"https://stac-extensions.github.io/storage/v2.0.0/platforms/{p}.json": f"storage/v2.0.0/platforms/{p}.json"
       for p in ("aws-s3", "custom-s3", "ms-azure")},
}
# The core schemas ship with pystac; the extension schemas are data fetched from their repositories, which
# may not be committed here, so they live beside the project. Without them only the extension checks skip.
HAVE_EXTENSION_SCHEMAS = SCHEMAS.is_dir()
needs_extension_schemas = pytest.mark.skipif(not HAVE_EXTENSION_SCHEMAS,
                                             reason="../shared/stac_schemas (the extension schemas) is not beside the project")


class OfflineValidator(JsonSchemaSTACValidator):
    """pystac's validator with the extension schemas preloaded; any other schema is refused, never fetched."""

    def __init__(self):
        super().__init__()
        for uri, name in SCHEMA_FILES.items() if HAVE_EXTENSION_SCHEMAS else ():
            self.schema_cache[uri] = json.loads((SCHEMAS / name).read_text())
        # PROJJSON stand-in: any object; referencing needs its dialect ($schema) to load it from the cache.
        self.schema_cache["https://proj.org/schemas/v0.4/projjson.schema.json"] = {
            "$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}

    def _get_schema(self, schema_uri: str) -> dict:
        if schema_uri not in self.schema_cache:
            raise GetSchemaError(schema_uri, RuntimeError("not vendored: the tests never fetch a schema"))
        return self.schema_cache[schema_uri]


@pytest.fixture(scope="module")
def validator():
    offline = OfflineValidator()
    set_validator(offline)
    yield offline
    set_validator(JsonSchemaSTACValidator())


def validate(document: dict) -> list[str]:
    """Validate one item or collection (core + every extension); returns the schemas it was checked against."""
    from pystac.validation import validate_dict

    stored = json.loads(json.dumps(document))  # the document as stored: no link is followed
    if not HAVE_EXTENSION_SCHEMAS:
        validate_dict(stored, extensions=[])  # the core schema (pystac's own) only
        return []
    return validate_dict(stored)


def assert_extensions_checked(document: dict, checked: list[str]) -> None:
    """Datacube and storage declared, and (with the schemas beside the project) validated."""
    assert {stac_items.DATACUBE, stac_items.STORAGE} <= set(document.get("stac_extensions", []))
    if HAVE_EXTENSION_SCHEMAS:
        assert stac_items.DATACUBE in checked and stac_items.STORAGE in checked


# -- sample files beyond tests/samples.py ---------------------------------------------------------
def grid_file(path: Path, lats, lons, *, lon_units="degrees_east", attrs=None, calendar="standard", times=None) -> Path:
    times = np.arange(3, dtype="f8") if times is None else times
    data = np.arange(len(times) * len(lats) * len(lons), dtype="f4").reshape(len(times), len(lats), len(lons))
    ds = xr.Dataset({"tas": (("time", "lat", "lon"), data, {"units": "K", "long_name": "air temperature", **(attrs or {})})},
                    coords={"time": ("time", times, {"units": "days since 2001-02-27", "calendar": calendar}),
                            "lat": ("lat", np.asarray(lats, "f8"), {"units": "degrees_north"}),
                            "lon": ("lon", np.asarray(lons, "f8"), {"units": lon_units})})
    ds.to_netcdf(path, engine="h5netcdf", encoding={"time": {"dtype": "f8"}})
    return path


def projected_file(path: Path, *, with_lat_lon: bool) -> Path:
    """UTM zone 33N (EPSG:32633) x/y in metres with a CF grid_mapping written by pyproj and, as CF asks,
    the 2-D latitude/longitude of every cell (or not)."""
    from pyproj import CRS, Transformer

    x = 500_000.0 + np.arange(20) * 1000.0  # 500-519 km east: about 15 E
    y = 5_000_000.0 + np.arange(10) * 1000.0  # about 45 N
    crs = xr.DataArray(np.int32(0), attrs=CRS.from_epsg(32633).to_cf())
    elev = ("y", "x"), np.ones((10, 20), "f4"), {"units": "m", "grid_mapping": "crs"}
    coords = {"x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "m"}),
              "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m"})}
    if with_lat_lon:
        lon, lat = Transformer.from_crs(32633, 4326, always_xy=True).transform(*np.meshgrid(x, y))
        coords |= {"lat": (("y", "x"), lat, {"units": "degrees_north"}), "lon": (("y", "x"), lon, {"units": "degrees_east"})}
        elev[2]["coordinates"] = "lat lon"
    xr.Dataset({"elev": elev, "crs": crs}, coords=coords).to_netcdf(path, engine="h5netcdf")
    return path


def reference(settings, storage, upload, path: Path, name: str, fmt: str | None = None):
    return generate_reference(ReferenceRequest(source=upload(path, name), format=fmt), settings, storage)


def item_of(settings, storage, source: str) -> dict:
    return catalog.show(settings, storage, source)


# -- items ---------------------------------------------------------------------------------------
def test_items_of_global_regional_and_coordinate_free_files(tmp_path, settings, storage, upload, validator):
    cases = {
        "global/day.nc": samples.daily(tmp_path, 3),  # lon 0..350 every 10 degrees: the whole globe
        "regional/europe.nc": grid_file(tmp_path / "europe.nc", np.arange(35, 71, 1.0), np.arange(-10, 31, 1.0)),
        "regional/pacific.nc": grid_file(tmp_path / "pacific.nc", np.arange(-20, 1, 2.0), np.arange(170, 191, 2.0)),
        "bare/features.nc": samples.nc4_features(tmp_path),  # no latitude/longitude at all
        "bare/classic.nc": samples.nc3_classic(tmp_path),  # lat/lon dimensions without coordinates
    }
    for name, path in cases.items():
        result = reference(settings, storage, upload, path, name)
        assert result.status == "success" and not any("STAC" in w for w in result.warnings), result.warnings
    found = {name: item_of(settings, storage, f"{settings.source_container}/{name}") for name in cases}

    assert found["global/day.nc"]["bbox"] == [-180.0, -90.0, 180.0, 90.0]
    assert found["global/day.nc"]["properties"]["datetime"] == "2000-01-04T00:00:00Z"
    europe = found["regional/europe.nc"]
    assert europe["bbox"] == [-10.5, 34.5, 30.5, 70.5]  # cell centres padded by half a cell
    assert europe["geometry"]["type"] == "Polygon"
    pacific = found["regional/pacific.nc"]  # 170..190 E crosses the antimeridian: west > east, two polygons
    assert pacific["bbox"] == [169.0, -21.0, -169.0, 1.0]
    assert pacific["geometry"]["type"] == "MultiPolygon"
    # dates are the decoded time coordinate (days since 2001-02-27: 27 Feb .. 1 Mar, 2001 has no 29 Feb)
    assert (europe["properties"]["start_datetime"], europe["properties"]["end_datetime"]) == \
        ("2001-02-27T00:00:00Z", "2001-03-01T00:00:00Z")
    assert europe["properties"]["datetime"] is None
    for name in ("bare/features.nc", "bare/classic.nc"):
        assert found[name]["geometry"] is None and "bbox" not in found[name], "no coordinates: no footprint, not a guess"
    assert found["bare/features.nc"]["properties"]["start_datetime"] == "2020-01-01T00:00:00Z"

    cube = found["global/day.nc"]["properties"]
    assert cube["cube:dimensions"]["lon"] == {"type": "spatial", "axis": "x", "extent": [0.0, 350.0], "step": 10.0,
                                              "reference_system": 4326}
    assert cube["cube:dimensions"]["time"]["type"] == "temporal"
    assert cube["cube:variables"]["tas"] == {"dimensions": ["time", "lat", "lon"], "variable_type": "data",
                                             "description": "near-surface air temperature", "unit": "K"}
    assert found["bare/classic.nc"]["properties"]["cube:dimensions"]["lat"]["type"] == "other"

    assets = found["global/day.nc"]["assets"]
    endpoint = storage.blob_url
    assert assets["source"] == {"href": f"{endpoint}/{settings.source_container}/global/day.nc", "type": "application/x-netcdf",
                                "title": "the original NetCDF file", "roles": ["data", "source"],
                                "storage:refs": ["azure"], "ncrefs:size": cases["global/day.nc"].stat().st_size}
    assert assets["reference"]["href"] == f"{endpoint}/{settings.refs_container}/global/day.json"
    assert (assets["reference"]["type"], assets["reference"]["roles"]) == ("application/json", ["references"])
    assert cube["storage:schemes"]["azure"] == {"type": "custom-azure", "platform": endpoint.replace("devstoreaccount1", "{account}"),
                                                "account": "devstoreaccount1"}
    for document in found.values():
        assert_extensions_checked(document, validate(document))


@needs_extension_schemas
def test_validation_really_uses_the_extension_schemas(tmp_path, settings, storage, upload, validator):
    reference(settings, storage, upload, samples.daily(tmp_path, 1), "v/day.nc")
    document = item_of(settings, storage, f"{settings.source_container}/v/day.nc")
    broken = json.loads(json.dumps(document))
    broken["properties"]["cube:dimensions"]["lon"]["axis"] = "sideways"
    with pytest.raises(pystac.STACValidationError, match="datacube"):
        validate(broken)
    broken = json.loads(json.dumps(document))
    broken["assets"]["reference"]["storage:refs"] = "azure"
    with pytest.raises(pystac.STACValidationError, match="storage"):
        validate(broken)
    broken = json.loads(json.dumps(document))
    broken["properties"]["storage:schemes"]["azure"] = {"type": "ms-azure", "platform": "https://elsewhere.example"}
    with pytest.raises(pystac.STACValidationError, match="storage"):
        validate(broken)
    assert stac_items.storage_scheme("acct", "https://acct.blob.core.windows.net") == {
        "type": "ms-azure", "platform": "https://{account}.blob.core.windows.net", "account": "acct"}
    public = json.loads(json.dumps(document))
    public["properties"]["storage:schemes"]["azure"] = stac_items.storage_scheme("acct", "https://acct.blob.core.windows.net")
    validate(public)


def test_projected_hostile_and_odd_calendar_files(tmp_path, settings, storage, upload, validator):
    pytest.importorskip("pyproj")  # the test writes the file with it; the app reads only what the file says
    reference(settings, storage, upload, projected_file(tmp_path / "utm.nc", with_lat_lon=True), "odd/utm.nc")
    utm = item_of(settings, storage, f"{settings.source_container}/odd/utm.nc")
    west, south, east, north = utm["bbox"]
    assert 14.99 < west <= 15.0 < east < 15.3 and 45.1 < south < north < 45.3, utm["bbox"]  # cell centres (2-D: no padding)
    assert "UTM zone 33N" in utm["properties"]["cube:dimensions"]["x"]["reference_system"]  # the file's WKT
    assert utm["properties"]["cube:variables"]["lat"]["variable_type"] == "auxiliary"
    reference(settings, storage, upload, projected_file(tmp_path / "bare_utm.nc", with_lat_lon=False), "odd/bare_utm.nc")
    bare = item_of(settings, storage, f"{settings.source_container}/odd/bare_utm.nc")
    assert bare["geometry"] is None and any("projected x/y" in n for n in bare["properties"]["ncrefs:notes"])

    nan_coords = grid_file(tmp_path / "nan.nc", [np.nan, np.nan], [np.inf, np.nan])
    huge = grid_file(tmp_path / "huge.nc", [10.0, 11.0], [20.0, 21.0],
                     attrs={"long_name": "x" * 200_000, "units": "\x1bK\x07"}, calendar="360_day",
                     times=np.array([0.0, 1.0, 2.0]))
    for name, path in {"odd/nan.nc": nan_coords, "odd/huge.nc": huge}.items():
        assert reference(settings, storage, upload, path, name).status == "success"
    nan_item = item_of(settings, storage, f"{settings.source_container}/odd/nan.nc")
    assert nan_item["geometry"] is None and any("not finite" in n for n in nan_item["properties"]["ncrefs:notes"])
    assert nan_item["properties"]["cube:dimensions"]["lat"]["type"] == "other"
    huge_item = item_of(settings, storage, f"{settings.source_container}/odd/huge.nc")
    variable = huge_item["properties"]["cube:variables"]["tas"]
    assert len(variable["description"]) <= 256 and variable["unit"] == "K"
    # 360_day: 2001-02-27, 28, 29 (the 30-day February has no Gregorian 29th... read as cftime, or not at all)
    assert huge_item["properties"]["ncrefs:datetime_from"] in ("time_coordinate", "source_last_modified")
    assert len(json.dumps(huge_item)) < 10_000
    for document in (utm, bare, nan_item, huge_item):
        validate(document)


def test_the_reference_asset_follows_the_format(tmp_path, settings, storage, upload, validator):
    path = samples.nc4_chunked_cf_time(tmp_path)
    reference(settings, storage, upload, path, "f/t.nc", "json")
    first = item_of(settings, storage, f"{settings.source_container}/f/t.nc")
    reference(settings, storage, upload, path, "f/t.nc", "parquet")  # replaces the JSON reference
    item = item_of(settings, storage, f"{settings.source_container}/f/t.nc")
    assert item["assets"]["reference"]["type"] == "application/vnd.apache.parquet"
    assert item["assets"]["reference"]["href"].endswith("/f/t.parquet/")
    assert item["bbox"] == first["bbox"] and item["properties"]["cube:dimensions"] == first["properties"]["cube:dimensions"]
    assert catalog.show(settings, storage, f"{settings.refs_container}/f/t.parquet")["id"] == "f/t.nc"
    validate(item)


# -- the catalog as a whole ------------------------------------------------------------------------
def download_catalog(service, settings, into: Path) -> Path:
    container = service.get_container_client(settings.refs_container)
    for blob in container.list_blobs(name_starts_with="_stac/"):
        target = into / blob.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(container.download_blob(blob.name).readall())
    return into / "_stac" / "catalog.json"


def test_stac_build_rewrites_links_and_removes_what_is_gone(tmp_path, settings, storage, service, upload, validator):
    names = ["a/x/one.nc", "a/x/two.nc", "a/three.nc", "b/four.nc", "top.nc"]
    for i, name in enumerate(names):
        reference(settings, storage, upload, samples.daily(tmp_path, i, name=f"f{i}.nc"), name)
    refs = service.get_container_client(settings.refs_container)
    refs.delete_blob("b/four.json")  # a reference removed: its item must go
    refs.delete_blob(item_path("a/three.nc"))  # an item lost: build writes it again
    refs.upload_blob("_stac/catalog.json", b"{not json", overwrite=True)  # a damaged root catalog

    started = time.perf_counter()
    summary = catalog.build(settings, storage, "a/")  # the prefix: only items under a/ are rewritten
    assert (summary.items, summary.failed) == (3, {}), summary
    summary = catalog.build(settings, storage)
    assert (summary.items, summary.removed, summary.failed) == (4, 1, {}), summary
    elapsed = time.perf_counter() - started
    print(f"stac build of {len(names)} files twice: {elapsed:.2f} s")

    root = pystac.Catalog.from_file(str(download_catalog(service, settings, tmp_path / "copy")))
    found = sorted(item.id for item in root.get_items(recursive=True))
    assert found == ["a/three.nc", "a/x/one.nc", "a/x/two.nc", "top.nc"]
    assert [c.id for c in root.get_children()] == ["a"]  # b/ has no item left: its catalog is gone
    if HAVE_EXTENSION_SCHEMAS:
        root.validate_all()
    else:  # the core schema of the whole tree
        for child in [root, *root.get_all_items(), *root.get_all_collections()]:
            validate(child.to_dict(include_self_link=False))
    assert not any(b.name.startswith("_stac/catalogs/b/") for b in refs.list_blobs())


def test_a_catalog_failure_never_fails_the_reference(tmp_path, settings, storage, service, upload, validator, caplog):
    path = samples.daily(tmp_path, 2)
    name = "locked/day.nc"
    blob = service.get_blob_client(settings.refs_container, item_path(name))
    blob.upload_blob(b"{}", overwrite=True)
    lease = blob.acquire_lease(lease_duration=-1)  # a leased blob refuses any other writer: the item cannot be written
    try:
        result = reference(settings, storage, upload, path, name)
        assert result.status == "success"
        assert any("STAC item" in w and "ncrefs stac build" in w for w in result.warnings), result.warnings
        assert any("STAC item of" in r.message for r in caplog.records if r.levelname == "WARNING")
        assert service.get_blob_client(settings.refs_container, "locked/day.json").exists()
    finally:
        lease.release()
    assert catalog.build(settings, storage).failed == {}
    assert item_of(settings, storage, f"{settings.source_container}/{name}")["properties"]["datetime"] == "2000-01-03T00:00:00Z"


def test_a_dataset_gets_a_collection_and_loses_it_when_deleted(tmp_path, settings, storage, service, upload, validator):
    paths = [samples.daily(tmp_path, day) for day in range(4)]
    for path in paths:
        upload(path, f"tas/{path.name}")
    change = datasets.create(settings, storage, "tas-daily", prefix="tas/", outputs=["icechunk", "parquet", "json"])
    assert change.members == 4
    collection = catalog.show(settings, storage, "tas-daily")
    assert collection["extent"]["spatial"]["bbox"] == [[-180.0, -90.0, 180.0, 90.0]]
    assert collection["extent"]["temporal"]["interval"] == [["2000-01-01T00:00:00Z", "2000-01-04T00:00:00Z"]]
    assert collection["cube:dimensions"]["time"]["extent"] == ["2000-01-01T00:00:00Z", "2000-01-04T00:00:00Z"]
    assets = collection["assets"]
    assert assets["icechunk"]["type"] == "application/vnd.zarr+icechunk"
    assert assets["parquet"]["type"] == "application/vnd.apache.parquet"
    assert (assets["json"]["type"], assets["json"]["roles"]) == ("application/json", ["references"])
    assert assets["icechunk"]["href"].endswith(f"/{settings.refs_container}/_datasets/tas-daily/tas-daily.icechunk/")
    assert collection["ncrefs:members"] == 4
    assert_extensions_checked(collection, validate(collection))
    root = json.loads(service.get_blob_client(settings.refs_container, "_stac/catalog.json").download_blob().readall())
    assert {"rel": "child", "href": "collections/tas-daily/collection.json", "type": "application/json",
            "title": "tas-daily"} in root["links"]

    datasets.delete(settings, storage, "tas-daily")
    assert not service.get_blob_client(settings.refs_container, "_stac/collections/tas-daily/collection.json").exists()
    root = json.loads(service.get_blob_client(settings.refs_container, "_stac/catalog.json").download_blob().readall())
    assert not any("tas-daily" in link["href"] for link in root["links"])


# -- readers ---------------------------------------------------------------------------------------
def sign(href: str, azurite) -> str:
    """What a reader of a private container does with an asset href (as Planetary Computer's ``pc.sign``)."""
    key = dict(p.split("=", 1) for p in azurite.connection_string.split(";") if p)["AccountKey"]
    container, _, blob = href.split("/devstoreaccount1/", 1)[1].partition("/")
    token = generate_blob_sas("devstoreaccount1", container, blob, account_key=key, permission=BlobSasPermissions(read=True),
                              expiry=datetime.now(timezone.utc) + timedelta(minutes=10))
    return f"{href}?{token}"


def test_xpystac_opens_an_items_reference(tmp_path, azurite, settings, storage, upload):
    pytest.importorskip("xpystac")
    path = samples.nc4_chunked_cf_time(tmp_path)
    reference(settings, storage, upload, path, "read/t.nc", "json")
    item = pystac.Item.from_dict(item_of(settings, storage, f"{settings.source_container}/read/t.nc"))
    asset = item.assets["reference"]

    # xpystac GETs a JSON reference's href with plain HTTP: a private container's href must be signed first.
    import requests

    with pytest.raises(requests.HTTPError):
        xr.open_dataset(asset, engine="stac")
    asset.href = sign(asset.href, azurite)
    # The chunk URLs inside are abfs://: the reader gives adlfs the account (here Azurite's connection string).
    options = {"remote_protocol": "abfs", "remote_options": {"connection_string": azurite.connection_string}}
    with xr.open_dataset(asset, engine="stac", storage_options=options) as opened, \
            xr.open_dataset(path, engine="h5netcdf") as original:
        xr.testing.assert_allclose(opened.load(), original.load())


# -- the command line ------------------------------------------------------------------------------
def test_cli_stac_build_and_show(tmp_path, azurite, settings, storage, upload, validator):
    reference(settings, storage, upload, samples.daily(tmp_path, 5), "cli/day.nc")
    connection = ["--connection-string", azurite.connection_string]
    built = run_cli("stac", "build", "--prefix", "cli/", "--json", *connection)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["items"] == 1
    shown = run_cli("stac", "show", f"abfs://{settings.source_container}/cli/day.nc", "--json", *connection)
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["id"] == "cli/day.nc"
    validate(document)
    human = run_cli("stac", "show", f"{settings.source_container}/cli/day.nc", *connection)
    assert "bbox [-180.0, -90.0, 180.0, 90.0]" in human.stdout and "asset reference: application/json" in human.stdout
    missing = run_cli("stac", "show", f"{settings.source_container}/cli/none.nc", "--json", *connection)
    assert missing.returncode == 2 and json.loads(missing.stdout)["error"]["code"] == "source_not_found"
    unknown = run_cli("stac", "show", "no-such-dataset", *connection)
    assert unknown.returncode == 2 and "dataset_not_found" in unknown.stderr
    helped = run_cli("stac", "--help")
    assert "ncrefs stac build" in helped.stdout


def test_files_referenced_at_once_all_get_linked(tmp_path, settings, storage, service, upload):
    from concurrent.futures import ThreadPoolExecutor

    sources = [upload(samples.daily(tmp_path, day), f"many/day{day}.nc") for day in range(8)]
    with ThreadPoolExecutor(8) as pool:  # eight conditional writes of one folder catalog at once: none lost
        results = list(pool.map(lambda s: generate_reference(ReferenceRequest(source=s), settings, storage), sources))
    assert all(r.status == "success" and not any("STAC" in w for w in r.warnings) for r in results)
    folder = json.loads(service.get_blob_client(settings.refs_container, "_stac/catalogs/many/catalog.json")
                        .download_blob().readall())
    assert sorted(link["href"] for link in folder["links"] if link["rel"] == "item") == \
        [f"../../items/many/day{day}.nc.json" for day in range(8)]


def test_a_folder_catalog_changed_while_a_source_parses_keeps_every_link(tmp_path, settings, storage, service, upload,
                                                                          monkeypatch):
    """The catalogs an item is linked into are read while its source is parsed (nothing to write when
    the links are there); another file linked in meanwhile is kept: the write is conditional on that read."""
    import shared.pipeline as pipeline
    from shared.catalog import store

    first = upload(samples.daily(tmp_path, 1), "ahead/day1.nc")
    second = upload(samples.daily(tmp_path, 2), "ahead/day2.nc")
    read_ahead = []

    class AnsweredLookAhead(store.CatalogLookAhead):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            read_ahead.extend(future.result() for future in self.found.values())  # read before the other links in

    real_parse = pipeline.parse

    def parse_while_another_links(reader, url, name, settings_):
        parsed = real_parse(reader, url, name, settings_)
        if name.endswith("day2.nc"):
            assert generate_reference(ReferenceRequest(source=first), settings, storage).status == "success"
        return parsed

    monkeypatch.setattr(store, "CatalogLookAhead", AnsweredLookAhead)
    monkeypatch.setattr("shared.catalog.CatalogLookAhead", AnsweredLookAhead)
    monkeypatch.setattr(pipeline, "parse", parse_while_another_links)
    result = generate_reference(ReferenceRequest(source=second), settings, storage)
    assert result.status == "success" and not any("STAC" in w for w in result.warnings)
    assert read_ahead[:2] == [None, None]  # the second's reads: no folder catalog, no root yet
    folder = json.loads(service.get_blob_client(settings.refs_container, "_stac/catalogs/ahead/catalog.json")
                        .download_blob().readall())
    assert sorted(link["href"] for link in folder["links"] if link["rel"] == "item") == \
        ["../../items/ahead/day1.nc.json", "../../items/ahead/day2.nc.json"]
    root = json.loads(service.get_blob_client(settings.refs_container, "_stac/catalog.json").download_blob().readall())
    assert [link["href"] for link in root["links"] if link["rel"] == "child"] == ["catalogs/ahead/catalog.json"]


def test_a_backfill_links_its_items_once_at_the_end(tmp_path, settings, storage, service, upload):
    from shared.backfill import backfill

    for day in range(6):
        upload(samples.daily(tmp_path, day), f"batch/sub/day{day}.nc")
    assert backfill(settings, prefix="batch/", workers=3, progress=False).done == 6
    root = pystac.Catalog.from_file(str(download_catalog(service, settings, tmp_path / "copy")))
    assert sorted(item.id for item in root.get_items(recursive=True)) == [f"batch/sub/day{d}.nc" for d in range(6)]
    assert [c.id for c in root.get_children()] == ["batch"]


def test_cell_bounds_in_many_pieces_are_not_read_but_small_ones_are(tmp_path, settings, storage, upload, validator):
    # netCDF-C chunks a bounds variable along an unlimited dimension one step at a time (CMIP6's time_bnds):
    # 40 reads of 16 bytes each would refine an extent the time coordinate already gives. Few pieces are read.
    def daily_with_bounds(path: Path, chunk_steps: int) -> Path:
        import netCDF4

        with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
            nc.createDimension("time", None)
            nc.createDimension("bnds", 2)
            nc.createDimension("lat", 3)
            nc.createDimension("lon", 4)
            time = nc.createVariable("time", "f8", ("time",))
            time.setncatts({"units": "days since 2001-01-01", "calendar": "standard", "bounds": "time_bnds"})
            time[:] = np.arange(40) + 0.5
            nc.createVariable("time_bnds", "f8", ("time", "bnds"), chunksizes=(chunk_steps, 2))[:] = \
                np.stack([np.arange(40), np.arange(40) + 1.0], axis=1)
            nc.createVariable("lat", "f8", ("lat",)).units = "degrees_north"
            nc["lat"][:] = [-10, 0, 10]
            nc.createVariable("lon", "f8", ("lon",)).units = "degrees_east"
            nc["lon"][:] = [0, 10, 20, 30]
            nc.createVariable("tas", "f4", ("time", "lat", "lon"))[:] = np.ones((40, 3, 4), "f4")
        return path

    many = reference(settings, storage, upload, daily_with_bounds(tmp_path / "many.nc", 1), "b/many.nc")
    few = reference(settings, storage, upload, daily_with_bounds(tmp_path / "few.nc", 40), "b/few.nc")
    source = f"{settings.source_container}/b"
    many_item, few_item = item_of(settings, storage, f"{source}/many.nc"), item_of(settings, storage, f"{source}/few.nc")
    assert validate(many_item) == [] and validate(few_item) == []
    # From the coordinate (noon of the first and last day), said in the item; the file was read once.
    assert many_item["properties"]["start_datetime"].startswith("2001-01-01T12:00:00")
    assert many_item["properties"]["end_datetime"].startswith("2001-02-09T12:00:00")
    assert any("time_bnds: cell bounds in 40 pieces" in n for n in many_item["properties"]["ncrefs:notes"])
    assert many.requests == 1
    # From the bounds (midnight to midnight), read in one piece.
    assert few_item["properties"]["start_datetime"].startswith("2001-01-01T00:00:00")
    assert few_item["properties"]["end_datetime"].startswith("2001-02-10T00:00:00")
    assert few.requests <= 2


def test_the_item_reads_coordinates_as_xarray_reads_the_reference(tmp_path, settings, storage):
    """Facts decode the coordinates themselves (zarr's metadata rules, numcodecs, xarray's CF decoding), not
    through zarr's store: packed, compressed, shuffled, chunked, partly missing values must come out as
    xarray reads them through the reference."""
    import netCDF4

    from shared.catalog.facts import References, open_root

    path = tmp_path / "packed.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("lat", 25)
        nc.createDimension("lon", 40)
        nc.createDimension("time", None)
        lat = nc.createVariable("lat", "i2", ("lat",), zlib=True, shuffle=True, chunksizes=(10,), fill_value=-999)
        lat.setncatts({"units": "degrees_north", "scale_factor": 0.01, "add_offset": 10.0})
        lat[:] = np.ma.masked_array(np.linspace(-60, 60, 25), mask=[i == 7 for i in range(25)])
        lon = nc.createVariable("lon", "f4", ("lon",), chunksizes=(16,), zlib=True)
        lon.units = "degrees_east"
        lon[:] = np.linspace(-179.5, 179.5, 40)
        time = nc.createVariable("time", "f8", ("time",))
        time.units = "hours since 2000-01-01"
        time[:] = np.arange(3) * 6.0
        nc.createVariable("t", "f4", ("time", "lat", "lon"))[:] = np.ones((3, 25, 40))
        nc.createDimension("y", 150)
        nc.createDimension("x", 130)
        grid = nc.createVariable("grid_lat", "f4", ("y", "x"), zlib=True, shuffle=True, chunksizes=(64, 64), fill_value=np.float32(1e20))
        grid.units = "degrees_north"
        grid[:] = np.ma.masked_greater(np.linspace(-80, 80, 150 * 130).reshape(150, 130), 79.9)  # past the last chunk's edges too
    target = tmp_path / "packed.json"
    generate_reference(ReferenceRequest(source=str(path), target=str(target)), settings, storage)
    refs = json.loads(target.read_text())
    assert isinstance(refs["refs"]["grid_lat/0.0"], list) and isinstance(refs["refs"]["lat/0"], str)  # read, and copied
    data = path.read_bytes()
    wanted = {"lat", "lon", "time", "grid_lat"}
    fetched = open_root(References.from_dict(refs), wanted, lambda rs: [data[o:o + n] for _, o, n in rs], [])
    assert wanted == {"lat", "lon", "time", "grid_lat"}
    expected = xr.open_dataset("reference://", engine="zarr", decode_times=False, chunks=None,
                               backend_kwargs={"consolidated": False, "storage_options": {"fo": refs, "remote_protocol": "file"}})
    for name in ("lat", "lon", "time", "grid_lat"):
        np.testing.assert_array_equal(fetched[name].values, expected[name].values)
        assert fetched[name].dims == expected[name].dims
    assert np.isnan(fetched["lat"].values[7]) and fetched["lat"].values[0] == pytest.approx(-60, abs=0.01)
    assert set(fetched.variables) == set(expected.variables) and fetched["t"].shape == (3, 25, 40)
