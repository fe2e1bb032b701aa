"""The pipeline's promises beyond a plain round trip: header-only reads, read planning, Parquet,
provenance, the source changing under us, scan-only, groups, strings, user blocks, local files."""

from __future__ import annotations

import json

import fsspec
import pytest
import xarray as xr

from shared.errors import SourceChanged
from shared.models import ReferenceRequest
from shared.pipeline import generate_reference
from shared.storage import Storage
from tests import samples
from tests.conftest import assert_reads_like_original, blob_names


def reference_json(service, settings, name: str) -> dict:
    return json.loads(service.get_blob_client(settings.refs_container, name).download_blob().readall())


def test_reads_only_the_header_of_a_file_with_big_chunks(tmp_path, settings, storage, upload, open_reference):
    path = samples.nc4_large_chunks(tmp_path)
    result = generate_reference(ReferenceRequest(source=upload(path)), settings, storage)
    assert result.read_plan == "ranged"
    assert result.source_size > 16_000_000
    assert result.bytes_read <= result.source_size / 50, f"read {result.bytes_read} bytes of {result.source_size}"
    assert result.requests == 1
    with open_reference(result.output) as ds:
        assert_reads_like_original(ds, path)


def test_reads_a_file_of_tiny_scattered_chunks_in_one_go(tmp_path, settings, storage, upload, open_reference):
    path = samples.nc4_many_small_chunks(tmp_path)
    result = generate_reference(ReferenceRequest(source=upload(path)), settings, storage)
    assert result.read_plan == "whole-file"
    assert result.requests <= 2
    assert result.chunk_count == 400
    assert any("VERY slow" in w for w in result.warnings)
    with open_reference(result.output) as ds:
        assert_reads_like_original(ds, path)


def test_reference_records_its_source(tmp_path, settings, storage, service, upload):
    path = samples.nc3_classic(tmp_path)
    source = upload(path, "y/classic.nc")
    result = generate_reference(ReferenceRequest(source=source), settings, storage)
    props = service.get_blob_client(settings.refs_container, "y/classic.json").get_blob_properties()
    source_props = service.get_blob_client(settings.source_container, "y/classic.nc").get_blob_properties()
    assert props.content_settings.content_type == "application/json"
    assert props.metadata["ncrefs_source"] == source
    assert props.metadata["ncrefs_source_etag"] == source_props.etag.strip('"') == result.source_etag.strip('"')
    assert props.metadata["ncrefs_source_size"] == str(path.stat().st_size)
    assert props.metadata["ncrefs_version"]
    assert result.reference_bytes == props.size


@pytest.mark.parametrize("how", ["format", "auto"])
def test_parquet_reference_reads_back_equal(how, tmp_path, settings, storage, service, upload, open_reference):
    path = samples.nc4_chunked_cf_time(tmp_path)
    source = upload(path, "p/chunked.nc")
    generate_reference(ReferenceRequest(source=source, format="json"), settings, storage)
    assert blob_names(service, settings.refs_container) == ["p/chunked.json"]

    if how == "auto":
        settings = settings.model_copy(update={"parquet_chunk_threshold": 5})
    result = generate_reference(ReferenceRequest(source=source, format=None if how == "auto" else "parquet"), settings, storage)

    assert result.format == "parquet"
    names = blob_names(service, settings.refs_container)
    assert "p/chunked.json" not in names, "the JSON reference of the same source must go"
    assert any("Replaced this source's JSON reference" in w and "p/chunked.json" in w for w in result.warnings)
    assert "p/chunked.parquet/.zmetadata" in names
    assert any(n.endswith(".parq") for n in names)
    with open_reference(result.output) as ds:
        assert_reads_like_original(ds, path)


def test_explicit_target(tmp_path, settings, storage, service, upload, open_reference):
    path = samples.nc3_64bit(tmp_path)
    result = generate_reference(
        ReferenceRequest(source=upload(path), target=f"abfs://{settings.refs_container}/custom/name.json"), settings, storage
    )
    assert result.output == f"abfs://{settings.refs_container}/custom/name.json"
    assert blob_names(service, settings.refs_container) == ["custom/name.json"]
    with open_reference(result.output) as ds:
        assert_reads_like_original(ds, path)


def test_scan_only_reports_and_writes_nothing(tmp_path, settings, storage, service, upload):
    path = samples.nc4_many_small_chunks(tmp_path)
    result = generate_reference(ReferenceRequest(source=upload(path), scan_only=True), settings, storage)
    assert result.status == "scanned" and result.output is None
    pixels = next(v for v in result.scan.variables if v.name == "pixels")
    assert (pixels.shape, pixels.chunks, pixels.chunk_count) == ([200, 20, 20], [200, 1, 1], 400)
    assert pixels.dtype == "<f4" and pixels.uncompressed_chunk_bytes == 800
    assert any("pixels" in w and "VERY slow" in w for w in result.warnings)
    assert any("pixels" in w and "many requests" in w for w in result.warnings)
    assert blob_names(service, settings.refs_container) == []


def test_groups_are_all_included(tmp_path, settings, storage, upload):
    result = generate_reference(ReferenceRequest(source=upload(samples.nc4_groups(tmp_path))), settings, storage)
    assert result.groups == ["/", "/forecast", "/forecast/ensemble"]
    assert {"root_var", "forecast/wind", "forecast/ensemble/spread"} <= set(result.variables)
    assert result.dimensions["forecast/ensemble/x"] == 2 and result.dimensions["x"] == 5


def test_variable_length_strings_are_inlined(tmp_path, settings, storage, service, upload):
    generate_reference(ReferenceRequest(source=upload(samples.nc4_features(tmp_path), "f.nc")), settings, storage)
    refs = reference_json(service, settings, "f.json")["refs"]
    label_chunks = [v for k, v in refs.items() if k.startswith("label/") and not k.split("/")[-1].startswith(".")]
    assert label_chunks and all(isinstance(v, str) for v in label_chunks), "heap pointers must never be referenced"


def test_hdf5_after_a_user_block(tmp_path, settings, storage, upload, open_reference):
    path = samples.hdf5_with_user_block(tmp_path)
    result = generate_reference(ReferenceRequest(source=upload(path)), settings, storage)
    assert any("phony_dim" in w for w in result.warnings)
    with open_reference(result.output) as ds:
        assert_reads_like_original(ds, path)


class OverwritingStorage(Storage):
    """Replaces the source with another file right after the first GET, in the real Azurite."""

    def __init__(self, settings, replacement: bytes):
        super().__init__(settings)
        self.replacement = replacement

    def open_source(self, location, block_size):
        reader = super().open_source(location, block_size)
        self.service.get_blob_client(location.container, location.path).upload_blob(self.replacement, overwrite=True)
        return reader


def test_source_changed_during_the_scan_writes_nothing(tmp_path, settings, service, upload):
    source = upload(samples.nc4_late_metadata(tmp_path))  # needs a GET after the first
    storage = OverwritingStorage(settings, samples.nc3_64bit(tmp_path).read_bytes())
    with pytest.raises(SourceChanged) as info:
        generate_reference(ReferenceRequest(source=source), settings, storage)
    assert info.value.retryable
    assert "overwritten while it was being read" in info.value.message
    assert blob_names(service, settings.refs_container) == []


def test_local_file_reference_lies_beside_it(tmp_path, settings, storage):
    path = samples.nc4_chunked_cf_time(tmp_path)
    result = generate_reference(ReferenceRequest(source=str(path)), settings, storage)
    assert result.output == str(tmp_path / "chunked_cf_time.json")
    assert result.input == path.as_uri()
    refs = json.loads((tmp_path / "chunked_cf_time.json").read_text())
    with xr.open_dataset("reference://", engine="zarr", backend_kwargs={
        "consolidated": False, "storage_options": {"fo": refs, "remote_protocol": "file"}}) as ds:
        assert_reads_like_original(ds, path)
    assert fsspec  # the reader users use for local references


def test_https_chunk_urls_name_the_configured_endpoint(tmp_path, azurite, settings, service, upload, open_reference):
    """REFERENCE_URL_SCHEME=https builds chunk URLs under the configured blob endpoint (here Azurite's; in
    Azure the account's, in whatever cloud or DNS zone), and a reader of a public container opens them."""
    settings = settings.model_copy(update={"url_scheme": "https"})
    path = samples.nc4_chunked_cf_time(tmp_path)
    source = upload(path, "h/tas.nc")
    result = generate_reference(ReferenceRequest(source=source), settings, Storage(settings))
    endpoint = service.url.rstrip("/")
    assert result.output == f"{endpoint}/{settings.refs_container}/h/tas.json"
    urls = {v[0] for v in reference_json(service, settings, "h/tas.json")["refs"].values() if isinstance(v, list)}
    assert urls == {f"{endpoint}/{source}"}
    service.get_container_client(settings.source_container).set_container_access_policy({}, public_access="blob")
    assert_reads_like_original(open_reference(result.output), path)


def test_a_netcdf3_record_coordinate_is_copied_in_one_batch_of_reads(tmp_path, settings, storage, upload, open_reference):
    """Each record holds one time value ~300 KB from the next: the values are fetched together
    (concurrently, through the parser's read_many), and the reference reads back exactly."""
    import netCDF4
    import numpy as np

    path = tmp_path / "records.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as nc:
        nc.createDimension("time", None)
        nc.createDimension("y", 100)
        nc.createDimension("x", 750)
        time = nc.createVariable("time", "f8", ("time",))
        time.units = "hours since 2000-01-01"
        field = nc.createVariable("field", "f4", ("time", "y", "x"))
        for record in range(130):
            time[record] = record * 6.0
            field[record] = np.full((100, 750), record, dtype="f4")
    assert path.stat().st_size > 32 << 20  # past the whole-file plan: the values come one range each
    source = upload(path, "records/records.nc")
    result = generate_reference(ReferenceRequest(source=source), settings, storage)
    assert result.requests <= 1 + 130 + 2 and result.bytes_read < 1 << 20
    refs = json.loads(storage.service.get_blob_client(settings.refs_container, "records/records.json").download_blob().readall())
    assert all(isinstance(refs["refs"][f"time/{i}"], str) for i in range(130))  # copied, not referenced
    assert_reads_like_original(open_reference(result.output), path)
