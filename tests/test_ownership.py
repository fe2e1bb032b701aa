"""One reference per source, one owner per reference, and a reserved namespace in refs."""

from __future__ import annotations

import pytest

from shared.backfill import backfill
from shared.errors import Conflict, InvalidRequest
from shared.events import reference_created_blob
from shared.models import ReferenceRequest
from shared.pipeline import generate_reference
from tests import samples
from tests.conftest import blob_names


def owner(service, container: str, name: str) -> str:
    return service.get_blob_client(container, name).get_blob_properties().metadata["ncrefs_source"]


def test_two_sources_that_map_to_one_reference_conflict(tmp_path, settings, storage, service, upload, call_http):
    first = upload(samples.nc3_64bit(tmp_path), "same/a.nc")
    second = upload(samples.nc4_contiguous(tmp_path), "same/a.h5")
    generate_reference(ReferenceRequest(source=first), settings, storage)
    etag = service.get_blob_client(settings.refs_container, "same/a.json").get_blob_properties().etag

    with pytest.raises(Conflict) as info:
        generate_reference(ReferenceRequest(source=second), settings, storage)
    assert first in info.value.message and second in info.value.message and "rename" in info.value.hint
    assert (info.value.kind.http_status, info.value.kind.exit_code, info.value.retryable) == (409, 2, False)
    assert service.get_blob_client(settings.refs_container, "same/a.json").get_blob_properties().etag == etag
    assert owner(service, settings.refs_container, "same/a.json") == first

    status, body, _ = call_http("generate_reference", {"netcdf_url": second})
    assert (status, body["error"]["code"]) == (409, "conflict")


def test_the_parquet_reference_of_one_source_never_deletes_anothers_json(tmp_path, settings, storage, service, upload):
    first = upload(samples.nc3_64bit(tmp_path), "p/a.nc")
    second = upload(samples.nc4_contiguous(tmp_path), "p/a.h5")
    generate_reference(ReferenceRequest(source=first, format="json"), settings, storage)
    generate_reference(ReferenceRequest(source=second, format="parquet"), settings, storage)
    names = blob_names(service, settings.refs_container)
    assert "p/a.json" in names and "p/a.parquet/.zmetadata" in names
    assert owner(service, settings.refs_container, "p/a.json") == first
    assert owner(service, settings.refs_container, "p/a.parquet/.zmetadata") == second


def test_an_explicit_output_never_overwrites_another_sources_reference(tmp_path, settings, storage, service, upload):
    first = upload(samples.nc3_64bit(tmp_path), "o/first.nc")
    second = upload(samples.nc3_classic(tmp_path), "o/second.nc")
    generate_reference(ReferenceRequest(source=first), settings, storage)
    with pytest.raises(Conflict):
        generate_reference(ReferenceRequest(source=second, target=f"{settings.refs_container}/o/first.json"), settings, storage)
    assert owner(service, settings.refs_container, "o/first.json") == first


def test_a_reference_whose_source_is_gone_is_taken_over(tmp_path, settings, storage, service, upload):
    first = upload(samples.nc3_64bit(tmp_path), "g/a.nc")
    generate_reference(ReferenceRequest(source=first), settings, storage)
    service.get_blob_client(settings.source_container, "g/a.nc").delete_blob()
    second = upload(samples.nc3_classic(tmp_path), "g/a.h5")
    generate_reference(ReferenceRequest(source=second), settings, storage)
    assert owner(service, settings.refs_container, "g/a.json") == second


def test_a_blob_not_written_by_ncrefs_is_left_alone(tmp_path, settings, storage, service, upload):
    service.get_blob_client(settings.refs_container, "h/a.json").upload_blob(b"{}")
    with pytest.raises(Conflict, match="not written by ncrefs"):
        generate_reference(ReferenceRequest(source=upload(samples.nc3_64bit(tmp_path), "h/a.nc")), settings, storage)
    assert service.get_blob_client(settings.refs_container, "h/a.json").download_blob().readall() == b"{}"


@pytest.mark.parametrize("target", ["_errors/x.nc.json", "_errors/sub/y.json", "_datasets/d.json", "_x.parquet"])
def test_reserved_names_are_never_targets(target, tmp_path, settings, service, upload, call_http):
    source = upload(samples.nc3_64bit(tmp_path), "x.nc")
    status, body, _ = call_http("generate_reference", {"netcdf_url": source, "output_url": f"{settings.refs_container}/{target}"})
    assert (status, body["error"]["code"]) == (400, "invalid_request") and "reserved" in body["error"]["message"]
    assert blob_names(service, settings.refs_container) == []


def test_a_source_that_maps_into_the_reserved_names_is_refused_and_recorded_apart(tmp_path, settings, storage, service, upload):
    upload(samples.random_bytes(tmp_path), "c.nc")
    reference_created_blob(settings.source_container, "c.nc", settings, storage)
    record = service.get_blob_client(settings.refs_container, "_errors/c.nc.json").download_blob().readall()

    upload(samples.nc3_64bit(tmp_path), "_errors/c.nc.nc")
    with pytest.raises(InvalidRequest, match="reserved"):
        generate_reference(ReferenceRequest(source=f"{settings.source_container}/_errors/c.nc.nc"), settings, storage)
    outcome = reference_created_blob(settings.source_container, "_errors/c.nc.nc", settings, storage)
    assert outcome.action == "recorded_error" and outcome.error_record.endswith("_errors/_errors/c.nc.nc.json")
    assert service.get_blob_client(settings.refs_container, "_errors/c.nc.json").download_blob().readall() == record


def test_backfill_skips_only_a_source_whose_own_mapped_reference_is_current(tmp_path, settings, storage, service, upload):
    source = upload(samples.nc3_64bit(tmp_path), "m/a.nc")
    # The source's ETag recorded on another name does not make its own reference current.
    generate_reference(ReferenceRequest(source=source, target=f"{settings.refs_container}/elsewhere/a.json"), settings, storage)
    summary = backfill(settings, workers=1, prefix="m/")
    assert (summary.done, summary.skipped) == (1, 0)
    assert "m/a.json" in blob_names(service, settings.refs_container)
    assert backfill(settings, workers=1, prefix="m/a.nc").skipped == 1  # a prefix that is a whole name


def test_a_reference_another_source_writes_while_this_one_parses_is_not_replaced(tmp_path, settings, storage, service,
                                                                                   upload, monkeypatch):
    """The reference's blobs are looked up while the source is parsed (a round trip saved); one that another
    source writes meanwhile still wins: the write is conditional on what the look-up saw, and looks again."""
    import shared.pipeline as pipeline

    first = upload(samples.nc3_64bit(tmp_path), "race/a.nc")
    second = upload(samples.nc4_contiguous(tmp_path), "race/a.h5")
    looked_up = []

    class AnsweredLookAhead(pipeline.ReferenceLookAhead):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            looked_up.extend(future.result() for future in self._heads.values())  # answered before the other writes

    real_parse = pipeline.parse

    def parse_while_another_writes(reader, url, name, settings_):
        parsed = real_parse(reader, url, name, settings_)
        if name.endswith("a.h5"):
            generate_reference(ReferenceRequest(source=first), settings, storage)
        return parsed

    monkeypatch.setattr(pipeline, "ReferenceLookAhead", AnsweredLookAhead)
    monkeypatch.setattr(pipeline, "parse", parse_while_another_writes)
    with pytest.raises(Conflict):
        generate_reference(ReferenceRequest(source=second), settings, storage)
    assert looked_up[:2] == [None, None]  # the second's look-up saw no reference of either format
    assert owner(service, settings.refs_container, "race/a.json") == first
