"""The tile server (tiles/app.py) on Azurite, through FastAPI's TestClient: TiTiler's routes from a
per-file reference and from a dataset, the same pixels as TiTiler rendering the original NetCDF,
hostile url= values refused before any request, and the CLI's lazy import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("titiler.xarray")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from rasterio.io import MemoryFile  # noqa: E402
from titiler.xarray.factory import TilerFactory  # noqa: E402
from titiler.xarray.io import Reader  # noqa: E402

from scripts.azurite import free_port  # noqa: E402
from shared import datasets  # noqa: E402
from shared.backfill import backfill  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests import samples  # noqa: E402
from tiles.app import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DAYS = 3
TILE = "/tiles/WebMercatorQuad/2/1/1.png"  # over Europe/Africa: inside the grid
STYLE = {"rescale": "230,310", "colormap_name": "viridis"}
WORLD = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
    [[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]]}}


@pytest.fixture
def archive(tmp_path, settings, storage, upload):
    """Three daily files on a 2° grid in the source container, their references, a dataset over them."""
    files = [samples.smooth_daily(tmp_path, day) for day in range(DAYS)]
    for path in files:
        upload(path, f"tas/{path.name}")
    assert backfill(settings, prefix="tas/").done == DAYS
    datasets.create(settings, storage, "tas-daily", prefix="tas/", outputs=["icechunk", "parquet"])
    return files


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as client:
        yield client


def original_client(directory: Path) -> TestClient:
    """TiTiler's own xarray tiler on the local NetCDF files, with a plain xarray opener."""

    def open_local(src_path: str, group=None, decode_times=True, **_):
        return xr.open_dataset(directory / Path(src_path).name, decode_times=decode_times)

    class LocalReader(Reader):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, opener=open_local, **kwargs)

    app = FastAPI()
    app.include_router(TilerFactory(reader=LocalReader).router)
    return TestClient(app)


def pixels(png: bytes) -> np.ndarray:
    with MemoryFile(png) as memory, memory.open() as image:
        return image.read()


def test_routes_from_a_reference_and_from_a_dataset(archive, settings, client):
    refs = settings.refs_container
    urls = {
        "reference": f"abfs://{refs}/tas/tas_smooth_001.json",
        "reference by blob URL": f"{client.app.state.opener.storage.blob_url}/{refs}/tas/tas_smooth_001.json",
        "dataset": "tas-daily",
        "dataset icechunk URL": f"abfs://{refs}/_datasets/tas-daily/tas-daily.icechunk",
        "dataset parquet URL": f"abfs://{refs}/_datasets/tas-daily/tas-daily.parquet",
    }
    with xr.open_dataset(archive[1]) as original:
        expected = original.tas.isel(time=0).load()
    for what, url in urls.items():
        query = {"url": url, "variable": "tas", "sel": "time=2000-01-02"}
        info = client.get("/info", params={"url": url, "variable": "tas", "show_times": True})
        assert info.status_code == 200, (what, info.text)
        assert info.json()["width"] == 180 and info.json()["height"] == 90
        assert info.json()["count"] == (1 if what.startswith("reference") else DAYS), what

        tile = client.get(TILE, params={**query, **STYLE})
        assert tile.status_code == 200 and tile.headers["content-type"] == "image/png", (what, tile.text[:300])
        assert len(np.unique(pixels(tile.content)[:3].reshape(3, -1), axis=1).T) > 20, what  # a field, not one colour

        point = client.get("/point/13.0,41.0", params=query)
        assert point.status_code == 200, (what, point.text)
        value = expected.sel(lat=41.0, lon=13.0, method="nearest").item()
        assert point.json()["values"] == [pytest.approx(value, rel=1e-6)], what

        stats = client.post("/statistics", params={**query, "max_size": 1024}, json=WORLD)
        assert stats.status_code == 200, (what, stats.text)
        band = next(iter(stats.json()["properties"]["statistics"].values()))
        assert band["min"] == pytest.approx(float(expected.min()), rel=1e-6), what
        assert band["max"] == pytest.approx(float(expected.max()), rel=1e-6), what

    listing = client.get("/references", params={"prefix": "tas/"}).json()
    assert [r["url"] for r in listing] == [f"abfs://{refs}/tas/tas_smooth_{d:03d}.json" for d in range(DAYS)]
    assert [d["name"] for d in client.get("/datasets").json()] == ["tas-daily"]
    variables = client.get("/variables", params={"url": "tas-daily"}).json()["variables"]
    assert [(v["name"], v["dim"], len(v["steps"])) for v in variables] == [("tas", "time", DAYS)]
    assert client.get("/map").status_code == 200 and "maplibre-gl.js" in client.get("/map").text
    assert client.get("/static/maplibre/maplibre-gl.js").status_code == 200


@pytest.mark.parametrize("tile", ["/tiles/WebMercatorQuad/1/1/0.png", TILE, "/tiles/WebMercatorQuad/3/4/2.png"])
def test_tile_through_references_equals_tile_from_the_original(tile, archive, settings, client):
    original = original_client(archive[0].parent)
    for url, day in ((f"abfs://{settings.refs_container}/tas/tas_smooth_002.json", 2), ("tas-daily", 2), ("tas-daily", 0)):
        query = {"variable": "tas", "sel": f"time=2000-01-0{day + 1}", **STYLE}
        ours = client.get(tile, params={"url": url, **query})
        theirs = original.get(tile, params={"url": archive[day].name, **query})
        assert ours.status_code == theirs.status_code == 200, ours.text[:300]
        a, b = pixels(ours.content), pixels(theirs.content)
        assert a.shape == b.shape and np.array_equal(a, b), f"{url} day {day}: {np.count_nonzero(a != b)} pixels differ"
        assert (a[3] > 0).sum() > 1000  # the tile holds data (alpha), not only nodata


def test_errors_are_json_with_their_status(archive, settings, client):
    refs = settings.refs_container
    cases = [
        ({"url": f"abfs://{refs}/tas/missing.json", "variable": "tas"}, 404, "source_not_found"),
        ({"url": "no-such-dataset", "variable": "tas"}, 404, "dataset_not_found"),
        ({"url": "tas-daily", "variable": "nope"}, 404, None),
    ]
    for params, status, code in cases:
        response = client.get("/info", params=params)
        assert response.status_code == status, (params, response.text)
        assert "detail" in response.json()
        if code:
            assert response.json()["error"]["code"] == code


def dead_settings(settings: Settings) -> tuple[Settings, int]:
    """The same containers on a storage endpoint where nothing listens: any request would be a 503."""
    port = free_port()
    dead = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    return settings.model_copy(update={"connection_string": dead}), port


def hostile_urls(settings: Settings, dead_port: int) -> list[tuple[str, int, str]]:
    raw, refs = settings.source_container, settings.refs_container
    return [
        ("", 400, "invalid_request"),
        ("file:///etc/passwd", 403, "source_not_allowed"),
        ("file://localhost/proc/self/environ", 403, "source_not_allowed"),
        ("/etc/passwd", 403, "source_not_allowed"),
        ("./local.settings.json", 403, "source_not_allowed"),
        ("../refs/a.json", 403, "source_not_allowed"),
        ("~/.azure/accessTokens.json", 403, "source_not_allowed"),
        ("C:\\Windows\\win.ini", 400, "invalid_request"),
        ("http://169.254.169.254/metadata/identity/oauth2/token", 403, "source_not_allowed"),
        ("https://evil.example.com/refs/a.json", 403, "source_not_allowed"),
        (f"https://evil.example.com/devstoreaccount1/{refs}/a.json", 403, "source_not_allowed"),
        (f"http://127.0.0.1:{dead_port + 1 if dead_port < 65535 else 1}/devstoreaccount1/{refs}/a.json", 403, "source_not_allowed"),
        (f"http://localhost:{dead_port}/devstoreaccount1/{refs}/a.json", 403, "source_not_allowed"),
        (f"https://127.0.0.1:{dead_port}/devstoreaccount1/{refs}/a.json", 403, "source_not_allowed"),
        (f"http://127.0.0.1:{dead_port}/otheraccount/{refs}/a.json", 403, "source_not_allowed"),
        (f"https://otheraccount.blob.core.windows.net/{refs}/a.json", 403, "source_not_allowed"),
        (f"https://devstoreaccount1.blob.core.windows.net.evil.com/{refs}/a.json", 403, "source_not_allowed"),
        (f"https://user:pw@devstoreaccount1.blob.core.windows.net/{refs}/a.json", 403, "source_not_allowed"),
        (f"abfs://{refs}@otheraccount.dfs.core.windows.net/a.json", 403, "source_not_allowed"),
        (f"abfs://{refs}@evil.com/a.json", 403, "source_not_allowed"),
        ("ftp://example.com/refs/a.json", 400, "invalid_request"),
        ("s3://bucket/a.json", 400, "invalid_request"),
        ("gopher://127.0.0.1:6379/_INFO", 400, "invalid_request"),
        ("data:application/json,{}", 400, "invalid_request"),
        (f"abfs://{raw}/tas/tas_smooth_000.nc", 403, "source_not_allowed"),  # raw NetCDF: parsed only in the sandbox
        (f"abfs://{raw}/a.json", 403, "source_not_allowed"),
        ("abfs://other-container/a.json", 403, "source_not_allowed"),
        (f"abfs://{refs}/_errors/tas/a.json", 403, "source_not_allowed"),
        (f"abfs://{refs}/_datasets/tas-daily/state.json", 403, "source_not_allowed"),
        (f"abfs://{refs}/_datasets/tas-daily/errors/x.json", 403, "source_not_allowed"),
        (f"abfs://{refs}/_catalog/catalog.json", 403, "source_not_allowed"),
        (f"abfs://{refs}/a/../b.json", 400, "invalid_request"),
        (f"abfs://{refs}/a/%2e%2e/b.json", 400, "invalid_request"),
        (f"abfs://{refs}/a/..%2fb.json", 400, "invalid_request"),
        (f"abfs://{refs}/a//b.json", 400, "invalid_request"),
        (f"abfs://{refs}/a\x00.json", 400, "invalid_request"),
        (f"abfs://{refs}/a.json#x", 400, "invalid_request"),
        (f"abfs://{refs}/a.nc", 400, "invalid_request"),
        (f"abfs://Bad_Container/a.json", 400, "invalid_request"),
        ("dataset:../../etc/passwd", 400, "invalid_request"),
        ("dataset:tas-daily:../x", 400, "invalid_request"),
    ]


def test_hostile_urls_are_refused_before_any_request(settings, capsys):
    """Against storage where nothing listens: a url= that reached storage would be a slow 503."""
    dead, port = dead_settings(settings)
    report = []
    with TestClient(create_app(dead)) as client:
        for url, status, code in hostile_urls(settings, port):
            for path in ("/info", TILE, "/point/0,0", "/variables"):
                response = client.get(path, params={"url": url, "variable": "tas"})
                assert response.status_code == status, (url, path, response.text)
                assert response.json()["error"]["code"] == code, (url, path, response.text)
                assert response.json()["detail"]
            response = client.post("/statistics", params={"url": url, "variable": "tas"}, json=WORLD)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), url
            report.append(f"{status} {code:20} {url!r}")
    with capsys.disabled():
        print("\nhostile url= values (every route):\n  " + "\n  ".join(report))


def test_a_reference_pointing_outside_the_source_container_is_refused(archive, settings, service, client):
    """A JSON reference in the refs container whose chunks point elsewhere: nothing is read from there."""
    good = json.loads(service.get_blob_client(settings.refs_container, "tas/tas_smooth_000.json").download_blob().readall())
    chunk = next(k for k, v in good["refs"].items() if k.startswith("tas/") and isinstance(v, list))
    for i, target in enumerate(["file:///etc/passwd", "https://evil.example.com/x.nc", "http://169.254.169.254/x",
                                "abfs://other-container/x.nc", f"abfs://{settings.refs_container}/x.nc",
                                f"abfs://{settings.source_container}@otheraccount.dfs.core.windows.net/x.nc", "/etc/passwd"]):
        bad = json.loads(json.dumps(good))
        bad["refs"][chunk] = [target, 0, 100]
        name = f"evil/ref{i}.json"
        service.get_blob_client(settings.refs_container, name).upload_blob(json.dumps(bad), overwrite=True)
        response = client.get(TILE, params={"url": f"abfs://{settings.refs_container}/{name}", "variable": "tas",
                                            "sel": "time=2000-01-01"})
        assert response.status_code == 403, (target, response.text)
        assert response.json()["error"]["code"] == "source_not_allowed", target


def test_the_cli_never_imports_the_tile_server():
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import shared.cli"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.splitlines() if "|" in line}
    assert not imported & {"titiler", "rasterio", "rio_tiler", "uvicorn", "fastapi", "tiles"}, imported & {"titiler", "rasterio"}


def test_ncrefs_tiles_without_the_extra_says_how_to_install_it(monkeypatch, settings, capsys):
    from shared.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "tiles.serve", raising=False)
    assert main(["tiles", "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert "pip install -r requirements-tiles.txt" in error and "uvicorn" in error


def test_the_tile_server_package_has_its_app_its_lock_and_maplibre(tmp_path):
    from scripts.package_tiles import build

    out = build(tmp_path / "tiles-app")
    assert (out / "requirements.txt").read_text() == (ROOT / "requirements-tiles.txt").read_text()
    assert json.loads((out / "host.json").read_text())["extensions"]["http"]["routePrefix"] == ""
    assert "AsgiFunctionApp" in (out / "function_app.py").read_text()
    assert (out / "tiles" / "static" / "maplibre" / "maplibre-gl.js").is_file()
    assert (out / "tiles" / "static" / "map.html").is_file() and (out / "shared" / "opener.py").is_file()
    assert not list(out.rglob("__pycache__"))
