"""Fixtures: a real Azurite on a free loopback port, fresh containers per test, and readers
that open references the way users do (xarray through fsspec/adlfs)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import azure.functions as func
import pytest
import xarray as xr
from azure.storage.blob import BlobServiceClient

from shared.opener import detach_loopless_adlfs_finalizers
from tests.fidelity import assert_group_equal, open_original
from scripts.azurite import start_azurite, start_azurite_queue
from shared.settings import Settings, get_settings
from shared.storage import Storage


@pytest.fixture(scope="session")
def azurite():
    server = start_azurite()
    yield server
    server.cleanup()
    detach_loopless_adlfs_finalizers()


@pytest.fixture
def settings(azurite, monkeypatch) -> Settings:
    """Settings for a fresh pair of containers on Azurite (also exported to the environment)."""
    suffix = uuid.uuid4().hex[:10]
    values = {
        "DATA_STORAGE": azurite.connection_string,
        "SOURCE_CONTAINER": f"raw-{suffix}",
        "REFS_CONTAINER": f"refs-{suffix}",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()  # the Functions handlers read the environment through it
    settings = get_settings()
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.create_container(settings.source_container)
    service.create_container(settings.refs_container)
    return settings


@pytest.fixture(scope="session")
def azurite_queue():
    """Azurite's queue service, beside the shared blob service; started only when a test asks for queues."""
    server = start_azurite_queue()
    yield server
    server.cleanup()


@pytest.fixture
def queue_settings(settings, azurite, azurite_queue, monkeypatch) -> Settings:
    """``settings`` with the queue service too: DATA_STORAGE names both endpoints; a fresh REFERENCE_QUEUE."""
    monkeypatch.setenv("DATA_STORAGE", f"{azurite.connection_string}QueueEndpoint={azurite_queue.queue_endpoint};")
    monkeypatch.setenv("REFERENCE_QUEUE", f"refq-{settings.source_container[-10:]}")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture(autouse=True)
def _fresh_settings_cache():
    yield
    get_settings.cache_clear()


@pytest.fixture
def storage(settings) -> Storage:
    return Storage(settings)


@pytest.fixture
def service(azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture
def upload(service, settings):
    """Upload a local file into the source container; returns ``container/path``."""

    def _upload(path: Path, name: str | None = None, container: str | None = None) -> str:
        container = container or settings.source_container
        name = name or path.name
        with open(path, "rb") as handle:
            service.get_blob_client(container, name).upload_blob(handle, overwrite=True)
        return f"{container}/{name}"

    return _upload


def blob_names(service: BlobServiceClient, container: str) -> list[str]:
    """The blobs of a container, without the STAC catalog (``_stac/``, checked in tests/test_catalog.py)."""
    return sorted(b.name for b in service.get_container_client(container).list_blobs() if not b.name.startswith("_stac/"))


@pytest.fixture
def open_reference(azurite):
    """Open a reference in Azurite with xarray through adlfs, as users do (``ncrefs.open_dataset``)."""
    from shared.opener import open_dataset

    def _open(output_url: str, group: str | None = None, **options) -> xr.Dataset:
        return open_dataset(output_url, group=group, connection_string=azurite.connection_string, **options)

    return _open


def assert_reads_like_original(reference: xr.Dataset, path: Path, group: str | None = None) -> None:
    """Every variable's values, attributes, dtype and every dimension equal the original's
    (the one fidelity check, ``tests/fidelity.py``)."""
    with open_original(path, group) as original:
        assert_group_equal(reference.load(), original.load(), group="/" + (group or "").strip("/"))


# -- the Functions app, invoked in-process (no Functions host can be installed here) ----------------
@pytest.fixture(scope="session")
def app_functions() -> dict:
    """The registered functions by name; ``get_functions()`` is called once per app."""
    from function_app import app

    return {fn.get_function_name(): fn for fn in app.get_functions()}


@pytest.fixture
def call_http(app_functions):
    def _call(name: str, body: bytes | dict | None = None, *, method: str = "POST",
              content_type: str | None = "application/json", route_params: dict | None = None,
              params: dict | None = None) -> tuple[int, dict, func.HttpResponse]:
        raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        headers = {"content-type": content_type} if content_type else {}
        route = json.loads(app_functions[name].get_function_json())["bindings"][0]["route"].format(**(route_params or {}))
        request = func.HttpRequest(method=method, url=f"http://localhost:7071/api/{route}", body=raw, headers=headers,
                                   route_params=route_params or {}, params=params or {})
        response = app_functions[name].get_user_function()(request)
        return response.status_code, json.loads(response.get_body()), response

    return _call
