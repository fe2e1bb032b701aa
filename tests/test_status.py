"""``ncrefs status`` and ``GET /api/status`` on Azurite: the counts of a prepared archive (current, stale,
missing, failed by code, queued and poisoned messages, datasets with their last update and error)."""

from __future__ import annotations

import json

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from shared import datasets
from shared.backfill import backfill
from shared.cli import main
from shared.status import status
from shared.storage import Storage
from tests import samples


@pytest.fixture
def archive(tmp_path, queue_settings, upload):
    """Six files under arch/ and two daily files of dataset tas-q under arch/tas/, all referenced; then one
    source overwritten (stale) and one new (missing). One file is not NetCDF (failed: not_netcdf)."""
    settings = queue_settings
    upload(samples.nc4_chunked_cf_time(tmp_path), "arch/a.nc")
    upload(samples.nc3_classic(tmp_path), "arch/b.nc")
    upload(samples.nc4_groups(tmp_path), "arch/c.nc4")
    upload(samples.random_bytes(tmp_path), "arch/broken.nc")
    upload(samples.daily(tmp_path, 0), "arch/tas/day0.nc")
    upload(samples.daily(tmp_path, 1), "arch/tas/day1.nc")
    upload(samples.nc3_64bit(tmp_path), "elsewhere/x.nc")  # outside the prefix
    storage = Storage(settings)
    done = backfill(settings, workers=1, progress=False)
    assert (done.done, done.failed) == (6, 1)
    datasets.create(settings, storage, "tas-q", prefix="arch/tas/")
    upload(samples.nc3_64bit(tmp_path), "arch/b.nc")  # replaced: its reference is stale now
    upload(samples.nc4_contiguous(tmp_path), "arch/new.nc")  # not referenced yet
    return settings


def test_counts_of_a_prepared_archive(archive, capsys):
    settings = archive
    report = status(settings, Storage(settings), "arch/")
    assert (report.sources, report.current, report.stale, report.missing) == (7, 4, 1, 2)
    assert (report.failed, report.failed_by_code, report.other_error_records) == (1, {"not_netcdf": 1}, 0)
    assert (report.queue.name, report.queue.state, report.queue.approximate_messages) == (settings.reference_queue, "absent", 0)
    assert (report.poison_queue.name, report.poison_queue.state) == (settings.reference_queue + "-poison", "absent")
    (tas,) = report.datasets
    assert (tas.name, tas.prefix, tas.members, tas.last_error) == ("tas-q", "arch/tas/", 2, None)
    assert tas.updated_at is not None

    # the fan-out queues exactly what status counts as to do: stale and missing, not failed at this version
    assert main(["backfill", "--queue", "--prefix", "arch/"]) == 0
    poison = QueueClient.from_connection_string(settings.connection_string, settings.reference_queue + "-poison")
    poison.create_queue()
    poison.send_message("e30=")
    report = status(settings, Storage(settings), "arch/")
    assert (report.queue.state, report.queue.approximate_messages) == ("ok", 2)
    assert (report.poison_queue.state, report.poison_queue.approximate_messages) == ("ok", 1)

    assert status(settings, Storage(settings), "arch/tas/").model_dump(include={"sources", "current", "stale", "missing"}) == \
        {"sources": 2, "current": 2, "stale": 0, "missing": 0}
    whole = status(settings, Storage(settings))  # no prefix: one listing of the refs container
    assert (whole.sources, whole.current, whole.stale, whole.missing, whole.failed) == (8, 5, 1, 2, 1)

    capsys.readouterr()
    assert main(["status", "--prefix", "arch/"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"status of {settings.source_container}/arch/")
    assert "  sources         7  " in out and "  current         4  " in out and "  stale           1  " in out
    assert "  missing         2  " in out and "  failed          1  not_netcdf 1;" in out
    assert f"  queue    {settings.reference_queue}: ~2 messages" in out
    assert f"  poison   {settings.reference_queue}-poison: ~1 messages" in out
    assert "  dataset  tas-q (arch/tas/): 2 members, updated " in out and "no error" in out
    assert main(["status", "--prefix", "arch/", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["sources"], document["failed_by_code"], document["queue"]["approximate_messages"]) == \
        (7, {"not_netcdf": 1}, 2)


def test_a_dataset_error_shows(archive, tmp_path, upload, app_functions):
    settings = archive
    upload(samples.daily(tmp_path, 2, drop="pr", name="day2.nc"), "arch/tas/day2.nc")  # lacks a variable: refused
    assert main(["backfill", "--queue", "--prefix", "arch/tas/"]) == 0
    from tests.test_queue import deliver

    assert deliver(app_functions, settings) == []
    (tas,) = status(settings, Storage(settings), "arch/tas/").datasets
    assert tas.members == 2 and tas.last_error["code"] == "not_combinable"
    assert tas.last_error["source"] == f"{settings.source_container}/arch/tas/day2.nc"


def test_status_over_http_is_the_cli_model(archive, call_http, capsys):
    status_code, body, response = call_http("status", method="GET", params={"prefix": "arch/"}, content_type=None)
    assert status_code == 200 and response.mimetype == "application/json"
    assert main(["status", "--prefix", "arch/", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in body.items() if k != "elapsed_s"} == {k: v for k, v in cli.items() if k != "elapsed_s"}

    status_code, body, _ = call_http("status", method="GET", params={"prefix": "a\u0000b"}, content_type=None)
    assert status_code == 400 and body["error"]["code"] == "invalid_request" and "control characters" in body["error"]["message"]


def test_a_queue_service_that_does_not_answer_leaves_the_rest_of_the_report(settings, upload, tmp_path, monkeypatch):
    from scripts.azurite import free_port
    from shared.settings import get_settings

    upload(samples.nc3_classic(tmp_path), "z.nc")
    nowhere = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    monkeypatch.setenv("DATA_STORAGE", settings.connection_string + f"QueueEndpoint={nowhere};")
    get_settings.cache_clear()
    report = status(get_settings(), Storage(get_settings()))
    assert (report.sources, report.missing) == (1, 1)
    assert report.queue.state == report.poison_queue.state == "unreachable"
    assert "queue service did not answer" in report.queue.error and "AccountKey" not in report.queue.error


def test_status_of_a_missing_source_container_says_so(queue_settings, capsys):
    BlobServiceClient.from_connection_string(queue_settings.connection_string).delete_container(queue_settings.source_container)
    assert main(["status", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "source_not_found" and queue_settings.source_container in error["message"]
