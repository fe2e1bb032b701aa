"""POST /api/generate-reference and GET /api/health, with real requests against Azurite."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from scripts.azurite import free_port
from shared.settings import get_settings
from tests import samples
from tests.conftest import assert_reads_like_original, blob_names


def test_generates_a_reference(tmp_path, settings, upload, call_http, open_reference):
    path = samples.nc4_chunked_cf_time(tmp_path)
    source = upload(path, "api/t.nc")
    status, body, response = call_http("generate_reference", {"netcdf_url": f"abfs://{source}"})
    assert status == 200, body
    assert response.mimetype == "application/json"
    assert body["status"] == "success"
    assert body["output"] == f"abfs://{settings.refs_container}/api/t.json"
    assert body["dimensions"] == {"time": 6, "lat": 20, "lon": 30}
    assert {"tas", "pr"} <= set(body["variables"]) and body["attributes"]["title"] == "chunked CF sample"
    with open_reference(body["output"]) as ds:
        assert_reads_like_original(ds, path)


def test_scan_only_and_explicit_output(tmp_path, settings, service, upload, call_http):
    source = upload(samples.nc3_classic(tmp_path))
    status, body, _ = call_http("generate_reference", {"netcdf_url": source, "scan_only": True})
    assert (status, body["status"]) == (200, "scanned") and body["scan"]["variables"]
    assert blob_names(service, settings.refs_container) == []
    status, body, _ = call_http("generate_reference", {"netcdf_url": source, "output_url": f"{settings.refs_container}/x/y.parquet"})
    assert (status, body["format"]) == (200, "parquet")
    assert f"x/y.parquet/.zmetadata" in blob_names(service, settings.refs_container)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "words"),
    [
        (b"{not json", "application/json", 400, "invalid_request", "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "invalid_request", "JSON object"),
        ({}, "application/json", 400, "invalid_request", "netcdf_url is required"),
        ({"netcdf_url": 42}, "application/json", 400, "invalid_request", "netcdf_url"),
        ({"netcdf_url": "raw-netcdf/a.nc", "format": "xml"}, "application/json", 400, "invalid_request", "format"),
        ({"netcdf_url": "raw-netcdf/a.nc", "scan_only": "yes"}, "application/json", 400, "invalid_request", "scan_only"),
        ({"netcdf_url": "raw-netcdf/a.nc", "colour": "red"}, "application/json", 400, "invalid_request", "colour is not a known field"),
        (b'{"netcdf_url": "raw-netcdf/a.nc"}', "text/plain", 415, "unsupported_media_type", "must be JSON"),
        (b'{"netcdf_url": "raw-netcdf/a.nc"}', None, 415, "unsupported_media_type", "must be JSON"),
        # nested deeper than the parser recurses: 400, not a RecursionError escaping as 500
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "invalid_request", "nested too deeply"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "application/json", 400, "invalid_request", "nested too deeply"),
        (b'{"netcdf_url": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", "application/json", 400, "invalid_request", "nested too deeply"),
        (b'{"netcdf_url": "raw-netcdf/\\ud800.nc"}', "application/json", 400, "invalid_request", "netcdf_url"),  # lone surrogate
        # the same key twice is refused, naming the key, not last-one-wins
        (b'{"netcdf_url": "a", "netcdf_url": "b"}', "application/json", 400, "invalid_request", "key 'netcdf_url' more than once"),
        (b'{"netcdf_url": "raw-netcdf/a.nc", "scan_only": true, "scan_only": false}', "application/json", 400,
         "invalid_request", "key 'scan_only' more than once"),
        (b'{"netcdf_url": "raw-netcdf/a.nc", "format": {"k": 1, "k": 2}}', "application/json", 400,
         "invalid_request", "key 'k' more than once"),
        # at most MAX_BODY_BYTES (1 MiB); the largest body the schema admits is under 100 KB
        (b'{"netcdf_url": "raw-netcdf/a.nc"' + b" " * (1024 * 1024) + b"}", "application/json", 413,
         "payload_too_large", "at most 1,048,576"),
    ],
)
def test_bad_requests(body, content_type, status, code, words, settings, call_http):
    got, payload, _ = call_http("generate_reference", body, content_type=content_type)
    assert got == status
    assert payload["status"] == "error"
    assert payload["error"]["code"] == code and words in payload["error"]["message"] and payload["error"]["hint"]


def test_file_errors_map_to_their_status(tmp_path, settings, service, upload, call_http):
    cases = [
        (upload(samples.random_bytes(tmp_path), "r.nc"), 422, "not_netcdf"),
        (upload(samples.truncated_nc3(tmp_path), "t.nc"), 422, "corrupt_file"),
        (f"{settings.source_container}/missing.nc", 404, "source_not_found"),
        (f"{settings.refs_container}/x.nc", 403, "source_not_allowed"),
    ]
    for source, status, code in cases:
        got, payload, _ = call_http("generate_reference", {"netcdf_url": source})
        assert (got, payload["error"]["code"]) == (status, code), source
    good = upload(samples.nc3_64bit(tmp_path), "g.nc")
    got, payload, _ = call_http("generate_reference", {"netcdf_url": good, "output_url": f"{settings.source_container}/g.json"})
    assert (got, payload["error"]["code"]) == (403, "source_not_allowed")
    assert blob_names(service, settings.refs_container) == []


HOSTILE = [
    "http://169.254.169.254/metadata/instance?api-version=2021-02-01",
    "http://metadata.google.internal/computeMetadata/v1/",
    "file:///etc/passwd",
    "/etc/passwd",
    "https://evil.example.com/raw-netcdf/a.nc",
    "https://devstoreaccount1.blob.core.windows.net.evil.example.com/raw-netcdf/a.nc",
    "https://devstoreaccount1.blob.core.windows.net@evil.example.com/raw-netcdf/a.nc",
    "https://evil.example.com#@devstoreaccount1.blob.core.windows.net/raw-netcdf/a.nc",
    "https://user:pass@devstoreaccount1.blob.core.windows.net/raw-netcdf/a.nc",
    "http://10.0.0.1:10000/devstoreaccount1/raw-netcdf/a.nc",
    "http://[::ffff:169.254.169.254]/raw-netcdf/a.nc",
    "http://2130706433/devstoreaccount1/raw-netcdf/a.nc",
    "https://otheraccount.blob.core.windows.net/raw-netcdf/a.nc",
    "abfs://raw-netcdf/%2e%2e/refs/a.nc",
    "abfs://raw-netcdf/a/../../b.nc",
    "raw-netcdf/..%2f..%2fsecret.nc",
    "gopher://127.0.0.1:10000/_GET",
    "ftp://example.com/a.nc",
    "abfs://raw-netcdf@evil.example.com/a.nc",
    "http://127.0.0.1:10000/devstoreaccount1/refs/other.nc",
    # path-style URLs of another port, host or account than the configured (dead) endpoint
    "http://127.0.0.1:10000/devstoreaccount1/raw-netcdf/a.nc",
    "http://127.0.0.1:10000/devstoreaccount1/refs/a.json",
    "http://localhost:10000/devstoreaccount1/raw-netcdf/a.nc",
    "http://[::1]:10000/devstoreaccount1/raw-netcdf/a.nc",
    "http://127.0.0.1/devstoreaccount1/raw-netcdf/a.nc",
    # the Azure endpoint while Azurite is configured
    "https://devstoreaccount1.blob.core.windows.net/raw-netcdf/a.nc",
    "https://devstoreaccount1.dfs.core.windows.net/refs/a.json",
    # malformed hosts and ports
    "http://[::1/x.nc",
    "http://127.0.0.1\uff0fdevstoreaccount1/raw-netcdf/x.nc",
    "http://127.0.0.1\uff1a10000/devstoreaccount1/raw-netcdf/x.nc",
    "http://127.0.0.1:abc/devstoreaccount1/raw-netcdf/x.nc",
    "http://127.0.0.1:99999/devstoreaccount1/raw-netcdf/x.nc",
    "abfs://[raw-netcdf/x.nc",
]


def test_hostile_urls_cause_no_request(monkeypatch, settings, call_http):
    """With storage pointed at a closed port, any request would surface as 503: every hostile
    input must be refused (400/403) before one is made."""
    dead = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;")
    monkeypatch.setenv("DATA_STORAGE", dead)
    monkeypatch.setenv("SOURCE_CONTAINER", "raw-netcdf")
    monkeypatch.setenv("REFS_CONTAINER", "refs")
    get_settings.cache_clear()
    for url in HOSTILE:
        for body in ({"netcdf_url": url}, {"netcdf_url": "raw-netcdf/ok.nc", "output_url": url}):
            status, payload, _ = call_http("generate_reference", body)
            assert status in (400, 403), (body, status, payload)
            assert payload["error"]["code"] in ("invalid_request", "source_not_allowed")
            assert payload["error"]["message"] and payload["error"]["hint"]


ENDPOINT_CASES = [
    # (URL template, status, code, words in the message); {port} is Azurite's, {other} another free port
    ("http://127.0.0.1:{other}/devstoreaccount1/{container}/{name}", 403, "source_not_allowed", "http://127.0.0.1:{port}/devstoreaccount1/"),
    ("http://localhost:{port}/devstoreaccount1/{container}/{name}", 403, "source_not_allowed", "not the configured one"),
    ("https://127.0.0.1:{port}/devstoreaccount1/{container}/{name}", 403, "source_not_allowed", "not the configured one"),
    ("http://127.0.0.1:{port}/otheraccount1/{container}/{name}", 403, "source_not_allowed", "http://127.0.0.1:{port}/devstoreaccount1/"),
    ("https://devstoreaccount1.blob.core.windows.net/{container}/{name}", 403, "source_not_allowed", "http://127.0.0.1:{port}/devstoreaccount1/"),
    ("https://devstoreaccount1.dfs.core.windows.net/{container}/{name}", 403, "source_not_allowed", "not the configured one"),
    ("http://[::1/{container}/{name}", 400, "invalid_request", "not a well-formed URL"),
    ("http://127.0.0.1\uff0fdevstoreaccount1/{container}/{name}", 400, "invalid_request", "not a well-formed URL"),
    ("http://127.0.0.1\uff1a{port}/devstoreaccount1/{container}/{name}", 400, "invalid_request", "not a well-formed URL"),
    ("http://127.0.0.1:abc/devstoreaccount1/{container}/{name}", 400, "invalid_request", "port 'abc'"),
    ("http://127.0.0.1:70000/devstoreaccount1/{container}/{name}", 400, "invalid_request", "port '70000'"),
    ("http://[::1]x:{port}/devstoreaccount1/{container}/{name}", 400, "invalid_request", "malformed host"),
]


@pytest.mark.parametrize(("template", "status", "code", "words"), ENDPOINT_CASES)
@pytest.mark.parametrize("field", ["netcdf_url", "output_url"])
def test_urls_must_name_the_configured_endpoint(template, status, code, words, field, tmp_path, azurite, settings, service,
                                                upload, call_http):
    """A real source is there to read, so a URL that slipped through would answer 200 and write."""
    source = upload(samples.nc3_64bit(tmp_path), "e/x.nc")
    values = {"port": azurite.port, "other": free_port()}
    if field == "netcdf_url":
        body = {"netcdf_url": template.format(container=settings.source_container, name="e/x.nc", **values)}
    else:
        body = {"netcdf_url": source, "output_url": template.format(container=settings.refs_container, name="e/x.json", **values)}
    got, payload, _ = call_http("generate_reference", body)
    assert (got, payload["error"]["code"]) == (status, code), payload
    assert words.format(**values) in payload["error"]["message"] and payload["error"]["hint"]
    assert blob_names(service, settings.refs_container) == []


def test_the_configured_endpoint_path_style_is_accepted(tmp_path, azurite, settings, service, upload, call_http):
    upload(samples.nc3_64bit(tmp_path), "e/x.nc")
    base = f"http://127.0.0.1:{azurite.port}/devstoreaccount1"
    status, body, _ = call_http("generate_reference", {
        "netcdf_url": f"{base}/{settings.source_container}/e/x.nc",
        "output_url": f"HTTP://127.0.0.1:{azurite.port}/devstoreaccount1/{settings.refs_container}/p/x.json",
    })
    assert status == 200, body
    assert blob_names(service, settings.refs_container) == ["p/x.json"]


def test_duplicate_keys_write_nothing(tmp_path, settings, service, upload, call_http):
    source = upload(samples.nc3_64bit(tmp_path), "d.nc")
    body = f'{{"netcdf_url": "{source}", "output_url": "{settings.refs_container}/a.json", "output_url": "{settings.refs_container}/b.json"}}'
    status, payload, _ = call_http("generate_reference", body.encode())
    assert (status, payload["error"]["code"]) == (400, "invalid_request")
    assert "'output_url' more than once" in payload["error"]["message"]
    assert blob_names(service, settings.refs_container) == []


def test_strict_references_refuse_an_unsupported_variable(tmp_path, settings, service, upload, call_http, monkeypatch):
    source = upload(samples.unsupported_codec(tmp_path), "u.h5")
    status, body, _ = call_http("generate_reference", {"netcdf_url": source})
    assert status == 200 and "scaleoffset" in body["skipped_variables"]["lossy"]
    assert "scaleoffset" in body["scan"]["skipped_variables"]["lossy"]
    monkeypatch.setenv("STRICT_REFERENCES", "true")
    get_settings.cache_clear()
    status, body, _ = call_http("generate_reference", {"netcdf_url": source, "output_url": f"{settings.refs_container}/s.json"})
    assert (status, body["error"]["code"]) == (422, "not_virtualizable") and "'lossy'" in body["error"]["message"]
    assert "s.json" not in blob_names(service, settings.refs_container)


def test_storage_unavailable_is_503_with_retry_after(monkeypatch, settings, call_http):
    dead = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"BlobEndpoint=http://127.0.0.1:{free_port()}/devstoreaccount1;")
    monkeypatch.setenv("DATA_STORAGE", dead)
    get_settings.cache_clear()
    status, payload, response = call_http("generate_reference", {"netcdf_url": f"{settings.source_container}/a.nc"})
    assert (status, payload["error"]["code"], payload["error"]["retryable"]) == (503, "storage_unavailable", True)
    assert response.headers["Retry-After"] == "30"


def test_internal_error_is_500_with_a_correlation_id_and_no_trace(tmp_path, monkeypatch, settings, upload, call_http):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("shared.pipeline.parse", broken)  # stands in for a bug
    status, payload, _ = call_http("generate_reference", {"netcdf_url": upload(samples.nc3_64bit(tmp_path))})
    assert (status, payload["error"]["code"]) == (500, "internal")
    assert len(payload["error"]["correlation_id"]) == 32
    assert payload["error"]["correlation_id"] in payload["error"]["message"]
    assert "secret internal detail" not in str(payload) and "Traceback" not in str(payload)


def test_twenty_requests_at_once_all_succeed(tmp_path, settings, service, upload, call_http):
    makers = [samples.nc4_chunked_cf_time, samples.nc3_classic, samples.nc4_groups, samples.nc3_64bit]
    sources = []
    for i in range(20):
        folder = tmp_path / str(i)
        folder.mkdir()
        sources.append(upload(makers[i % 4](folder), f"many/{i}.nc"))
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda s: call_http("generate_reference", {"netcdf_url": s}), sources))
    assert [a[0] for a in answers] == [200] * 20, [a[1] for a in answers if a[0] != 200]
    assert len(blob_names(service, settings.refs_container)) == 20


def test_health(settings, service, call_http):
    status, body, _ = call_http("health", method="GET", content_type=None)
    assert status == 200 and body["status"] == "ok"
    assert body["containers"] == {settings.source_container: "ok", settings.refs_container: "ok"}
    assert body["versions"]["ncrefs"] and body["versions"]["virtualizarr"]
    service.delete_container(settings.refs_container)
    status, body, response = call_http("health", method="GET", content_type=None)
    assert (status, body["containers"][settings.refs_container]) == (503, "missing")
    assert response.headers["Retry-After"]


def test_success_removes_a_stale_error_record(tmp_path, settings, service, upload, call_http, app_functions, azurite):
    from azure.storage.blob import BlobClient

    upload(samples.random_bytes(tmp_path), "s/fix.nc")
    app_functions["reference_from_blob"].get_user_function()(
        BlobClient.from_connection_string(azurite.connection_string, settings.source_container, "s/fix.nc"))
    assert blob_names(service, settings.refs_container) == ["_errors/s/fix.nc.json"]
    upload(samples.nc3_64bit(tmp_path), "s/fix.nc")
    status, _, _ = call_http("generate_reference", {"netcdf_url": f"{settings.source_container}/s/fix.nc"})
    assert status == 200
    assert blob_names(service, settings.refs_container) == ["s/fix.json"]
