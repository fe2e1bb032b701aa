"""Storage failures are reported as what they are: a denied identity, a missing refs
container, a source deleted mid-scan; never a retryable "try again shortly" for a role that
is missing, and never a secret in the output."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

from scripts.azurite import ACCOUNT, _development_key
from shared.cli import main
from shared.errors import AccessDenied, SourceNotFound, StorageMisconfigured
from shared.events import reference_created_blob
from shared.models import ReferenceRequest
from shared.pipeline import generate_reference
from shared.storage import Storage
from tests import samples
from tests.conftest import assert_reads_like_original, blob_names


def sas_connection_string(azurite, **permissions) -> str:
    token = generate_account_sas(ACCOUNT, _development_key(), ResourceTypes(service=True, container=True, object=True),
                                 AccountSasPermissions(**permissions), expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    return f"BlobEndpoint={azurite.blob_endpoint};SharedAccessSignature={token}"


def run_cli(capsys, *args: str, connection_string: str) -> tuple[int, dict, str]:
    code = main(["--connection-string", connection_string, *args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.out + captured.err


def test_a_wrong_account_key_is_access_denied_not_retryable(tmp_path, settings, service, upload, azurite, capsys):
    source = upload(samples.nc3_64bit(tmp_path))
    wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="
    bad = azurite.connection_string.replace(_development_key(), wrong_key)
    code, result, output = run_cli(capsys, "virtualize", source, "--output", f"{settings.refs_container}/x.json",
                                   connection_string=bad)
    assert (code, result["error"]["code"], result["error"]["retryable"]) == (2, "access_denied", False)
    assert settings.source_container in result["error"]["message"] and "Storage Blob Data Reader" in result["error"]["hint"]
    assert wrong_key not in output and _development_key() not in output
    assert blob_names(service, settings.refs_container) == []


def test_a_read_only_identity_is_told_which_role_writing_needs(tmp_path, settings, service, upload, azurite):
    source = upload(samples.nc3_64bit(tmp_path))
    storage = Storage(settings, sas_connection_string(azurite, read=True, list=True))
    with pytest.raises(AccessDenied) as info:
        generate_reference(ReferenceRequest(source=source), settings, storage)
    assert settings.refs_container in info.value.message and "write" in info.value.message
    assert "Storage Blob Data Contributor" in info.value.hint
    assert info.value.kind.http_status == 403 and not info.value.retryable
    assert blob_names(service, settings.refs_container) == []


def test_the_blob_trigger_records_a_denied_read_and_does_not_retry(tmp_path, settings, service, upload, azurite):
    upload(samples.nc3_64bit(tmp_path), "denied.nc")
    storage = Storage(settings, sas_connection_string(azurite, write=True, create=True, delete=True, list=True))
    outcome = reference_created_blob(settings.source_container, "denied.nc", settings, storage)
    assert outcome.action == "recorded_error" and outcome.result.error.code == "access_denied"
    assert blob_names(service, settings.refs_container) == ["_errors/denied.nc.json"]


class DeletingStorage(Storage):
    """Deletes something in the real Azurite right after the source's first GET."""

    def __init__(self, settings, delete):
        super().__init__(settings)
        self._delete = delete

    def open_source(self, location, block_size):
        reader = super().open_source(location, block_size)
        self._delete(self.service, location)
        return reader


def test_a_refs_container_deleted_mid_run_is_a_storage_problem(tmp_path, settings, upload):
    source = upload(samples.nc3_64bit(tmp_path))
    storage = DeletingStorage(settings, lambda service, _: service.delete_container(settings.refs_container))
    with pytest.raises(StorageMisconfigured) as info:
        generate_reference(ReferenceRequest(source=source), settings, storage)
    assert settings.refs_container in info.value.message and info.value.code != "source_not_found"
    assert info.value.kind.http_status == 503 and info.value.retryable


def test_a_source_deleted_mid_scan_is_not_found(tmp_path, settings, service, upload):
    source = upload(samples.nc4_late_metadata(tmp_path))  # needs a GET after the first
    storage = DeletingStorage(settings, lambda service, loc: service.get_blob_client(loc.container, loc.path).delete_blob())
    with pytest.raises(SourceNotFound, match="deleted while it was being read"):
        generate_reference(ReferenceRequest(source=source), settings, storage)
    assert blob_names(service, settings.refs_container) == []


def test_a_read_write_sas_connection_string_does_a_full_virtualize(tmp_path, settings, service, upload, azurite,
                                                                   open_reference):
    path = samples.nc4_chunked_cf_time(tmp_path)
    source = upload(path, "sas/full.nc")
    storage = Storage(settings, sas_connection_string(azurite, read=True, write=True, create=True, delete=True, list=True))
    result = generate_reference(ReferenceRequest(source=source), settings, storage)
    assert result.requests >= 1 and result.output.endswith("sas/full.json")  # ranged reads went through the SAS
    with open_reference(result.output) as ds:
        assert_reads_like_original(ds, path)
