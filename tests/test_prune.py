"""Deletions and replacements on Azurite: a deleted source takes its reference, error record, STAC item and
dataset membership with it (the Event Grid function, ``ncrefs prune``), only when it is really gone; a
replaced source's dataset and item follow it, and no Icechunk version ever serves its new bytes as old ones."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
import xarray as xr
from azure.storage.blob import BlobClient

import azure.functions as func
import ncrefs
from shared import datasets
from shared.cli import main
from shared.prune import blob_of_event
from tests import samples


def mfdataset(paths) -> xr.Dataset:
    with xr.open_mfdataset(sorted(map(str, paths)), engine="h5netcdf", combine="by_coords") as combined:
        return combined.load()


def assert_equal_to(dataset: xr.Dataset, paths) -> None:
    xr.testing.assert_identical(dataset.load(), mfdataset(paths))


def everything(service, container: str) -> list[str]:
    return sorted(b.name for b in service.get_container_client(container).list_blobs())


def items(service, settings) -> list[str]:
    return [n for n in everything(service, settings.refs_container) if n.startswith("_stac/items/")]


@pytest.fixture
def trigger(app_functions, azurite, settings):
    """The blob trigger on a blob, as the Functions host would run it."""

    def _trigger(name: str) -> None:
        client = BlobClient.from_connection_string(azurite.connection_string, settings.source_container, name)
        app_functions["reference_from_blob"].get_user_function()(client)

    return _trigger


@pytest.fixture
def deleted(app_functions, settings):
    """Deliver a BlobDeleted event (Event Grid schema, as storage sends it) to the Event Grid function."""

    def _deliver(name: str, *, container: str | None = None, event_type: str = "Microsoft.Storage.BlobDeleted") -> None:
        container = container or settings.source_container
        event = func.EventGridEvent(
            id=str(uuid.uuid4()), event_type=event_type, event_time=None, data_version="",
            topic="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
            subject=f"/blobServices/default/containers/{container}/blobs/{name}",
            data={"api": "DeleteBlob", "blobType": "BlockBlob", "sequencer": "0000000000000000000000000000649b",
                  "url": f"https://devstoreaccount1.blob.core.windows.net/{container}/{name}"})
        app_functions["source_deleted"].get_user_function()(event)

    return _deliver


@pytest.fixture
def daily_dataset(tmp_path, settings, storage, upload, trigger):
    """Four daily files referenced by the blob trigger, a broken one with an error record, and a dataset
    over them with every output."""
    paths = {day: samples.daily(tmp_path, day) for day in range(4)}
    for path in paths.values():
        upload(path, f"tas/{path.name}")
    datasets.create(settings, storage, "days", prefix="tas/", outputs=["icechunk", "parquet", "json"])
    upload(samples.truncated_nc4(tmp_path), "tas/broken.nc")
    trigger("tas/broken.nc")
    return paths


def test_a_deleted_source_takes_its_reference_record_item_and_membership(azurite, settings, storage, service,
                                                                          daily_dataset, deleted):
    options = {"connection_string": azurite.connection_string}
    refs = settings.refs_container
    before = datasets.show(settings, storage, "days")
    assert "tas/tas_day_001.json" in everything(service, refs)
    assert "_stac/items/tas/tas_day_001.nc.json" in items(service, settings)

    service.get_blob_client(settings.source_container, "tas/tas_day_001.nc").delete_blob()
    deleted("tas/tas_day_001.nc")
    names = everything(service, refs)
    assert "tas/tas_day_001.json" not in names and "_stac/items/tas/tas_day_001.nc.json" not in names
    assert "tas/tas_day_000.json" in names and "_stac/items/tas/tas_day_000.nc.json" in names
    view = datasets.show(settings, storage, "days")
    assert [m.source.rsplit("/", 1)[1] for m in view.members] == ["tas_day_000.nc", "tas_day_002.nc", "tas_day_003.nc"]
    assert view.snapshots[0]["message"].startswith(f"removed {settings.source_container}/tas/tas_day_001.nc (etag ")
    assert view.snapshots[1]["id"] == before.snapshots[0]["id"]
    remaining = [daily_dataset[0], daily_dataset[2], daily_dataset[3]]
    assert_equal_to(ncrefs.open_dataset("days", **options), remaining)  # a new version without it
    for output in ("parquet", "json"):
        assert_equal_to(ncrefs.open_dataset(view.outputs[output], **options), remaining)
    catalog = json.loads(service.get_blob_client(refs, "_stac/catalogs/tas/catalog.json").download_blob().readall())
    assert not any("tas_day_001" in link["href"] for link in catalog["links"])
    # The version before still names the deleted file: reading it fails, it never serves other bytes.
    with pytest.raises(Exception):  # noqa: B017 - the object store's own error for a missing blob
        ncrefs.open_dataset("days", version=before.snapshots[0]["id"], **options).tas.sel(time="2000-01-02").load()

    # its error record goes too
    service.get_blob_client(settings.source_container, "tas/broken.nc").delete_blob()
    assert "_errors/tas/broken.nc.json" in everything(service, refs)
    deleted("tas/broken.nc")
    assert not any(n.startswith("_errors/") for n in everything(service, refs))

    # the same events again (at-least-once): nothing more happens
    state = everything(service, refs)
    deleted("tas/tas_day_001.nc")
    deleted("tas/broken.nc")
    assert everything(service, refs) == state
    assert datasets.show(settings, storage, "days").snapshots[0]["id"] == view.snapshots[0]["id"]


def test_an_event_for_a_blob_that_exists_again_removes_nothing(tmp_path, settings, service, upload, trigger, deleted):
    path = samples.daily(tmp_path, 5)
    upload(path, "x/a.nc")
    trigger("x/a.nc")
    state = everything(service, settings.refs_container)
    deleted("x/a.nc")  # an event for a blob that was never deleted, or deleted and uploaded again since
    service.get_blob_client(settings.source_container, "x/a.nc").delete_blob()
    upload(path, "x/a.nc")  # re-created before its BlobDeleted event arrives
    deleted("x/a.nc")
    assert everything(service, settings.refs_container) == state


def test_other_events_and_other_containers_are_ignored(tmp_path, settings, service, upload, trigger, deleted, capsys):
    path = samples.nc3_classic(tmp_path)
    service.create_container("archive")
    try:
        upload(path, "old/classic.nc", container="archive")
        assert main(["virtualize", "archive/old/classic.nc"]) == 0  # -> refs/archive/old/classic.json
        capsys.readouterr()
        service.get_blob_client("archive", "old/classic.nc").delete_blob()
        deleted("old/classic.nc", container="archive")  # not the source container: the function leaves it
        assert "archive/old/classic.json" in everything(service, settings.refs_container)
    finally:
        service.delete_container("archive")
    upload(path, "y/c.nc")
    trigger("y/c.nc")
    service.get_blob_client(settings.source_container, "y/c.nc").delete_blob()
    deleted("y/c.nc", event_type="Microsoft.Storage.BlobCreated")  # only BlobDeleted removes anything
    assert "y/c.json" in everything(service, settings.refs_container)
    deleted("y/../c.nc")  # a name no reference can have: logged, not retried forever
    assert "y/c.json" in everything(service, settings.refs_container)


def test_event_subjects_and_urls_name_the_blob():
    assert blob_of_event("/blobServices/default/containers/raw/blobs/a/blobs/b.nc") == ("raw", "a/blobs/b.nc")
    assert blob_of_event("", "https://acct.blob.core.windows.net/raw/a%20b/c.nc") == ("raw", "a b/c.nc")
    with pytest.raises(Exception, match="names no blob"):
        blob_of_event("/blobServices/default/containers/raw", None)


def test_the_last_member_leaving_empties_the_dataset_and_the_next_file_starts_it_again(
        tmp_path, azurite, settings, storage, service, upload, trigger, deleted):
    only = samples.daily(tmp_path, 0)
    upload(only, "solo/a.nc")
    datasets.create(settings, storage, "solo", prefix="solo/", outputs=["icechunk", "parquet", "json"])
    service.get_blob_client(settings.source_container, "solo/a.nc").delete_blob()
    deleted("solo/a.nc")
    view = datasets.show(settings, storage, "solo")
    assert view.members == [] and view.snapshots[0]["message"].startswith("removed ")
    empty = ncrefs.open_dataset("solo", connection_string=azurite.connection_string)
    assert list(empty.data_vars) == [] and dict(empty.sizes) == {}
    assert not any(n.startswith(("_datasets/solo/solo.parquet", "_datasets/solo/solo.json"))
                   for n in everything(service, settings.refs_container))
    later = samples.daily(tmp_path, 9, seed=3)
    upload(later, "solo/b.nc")
    trigger("solo/b.nc")
    assert_equal_to(ncrefs.open_dataset("solo", connection_string=azurite.connection_string), [later])


# -- ncrefs prune ------------------------------------------------------------------------------------------
def prune(capsys, *args) -> tuple[int, dict]:
    code = main(["prune", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_prune_lists_then_removes_what_deleted_sources_left(azurite, settings, storage, service, upload,
                                                            daily_dataset, tmp_path, capsys):
    refs = settings.refs_container
    # a reference at an explicit output (the event could not know where) and one outside the prefix
    assert main(["virtualize", f"{settings.source_container}/tas/tas_day_003.nc", "--output", f"{refs}/custom/day3.json"]) == 0
    upload(samples.nc3_64bit(tmp_path), "elsewhere/x.nc")
    assert main(["virtualize", f"{settings.source_container}/elsewhere/x.nc"]) == 0
    capsys.readouterr()
    for name in ("tas/tas_day_001.nc", "tas/tas_day_003.nc", "tas/broken.nc", "elsewhere/x.nc"):
        service.get_blob_client(settings.source_container, name).delete_blob()  # no events: missed, or none
    before = everything(service, refs)
    snapshot = datasets.show(settings, storage, "days").snapshots[0]["id"]

    code, listed = prune(capsys, "--prefix", "tas/", "--dry-run")
    assert code == 0 and listed["status"] == "dry_run"
    assert everything(service, refs) == before, "a dry run changes nothing"
    orphans = {o["source"].split("/", 1)[1]: o for o in listed["orphans"]}
    assert set(orphans) == {"tas/tas_day_001.nc", "tas/tas_day_003.nc", "tas/broken.nc"}
    assert orphans["tas/tas_day_001.nc"]["references"] == [f"abfs://{refs}/tas/tas_day_001.json"]
    assert orphans["tas/tas_day_001.nc"]["stac_item"] and orphans["tas/tas_day_001.nc"]["datasets"] == ["days"]
    assert orphans["tas/broken.nc"]["error_record"] == f"{refs}/_errors/tas/broken.nc.json"
    # The explicit output lies outside tas/: a prune over the whole container finds it.
    code, whole = prune(capsys, "--dry-run")
    found = {o["source"].split("/", 1)[1]: o for o in whole["orphans"]}
    assert set(found) == {"tas/tas_day_001.nc", "tas/tas_day_003.nc", "tas/broken.nc", "elsewhere/x.nc"}
    assert sorted(found["tas/tas_day_003.nc"]["references"]) == [f"abfs://{refs}/custom/day3.json",
                                                                  f"abfs://{refs}/tas/tas_day_003.json"]
    assert datasets.show(settings, storage, "days").snapshots[0]["id"] == snapshot

    code, done = prune(capsys, "--prefix", "tas/")
    assert code == 0 and done["status"] == "success" and len(done["removed"]) == 3
    names = everything(service, refs)
    for gone in ("tas/tas_day_001.json", "tas/tas_day_003.json", "_errors/tas/broken.nc.json",
                 "_stac/items/tas/tas_day_001.nc.json", "_stac/items/tas/tas_day_003.nc.json"):
        assert gone not in names
    assert "elsewhere/x.json" in names, "outside the prefix: kept"
    (change,) = done["datasets"]
    assert change["action"] == "rebuilt" and change["members"] == 2
    assert_equal_to(ncrefs.open_dataset("days", connection_string=azurite.connection_string),
                    [daily_dataset[0], daily_dataset[2]])
    catalog = json.loads(service.get_blob_client(refs, "_stac/catalogs/tas/catalog.json").download_blob().readall())
    assert sorted(link["href"] for link in catalog["links"] if link["rel"] == "item") == [
        "../../items/tas/tas_day_000.nc.json", "../../items/tas/tas_day_002.nc.json"]

    code, rest = prune(capsys)  # the rest of the container: the explicit output and the file elsewhere
    assert code == 0 and {o["source"].split("/", 1)[1] for o in rest["orphans"]} == {"tas/tas_day_003.nc", "elsewhere/x.nc"}
    assert "custom/day3.json" not in everything(service, refs) and "elsewhere/x.json" not in everything(service, refs)
    code, again = prune(capsys)
    assert code == 0 and again["orphans"] == [] and again["removed"] == []


def test_prune_prints_what_it_does_and_refuses_reserved_prefixes(settings, capsys, tmp_path, upload):
    upload(samples.nc3_64bit(tmp_path), "p/x.nc")
    assert main(["virtualize", f"{settings.source_container}/p/x.nc"]) == 0
    capsys.readouterr()
    assert main(["prune", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "0 sources no longer exist (dry run: nothing is changed)" in out.err and "1 references" in out.out
    assert main(["prune", "--prefix", "_errors/", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "invalid_request"


# -- replacements ------------------------------------------------------------------------------------------
def test_a_replaced_source_is_followed_and_never_read_through_its_old_reference(
        tmp_path, azurite, settings, storage, service, upload, trigger, daily_dataset, capsys):
    options = {"connection_string": azurite.connection_string}
    before = datasets.show(settings, storage, "days")
    item_before = json.loads(service.get_blob_client(settings.refs_container, "_stac/items/tas/tas_day_002.nc.json")
                             .download_blob().readall())
    replacement = samples.daily(tmp_path / "..", 2, seed=99)  # same day and layout, other values
    upload(replacement, "tas/tas_day_002.nc")

    # Before the trigger runs, the dataset's latest version still points at the old version's bytes: it
    # fails on read instead of serving the new file's bytes at the old offsets ...
    with pytest.raises(Exception, match="(?i)modified|last.?updated|changed|checksum"):
        ncrefs.open_dataset("days", **options).tas.sel(time="2000-01-03").load()
    # ... and verify calls the per-file reference stale (its kerchunk chunk URLs are not pinned).
    assert main(["verify", f"{settings.source_container}/tas/tas_day_002.nc"]) == 1
    assert "STALE" in capsys.readouterr().out

    trigger("tas/tas_day_002.nc")
    etag = service.get_blob_client(settings.source_container, "tas/tas_day_002.nc").get_blob_properties().etag.strip('"')
    metadata = service.get_blob_client(settings.refs_container, "tas/tas_day_002.json").get_blob_properties().metadata
    assert metadata["ncrefs_source_etag"] == etag
    view = datasets.show(settings, storage, "days")
    assert [m.etag for m in view.members if m.source.endswith("tas_day_002.nc")] == [etag]
    assert view.snapshots[0]["message"].startswith(f"replaced {settings.source_container}/tas/tas_day_002.nc (etag {etag})")
    latest = [daily_dataset[0], daily_dataset[1], replacement, daily_dataset[3]]
    assert_equal_to(ncrefs.open_dataset("days", **options), latest)
    for output in ("parquet", "json"):
        assert_equal_to(ncrefs.open_dataset(view.outputs[output], **options), latest)
    with pytest.raises(Exception, match="(?i)modified|last.?updated|changed|checksum"):
        ncrefs.open_dataset("days", version=before.snapshots[0]["id"], **options).tas.sel(time="2000-01-03").load()
    # the other days of the old version still read (their files did not change)
    old = ncrefs.open_dataset("days", version=before.snapshots[0]["id"], **options).tas.sel(time="2000-01-01").load()
    with xr.open_dataset(daily_dataset[0], engine="h5netcdf") as first:
        np.testing.assert_array_equal(old.values, first.tas.isel(time=0).values)
    # the STAC item follows the new version (its size, written from the new reference)
    item = json.loads(service.get_blob_client(settings.refs_container, "_stac/items/tas/tas_day_002.nc.json")
                      .download_blob().readall())
    size = service.get_blob_client(settings.source_container, "tas/tas_day_002.nc").get_blob_properties().size
    assert item["assets"]["source"]["ncrefs:size"] == size
    assert item_before["assets"]["source"]["ncrefs:size"] == daily_dataset[2].stat().st_size
    assert main(["verify", f"{settings.source_container}/tas/tas_day_002.nc"]) == 0
