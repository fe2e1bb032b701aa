"""The identity-based connection, end to end: ``ncrefs --blob-endpoint https://...`` with no key, signed in
by azure-identity's DefaultAzureCredential through a managed identity, against Azurite with OAuth.

Nothing leaves the machine: Azurite runs on https://127.0.0.1 with a certificate from a CA made here
(``--oauth basic`` checks a bearer token's issuer, audience and lifetime, not its signature); the managed
identity is a fake App Service endpoint on loopback (``IDENTITY_ENDPOINT`` / ``IDENTITY_HEADER``) handing
out such tokens; and the CLI's proxy and IMDS address point at a tripwire that records anything else.

The CLI runs as a user runs it (the console script, in a subprocess) with a clean environment: no
connection string, HOME in a temporary folder (no az CLI profile), and the CA trusted the documented
ways: ``REQUESTS_CA_BUNDLE`` for the Azure SDK (requests) and ``SSL_CERT_FILE`` for obstore (reqwest
with rustls reads the system roots through rustls-native-certs, which take SSL_CERT_FILE / SSL_CERT_DIR
instead of them when set).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from tests import samples
from tests.identity_fakes import STORAGE_AUDIENCE, FakeManagedIdentity, Tripwire, start_oauth_azurite, write_certificates

ROOT = Path(__file__).resolve().parent.parent
NCREFS = str(Path(sys.executable).parent / "ncrefs")
SOURCE, REFS = "raw-netcdf", "refs"  # the default containers: nothing in the environment names them


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> tuple[Path, Path, Path]:
    return write_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def oauth_azurite(certificates, tmp_path_factory):
    _, cert, key = certificates
    server = start_oauth_azurite(tmp_path_factory.mktemp("azurite-oauth"), cert, key)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def key_service(oauth_azurite, certificates) -> BlobServiceClient:
    """The account key's view of the https Azurite (to upload sources and look at what the CLI wrote)."""
    service = BlobServiceClient.from_connection_string(oauth_azurite.connection_string,
                                                       connection_verify=str(certificates[0]))
    service.create_container(SOURCE)
    return service


@pytest.fixture
def identity():
    fake = FakeManagedIdentity().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def tripwire():
    wire = Tripwire().start()
    try:
        yield wire
    finally:
        wire.stop()


@pytest.fixture
def cli(oauth_azurite, certificates, identity, tripwire, tmp_path):
    """Run the console script against the https Azurite, signed in only through the fake managed identity."""
    ca = str(certificates[0])
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "REQUESTS_CA_BUNDLE": ca,
        "SSL_CERT_FILE": ca,
        **identity.environment(),
        **tripwire.environment(),
    }

    def _run(*args: str, endpoint: bool = True, extra_env: dict[str, str] | None = None) -> tuple[int, dict, str]:
        argv = [NCREFS, *args, "--json"] + (["--blob-endpoint", oauth_azurite.blob_endpoint] if endpoint else [])
        # cwd: a folder with no local.settings.json for the CLI to pick up
        done = subprocess.run(argv, env={**env, **(extra_env or {})}, cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        try:
            result = json.loads(done.stdout)
        except ValueError:
            pytest.fail(f"ncrefs {' '.join(args)} printed no JSON (exit {done.returncode}):\n"
                        f"{done.stdout}\n{done.stderr}")
        return done.returncode, result, done.stderr

    return _run


def upload(service: BlobServiceClient, path: Path, name: str) -> None:
    with open(path, "rb") as handle:
        service.get_blob_client(SOURCE, name).upload_blob(handle, overwrite=True)


def assert_token_requested(identity: FakeManagedIdentity) -> None:
    assert identity.requests, "the managed identity endpoint was never asked for a token"
    for request in identity.requests:
        assert request["header_ok"] and request["path"] == "/msi/token"
        assert request["query"]["resource"] == STORAGE_AUDIENCE
        assert request["query"]["api-version"] == "2019-08-01"


def assert_reads_back(oauth_azurite, certificates, pairs: list[tuple[str, Path]]) -> None:
    """Each reference reads back like its original (tests/fidelity.py), opened with ncrefs.open_dataset and
    the account key. In a fresh process: aiohttp (under adlfs) builds its TLS context when it is first
    imported, from SSL_CERT_FILE as it is then; this process may have imported it long before."""
    script = (
        "import json, os, sys\n"
        "from ncrefs import open_dataset\n"
        "from tests.fidelity import assert_group_equal, open_original\n"
        "for url, path in json.loads(sys.argv[1]):\n"
        "    with open_dataset(url, connection_string=os.environ['NCREFS_TEST_CONNECTION']) as reference, "
        "open_original(path) as original:\n"
        "        assert_group_equal(reference.load(), original.load(), group='/')\n"
        "    print('same', url)\n"
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "SSL_CERT_FILE": str(certificates[0]), "REQUESTS_CA_BUNDLE": str(certificates[0]),
           "NCREFS_TEST_CONNECTION": oauth_azurite.connection_string}
    done = subprocess.run([sys.executable, "-c", script, json.dumps([(url, str(path)) for url, path in pairs])],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("same ") == len(pairs)


def test_virtualize_signs_in_with_a_managed_identity(cli, key_service, identity, tripwire, oauth_azurite,
                                                     certificates, tmp_path):
    original = samples.nc4_chunked_cf_time(tmp_path)
    upload(key_service, original, "sample.nc")

    code, result, stderr = cli("virtualize", f"{SOURCE}/sample.nc")

    assert code == 0, (result, stderr)
    assert result["status"] == "success"
    assert result["input"] == f"abfs://{SOURCE}/sample.nc"
    assert result["output"] == f"abfs://{REFS}/sample.json" and result["format"] == "json"
    # the source was read with obstore (ranged GETs), whose only credential is the token provider
    assert result["bytes_read"] > 0 and result["requests"] >= 1 and result["source_size"] == original.stat().st_size
    assert key_service.get_blob_client(REFS, "sample.json").exists(), "the CLI created refs/ and wrote the reference"
    assert_token_requested(identity)
    assert len(identity.requests) == 1, "one token for the whole run, shared by the Azure SDK and obstore"
    assert tripwire.requests == [], "something tried to leave the machine (or asked IMDS)"
    assert_reads_back(oauth_azurite, certificates, [(result["output"], original)])


def test_backfill_signs_in_with_a_managed_identity(cli, key_service, identity, tripwire, tmp_path):
    originals = {"batch/chunked.nc": samples.nc4_chunked_cf_time(tmp_path),
                 "batch/classic.nc": samples.nc3_classic(tmp_path)}
    for name, path in originals.items():
        upload(key_service, path, name)

    code, first, stderr = cli("backfill", "--prefix", "batch/")
    assert code == 0, (first, stderr)
    assert (first["candidates"], first["done"], first["skipped"], first["failed"]) == (2, 2, 0, 0), first
    # the listing (with metadata) that tells current references from stale ones goes through the identity too
    code, second, stderr = cli("backfill", "--prefix", "batch/")
    assert code == 0, (second, stderr)
    assert (second["candidates"], second["done"], second["skipped"], second["failed"]) == (2, 0, 2, 0), second

    refs = sorted(b.name for b in key_service.get_container_client(REFS).list_blobs(name_starts_with="batch/"))
    assert refs == ["batch/chunked.json", "batch/classic.json"]
    for name in originals:  # a kerchunk reference whose chunks point at the source (read back: the test above)
        document = json.loads(key_service.get_blob_client(REFS, name.replace(".nc", ".json")).download_blob().readall())
        chunk_urls = {v[0] for v in document["refs"].values() if isinstance(v, list)}
        assert chunk_urls == {f"abfs://{SOURCE}/{name}"}, chunk_urls
    assert_token_requested(identity)
    assert tripwire.requests == []


def test_identity_settings_from_the_environment(cli, key_service, identity, tripwire, oauth_azurite, tmp_path):
    """The Functions convention (DATA_STORAGE__blobServiceUri, __credential=managedidentity): the app's
    ManagedIdentityCredential rather than the CLI's DefaultAzureCredential."""
    upload(key_service, samples.nc4_contiguous(tmp_path), "env/contiguous.nc4")

    code, result, stderr = cli("scan", f"{SOURCE}/env/contiguous.nc4", endpoint=False, extra_env={
        "DATA_STORAGE__blobServiceUri": oauth_azurite.blob_endpoint, "DATA_STORAGE__credential": "managedidentity"})

    assert code == 0, (result, stderr)
    assert result["status"] == "scanned" and result["dimensions"] == {"x": 50, "y": 40}
    assert_token_requested(identity)
    assert tripwire.requests == []


def test_a_token_storage_refuses_is_access_denied(cli, key_service, identity, tripwire, tmp_path):
    """A token for another audience: Azurite refuses it (403 AuthenticationFailed, "Invalid token audience"),
    and both clients say access_denied (exit 2),
    not a retryable failure."""
    upload(key_service, samples.nc3_classic(tmp_path), "denied/classic.nc")
    identity.audience = "https://management.azure.com"

    code, result, _ = cli("virtualize", f"{SOURCE}/denied/classic.nc")
    assert code == 2, result
    assert result["status"] == "error"
    assert result["error"]["code"] == "access_denied" and result["error"]["retryable"] is False
    # The SDK's refs-container check fails first but is left for the pipeline; what is reported is obstore's
    # read of the source.
    assert f"while reading {SOURCE}/denied/classic.nc" in result["error"]["message"]
    assert "may not read container 'raw-netcdf'" in result["error"]["message"]

    code, result, _ = cli("backfill", "--prefix", "denied/")  # the SDK: container look-up and listing
    assert code == 2, result
    assert result["error"]["code"] == "access_denied"

    assert_token_requested(identity)
    assert tripwire.requests == []
    assert not key_service.get_blob_client(REFS, "denied/classic.json").exists()


def test_the_tripwire_sees_what_would_leave_the_machine(cli, tripwire):
    """The guard the other tests rely on: a request for a real account's endpoint goes to the tripwire
    (as the CLI's proxy) instead of the internet."""
    code, result, _ = cli("scan", f"{SOURCE}/sample.nc", "--account-name", "nosuchaccount", endpoint=False)
    assert code != 0 and result["status"] == "error"
    assert tripwire.requests and all(r == "CONNECT nosuchaccount.blob.core.windows.net:443" for r in tripwire.requests)
