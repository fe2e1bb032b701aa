"""The blob trigger, invoked in-process with a real BlobClient on Azurite."""

from __future__ import annotations

import json
import threading

import pytest
from azure.storage.blob import BlobClient, BlobServiceClient

from scripts.azurite import Azurite, start_azurite
from shared.errors import StorageUnavailable
from shared.settings import get_settings
from shared.storage import Storage
from tests import samples
from tests.conftest import assert_reads_like_original, blob_names


@pytest.fixture
def trigger(app_functions, azurite):
    def _trigger(container: str, name: str, connection_string: str | None = None) -> None:
        client = BlobClient.from_connection_string(connection_string or azurite.connection_string, container, name)
        app_functions["reference_from_blob"].get_user_function()(client)

    return _trigger


@pytest.mark.parametrize("maker", [samples.nc4_features, samples.nc3_classic])
def test_new_netcdf_gets_its_reference(maker, tmp_path, settings, service, upload, trigger, open_reference):
    path = maker(tmp_path)
    upload(path, f"drop/{path.name}")
    trigger(settings.source_container, f"drop/{path.name}")
    assert blob_names(service, settings.refs_container) == [f"drop/{path.stem}.json"]
    with open_reference(f"abfs://{settings.refs_container}/drop/{path.stem}.json") as ds:
        assert_reads_like_original(ds, path)


def test_bad_file_gets_an_error_record_until_it_is_fixed(tmp_path, settings, service, upload, trigger):
    upload(samples.truncated_nc4(tmp_path), "x/broken.nc")
    trigger(settings.source_container, "x/broken.nc")  # returns normally: no retry for a file that cannot succeed
    assert blob_names(service, settings.refs_container) == ["_errors/x/broken.nc.json"]
    record = json.loads(service.get_blob_client(settings.refs_container, "_errors/x/broken.nc.json").download_blob().readall())
    assert record["source"] == f"{settings.source_container}/x/broken.nc"
    assert record["error"]["code"] == "corrupt_file" and record["error"]["hint"]

    upload(samples.nc4_chunked_cf_time(tmp_path), "x/broken.nc")  # the fixed file, same name
    trigger(settings.source_container, "x/broken.nc")
    assert blob_names(service, settings.refs_container) == ["x/broken.json"], "the stale error record must go"


def test_other_names_are_skipped(tmp_path, settings, service, upload, trigger):
    (tmp_path / "readme.txt").write_text("hello")
    upload(tmp_path / "readme.txt")
    trigger(settings.source_container, "readme.txt")
    assert blob_names(service, settings.refs_container) == []


def test_same_blob_twice_at_once_leaves_one_valid_reference(tmp_path, settings, service, upload, trigger, open_reference):
    path = samples.nc4_groups(tmp_path)
    upload(path, "twice.nc")
    errors = []

    def run():
        try:
            trigger(settings.source_container, "twice.nc")
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trigger(settings.source_container, "twice.nc")  # and once more, later
    assert errors == []
    assert blob_names(service, settings.refs_container) == ["twice.json"]
    with open_reference(f"abfs://{settings.refs_container}/twice.json", "forecast") as ds:
        assert_reads_like_original(ds, path, "forecast")


def test_storage_stopping_mid_run_raises_for_retry_and_leaves_nothing(tmp_path, monkeypatch, app_functions):
    own = start_azurite()  # this test stops its storage: not the shared one
    try:
        service = BlobServiceClient.from_connection_string(own.connection_string)
        for container in ("raw-netcdf", "refs"):
            service.create_container(container)
        with open(samples.nc4_late_metadata(tmp_path), "rb") as handle:  # needs GETs after the first
            service.get_blob_client("raw-netcdf", "late.nc").upload_blob(handle)
        monkeypatch.setenv("DATA_STORAGE", own.connection_string)
        monkeypatch.setenv("SOURCE_CONTAINER", "raw-netcdf")
        monkeypatch.setenv("REFS_CONTAINER", "refs")
        get_settings.cache_clear()

        original = Storage.open_source

        def open_then_stop(self, location, block_size):
            reader = original(self, location, block_size)
            own.stop()  # storage goes away after the first GET
            return reader

        monkeypatch.setattr(Storage, "open_source", open_then_stop)
        client = BlobClient.from_connection_string(own.connection_string, "raw-netcdf", "late.nc")
        with pytest.raises(StorageUnavailable):
            app_functions["reference_from_blob"].get_user_function()(client)

        restarted = Azurite(own.port, own.location).start()
        try:
            assert blob_names(service, "refs") == [], "no reference and no error record for a retryable failure"
        finally:
            restarted.stop()
    finally:
        own.cleanup()
