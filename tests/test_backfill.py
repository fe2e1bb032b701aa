"""Backfill: everything under a prefix gets a current reference; current ones are left alone;
a bad file is reported without stopping the rest."""

from __future__ import annotations

import json

from shared.backfill import backfill
from shared.cli import main
from tests import samples
from tests.conftest import blob_names


def reference_etags(service, container) -> dict[str, str]:
    return {b.name: b.etag for b in service.get_container_client(container).list_blobs()}


def test_backfill_references_new_skips_current_and_redoes_changed(tmp_path, settings, service, upload, open_reference):
    upload(samples.nc4_chunked_cf_time(tmp_path), "2050/a.nc")
    upload(samples.nc3_classic(tmp_path), "2050/b.nc")
    upload(samples.nc4_groups(tmp_path), "2051/c.nc4")
    upload(samples.random_bytes(tmp_path), "2051/broken.nc")
    (tmp_path / "notes.txt").write_text("not a NetCDF name")
    upload(tmp_path / "notes.txt", "2050/notes.txt")

    first = backfill(settings, workers=2)

    assert (first.candidates, first.done, first.skipped, first.failed) == (4, 3, 0, 1)
    assert first.failed_by_code == {"not_netcdf": 1}
    assert first.failures[0].input == f"{settings.source_container}/2051/broken.nc"
    assert blob_names(service, settings.refs_container) == [
        "2050/a.json", "2050/b.json", "2051/c.json", "_errors/2051/broken.nc.json"]
    before = reference_etags(service, settings.refs_container)

    second = backfill(settings, workers=2)
    assert (second.done, second.skipped, second.skipped_failed, second.failed) == (0, 3, 1, 0), \
        "a file that failed at its current ETag is not parsed again"
    assert reference_etags(service, settings.refs_container) == before, "a second run must upload nothing"
    retried = backfill(settings, workers=1, retry_failed=True)
    assert (retried.done, retried.skipped, retried.skipped_failed, retried.failed) == (0, 3, 0, 1)

    replacement = samples.nc3_64bit(tmp_path)
    upload(replacement, "2050/b.nc")
    third = backfill(settings, workers=1)
    assert (third.done, third.skipped, third.skipped_failed, third.failed) == (1, 2, 1, 0)
    after = reference_etags(service, settings.refs_container)
    assert after["2050/b.json"] != before["2050/b.json"]
    untouched = {"2050/a.json", "2051/c.json"}
    assert {k: v for k, v in after.items() if k in untouched} == {k: v for k, v in before.items() if k in untouched}
    with open_reference(f"abfs://{settings.refs_container}/2050/b.json") as ds:
        assert list(ds.data_vars) == ["depth"]

    forced = backfill(settings, workers=1, force=True, prefix="2050/")
    assert (forced.candidates, forced.done, forced.skipped, forced.failed) == (2, 2, 0, 0)


def test_backfill_cli_exit_code_and_summary(tmp_path, settings, upload, capsys):
    upload(samples.nc3_64bit(tmp_path), "ok.nc")
    assert main(["backfill", "--workers", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["done"], summary["failed"]) == (1, 0)

    upload(samples.empty(tmp_path), "empty.nc")
    assert main(["backfill", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "1 already current" in out and "1 failed" in out and "not_netcdf: 1" in out


def test_backfill_of_another_container_maps_under_its_name(tmp_path, settings, service, upload):
    service.create_container("archive-" + settings.source_container[-10:])
    other = "archive-" + settings.source_container[-10:]
    upload(samples.nc3_cdf5(tmp_path), "x/cdf5.nc", container=other)
    summary = backfill(settings, container=other, workers=1)
    assert summary.done == 1
    assert blob_names(service, settings.refs_container) == [f"{other}/x/cdf5.json"]
    assert backfill(settings, container=other, workers=1).skipped == 1


def test_backfill_of_a_missing_container_says_so(settings, capsys):
    assert main(["backfill", "--container", "no-such-container", "--json"]) == 2
    result = json.loads(capsys.readouterr().out)
    assert result["error"]["code"] == "source_not_found" and "no-such-container" in result["error"]["message"]


def test_backfill_removes_the_error_record_of_a_file_fixed_since(tmp_path, settings, service, upload):
    """The plan's listing spares look-ups of blobs it shows absent, never the removal of one it shows present."""
    upload(samples.truncated_nc4(tmp_path), "fix/a.nc")
    assert backfill(settings, prefix="fix/").failed == 1
    record = "_errors/fix/a.nc.json"
    assert service.get_blob_client(settings.refs_container, record).exists()
    upload(samples.nc4_features(tmp_path), "fix/a.nc")  # fixed: a new version
    summary = backfill(settings, prefix="fix/")
    assert (summary.done, summary.failed) == (1, 0)
    assert not service.get_blob_client(settings.refs_container, record).exists()
    assert service.get_blob_client(settings.refs_container, "fix/a.json").exists()
