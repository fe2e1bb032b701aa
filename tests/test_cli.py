"""The ncrefs command line: human and JSON output, exit codes, local files, the console script."""

from __future__ import annotations

import json
import subprocess
import sys

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
    assert bad.returncode == 2 and "not_netcdf" in bad.stdout
