"""Datasets on Azurite: built from per-file references, kept current by the blob trigger,
read back through every output equal to ``xr.open_mfdataset`` over the original files,
and refusing (by name) every file that would make them silently wrong."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import xarray as xr
from azure.storage.blob import BlobClient

import ncrefs
from shared import datasets
from shared.errors import Conflict, DatasetNotFound, InvalidRequest
from shared.events import reference_created_blob
from tests import samples
from tests.test_cli import ncrefs as run_cli


def mfdataset(paths) -> xr.Dataset:
    """What users compare with: xarray's own combination of the original files."""
    with xr.open_mfdataset(sorted(map(str, paths)), engine="h5netcdf", combine="by_coords") as combined:
        return combined.load()


def assert_equal_to(dataset: xr.Dataset, paths) -> None:
    xr.testing.assert_identical(dataset.load(), mfdataset(paths))


@pytest.fixture
def arrive(azurite, settings, storage, upload, app_functions):
    """Upload a file and run the blob trigger on it, as the Functions host would."""

    def _arrive(path, name: str | None = None, *, again: bool = False) -> None:
        name = name or f"tas/{path.name}"
        if not again:  # again: the same event delivered once more, for the same blob version
            upload(path, name)
        client = BlobClient.from_connection_string(azurite.connection_string, settings.source_container, name)
        app_functions["reference_from_blob"].get_user_function()(client)

    return _arrive


def test_thirty_daily_files_read_back_like_open_mfdataset_through_every_output(tmp_path, azurite, settings, storage,
                                                                                upload, arrive):
    # day 7 is stored in other time units: decoded and re-encoded, never concatenated raw
    paths = [samples.daily(tmp_path, day, units="days since 1990-06-15" if day == 7 else "days since 2000-01-01")
             for day in range(30)]
    for path in paths:
        upload(path, f"tas/{path.name}")
    change = datasets.create(settings, storage, "tas-daily", prefix="tas/", outputs=["icechunk", "parquet", "json"])
    assert (change.action, change.members, change.refused) == ("created", 30, {})
    options = {"connection_string": azurite.connection_string}
    assert_equal_to(ncrefs.open_dataset("tas-daily", **options), paths)
    view = datasets.show(settings, storage, "tas-daily")
    for output in ("icechunk", "parquet", "json"):
        assert_equal_to(ncrefs.open_dataset(view.outputs[output], **options), paths)
    first_snapshot = view.snapshots[0]["id"]

    # one more file through the blob trigger: one append commit naming it, and equal values
    later = samples.daily(tmp_path, 30)
    arrive(later)
    view = datasets.show(settings, storage, "tas-daily")
    assert len(view.members) == 31 and view.snapshots[0]["message"].startswith(f"add {settings.source_container}/tas/{later.name} (etag ")
    assert_equal_to(ncrefs.open_dataset("tas-daily", **options), [*paths, later])
    assert_equal_to(ncrefs.open_dataset(view.outputs["parquet"], **options), [*paths, later])
    # time travel: the state before it
    assert_equal_to(ncrefs.open_dataset("tas-daily", version=first_snapshot, **options), paths)

    # the same event twice changes nothing
    arrive(later, again=True)
    assert datasets.show(settings, storage, "tas-daily").snapshots[0]["id"] == view.snapshots[0]["id"]


@pytest.fixture
def small_dataset(tmp_path, settings, storage, upload):
    paths = {day: samples.daily(tmp_path, day) for day in (0, 1, 3, 4)}
    for path in paths.values():
        upload(path, f"tas/{path.name}")
    datasets.create(settings, storage, "small", prefix="tas/")
    return paths


def members(settings, storage, name="small") -> list[str]:
    return [m.source.rsplit("/", 1)[1] for m in datasets.show(settings, storage, name).members]


def test_a_file_arriving_out_of_order_is_placed_in_order(tmp_path, azurite, settings, storage, small_dataset, arrive):
    middle = samples.daily(tmp_path, 2)
    arrive(middle)
    assert members(settings, storage) == [f"tas_day_{d:03d}.nc" for d in range(5)]
    view = datasets.show(settings, storage, "small")
    assert view.snapshots[0]["message"].startswith(f"added {settings.source_container}/tas/{middle.name}")
    assert_equal_to(ncrefs.open_dataset("small", connection_string=azurite.connection_string), [*small_dataset.values(), middle])


def test_an_overwritten_member_is_replaced_and_old_versions_fail_loudly(tmp_path, azurite, settings, storage,
                                                                       small_dataset, arrive):
    before = datasets.show(settings, storage, "small").snapshots[0]["id"]
    replacement = samples.daily(tmp_path / "..", 3, seed=99)  # same day, other values
    arrive(replacement, "tas/tas_day_003.nc")
    assert members(settings, storage) == [f"tas_day_{d:03d}.nc" for d in (0, 1, 3, 4)]
    options = {"connection_string": azurite.connection_string}
    assert_equal_to(ncrefs.open_dataset("small", **options), [small_dataset[0], small_dataset[1], replacement, small_dataset[4]])
    # The version before points at the old bytes of a file that changed since: reading it fails, it never
    # serves the new file's bytes as the old ones.
    with pytest.raises(Exception, match="(?i)modified|last.?updated|changed"):
        ncrefs.open_dataset("small", version=before, **options).tas.sel(time="2000-01-04").load()


def test_ten_files_arriving_at_once_all_land(tmp_path, azurite, settings, storage, upload):
    datasets.create(settings, storage, "burst", prefix="burst/", build_now=False)
    paths = [samples.daily(tmp_path, day) for day in range(10)]
    for path in paths:
        upload(path, f"burst/{path.name}")
    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(lambda p: reference_created_blob(settings.source_container, f"burst/{p.name}", settings,
                                                                 type(storage)(settings)), paths))
    assert all(o.action == "referenced" for o in outcomes)
    assert len(datasets.show(settings, storage, "burst").members) == 10
    assert_equal_to(ncrefs.open_dataset("burst", connection_string=azurite.connection_string), paths)


TRAPS = [
    ({"scale_factor": 0.01}, "scale_factor of 'tas'"),
    ({"fill_value": -1.0e20}, "_FillValue of"),
    ({"compress": False}, "the codecs of"),
    ({"steps": 2, "chunk_steps": 2}, "chunk length of"),
    ({"drop": "pr"}, "the set of variables"),
    ({"calendar": "noleap"}, "the calendar of 'time'"),
]


@pytest.mark.parametrize(("options", "words"), TRAPS, ids=[w for _, w in TRAPS])
def test_a_file_that_does_not_fit_is_refused_by_name(options, words, tmp_path, azurite, settings, storage, small_dataset,
                                                     arrive, service):
    before = datasets.show(settings, storage, "small")
    odd = samples.daily(tmp_path, 5, name="odd.nc", **options)
    arrive(odd)  # returns normally: the file keeps its own reference; the dataset its last good version
    after = datasets.show(settings, storage, "small")
    assert after.error is not None and after.error.code == "not_combinable" and words in after.error.message
    assert odd.name in after.error.message and "in the file and" in after.error.message
    assert [m.source for m in after.members] == [m.source for m in before.members]
    assert after.snapshots[0]["id"] == before.snapshots[0]["id"]
    record = service.get_blob_client(settings.refs_container, f"_datasets/small/errors/{settings.source_container}/tas/odd.nc.json")
    assert json.loads(record.download_blob().readall())["code"] == "not_combinable"
    assert service.get_blob_client(settings.refs_container, "tas/odd.json").exists()  # its own reference stands
    assert_equal_to(ncrefs.open_dataset("small", connection_string=azurite.connection_string), small_dataset.values())


def test_differing_time_units_are_re_encoded(tmp_path, azurite, settings, storage, small_dataset, arrive):
    other_units = samples.daily(tmp_path, 5, units="hours since 1999-12-31")
    arrive(other_units)
    dataset = ncrefs.open_dataset("small", connection_string=azurite.connection_string)
    assert dataset.time.values[-1] == np.datetime64("2000-01-06")
    assert_equal_to(dataset, [*small_dataset.values(), other_units])


def test_build_catches_up_and_rebuild_starts_over(tmp_path, azurite, settings, storage, small_dataset, upload):
    late = samples.daily(tmp_path, 7)
    upload(late, f"tas/{late.name}")  # no trigger ran: build references it first, then adds it
    change = datasets.build(settings, storage, "small")
    assert change.action == "rebuilt" and change.added == [f"{settings.source_container}/tas/{late.name}"]
    assert datasets.build(settings, storage, "small").action == "unchanged"
    assert datasets.build(settings, storage, "small", rebuild=True).action == "rebuilt"
    assert_equal_to(ncrefs.open_dataset("small", connection_string=azurite.connection_string), [*small_dataset.values(), late])


def test_definitions_are_validated_and_names_unique(settings, storage, small_dataset):
    with pytest.raises(Conflict, match="already a dataset named 'small'"):
        datasets.create(settings, storage, "small", prefix="other/")
    for bad in ("Bad_Name", "-x", "a" * 64, "../x"):
        with pytest.raises(InvalidRequest):
            datasets.create(settings, storage, bad, prefix="tas/")
    with pytest.raises(DatasetNotFound):
        datasets.show(settings, storage, "nope")


def test_the_cli_lists_shows_opens_and_deletes(tmp_path, azurite, settings, storage, small_dataset, service):
    env = {"DATA_STORAGE": azurite.connection_string, "SOURCE_CONTAINER": settings.source_container,
           "REFS_CONTAINER": settings.refs_container}
    listed = run_cli("dataset", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.startswith(f"small: {settings.source_container}/tas/ along time")
    shown = run_cli("dataset", "show", "small", "--json", env=env, cwd=tmp_path)
    view = json.loads(shown.stdout)
    for field in ("name", "prefix", "concat_dim", "outputs", "members", "snapshots", "error"):
        assert field in view
    assert view["members"][0]["etag"] and view["snapshots"][0]["message"].startswith("build: 4 files")
    opened = run_cli("open", "small", env=env, cwd=tmp_path)
    assert opened.returncode == 0 and "Dimensions:" in opened.stdout and "time: 4" in opened.stdout, opened.stderr
    reference = run_cli("open", f"abfs://{settings.refs_container}/tas/tas_day_000.json", env=env, cwd=tmp_path)
    assert reference.returncode == 0 and "tas" in reference.stdout
    missing = run_cli("dataset", "show", "nope", env=env, cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("error [dataset_not_found]")
    deleted = run_cli("dataset", "delete", "small", env=env, cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert not any(b.name.startswith("_datasets/small/") for b in service.get_container_client(settings.refs_container).list_blobs())
    assert service.get_blob_client(settings.source_container, "tas/tas_day_000.nc").exists()  # never a source


def test_http_routes_show_and_build(settings, storage, small_dataset, call_http):
    status, body, _ = call_http("dataset_show", method="GET", route_params={"name": "small"})
    assert status == 200 and body["name"] == "small" and len(body["members"]) == 4
    status, body, _ = call_http("dataset_build", route_params={"name": "small"})
    assert status == 200 and body["action"] == "unchanged"
    status, body, _ = call_http("dataset_show", method="GET", route_params={"name": "nope"})
    assert status == 404 and body["error"]["code"] == "dataset_not_found"
    status, body, _ = call_http("dataset_build", route_params={"name": "Bad_Name"})
    assert status == 400 and body["error"]["code"] == "invalid_request"


def test_a_file_overlapping_a_member_is_refused(tmp_path, azurite, settings, storage, small_dataset, arrive):
    before = datasets.show(settings, storage, "small")
    arrive(samples.daily(tmp_path, 3, name="copy_of_day_3.nc", seed=7))
    after = datasets.show(settings, storage, "small")
    assert after.error.code == "not_combinable" and "copy_of_day_3.nc overlaps" in after.error.message
    assert [m.source for m in after.members] == [m.source for m in before.members]
    assert after.snapshots[0]["id"] == before.snapshots[0]["id"]


def test_members_with_parquet_references_combine_too(tmp_path, azurite, settings, storage, upload):
    paths = [samples.daily(tmp_path, day) for day in range(3)]
    for path in paths:
        upload(path, f"pq/{path.name}")
    ncrefs.virtualize(f"{settings.source_container}/pq/{paths[1].name}", format="parquet",
                      connection_string=azurite.connection_string)
    change = datasets.create(settings, storage, "mixed", prefix="pq/")
    assert change.members == 3 and any(m.reference.endswith(".parquet") for m in datasets.show(settings, storage, "mixed").members)
    assert_equal_to(ncrefs.open_dataset("mixed", connection_string=azurite.connection_string), paths)
