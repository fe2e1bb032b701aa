"""``ncrefs verify`` and VERIFY_AFTER_WRITE on Azurite: chunks read through a reference equal the original's
(read in a parser process, never here), a wrong reference is named by variable and element, a replaced
source is stale, and reading is bounded and announced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azure.storage.blob import BlobClient

from shared.cli import main
from shared.settings import get_settings
from tests import samples
from tests.conftest import blob_names

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def verify(capsys, *args) -> tuple[int, dict | str, str]:
    """Run ``ncrefs verify``; its exit code, its result (JSON when asked, else text) and its stderr."""
    code = main(["verify", *args])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if "--json" in args else out.out), out.err


def referenced(tmp_path, upload, capsys, maker, name: str | None = None, *options) -> str:
    path = maker(tmp_path)
    source = upload(path, name or f"v/{path.name}")
    assert main(["virtualize", source, *options]) == 0
    capsys.readouterr()
    return source


def rewrite_reference(service, container: str, name: str, change) -> None:
    """Change a stored JSON reference's chunk table in place, keeping its ncrefs metadata (owner, ETag)."""
    client = service.get_blob_client(container, name)
    download = client.download_blob()
    refs = json.loads(download.readall())
    change(refs["refs"])
    client.upload_blob(json.dumps(refs).encode(), overwrite=True, metadata=download.properties.metadata)


def by_variable(result: dict) -> dict[str, dict]:
    (file,) = result["files"]
    return {v["variable"]: v for v in file["variables"]}


@pytest.mark.parametrize(("maker", "options", "expected"), [
    (samples.nc4_groups, (), {"forecast/ensemble/spread", "forecast/step", "forecast/wind", "root_var", "x"}),
    (samples.nc3_classic, (), {"code", "flag", "packed", "sst", "time"}),
    (samples.nc4_chunked_cf_time, ("--format", "parquet"), {"lat", "lon", "pr", "tas", "time"}),
], ids=["netcdf4-groups", "netcdf3-records", "parquet"])
def test_good_references_read_back_their_originals(maker, options, expected, tmp_path, settings, upload, capsys):
    source = referenced(tmp_path, upload, capsys, maker, None, *options)
    code, result, err = verify(capsys, source, "--sample", "4", "--json")
    assert code == 0, result
    checks = by_variable(result)
    assert set(checks) == expected and all(c["status"] == "ok" for c in checks.values()), checks
    assert result["status"] == "ok" and result["files"][0]["status"] == "ok"
    assert "verify: 1 reference(s)" in err and "through the references" in err and "from the originals" in err
    if maker is samples.nc3_classic:  # a record variable: one chunk per record, all three compared
        assert checks["sst"]["chunks"] == ["sst/0.0.0", "sst/1.0.0", "sst/2.0.0"]
    if maker is samples.nc4_chunked_cf_time:  # 3 x 2 x 2 chunks: four of them, spread, the first and last among them
        assert checks["tas"]["chunks"][0] == "tas/0.0.0" and checks["tas"]["chunks"][-1] == "tas/2.1.1"
        assert len(checks["tas"]["chunks"]) == 4


def test_features_strings_scalars_and_unwritten_chunks_verify(tmp_path, settings, upload, capsys):
    source = referenced(tmp_path, upload, capsys, samples.nc4_features)
    code, text, _ = verify(capsys, source, "--sample", "9")
    assert code == 0, text
    for name in ("label", "crs", "unwritten", "partial", "station_code", "big_endian"):
        assert f"  {name}: ok" in text, text


def test_a_wrong_chunk_offset_is_a_mismatch_naming_the_variable(tmp_path, settings, service, upload, capsys):
    source = referenced(tmp_path, upload, capsys, samples.nc4_chunked_cf_time, "w/t.nc")

    def swap(refs):  # tas's first chunk now points at its neighbour's bytes: a valid chunk, other values
        refs["tas/0.0.0"] = list(refs["tas/0.0.1"])

    rewrite_reference(service, settings.refs_container, "w/t.json", swap)
    code, text, _ = verify(capsys, source)
    assert code == 1
    assert "tas: MISMATCH at [0, 0, 0]" in text and "pr: ok" in text, text
    code, result, _ = verify(capsys, f"{settings.refs_container}/w/t.json", "--json")  # the reference itself
    assert code == 1 and result["status"] == "mismatch" and result["mismatched"] == 1
    tas = by_variable(result)["tas"]
    assert tas["status"] == "mismatch" and tas["index"] == [0, 0, 0] and "tas/0.0.0" in tas["reason"]
    assert tas["reference_value"] != tas["original_value"]


def test_a_wrong_netcdf3_record_offset_names_the_first_differing_element(tmp_path, settings, service, upload, capsys):
    source = referenced(tmp_path, upload, capsys, samples.nc3_classic, "w/c.nc")

    def shift(refs):  # record 1 (all zeros in the file) read from record 0's bytes (0, 1, 2, ...)
        refs["sst/1.0.0"] = list(refs["sst/0.0.0"])

    rewrite_reference(service, settings.refs_container, "w/c.json", shift)
    code, result, _ = verify(capsys, source, "--sample", "3", "--json")
    assert code == 1
    sst = by_variable(result)["sst"]
    assert sst["index"] == [1, 0, 1] and (sst["reference_value"], sst["original_value"]) == ("1.0", "0.0")


def test_a_chunk_past_the_end_of_the_source_is_a_mismatch(tmp_path, settings, service, upload, capsys):
    source = referenced(tmp_path, upload, capsys, samples.nc4_chunked_cf_time, "w/t.nc")
    size = service.get_blob_client(settings.source_container, "w/t.nc").get_blob_properties().size

    def past(refs):
        refs["pr/0.0.0"] = [refs["pr/0.0.0"][0], size + 100, refs["pr/0.0.0"][2]]

    rewrite_reference(service, settings.refs_container, "w/t.json", past)
    code, result, _ = verify(capsys, source, "--json")
    assert code == 1 and by_variable(result)["pr"]["status"] == "mismatch", result


def test_a_replaced_source_is_stale_and_nothing_is_compared(tmp_path, settings, upload, capsys):
    source = referenced(tmp_path, upload, capsys, samples.nc4_chunked_cf_time, "r/t.nc")
    upload(samples.nc4_groups(tmp_path), "r/t.nc")  # overwritten; its blob trigger has not run yet
    code, result, _ = verify(capsys, source, "--json")
    assert code == 1 and result["stale"] == 1
    (file,) = result["files"]
    assert file["status"] == "stale" and file["variables"] == [] and file["error"]["code"] == "source_changed"


def test_a_prefix_verifies_each_reference_and_fails_if_one_is_wrong(tmp_path, settings, service, upload, capsys):
    for maker in (samples.nc3_64bit, samples.nc4_contiguous, samples.nc4_chunked_cf_time):
        referenced(tmp_path, upload, capsys, maker)
    referenced(tmp_path, upload, capsys, samples.nc3_cdf5, "other/cdf5.nc")  # not under the prefix
    code, result, _ = verify(capsys, "--prefix", "v/", "--json")
    assert code == 0 and result["references"] == 3 and result["ok"] == 3

    rewrite_reference(service, settings.refs_container, "v/chunked_cf_time.json",
                      lambda refs: refs.update({"pr/0.0.0": list(refs["tas/0.0.0"])}))
    code, result, _ = verify(capsys, "--prefix", "v/", "--json")
    assert code == 1 and (result["ok"], result["mismatched"]) == (2, 1)
    assert [f["status"] for f in result["files"]].count("mismatch") == 1
    code, result, _ = verify(capsys, "--prefix", "nothing-here/", "--json")
    assert code == 0 and result["references"] == 0


def test_max_bytes_is_checked_before_anything_is_read(tmp_path, settings, upload, capsys):
    source = referenced(tmp_path, upload, capsys, samples.nc4_chunked_cf_time)
    code, result, _ = verify(capsys, source, "--max-bytes", "2K", "--json")
    assert code == 2 and result["error"]["code"] == "limits_exceeded"
    assert "--max-bytes 2.0 KB" in result["error"]["message"] and "--sample" in result["error"]["hint"]
    with pytest.raises(SystemExit) as stopped:  # argparse's own refusal
        main(["verify", source, "--max-bytes", "lots"])
    assert stopped.value.code == 2 and "not a size such as 1G" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "code", "words"), [
    ((), "invalid_request", "either a SOURCE"),
    (("raw/a.nc", "--prefix", "a/"), "invalid_request", "either a SOURCE"),
    (("./local.nc",), "invalid_request", "local"),
    (("REFS/_errors/a.nc.json",), "invalid_request", "own records"),
    (("SRC/missing.nc",), "source_not_found", "no reference"),
])
def test_bad_input_is_refused_with_what_to_do(args, code, words, settings, capsys):
    args = tuple(a.replace("REFS", settings.refs_container).replace("SRC", settings.source_container) for a in args)
    exit_code, result, _ = verify(capsys, *args, "--json")
    assert exit_code == 2 and result["error"]["code"] == code, result
    assert words.lower() in (result["error"]["message"] + result["error"]["hint"]).lower(), result
    assert result["error"]["hint"]


def test_the_original_is_never_parsed_in_this_process(tmp_path, settings, upload, capsys, monkeypatch):
    """The original is untrusted: h5py and netCDF4 run only in parser processes."""
    import h5py
    import netCDF4

    sources = [referenced(tmp_path, upload, capsys, maker) for maker in (samples.nc4_groups, samples.nc3_classic)]

    def forbidden(*args, **kwargs):
        raise AssertionError("an original was opened in the main process")

    monkeypatch.setattr(h5py, "File", forbidden)
    monkeypatch.setattr(netCDF4, "Dataset", forbidden)
    for source in sources:
        assert verify(capsys, source)[0] == 0


@pytest.mark.skipif(not (CORPUS / "manifest.json").is_file(), reason="the real-file corpus lives beside the project")
@pytest.mark.parametrize("name", ["ncc__nczarr_test_ref_groups.h5", "ncc__nctest_ref_nctest_classic.nc",
                                  "ncc__nc_test4_ref_tst_interops4.nc", "iris__space_weather.nc",
                                  "nc4py__20171025_2056.Cloud_Top_Height.nc", "ncc__ncdump_ref_nc_test_netcdf4_4_0.nc",
                                  "ncc__nc_test4_ref_hdf5_compat2.nc"])
def test_real_files_verify(name, settings, upload, capsys):
    source = upload(CORPUS / name, f"corpus/{name}")
    assert main(["virtualize", source]) == 0
    capsys.readouterr()
    code, result, _ = verify(capsys, source, "--sample", "2", "--json")
    assert code == 0, result
    assert any(v["status"] == "ok" for v in result["files"][0]["variables"])


# -- VERIFY_AFTER_WRITE --------------------------------------------------------------------------------
@pytest.fixture
def verify_after_write(settings, monkeypatch):
    monkeypatch.setenv("VERIFY_AFTER_WRITE", "true")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def trigger(app_functions, azurite):
    def _trigger(container: str, name: str) -> None:
        client = BlobClient.from_connection_string(azurite.connection_string, container, name)
        app_functions["reference_from_blob"].get_user_function()(client)

    return _trigger


def test_verify_after_write_keeps_a_good_reference(tmp_path, verify_after_write, service, upload, trigger):
    upload(samples.nc3_classic(tmp_path), "g/classic.nc")
    trigger(verify_after_write.source_container, "g/classic.nc")
    assert blob_names(service, verify_after_write.refs_container) == ["g/classic.json"]


def test_verify_after_write_removes_a_wrong_reference_and_records_why(tmp_path, verify_after_write, storage, service,
                                                                      upload, trigger, monkeypatch):
    """A reference that does not read back the original (here storage made to store one chunk's entry shifted)
    is removed, with its STAC item, and an error record says why; no dataset takes the file in."""
    from shared import datasets
    from shared.storage import Storage

    settings = verify_after_write
    datasets.create(settings, storage, "checked", prefix="b/", build_now=False)
    put = Storage.put

    def faulty(self, location, data, **options):
        if getattr(location, "path", "") == "b/t.json":
            refs = json.loads(data)
            refs["refs"]["tas/0.0.0"] = list(refs["refs"]["tas/0.0.1"])
            data = json.dumps(refs).encode()
        return put(self, location, data, **options)

    monkeypatch.setattr(Storage, "put", faulty)
    upload(samples.nc4_chunked_cf_time(tmp_path), "b/t.nc")
    trigger(settings.source_container, "b/t.nc")  # returns normally: retrying cannot make it right
    names = blob_names(service, settings.refs_container)
    assert "b/t.json" not in names and "_errors/b/t.nc.json" in names
    assert not any(n.startswith("_stac/items/") for n in
                   (b.name for b in service.get_container_client(settings.refs_container).list_blobs()))
    record = json.loads(service.get_blob_client(settings.refs_container, "_errors/b/t.nc.json").download_blob().readall())
    assert record["error"]["code"] == "verification_failed" and record["error"]["variable"] == "tas"
    assert "tas at [0, 0, 0]" in record["error"]["message"] and "was removed" in record["error"]["message"]
    assert record["error"]["retryable"] is False
    assert datasets.show(settings, storage, "checked").members == []
