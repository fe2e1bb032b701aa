"""The ncrefs command line: human and JSON output, exit codes, local files, the console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import main
from tests import samples
from tests.conftest import blob_names


def test_virtualize_prints_a_summary(tmp_path, settings, service, upload, capsys):
    source = upload(samples.nc4_chunked_cf_time(tmp_path), "d/t.nc")
    assert main(["virtualize", f"abfs://{source}"]) == 0
    out = capsys.readouterr().out
    assert f"wrote json reference abfs://{settings.refs_container}/d/t.json" in out
    assert "time=6" in out and "in 1 request (" in out
    assert blob_names(service, settings.refs_container) == ["d/t.json"]


def test_virtualize_json_result_has_the_api_fields(tmp_path, settings, upload, capsys):
    source = upload(samples.nc4_features(tmp_path), "f.nc")
    assert main(["virtualize", source, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for field in ("status", "input", "output", "format", "dimensions", "variables", "attributes", "warnings",
                  "chunk_count", "bytes_read", "elapsed_s", "source_etag"):
        assert field in result
    assert result["attributes"]["summary"] == "feature sample"
    assert result["dimensions"]["station"] == 4


def test_scan_prints_layout_and_writes_nothing(tmp_path, settings, service, upload, capsys):
    source = upload(samples.nc4_many_small_chunks(tmp_path))
    assert main(["scan", source]) == 0
    out = capsys.readouterr().out
    assert "pixels: <f4 (200, 20, 20) chunks (200, 1, 1)" in out
    assert "VERY slow" in out
    assert blob_names(service, settings.refs_container) == []


def test_local_file_with_parquet_output(tmp_path, capsys):
    path = samples.nc3_classic(tmp_path)
    assert main(["virtualize", str(path), "--format", "parquet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["output"] == str(tmp_path / "classic.parquet")
    assert (tmp_path / "classic.parquet" / ".zmetadata").is_file()


def test_console_entry_point_runs(tmp_path):
    path = samples.nc3_64bit(tmp_path)
    done = subprocess.run([sys.executable, "-m", "shared.cli", "scan", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "depth" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "shared.cli", "scan", str(samples.empty(tmp_path))], capture_output=True, text=True)
    assert bad.returncode == 2 and "not_netcdf" in bad.stderr and bad.stdout == ""


# -- the console script, as a user runs it ----------------------------------------------------------
NCREFS = str(Path(sys.executable).parent / "ncrefs")


def ncrefs(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DATA_STORAGE", "AzureWebJobsStorage")}
    return subprocess.run([NCREFS, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**environment, **(env or {})})


def test_options_go_before_or_after_the_command(tmp_path, settings, service, upload, azurite):
    source = upload(samples.nc3_64bit(tmp_path), "o/after.nc")
    after = ncrefs("virtualize", source, "--connection-string", azurite.connection_string, "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["output"].endswith("o/after.json")
    before = ncrefs("--json", "--connection-string", azurite.connection_string, "scan", source)
    assert before.returncode == 0 and json.loads(before.stdout)["status"] == "scanned"
    by_env = ncrefs("scan", source, env={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string})
    assert by_env.returncode == 0 and "depth" in by_env.stdout, by_env.stderr


def test_results_to_stdout_errors_to_stderr_and_json_alone(tmp_path):
    good = ncrefs("scan", str(samples.nc3_64bit(tmp_path)))
    assert good.returncode == 0 and "depth" in good.stdout and good.stderr == ""
    bad = ncrefs("scan", str(samples.random_bytes(tmp_path)))
    assert bad.returncode == 2 and bad.stdout == "" and "not_netcdf" in bad.stderr
    as_json = ncrefs("scan", str(samples.random_bytes(tmp_path)), "--json")
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["error"]["code"] == "not_netcdf"


def test_a_closed_pipe_ends_quietly(tmp_path):
    path = samples.nc4_features(tmp_path)
    done = subprocess.run(f"{NCREFS} scan {path} --json | head -c 10", shell=True, capture_output=True, text=True, timeout=120)
    assert len(done.stdout) == 10
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


@pytest.mark.parametrize(("env", "words"), [
    ({"REFERENCE_FORMAT": "JSONX"}, "REFERENCE_FORMAT='JSONX': Input should be 'json', 'parquet' or 'auto'"),
    ({"READ_BLOCK_SIZE": "4k"}, "READ_BLOCK_SIZE='4k'"),
    ({"PARSE_WORKERS": "0"}, "PARSE_WORKERS='0'"),
])
def test_a_bad_setting_is_one_line_and_exit_2(env, words, tmp_path):
    done = ncrefs("scan", "x.nc", env=env, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error [invalid_request]") and words in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_malformed_local_settings_file_is_one_line(tmp_path):
    (tmp_path / "local.settings.json").write_text('{"Values": {')
    done = ncrefs("scan", "x.nc", cwd=tmp_path)
    assert done.returncode == 2 and "local.settings.json is not valid JSON" in done.stderr and "Traceback" not in done.stderr


def test_no_secret_is_ever_echoed(tmp_path):
    key = "c2VjcmV0LWtleS1uZXZlci1wcmludGVk"
    for args in (["virtualize", "a.nc", "b", f"DefaultEndpointsProtocol=http;AccountKey={key};"],
                 ["virtualize", "a.nc", "--connection-string", f"AccountKey={key};BlobEndpoint=http://127.0.0.1:1/x", "--bogus"],
                 ["--connection-string", f"BlobEndpoint=http://127.0.0.1:9/a;SharedAccessSignature=sv=1&sig={key}", "scan", "c/x.nc"]):
        done = ncrefs(*args, cwd=tmp_path)
        assert done.returncode != 0 and key not in done.stdout + done.stderr, args


def test_a_missing_local_file_and_a_bare_name_get_a_local_message(tmp_path):
    done = ncrefs("scan", "missing.nc", cwd=tmp_path)
    assert done.returncode == 2 and "There is no local file" in done.stderr and "container" not in done.stderr.split("\n")[0]


def test_backfill_rejects_zero_workers(tmp_path):
    done = ncrefs("backfill", "--workers", "0", cwd=tmp_path)
    assert done.returncode == 2 and "at least 1" in done.stderr


def test_help_shows_an_example_and_the_exit_codes():
    for command in ("virtualize", "scan", "backfill"):
        done = ncrefs(command, "--help")
        assert done.returncode == 0 and "ncrefs " + command in done.stdout.split("example")[1] and "exit codes:" in done.stdout


# -- signing in instead of a key: --account-name / --blob-endpoint ----------------------------------
# A managed-identity endpoint on a closed loopback port: azure-identity tries it (never the real
# 169.254.169.254) and finds no sign-in; no az CLI profile in an empty HOME.
NO_SIGN_IN = {"IDENTITY_ENDPOINT": "http://127.0.0.1:9/token", "IDENTITY_HEADER": "x", "AZURE_CONFIG_DIR": "/nonexistent"}


def test_signing_in_without_a_sign_in_says_what_to_do(tmp_path):
    done = ncrefs("scan", "raw-netcdf/a.nc", "--account-name", "acct01", "--json",
                  env={**NO_SIGN_IN, "HOME": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "access_denied" and "No Azure sign-in" in error["message"]
    assert "az login" in error["hint"] and not error["retryable"]
    assert "Traceback" not in done.stderr and "DefaultAzureCredential failed" not in done.stderr  # no page-long warning


@pytest.mark.parametrize(("args", "words"), [
    (["--account-name", "Not_An_Account"], "'Not_An_Account' is not a storage account name"),
    (["--blob-endpoint", "http://127.0.0.1:9/devstoreaccount1"], "needs an https blob endpoint"),
    (["--blob-endpoint", "https://acct01.blob.core.windows.net/?sv=1&sig=c2VjcmV0"], "not a blob service URL"),
    (["--account-name", "acct01", "--connection-string", "UseDevelopmentStorage=true"], "not both"),
])
def test_a_bad_sign_in_option_is_refused_with_exit_2(args, words, tmp_path):
    done = ncrefs("scan", "raw-netcdf/a.nc", *args, env={**NO_SIGN_IN, "HOME": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr
    assert "c2VjcmV0" not in done.stderr


def test_backfill_says_what_it_starts_and_verbose_names_every_file(tmp_path, settings, upload, azurite):
    upload(samples.nc3_64bit(tmp_path), "v/ok.nc")
    upload(samples.empty(tmp_path), "v/empty.nc")
    done = ncrefs("backfill", "--prefix", "v/", "--verbose", "--json", env={
        "DATA_STORAGE": azurite.connection_string, "SOURCE_CONTAINER": settings.source_container,
        "REFS_CONTAINER": settings.refs_container}, cwd=tmp_path)
    assert done.returncode == 1  # one file failed
    assert json.loads(done.stdout)["failed_by_code"] == {"not_netcdf": 1}  # stdout: the JSON alone
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"backfill {settings.source_container}/v/: 2 to reference") and "starting 1 parser process" in lines[0]
    assert any(line.startswith("ok ") and "v/ok.nc -> abfs://" in line for line in lines), lines
    assert any(line.startswith("failed ") and "v/empty.nc: [not_netcdf]" in line for line in lines), lines
