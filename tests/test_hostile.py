"""Hostile and broken files: nothing leaks, nothing crashes, nothing hangs.

Each file is made by ``tests/hostile.py``, uploaded to Azurite and sent through the HTTP
function and the CLI; each test says what the file gets (code, HTTP status, exit code),
that nothing was written and that the process running the tests is still here.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import xarray as xr
from azure.storage.blob import BlobClient

from shared.cli import main
from shared.errors import ERROR_TABLE
from shared.events import reference_created_blob
from shared.settings import get_settings
from tests import hostile, samples
from tests.conftest import assert_reads_like_original, blob_names

# (maker, arguments beyond the directory, error code, words the message must contain)
REFUSED = [
    ("external_storage", {"compound": False}, "not_virtualizable", "external file"),
    ("external_storage", {"compound": True}, "not_virtualizable", "external file"),
    ("virtual_dataset", {"compound": False}, "not_virtualizable", "virtual dataset"),
    ("virtual_dataset", {"compound": True}, "not_virtualizable", "virtual dataset"),
    ("btree_self_loop", {}, "corrupt_file", "crashed (SIGSEGV)"),
    ("netcdf3_huge_numrecs", {}, "corrupt_file", "2,147,483,646 records"),
    ("cdf5_huge_numrecs", {}, "corrupt_file", "1,099,511,627,776 records"),
    ("netcdf3_huge_attribute", {}, "corrupt_file", "truncated"),
    ("hdf5_huge_chunk_grid", {"side": 10_000}, "not_virtualizable", "100,000,000 chunks that were never written"),
    ("hdf5_huge_chunk_grid", {"side": 10**6}, "not_virtualizable", "1,000,000,000,000 chunks"),
    ("fill_materialization", {}, "not_virtualizable", "4,000,000 chunks that were never written"),
]


def make(name: str, directory, **arguments):
    maker = getattr(hostile, name)
    if name in ("external_storage", "virtual_dataset"):
        return maker(directory, hostile.secret_file(directory), **arguments)
    return maker(directory, **arguments)


def refs_contents(service, container: str) -> bytes:
    client = service.get_container_client(container)
    return b"".join(client.download_blob(b.name).readall() for b in client.list_blobs())


@pytest.mark.parametrize(("maker", "arguments", "code", "words"), REFUSED,
                         ids=[f"{m}-{'-'.join(map(str, a.values()))}" for m, a, _, _ in REFUSED])
def test_hostile_file_is_refused_quickly_and_nothing_is_written(maker, arguments, code, words, tmp_path, settings,
                                                                 service, upload, call_http, capsys):
    source = upload(make(maker, tmp_path, **arguments), f"hostile/{maker}.h5")
    started = time.perf_counter()
    status, body, _ = call_http("generate_reference", {"netcdf_url": source})
    assert (status, body["error"]["code"]) == (ERROR_TABLE[code].http_status, code), body
    assert words in body["error"]["message"] and body["error"]["hint"]
    assert time.perf_counter() - started < 20, "a guard must refuse before the work, not after"

    exit_code = main(["virtualize", source, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert (exit_code, result["error"]["code"]) == (ERROR_TABLE[code].exit_code, code)
    assert blob_names(service, settings.refs_container) == []


def test_an_attribute_that_claims_gigabytes_is_left_out_and_named(tmp_path, settings, service, upload, call_http):
    source = upload(hostile.hdf5_huge_attribute(tmp_path), "attr.h5")
    status, body, _ = call_http("generate_reference", {"netcdf_url": source})
    assert status == 200, body
    assert any("'claims_2gb'" in w and "left out" in w for w in body["warnings"])
    refs = json.loads(service.get_blob_client(settings.refs_container, "attr.json").download_blob().readall())
    left_out = json.loads(refs["refs"][".zattrs"])["ncrefs_skipped_attributes"]
    assert "unreadable" in left_out["values"]["claims_2gb"]


@pytest.mark.parametrize("compound", [False, True])
@pytest.mark.parametrize("maker", ["external_storage", "virtual_dataset"])
def test_no_byte_of_a_local_file_reaches_refs(maker, compound, tmp_path, settings, service, upload, storage):
    path = make(maker, tmp_path, compound=compound)
    upload(path, "leak.h5")
    outcome = reference_created_blob(settings.source_container, "leak.h5", settings, storage)
    assert outcome.action == "recorded_error" and outcome.result.error.code == "not_virtualizable"
    stored = refs_contents(service, settings.refs_container)
    assert stored and hostile.SECRET[:12] not in stored
    assert blob_names(service, settings.refs_container) == ["_errors/leak.h5.json"]


def test_the_blob_trigger_survives_the_crash_file_and_records_it(tmp_path, settings, service, upload, app_functions, azurite):
    def trigger(name: str) -> None:
        client = BlobClient.from_connection_string(azurite.connection_string, settings.source_container, name)
        assert app_functions["reference_from_blob"].get_user_function()(client) is None  # returns normally: no retry

    upload(hostile.btree_self_loop(tmp_path), "crash/loop.h5")
    trigger("crash/loop.h5")
    record = json.loads(service.get_blob_client(settings.refs_container, "_errors/crash/loop.h5.json").download_blob().readall())
    assert record["error"]["code"] == "corrupt_file" and "SIGSEGV" in record["error"]["message"]
    assert record["source_etag"]
    # the pool replaced the dead parser: the next file is referenced as usual
    upload(samples.nc3_64bit(tmp_path), "crash/after.nc")
    trigger("crash/after.nc")
    assert "crash/after.json" in blob_names(service, settings.refs_container)


# (maker, words a warning must contain, the group holding the file's dataset "values")
LINKS = [
    ("external_link", "external link to '/secret'", None),
    ("external_link_root", "external link to '/'", None),
    ("soft_link_cycle", "soft link of '/a'", "a"),
    ("hard_link_cycle", "second name of '/a'", "a/b"),
    ("dangling_link", "does not exist", None),
    ("hard_link_fanout", "second name of", None),
]


@pytest.mark.parametrize(("maker", "words", "group"), LINKS, ids=[m for m, _, _ in LINKS])
def test_links_are_reported_not_followed_and_the_rest_is_referenced(maker, words, group, tmp_path, settings, service,
                                                                      upload, call_http, open_reference):
    path = make(maker, tmp_path)
    source = upload(path, f"links/{maker}.h5")
    status, body, _ = call_http("generate_reference", {"netcdf_url": source})
    assert status == 200, body
    assert any(words in w for w in body["warnings"]), body["warnings"]
    refs = json.loads(service.get_blob_client(settings.refs_container, f"links/{maker}.json").download_blob().readall())
    assert hostile.SECRET[:12].decode() not in json.dumps(refs)
    with open_reference(body["output"], group=group) as ds:
        assert ds["values"].values.tolist() == list(range(len(ds["values"])))
    if maker == "hard_link_fanout":
        assert len(body["warnings"]) < 100, "each object is visited once, not once per path"


def test_a_huge_dimension_without_a_variable_is_not_a_variable(tmp_path, settings, upload, call_http, open_reference):
    path = hostile.huge_dimension_only(tmp_path)
    status, body, _ = call_http("generate_reference", {"netcdf_url": upload(path, "dims.nc")})
    assert status == 200, body
    assert body["variables"] == ["values"]
    with open_reference(body["output"]) as ds:
        assert_reads_like_original(ds, path)


@pytest.mark.parametrize(("maker", "count"), [("many_variables", 5000), ("many_groups", 10_000)])
def test_large_valid_files_are_referenced(maker, count, tmp_path, settings, upload, call_http, open_reference):
    # Within the limits, whatever the machine's load (how long they take is a benchmark's business).
    path = getattr(hostile, maker)(tmp_path)
    source = upload(path, f"large/{maker}.h5")
    status, body, _ = call_http("generate_reference", {"netcdf_url": source})
    assert status == 200, body
    assert len(body["variables"]) >= count
    if maker == "many_variables":  # a sample of them, read back through the reference
        with open_reference(body["output"]) as ds, xr.open_dataset(path) as original:
            assert len(ds.data_vars) == len(original.data_vars) == count
            for name in ("x", "v00000", "v02500", "v04999"):
                xr.testing.assert_identical(ds[name].load(), original[name].load())


def test_a_parse_past_the_time_limit_is_stopped(tmp_path, settings, upload, call_http, monkeypatch):
    monkeypatch.setenv("PARSE_TIMEOUT_S", "1")
    get_settings.cache_clear()
    source = upload(hostile.many_variables(tmp_path, n=3000), "slow.nc")
    started = time.perf_counter()
    status, body, _ = call_http("generate_reference", {"netcdf_url": source})
    assert (status, body["error"]["code"]) == (422, "limits_exceeded")
    assert "PARSE_TIMEOUT_S=1" in body["error"]["message"]
    assert time.perf_counter() - started < 10


def test_a_parse_past_the_memory_limit_ends_only_its_parser(tmp_path, settings, service, upload, call_http, monkeypatch):
    monkeypatch.setenv("PARSE_MEMORY_MB", "512")
    monkeypatch.setenv("MAX_CHUNKS", "10000000")
    get_settings.cache_clear()
    source = upload(hostile.netcdf3_many_records(tmp_path), "records.nc")
    status, body, _ = call_http("generate_reference", {"netcdf_url": source})
    assert (status, body["error"]["code"]) == (422, "limits_exceeded")
    assert "PARSE_MEMORY_MB=512" in body["error"]["message"]
    assert blob_names(service, settings.refs_container) == []
    status, body, _ = call_http("generate_reference", {"netcdf_url": upload(samples.nc3_64bit(tmp_path), "next.nc")})
    assert status == 200, "a fresh parser takes the next file"


def test_a_file_past_the_chunk_limit_names_the_setting(tmp_path, settings, upload, call_http, monkeypatch):
    monkeypatch.setenv("MAX_CHUNKS", "100")
    get_settings.cache_clear()
    source = upload(samples.nc4_many_small_chunks(tmp_path), "many.nc")  # 400 chunks
    status, body, _ = call_http("generate_reference", {"netcdf_url": source})
    assert (status, body["error"]["code"]) == (422, "limits_exceeded")
    assert "MAX_CHUNKS=100" in body["error"]["message"] and "pixels" in body["error"]["message"]


def test_thirty_concurrent_requests_half_hostile(tmp_path, settings, service, upload, call_http):
    """Half the requests crash, flood or lie; the other half get their references, each with
    its own warnings only (warnings are caught in the parser process that parsed the file)."""
    plain = samples.hdf5_plain(tmp_path)  # warns about phony dimensions
    quiet = samples.nc3_64bit(tmp_path)  # no warning
    good = [upload(plain if i % 2 else quiet, f"mix/good{i}.{'h5' if i % 2 else 'nc'}") for i in range(15)]
    makers = ["btree_self_loop", "netcdf3_huge_numrecs", "hdf5_huge_chunk_grid"]
    bad = []
    for i in range(15):
        (tmp_path / str(i)).mkdir()
        bad.append(upload(make(makers[i % 3], tmp_path / str(i)), f"mix/bad{i}.h5"))
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda s: call_http("generate_reference", {"netcdf_url": s}), good + bad))
    assert [status for status, _, _ in answers[:15]] == [200] * 15
    assert [(status, body["error"]["code"]) for status, body, _ in answers[15:]] == [
        (422, ["corrupt_file", "corrupt_file", "not_virtualizable"][i % 3]) for i in range(15)]
    for i, (_, body, _) in enumerate(answers[:15]):
        phony = [w for w in body["warnings"] if "phony_dim" in w]
        assert len(phony) == (1 if i % 2 else 0), body["warnings"]
        assert not any("SIGSEGV" in w or "records" in w for w in body["warnings"])
    assert sorted(blob_names(service, settings.refs_container)) == sorted(
        f"mix/good{i}.json" for i in range(15))
