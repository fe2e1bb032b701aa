"""Path parsing and source -> reference mapping: table tests and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from shared.errors import InvalidRequest, SourceNotAllowed
from shared.paths import (
    NETCDF_SUFFIXES,
    BlobLocation,
    LocalLocation,
    blob_endpoint,
    parse_location,
    reference_location,
    reference_name,
)
from shared.settings import Settings
from shared.storage import Storage


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
        ("https://evil.com#@acct01.blob.core.windows.net/raw-netcdf/x.nc", InvalidRequest),  # a fragment
        ("https://acct01.blob.core.windows.net@evil.com/raw-netcdf/x.nc", SourceNotAllowed),
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
    if name.startswith("_"):  # the refs container's reserved namespace (_errors/, ...)
        with pytest.raises(InvalidRequest, match="reserved"):
            reference_location(source, fmt=fmt, refs_container="refs", source_container="raw-netcdf")
        return
    target = reference_location(source, fmt=fmt, refs_container="refs", source_container="raw-netcdf")
    assert isinstance(target, BlobLocation)
    assert target.container == "refs"
    new_suffix = ".json" if fmt == "json" else ".parquet"
    assert target.path.endswith(new_suffix)
    kept = target.path[: -len(new_suffix)]
    # the final NetCDF suffix, whether it came from `suffix` or ends the stem itself (".NC" + "")
    known = next((k for k in NETCDF_SUFFIXES if name.lower().endswith(k)), "")
    assert kept + name[len(name) - len(known):] == name
    assert target.path.split("/")[:-1] == name.split("/")[:-1]
    assert reference_name(name, fmt) == target.path


# -- endpoints: a URL that names one records it; Storage.check_account compares it ------------------

@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("http://127.0.0.1:10000/devstoreaccount1/raw-netcdf/x.nc", "http://127.0.0.1:10000/devstoreaccount1"),
        ("HTTP://LocalHost:10000/devstoreaccount1/raw-netcdf/x.nc", "http://localhost:10000/devstoreaccount1"),
        ("http://[::1]:10000/devstoreaccount1/raw-netcdf/x.nc", "http://[::1]:10000/devstoreaccount1"),
        ("http://127.0.0.1/devstoreaccount1/raw-netcdf/x.nc", "http://127.0.0.1:80/devstoreaccount1"),
        ("https://acct01.blob.core.windows.net/raw-netcdf/x.nc", "https://acct01.blob.core.windows.net:443"),
        ("https://ACCT01.Blob.Core.Windows.Net:443/raw-netcdf/x.nc", "https://acct01.blob.core.windows.net:443"),
        ("https://acct01.dfs.core.windows.net/raw-netcdf/x.nc", "https://acct01.blob.core.windows.net:443"),
        ("https://acct01.dfs.core.chinacloudapi.cn/raw-netcdf/x.nc", "https://acct01.blob.core.chinacloudapi.cn:443"),
        ("https://acct01.z12.blob.storage.azure.net/raw-netcdf/x.nc", "https://acct01.z12.blob.storage.azure.net:443"),
        ("https://acct01.privatelink.dfs.core.windows.net/raw-netcdf/x.nc", "https://acct01.privatelink.blob.core.windows.net:443"),
        ("https://files.contoso.internal/raw-netcdf/x.nc", "https://files.contoso.internal:443"),  # a custom domain
        ("https://10.0.0.5:8443/raw-netcdf/x.nc", "https://10.0.0.5:8443"),
        ("abfs://raw-netcdf@acct01.dfs.core.windows.net/x.nc", None),  # names an account only
        ("abfs://raw-netcdf/x.nc", None),
        ("raw-netcdf/x.nc", None),
    ],
)
def test_parse_records_the_endpoint(text, endpoint):
    location = parse_location(text, allow_local=False)
    assert location.endpoint == endpoint
    # the endpoint is not part of a location's identity
    assert location == BlobLocation(location.container, location.path, location.account)
    assert str(location) == f"{location.container}/{location.path}"


@pytest.mark.parametrize(
    ("configured", "endpoint"),
    [
        ("http://127.0.0.1:54321/devstoreaccount1/", "http://127.0.0.1:54321/devstoreaccount1"),
        ("http://127.0.0.1:54321/devstoreaccount1", "http://127.0.0.1:54321/devstoreaccount1"),
        ("https://acct01.blob.core.windows.net/", "https://acct01.blob.core.windows.net:443"),
        ("HTTPS://ACCT01.Blob.core.windows.net:443/?sv=2020&sig=secret", "https://acct01.blob.core.windows.net:443"),
    ],
)
def test_blob_endpoint_normalizes_the_configured_url(configured, endpoint):
    assert blob_endpoint(configured) == endpoint


AZURITE_AT_54321 = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                    "BlobEndpoint=http://127.0.0.1:54321/devstoreaccount1;")
AZURE_ACCT01 = "DefaultEndpointsProtocol=https;AccountName=acct01;AccountKey=a2V5;EndpointSuffix=core.windows.net"
CHINA_ACCT01 = "DefaultEndpointsProtocol=https;AccountName=acct01;AccountKey=a2V5;EndpointSuffix=core.chinacloudapi.cn"
DNS_ZONE_ACCT01 = "AccountName=acct01;AccountKey=a2V5;BlobEndpoint=https://acct01.z12.blob.storage.azure.net/"
PRIVATE_ACCT01 = "AccountName=acct01;AccountKey=a2V5;BlobEndpoint=https://files.contoso.internal/"


@pytest.mark.parametrize(
    ("connection_string", "text", "allowed"),
    [
        (AZURITE_AT_54321, "http://127.0.0.1:54321/devstoreaccount1/raw-netcdf/x.nc", True),
        (AZURITE_AT_54321, "raw-netcdf/x.nc", True),
        (AZURITE_AT_54321, "abfs://raw-netcdf/x.nc", True),
        (AZURITE_AT_54321, "abfs://raw-netcdf@devstoreaccount1.dfs.core.windows.net/x.nc", True),  # account check only
        (AZURITE_AT_54321, "http://127.0.0.1:10000/devstoreaccount1/raw-netcdf/x.nc", False),  # other port
        (AZURITE_AT_54321, "http://127.0.0.1/devstoreaccount1/raw-netcdf/x.nc", False),  # default port 80
        (AZURITE_AT_54321, "https://127.0.0.1:54321/devstoreaccount1/raw-netcdf/x.nc", False),  # other scheme
        (AZURITE_AT_54321, "http://localhost:54321/devstoreaccount1/raw-netcdf/x.nc", False),  # other host name
        (AZURITE_AT_54321, "http://[::1]:54321/devstoreaccount1/raw-netcdf/x.nc", False),
        (AZURITE_AT_54321, "http://127.0.0.1:54321/otheraccount1/raw-netcdf/x.nc", False),  # other account
        (AZURITE_AT_54321, "https://devstoreaccount1.blob.core.windows.net/raw-netcdf/x.nc", False),  # Azure, not Azurite
        (AZURITE_AT_54321, "abfs://raw-netcdf@otheraccount1.dfs.core.windows.net/x.nc", False),
        (AZURE_ACCT01, "https://acct01.blob.core.windows.net/raw-netcdf/x.nc", True),
        (AZURE_ACCT01, "https://ACCT01.blob.core.windows.net:443/raw-netcdf/x.nc", True),
        (AZURE_ACCT01, "https://acct01.dfs.core.windows.net/raw-netcdf/x.nc", True),  # .dfs. is the same account
        (AZURE_ACCT01, "https://acct02.blob.core.windows.net/raw-netcdf/x.nc", False),
        (AZURE_ACCT01, "http://127.0.0.1:10000/acct01/raw-netcdf/x.nc", False),  # emulator, not Azure
        (AZURE_ACCT01, "https://acct01.blob.core.windows.net.evil.com/raw-netcdf/x.nc", False),
        (AZURE_ACCT01, "http://acct01.blob.core.windows.net/raw-netcdf/x.nc", False),  # plain http to Azure
        (AZURE_ACCT01, "https://acct01.blob.core.windows.net:8443/raw-netcdf/x.nc", False),
        (AZURE_ACCT01, "https://10.0.0.5/raw-netcdf/x.nc", False),
        (AZURE_ACCT01, "https://acct01.blob.core.chinacloudapi.cn/raw-netcdf/x.nc", False),  # same name, other cloud
        (CHINA_ACCT01, "https://acct01.blob.core.chinacloudapi.cn/raw-netcdf/x.nc", True),  # a sovereign cloud
        (CHINA_ACCT01, "https://acct01.dfs.core.chinacloudapi.cn/raw-netcdf/x.nc", True),
        (CHINA_ACCT01, "abfs://raw-netcdf@acct01.dfs.core.chinacloudapi.cn/x.nc", True),
        (CHINA_ACCT01, "https://acct01.blob.core.windows.net/raw-netcdf/x.nc", False),
        (DNS_ZONE_ACCT01, "https://acct01.z12.blob.storage.azure.net/raw-netcdf/x.nc", True),
        (DNS_ZONE_ACCT01, "https://acct01.z13.blob.storage.azure.net/raw-netcdf/x.nc", False),  # another zone
        (DNS_ZONE_ACCT01, "https://acct01.blob.core.windows.net/raw-netcdf/x.nc", False),
        (PRIVATE_ACCT01, "https://files.contoso.internal/raw-netcdf/x.nc", True),  # private endpoint / custom domain
        (PRIVATE_ACCT01, "https://FILES.contoso.internal:443/raw-netcdf/x.nc", True),
        (PRIVATE_ACCT01, "https://files.contoso.internal.evil.com/raw-netcdf/x.nc", False),
        (PRIVATE_ACCT01, "raw-netcdf/x.nc", True),
    ],
)
def test_check_account_accepts_only_the_configured_endpoint(connection_string, text, allowed):
    storage = Storage(Settings(connection_string=connection_string), connection_string)
    location = parse_location(text, allow_local=False)
    if allowed:
        storage.check_account(location)  # builds a client; makes no request
        return
    with pytest.raises(SourceNotAllowed) as info:
        storage.check_account(location)
    assert info.value.hint
    if location.endpoint is not None:
        assert blob_endpoint(storage.service.url) in info.value.message or storage.service.url in info.value.message
        assert location.endpoint in info.value.message


def test_check_account_never_shows_a_sas_token():
    connection_string = "BlobEndpoint=https://acct01.blob.core.windows.net/;SharedAccessSignature=sv=2020&sig=SECRET"
    storage = Storage(Settings(connection_string=connection_string), connection_string)
    with pytest.raises(SourceNotAllowed) as info:
        storage.check_account(parse_location("https://acct02.blob.core.windows.net/raw-netcdf/x.nc"))
    assert "https://acct01.blob.core.windows.net/" in info.value.message
    assert "SECRET" not in info.value.message + info.value.hint


# -- malformed hosts and ports: InvalidRequest saying what is wrong, never a ValueError ---------------

MALFORMED_NETLOCS = [
    ("http://[::1/x.nc", "not a well-formed URL"),
    ("http://[::1]x:10000/devstoreaccount1/raw-netcdf/x.nc", "malformed host"),
    ("http://127.0.0.1\uff0fdevstoreaccount1/raw-netcdf/x.nc", "not a well-formed URL"),  # fullwidth solidus
    ("http://127.0.0.1\uff1a10000/devstoreaccount1/raw-netcdf/x.nc", "not a well-formed URL"),  # fullwidth colon
    ("http://127.0.0.1\uff1f/devstoreaccount1/raw-netcdf/x.nc", "not a well-formed URL"),  # fullwidth '?'
    ("http://127.0.0.1:abc/devstoreaccount1/raw-netcdf/x.nc", "port 'abc'"),
    ("http://127.0.0.1:99999/devstoreaccount1/raw-netcdf/x.nc", "port '99999'"),
    ("http://127.0.0.1:65536/devstoreaccount1/raw-netcdf/x.nc", "port '65536'"),
    ("http://127.0.0.1:0/devstoreaccount1/raw-netcdf/x.nc", "port '0'"),
    ("http://127.0.0.1:-1/devstoreaccount1/raw-netcdf/x.nc", "port '-1'"),
    ("http://127.0.0.1:+10000/devstoreaccount1/raw-netcdf/x.nc", "port '+10000'"),
    ("http://127.0.0.1:\uff11\uff10000/devstoreaccount1/raw-netcdf/x.nc", "port"),  # fullwidth digits
    ("http://127.0.0.1:10000:1/devstoreaccount1/raw-netcdf/x.nc", "port '10000:1'"),
    ("http://127.0.0.1:/devstoreaccount1/raw-netcdf/x.nc", "port ''"),
    ("http:///devstoreaccount1/raw-netcdf/x.nc", "no host"),
    ("https://acct01.blob.core.windows.net:https/raw-netcdf/x.nc", "port 'https'"),
    ("abfs://[raw-netcdf/x.nc", "not a well-formed URL"),
    ("abfs://raw-netcdf\uff20acct01.dfs.core.windows.net/x.nc", "not a well-formed URL"),  # fullwidth '@'
]


@pytest.mark.parametrize(("text", "words"), MALFORMED_NETLOCS)
@pytest.mark.parametrize("what", ["source", "target"])
def test_malformed_netlocs_are_invalid_requests(text, words, what):
    with pytest.raises(InvalidRequest) as info:
        parse_location(text, what=what, allow_local=False)
    assert words in info.value.message and info.value.message.startswith(f"The {what} ")
    assert info.value.hint


_netloc_chars = st.sampled_from(list("0123456789abc.:[]@%-") + ["\uff0f", "\uff1a", "\uff1f", "\uff03", "\uff20", "\uff3b", "\uff3d", "\u2100", "\u2488", "\uff11"])


@hsettings(max_examples=500, deadline=None)
@given(st.sampled_from(["http", "https", "abfs", "az"]), st.lists(_netloc_chars, max_size=24).map("".join))
def test_any_netloc_parses_or_is_refused_with_a_reason(scheme, netloc):
    """Whatever the host part, the answer is a location or an NcrefsError, never a ValueError."""
    try:
        location = parse_location(f"{scheme}://{netloc}/devstoreaccount1/raw-netcdf/x.nc", allow_local=False)
    except (InvalidRequest, SourceNotAllowed) as error:
        assert error.message and error.hint
    else:
        assert isinstance(location, BlobLocation)


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("https://acct01.blob.core.windows.net/", "https://acct01.blob.core.windows.net/raw-netcdf/a/x.nc"),
        ("https://acct01.blob.core.chinacloudapi.cn", "https://acct01.blob.core.chinacloudapi.cn/raw-netcdf/a/x.nc"),
        ("https://acct01.z12.blob.storage.azure.net/?sv=1&sig=SECRET", "https://acct01.z12.blob.storage.azure.net/raw-netcdf/a/x.nc"),
        ("http://127.0.0.1:10000/devstoreaccount1", "http://127.0.0.1:10000/devstoreaccount1/raw-netcdf/a/x.nc"),
    ],
)
def test_https_urls_are_built_under_the_configured_endpoint(endpoint, url):
    assert BlobLocation("raw-netcdf", "a/x.nc").url("https", endpoint) == url
    with pytest.raises(ValueError):
        BlobLocation("raw-netcdf", "a/x.nc").url("https")  # never a guessed public-cloud host
