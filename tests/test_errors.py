"""Every bad input gets its error code, its exit code, a message and a hint, and nothing is written."""

from __future__ import annotations

import json

import pytest

from scripts.azurite import free_port
from shared.cli import main
from tests import samples
from tests.conftest import blob_names

BROKEN_FILES = [
    # (maker, error code, words the message must contain)
    ("empty", "not_netcdf", "empty"),
    ("random_bytes", "not_netcdf", "not a NetCDF or HDF5 file"),
    ("truncated_nc4", "corrupt_file", "truncated"),
    ("truncated_nc3", "corrupt_file", "truncated"),
]


def run_cli(capsys, *args: str) -> tuple[int, dict]:
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("maker", "code", "words"), BROKEN_FILES)
def test_broken_file_is_refused_and_nothing_written(maker, code, words, tmp_path, settings, service, upload, capsys):
    source = upload(getattr(samples, maker)(tmp_path), f"bad/{maker}.nc")

    exit_code, result = run_cli(capsys, "virtualize", source)

    assert exit_code == 2
    assert result["status"] == "error"
    assert result["error"]["code"] == code
    assert words in result["error"]["message"]
    assert result["error"]["hint"] and result["error"]["retryable"] is False
    assert blob_names(service, settings.refs_container) == []


@pytest.mark.parametrize(("maker", "variable", "words"), [
    ("hdf5_object_references", "pointers", "object references"),
    ("unsupported_codec", "lossy", "scaleoffset"),
])
def test_an_unsupported_variable_is_left_out_and_named_or_refused_when_strict(maker, variable, words, tmp_path, settings,
                                                                              service, upload, capsys):
    source = upload(getattr(samples, maker)(tmp_path), f"partial/{maker}.h5")
    exit_code, result = run_cli(capsys, "virtualize", source)
    assert (exit_code, result["status"]) == (0, "success")
    assert words in result["skipped_variables"][variable]
    assert any(variable in w and "left out" in w for w in result["warnings"])
    assert variable not in result["variables"]
    refs = json.loads(service.get_blob_client(settings.refs_container, f"partial/{maker}.json").download_blob().readall())
    assert words in json.loads(refs["refs"][".zattrs"])["ncrefs_skipped_variables"][variable]

    exit_code, result = run_cli(capsys, "virtualize", source, "--strict", "--output", f"{settings.refs_container}/s.json")
    assert (exit_code, result["error"]["code"]) == (2, "not_virtualizable")
    assert variable in result["error"]["message"] and words in result["error"]["message"]
    assert "partial/" + maker + ".json" in blob_names(service, settings.refs_container)
    assert "s.json" not in blob_names(service, settings.refs_container)


def test_missing_blob_is_not_found(settings, service, capsys):
    exit_code, result = run_cli(capsys, "virtualize", f"{settings.source_container}/nowhere/missing.nc")
    assert (exit_code, result["error"]["code"]) == (2, "source_not_found")
    assert "missing.nc" in result["error"]["message"]
    assert blob_names(service, settings.refs_container) == []


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("", "invalid_request"),
        ("ftp://example.com/raw-netcdf/x.nc", "invalid_request"),
        ("abfs://Bad_Container/x.nc", "invalid_request"),
        ("raw-netcdf/a/../x.nc", "invalid_request"),
        ("raw-netcdf/a/%2e%2e/x.nc", "invalid_request"),
        ("raw-netcdf//x.nc", "invalid_request"),
        ("raw-netcdf/", "invalid_request"),
        ("raw-netcdf/a\x07b.nc", "invalid_request"),
        ("raw-netcdf/x.nc#frag", "invalid_request"),
        ("https://user:pw@devstoreaccount1.blob.core.windows.net/raw-netcdf/x.nc", "source_not_allowed"),
        ("https://evil.example.com/raw-netcdf/x.nc", "source_not_allowed"),
        ("http://169.254.169.254/metadata/instance", "source_not_allowed"),
        ("https://otheraccount.blob.core.windows.net/raw-netcdf/x.nc", "source_not_allowed"),
    ],
)
def test_malformed_or_foreign_sources_are_refused(source, code, settings, service, capsys):
    exit_code, result = run_cli(capsys, "virtualize", source)
    assert exit_code == 2
    assert result["error"]["code"] == code
    assert blob_names(service, settings.refs_container) == []


def test_target_must_name_a_reference(tmp_path, settings, upload, capsys):
    source = upload(samples.nc3_64bit(tmp_path))
    exit_code, result = run_cli(capsys, "virtualize", source, "--output", f"{settings.refs_container}/x.nc")
    assert (exit_code, result["error"]["code"]) == (2, "invalid_request")
    exit_code, result = run_cli(capsys, "virtualize", source, "--output", f"{settings.refs_container}/x.json", "--format", "parquet")
    assert (exit_code, result["error"]["code"]) == (2, "invalid_request")


def test_unreachable_storage_is_retryable(monkeypatch, capsys):
    dead = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;")
    exit_code, result = run_cli(capsys, "--connection-string", dead, "virtualize", "raw-netcdf/x.nc")
    assert exit_code == 1
    assert result["error"]["code"] == "storage_unavailable"
    assert result["error"]["retryable"] is True


def test_no_connection_configured_says_what_to_set(monkeypatch, capsys, tmp_path):
    for name in ("DATA_STORAGE", "AzureWebJobsStorage", "DATA_STORAGE__blobServiceUri"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no local.settings.json here
    exit_code, result = run_cli(capsys, "virtualize", "raw-netcdf/x.nc")
    assert (exit_code, result["error"]["code"]) == (2, "invalid_request")
    assert "DATA_STORAGE" in result["error"]["hint"]
