"""One list of settings: what the app reads is what local.settings.sample.json lists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.settings import Settings, app_setting_names
from shared.storage import Storage

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


def test_sample_lists_exactly_the_settings_the_app_reads():
    assert set(SAMPLE) == app_setting_names()


def test_every_setting_the_function_code_names_is_listed():
    code = "\n".join(p.read_text() for p in [ROOT / "function_app.py", *sorted((ROOT / "functions").glob("*.py"))])
    named = set(re.findall(r"%(\w+)%", code)) | set(re.findall(r'connection="(\w+)"', code)) | set(re.findall(r'os\.environ\.get\("(\w+)"', code))
    assert named and named <= set(SAMPLE)


def test_sample_values_are_azurite_defaults_the_core_accepts(monkeypatch):
    for name, value in SAMPLE.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.connection_string == "UseDevelopmentStorage=true"
    assert (settings.source_container, settings.refs_container) == ("raw-netcdf", "refs")
    assert SAMPLE["BLOB_TRIGGER_SOURCE"] == "LogsAndContainerScan"


def test_local_settings_json_is_ignored_by_git():
    assert "local.settings.json" in (ROOT / ".gitignore").read_text().splitlines()


AZURITE = "UseDevelopmentStorage=true"
KEY_STRING = "DefaultEndpointsProtocol=https;AccountName=acct02;AccountKey=a2V5;EndpointSuffix=core.windows.net"


@pytest.mark.parametrize(
    ("env", "connection_string", "blob_service_uri"),
    [
        # the app's own connection wins, as a string or as identity settings ...
        ({"DATA_STORAGE": AZURITE, "AzureWebJobsStorage": KEY_STRING}, AZURITE, None),
        ({"DATA_STORAGE__blobServiceUri": "https://acct01.blob.core.windows.net", "AzureWebJobsStorage": AZURITE},
         None, "https://acct01.blob.core.windows.net"),
        ({"DATA_STORAGE__blobServiceUri": "https://acct01.blob.core.windows.net", "AZURE_STORAGE_CONNECTION_STRING": KEY_STRING},
         None, "https://acct01.blob.core.windows.net"),
        # ... then the az CLI's variables ...
        ({"AZURE_STORAGE_CONNECTION_STRING": KEY_STRING, "AzureWebJobsStorage": AZURITE}, KEY_STRING, None),
        ({"AZURE_STORAGE_ACCOUNT": "acct03", "AzureWebJobsStorage": AZURITE}, None, "https://acct03.blob.core.windows.net"),
        # ... and the host's storage last
        ({"AzureWebJobsStorage": AZURITE}, AZURITE, None),
        ({}, None, None),
    ],
)
def test_which_connection_wins(env, connection_string, blob_service_uri, monkeypatch):
    for name in ("DATA_STORAGE", "DATA_STORAGE__blobServiceUri", "AzureWebJobsStorage", "AZURE_STORAGE_CONNECTION_STRING",
                 "AZURE_STORAGE_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.connection_string, settings.blob_service_uri) == (connection_string, blob_service_uri)
    assert "AccountKey" not in repr(settings)  # connection strings stay out of logs


def test_identity_settings_reach_the_storage_client(monkeypatch):
    monkeypatch.setenv("DATA_STORAGE__blobServiceUri", "https://acct01.z12.blob.storage.azure.net")
    monkeypatch.setenv("AzureWebJobsStorage", AZURITE)
    storage = Storage(Settings())  # builds clients; makes no request
    assert storage.blob_url == "https://acct01.z12.blob.storage.azure.net"
    assert storage.account_name == "acct01"
    assert "default Azure credential" in storage.identity()


def test_a_caller_given_connection_replaces_the_settings_one():
    settings = Settings(connection_string=AZURITE)
    by_account = settings.with_connection(account_name="acct04")
    assert (by_account.connection_string, by_account.blob_service_uri) == (None, "https://acct04.blob.core.windows.net")
    by_endpoint = settings.with_connection(blob_endpoint="https://acct04.blob.core.usgovcloudapi.net")
    assert by_endpoint.blob_service_uri == "https://acct04.blob.core.usgovcloudapi.net"
    assert settings.with_connection(connection_string=KEY_STRING).connection_string == KEY_STRING
    assert settings.with_connection() is settings
    with pytest.raises(ValueError, match="not a storage account name"):
        settings.with_connection(account_name="Not_An_Account")
    with pytest.raises(ValueError, match="not a blob service URL"):
        settings.with_connection(blob_endpoint="https://acct04.blob.core.windows.net/?sv=1&sig=x")
