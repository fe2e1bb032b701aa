"""``import ncrefs``: virtualize, scan and open_dataset, as notebooks and scripts use them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ncrefs
from tests import samples
from tests.conftest import assert_reads_like_original

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_virtualize_then_open_dataset_reads_the_original(fmt, tmp_path, settings, upload, azurite):
    path = samples.nc4_chunked_cf_time(tmp_path)
    source = upload(path, f"api/{fmt}.nc")
    result = ncrefs.virtualize(f"abfs://{source}", format=fmt, connection_string=azurite.connection_string)
    assert result.status == "success" and result.format == fmt
    with ncrefs.open_dataset(result.output, connection_string=azurite.connection_string) as ds:
        assert_reads_like_original(ds, path)


def test_open_dataset_takes_the_connection_from_the_environment(tmp_path, settings, upload):
    path = samples.nc4_groups(tmp_path)
    result = ncrefs.virtualize(upload(path))  # DATA_STORAGE, as the CLI takes it
    with ncrefs.open_dataset(result.output, group="forecast") as ds:
        assert_reads_like_original(ds, path, group="forecast")


def test_open_dataset_on_the_original_blob_works_and_says_it_is_slow(tmp_path, settings, upload, azurite):
    path = samples.nc4_chunked_cf_time(tmp_path)
    source = upload(path, "raw/slow.nc")
    with pytest.warns(UserWarning, match="original file"):
        ds = ncrefs.open_dataset(f"abfs://{source}", connection_string=azurite.connection_string)
    with ds:
        assert_reads_like_original(ds, path)


def test_local_files_and_local_references(tmp_path):
    path = samples.nc3_classic(tmp_path)
    result = ncrefs.virtualize(str(path))
    with ncrefs.open_dataset(result.output) as ds:
        assert_reads_like_original(ds, path)
    with ncrefs.open_dataset(str(path)) as ds:
        assert_reads_like_original(ds, path)


def test_local_references_get_the_users_file_mode(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        output = Path(ncrefs.virtualize(str(samples.nc4_many_small_chunks(tmp_path))).output)
    finally:
        os.umask(old)
    assert stat.S_IMODE(output.stat().st_mode) == 0o644
    ranges = [v for v in json.loads(output.read_text())["refs"].values() if isinstance(v, list)]
    assert ranges and all(v[0] == str(tmp_path / "small_chunks.nc") for v in ranges), "chunks by local path, as the README says"


def test_scan_and_errors(tmp_path):
    report = ncrefs.scan(str(samples.nc4_many_small_chunks(tmp_path)))
    assert report.status == "scanned" and report.scan.variables
    with pytest.raises(ncrefs.NcrefsError) as info:
        ncrefs.virtualize(str(samples.random_bytes(tmp_path)))
    assert info.value.code == "not_netcdf" and info.value.hint


def test_python_m_ncrefs_works_beside_a_shared_folder(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "__init__.py").write_text("raise ImportError('the user folder, not ncrefs')\n")
    path = samples.nc3_64bit(tmp_path)
    done = subprocess.run([sys.executable, "-m", "ncrefs", "scan", path.name], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "depth" in done.stdout, done.stderr


def test_a_script_that_reads_a_reference_exits_cleanly(tmp_path, settings, upload, azurite):
    source = upload(samples.nc3_64bit(tmp_path), "clean/exit.nc")
    output = ncrefs.virtualize(source).output
    script = textwrap.dedent(f"""
        import ncrefs
        with ncrefs.open_dataset({output!r}, connection_string={azurite.connection_string!r}) as ds:
            print(float(ds["depth"].sum()))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    assert "Loop is not running" not in done.stderr and "Traceback" not in done.stderr
