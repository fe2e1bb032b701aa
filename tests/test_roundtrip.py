"""Every kind of NetCDF file: reference written to Azurite, opened with xarray through adlfs,
read back equal to xarray reading the original file."""

from __future__ import annotations

import pytest

from shared.models import ReferenceRequest
from shared.pipeline import generate_reference
from tests import samples
from tests.conftest import assert_reads_like_original


@pytest.mark.parametrize("kind", sorted(samples.GOOD))
def test_reference_reads_back_equal(kind, tmp_path, settings, storage, upload, open_reference):
    path = samples.GOOD[kind](tmp_path)
    source = upload(path, f"archive/{kind}/{path.name}")

    result = generate_reference(ReferenceRequest(source=source), settings, storage)

    assert result.status == "success"
    assert result.format == "json"
    assert result.output == f"abfs://{settings.refs_container}/archive/{kind}/{path.stem}.json"
    assert result.bytes_read <= result.source_size
    for group in result.groups:
        with open_reference(result.output, None if group == "/" else group) as ds:
            assert_reads_like_original(ds, path, None if group == "/" else group)
