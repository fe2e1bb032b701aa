"""The tile server: titiler.xarray's standard routes over ncrefs references and datasets, plus /map.

    create_app(settings) -> FastAPI

Routes (TiTiler's, at the root): ``/info``, ``/tiles/{tms}/{z}/{x}/{y}[.fmt]``, ``/point/{lon},{lat}``,
``POST /statistics``, ``/tilejson.json``, ``/WebMercatorQuad/map.html`` …, each with ``url=`` (a per-file
reference URL, a dataset name or a dataset output URL), ``variable=`` and ``sel=`` as titiler.xarray takes
them. ncrefs adds ``/datasets`` and ``/references?prefix=`` (read-only listings for the map page),
``/map`` (the page), ``/static/…`` (its script and MapLibre) and ``/healthz``.

``url=`` is checked before anything is opened (``tiles.access.resolve``); a refusal is a 4xx JSON
``{"detail": message, "error": {code, message, hint, retryable}}``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import attr
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import ColorMapFactory
from titiler.xarray.factory import TilerFactory
from titiler.xarray.io import Reader

from shared.errors import InternalError, NcrefsError
from shared.settings import Settings
from shared.storage import Storage
from tiles.access import Opener, resolve

log = logging.getLogger("ncrefs.tiles")
STATIC = Path(__file__).parent / "static"


def maplibre_dir() -> Path | None:
    """MapLibre GL's dist/ files: copied into tiles/static/maplibre by ``scripts/package_tiles`` for a
    deployment, else served from node_modules (``npm ci``) in a checkout."""
    for candidate in (STATIC / "maplibre", Path(__file__).resolve().parent.parent / "node_modules" / "maplibre-gl" / "dist"):
        if (candidate / "maplibre-gl.js").is_file():
            return candidate
    return None


def reader_class(open_target) -> type[Reader]:
    """titiler.xarray's Reader with ``opener`` as its opener; the opener's cache owns the datasets,
    so closing a reader keeps them open."""

    @attr.s
    class NcrefsReader(Reader):
        opener = attr.ib(default=open_target)

        def close(self):
            pass

    return NcrefsReader


def _error_response(error: NcrefsError) -> JSONResponse:
    return JSONResponse({"detail": error.message, "error": error.to_dict()}, status_code=error.kind.http_status)


def create_app(settings: Settings, *, cache_ttl_s: float | None = None) -> FastAPI:
    storage = Storage(settings)
    opener = Opener(settings, storage) if cache_ttl_s is None else Opener(settings, storage, ttl_s=cache_ttl_s)

    def dataset_url(url: str = Query(description="A per-file reference URL (abfs://refs/a/b.json, .parquet), a "
                                                 "dataset name, or a dataset output URL (…/_datasets/<name>/<name>.icechunk)")) -> str:
        return resolve(url, settings, storage).key  # refused here, before any read

    app = FastAPI(title="ncrefs tiles", description="TiTiler (titiler.xarray) over ncrefs references and datasets.",
                  openapi_url="/api", docs_url="/api.html")
    tiler = TilerFactory(reader=reader_class(opener), path_dependency=dataset_url, add_viewer=True)
    app.include_router(tiler.router)
    app.include_router(ColorMapFactory().router)  # /colorMaps/{name}: the map page's colour bar

    # titiler's own errors keep their statuses; ncrefs errors get theirs (400/403/404/503 ...).
    add_exception_handlers(app, DEFAULT_STATUS_CODES)

    @app.exception_handler(NcrefsError)
    async def _ncrefs_error(request: Request, error: NcrefsError):
        return _error_response(error)

    @app.exception_handler(KeyError)
    async def _missing_variable(request: Request, error: KeyError):
        return JSONResponse({"detail": f"No variable or coordinate {error}."}, status_code=404)

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        return {"status": "ok"}

    @app.get("/datasets", summary="Datasets defined in the refs container")
    def datasets():
        from shared.datasets import list_definitions

        return [{"name": d.name, "prefix": d.prefix, "concat_dim": d.concat_dim, "outputs": list(d.outputs)}
                for d in list_definitions(settings, storage)]

    @app.get("/references", summary="Per-file references under a prefix of the refs container")
    def references(prefix: str = Query("", max_length=1024), limit: int = Query(500, ge=1, le=5000)):
        return opener.list_references(prefix, limit)

    @app.get("/variables", summary="Variables of a reference or dataset that can be mapped, with their time steps")
    def variables(src_path: str = Depends(dataset_url)):
        ds = opener(src_path)
        out = []
        for name, variable in ds.data_vars.items():
            dims = set(variable.dims)
            if not ({"lat", "latitude", "y"} & dims and {"lon", "longitude", "x"} & dims) or len(dims) > 3:
                continue
            extra = [d for d in variable.dims if d not in ("lat", "latitude", "y", "lon", "longitude", "x")]
            steps = [str(v) for v in ds[extra[0]].values] if extra and extra[0] in ds.coords else []
            out.append({"name": name, "dims": list(variable.dims), "units": variable.attrs.get("units"),
                        "long_name": variable.attrs.get("long_name"), "dim": extra[0] if extra else None, "steps": steps})
        return {"url": src_path, "variables": out}

    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse("/map")

    @app.get("/map", include_in_schema=False)
    def map_page():
        return FileResponse(STATIC / "map.html", media_type="text/html")

    maplibre = maplibre_dir()
    if maplibre is not None:
        app.mount("/static/maplibre", StaticFiles(directory=maplibre), name="maplibre")
    else:
        log.warning("MapLibre GL not found (npm ci, or scripts/package_tiles): /map will not draw")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def _unexpected(request: Request, call_next):
        try:
            return await call_next(request)
        except NcrefsError as error:  # raised inside a dependency run in a thread pool
            return _error_response(error)
        except Exception as error:  # noqa: BLE001 - no stack traces to clients
            log.exception("unexpected error on %s", request.url.path)
            internal = InternalError(f"Unexpected error: {type(error).__name__}.")
            return _error_response(internal)

    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"], allow_headers=["*"])
    app.state.opener = opener
    return app
