"""Path parsing and source -> reference mapping: table tests and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from shared.errors import InvalidRequest, SourceNotAllowed
from shared.paths import (
    NETCDF_SUFFIXES,
    BlobLocation,
    LocalLocation,
    parse_location,
    reference_location,
    reference_name,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abfs://raw-netcdf/a/b/file.nc", BlobLocation("raw-netcdf", "a/b/file.nc")),
        ("abfss://raw-netcdf/file.nc", BlobLocation("raw-netcdf", "file.nc")),
        ("az://raw-netcdf/x/y.nc4", BlobLocation("raw-netcdf", "x/y.nc4")),
        ("abfs://raw-netcdf@acct01.dfs.core.windows.net/f.nc", BlobLocation("raw-netcdf", "f.nc", "acct01")),
        ("https://acct01.blob.core.windows.net/raw-netcdf/a/my%20file.nc", BlobLocation("raw-netcdf", "a/my file.nc", "acct01")),
        ("http://127.0.0.1:10000/devstoreaccount1/raw-netcdf/p/q.h5", BlobLocation("raw-netcdf", "p/q.h5", "devstoreaccount1")),
        ("http://localhost:10000/devstoreaccount1/raw-netcdf/q.nc", BlobLocation("raw-netcdf", "q.nc", "devstoreaccount1")),
        ("raw-netcdf/2024/01/tas.nc", BlobLocation("raw-netcdf", "2024/01/tas.nc")),
        ("raw-netcdf/ünïcode dir/t.nc", BlobLocation("raw-netcdf", "ünïcode dir/t.nc")),
    ],
)
def test_parse_blob_forms(text, expected):
    assert parse_location(text) == expected


def test_parse_local_forms(tmp_path):
    path = tmp_path / "x.nc"
    path.write_bytes(b"")
    assert parse_location(str(path)) == LocalLocation(path)
    assert parse_location(path.as_uri()) == LocalLocation(path)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", InvalidRequest),
        ("   ", InvalidRequest),
        ("s3://bucket/x.nc", InvalidRequest),
        ("abfs://raw-netcdf/a/../../etc/passwd", InvalidRequest),
        ("abfs://raw-netcdf/a/%2E%2E/x.nc", InvalidRequest),
        ("raw-netcdf/./x.nc", InvalidRequest),
        ("raw-netcdf/a//x.nc", InvalidRequest),
        ("raw-netcdf/a\\x.nc", InvalidRequest),
        ("raw-netcdf/a\nb.nc", InvalidRequest),
        ("raw-netcdf/" + "a" * 1025, InvalidRequest),
        ("raw-netcdf/" + "a/" * 254 + "x.nc", InvalidRequest),
        ("ab/x.nc", InvalidRequest),  # container name too short
        ("Raw-NetCDF/x.nc", InvalidRequest),
        ("raw--netcdf/x.nc", InvalidRequest),
        ("https://acct01.blob.core.windows.net/raw-netcdf/x.nc?sig=secret", InvalidRequest),
        ("https://acct01.blob.core.windows.net.evil.com/raw-netcdf/x.nc", SourceNotAllowed),
        ("https://evil.com#@acct01.blob.core.windows.net/raw-netcdf/x.nc", SourceNotAllowed),
        ("https://acct01.blob.core.windows.net@evil.com/raw-netcdf/x.nc", SourceNotAllowed),
        ("http://acct01.blob.core.windows.net/raw-netcdf/x.nc", SourceNotAllowed),  # plain http to Azure
        ("https://acct01.blob.core.windows.net:8443/raw-netcdf/x.nc", SourceNotAllowed),
        ("https://10.0.0.5/raw-netcdf/x.nc", SourceNotAllowed),
        ("abfs://raw-netcdf@evil.com/x.nc", SourceNotAllowed),
    ],
)
def test_parse_refuses(text, error):
    with pytest.raises(error) as info:
        parse_location(text)
    assert info.value.message and info.value.hint


def test_api_form_never_touches_local_files(tmp_path):
    with pytest.raises(SourceNotAllowed):
        parse_location(str(tmp_path / "x.nc"), allow_local=False)
    with pytest.raises(SourceNotAllowed):
        parse_location("file:///etc/passwd", allow_local=False)


@pytest.mark.parametrize(
    ("source", "fmt", "expected"),
    [
        ("raw-netcdf/a/b/file.nc", "json", "refs/a/b/file.json"),
        ("raw-netcdf/a/b/file.nc", "parquet", "refs/a/b/file.parquet"),
        ("raw-netcdf/file.NC4", "json", "refs/file.json"),
        ("raw-netcdf/x.netcdf", "json", "refs/x.json"),
        ("raw-netcdf/x.he5", "json", "refs/x.json"),
        ("raw-netcdf/x.hdf5", "json", "refs/x.json"),
        ("raw-netcdf/raw-netcdf/nc.nc/file.nc", "json", "refs/raw-netcdf/nc.nc/file.json"),
        ("raw-netcdf/data.bin", "json", "refs/data.bin.json"),
        ("raw-netcdf/archive.nc.gz", "json", "refs/archive.nc.gz.json"),
        ("other-box/x.nc", "json", "refs/other-box/x.json"),
    ],
)
def test_reference_mapping(source, fmt, expected):
    target = reference_location(parse_location(source), fmt=fmt, refs_container="refs", source_container="raw-netcdf")
    assert str(target) == expected


def test_local_reference_lies_beside_the_file(tmp_path):
    path = tmp_path / "sub" / "f.nc"
    path.parent.mkdir()
    path.write_bytes(b"")
    target = reference_location(parse_location(str(path)), fmt="json", refs_container="refs", source_container="raw-netcdf")
    assert target == LocalLocation(tmp_path / "sub" / "f.json")


segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs"), blacklist_characters="/\\#?%"),
    min_size=1, max_size=20,
).filter(lambda s: s.strip() and s not in (".", ".."))


@hsettings(max_examples=300, deadline=None)
@given(st.lists(segment, min_size=0, max_size=5), segment, st.sampled_from(NETCDF_SUFFIXES + (".txt", "")), st.sampled_from(["json", "parquet"]))
def test_mapping_changes_only_the_final_suffix(folders, stem, suffix, fmt):
    name = "/".join([*folders, stem + suffix])
    source = parse_location(f"raw-netcdf/{name}")
    target = reference_location(source, fmt=fmt, refs_container="refs", source_container="raw-netcdf")
    assert isinstance(target, BlobLocation)
    assert target.container == "refs"
    new_suffix = ".json" if fmt == "json" else ".parquet"
    assert target.path.endswith(new_suffix)
    kept = target.path[: -len(new_suffix)]
    if suffix in NETCDF_SUFFIXES:
        assert kept + suffix == name
    else:
        assert kept == name
    assert target.path.split("/")[:-1] == name.split("/")[:-1]
    assert reference_name(name, fmt) == target.path
