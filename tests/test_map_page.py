"""The map page (/map) in a real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright):
served by ``ncrefs tiles`` in its own process on Azurite, it loads, picks a dataset, draws tiles from
it, shows a colour bar and the value under the cursor. No network but 127.0.0.1: MapLibre comes
from the app, the style has no basemap, and any request elsewhere fails the test.

The screenshot it takes is docs/map.png (written when NCREFS_UPDATE_SCREENSHOT=1)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("titiler.xarray")
playwright_api = pytest.importorskip("playwright.sync_api")

from rasterio.io import MemoryFile  # noqa: E402

from scripts.azurite import free_port  # noqa: E402
from shared import datasets  # noqa: E402
from shared.backfill import backfill  # noqa: E402
from tests import samples  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run",
                 # WebGL without a GPU: SwiftShader, which recent Chromium enables only when asked.
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
SCREENSHOT = ROOT / "docs" / "map.png"
BACKGROUND = (0xDD, 0xE3, 0xEA)  # the style's background colour (tiles/static/map.js)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (scripts/bootstrap installs it)")


@pytest.fixture
def tile_server(tmp_path, settings, storage, upload):
    """``ncrefs tiles`` on a free loopback port, over a dataset of 4 days and their references."""
    for day in range(4):
        path = samples.smooth_daily(tmp_path, day)
        upload(path, f"tas/{path.name}")
    assert backfill(settings, prefix="tas/").done == 4
    datasets.create(settings, storage, "tas-daily", prefix="tas/")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ncrefs", "tiles", "--port", str(port)], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ncrefs tiles did not start:\n{server.stdout.read().decode()}") from None
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(10)


def test_map_page_shows_a_dataset_with_colour_bar_and_value_under_cursor(tile_server):
    base = tile_server
    tiles, foreign, failures = [], [], []
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 620})
            page.on("console", lambda m: m.type == "error" and failures.append(m.text))
            page.on("pageerror", lambda e: failures.append(str(e)))

            def on_request(request):
                if not request.url.startswith((base, "data:", "blob:")):
                    foreign.append(request.url)

            page.on("request", on_request)
            page.on("response", lambda r: "/tiles/WebMercatorQuad/" in r.url and tiles.append((r.status, r.headers.get("content-type"))))
            page.goto(f"{base}/map?url=tas-daily&step=2000-01-03T00:00:00.000000000")
            page.wait_for_selector("body[data-ready=true]", timeout=30_000)
            assert page.input_value("#source") == "tas-daily"
            assert page.input_value("#variable") == "tas"
            assert page.input_value("#step").startswith("2000-01-03")
            assert page.locator("#step option").count() == 4
            page.wait_for_function("window.ncrefsMap.areTilesLoaded() && window.ncrefsMap.loaded()", timeout=30_000)
            ok = [t for t in tiles if t[0] == 200 and t[1] == "image/png"]
            assert len(ok) >= 2, tiles

            # the colour bar is an image the server drew, with its range beside it
            assert page.evaluate("document.getElementById('colorbar').naturalWidth") == 256
            low, high = float(page.inner_text("#vmin")), float(page.inner_text("#vmax"))
            assert 230 < low < high < 310

            # the value under the cursor
            box = page.locator("#map").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.5)
            page.wait_for_function("/\\d/.test(document.getElementById('value').textContent)", timeout=15_000)
            value = float(page.inner_text("#value").split()[0])
            assert low <= value <= high
            assert "K" in page.inner_text("#value")

            shot = page.screenshot(type="png")
            map_shot = page.locator("#map").screenshot(type="png")
        finally:
            browser.close()
    assert not foreign, f"requests left 127.0.0.1: {foreign}"
    assert not failures, failures

    with MemoryFile(map_shot) as memory, memory.open() as image:
        rgb = image.read()[:3].reshape(3, -1).T
    background = np.all(np.abs(rgb.astype(int) - BACKGROUND) <= 2, axis=1)
    colours = len(np.unique(rgb[~background], axis=0))
    assert (~background).mean() > 0.3, f"only {(~background).mean():.0%} of the map is data"
    assert colours > 50, f"only {colours} colours: an empty map?"
    if os.environ.get("NCREFS_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(shot)
