"""Settings, read from the environment (the names in ``local.settings.sample.json``)."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ReferenceFormat = Literal["json", "parquet", "auto"]
UrlScheme = Literal["abfs", "az", "https"]

# Read by the Functions host or by the trigger bindings, not by the core.
HOST_SETTING_NAMES = frozenset({"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "BLOB_TRIGGER_SOURCE"})
# The az CLI's environment variables: honoured for people at a terminal, never set in the app.
CLI_SETTING_NAMES = frozenset({"AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT"})
_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")


def account_blob_url(account_name: str) -> str:
    """``https://<account>.blob.core.windows.net`` (public cloud; other clouds give their endpoint)."""
    if not _ACCOUNT_NAME.match(account_name or ""):
        raise ValueError(f"{account_name!r} is not a storage account name (3-24 lowercase letters and digits)")
    return f"https://{account_name}.blob.core.windows.net"


class Settings(BaseSettings):
    """Everything the core needs to know about where files live and how to write references.

    The data storage connection follows the Functions convention for a connection named
    ``DATA_STORAGE``: either a connection string in ``DATA_STORAGE``, or identity-based
    settings ``DATA_STORAGE__blobServiceUri`` (+ ``__credential``, ``__clientId``). When
    ``DATA_STORAGE`` names neither, the az CLI's ``AZURE_STORAGE_CONNECTION_STRING`` or
    ``AZURE_STORAGE_ACCOUNT`` (with ``az login`` / managed identity) are used, and last
    ``AzureWebJobsStorage``, as the Functions host would.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, case_sensitive=True)

    connection_string: str | None = Field(default=None, repr=False, validation_alias="DATA_STORAGE")
    blob_service_uri: str | None = Field(default=None, validation_alias="DATA_STORAGE__blobServiceUri")
    credential: str | None = Field(default=None, validation_alias="DATA_STORAGE__credential")
    client_id: str | None = Field(default=None, validation_alias="DATA_STORAGE__clientId")
    # The same account's queue service (ncrefs backfill --queue, status); derived from the blob endpoint when unset.
    queue_service_uri: str | None = Field(default=None, validation_alias="DATA_STORAGE__queueServiceUri")
    # Fallbacks, in this order, when DATA_STORAGE names no connection (see _fall_back).
    az_connection_string: str | None = Field(default=None, repr=False, validation_alias="AZURE_STORAGE_CONNECTION_STRING")
    az_account: str | None = Field(default=None, validation_alias="AZURE_STORAGE_ACCOUNT")
    host_connection_string: str | None = Field(default=None, repr=False, validation_alias="AzureWebJobsStorage")

    source_container: str = Field(default="raw-netcdf", validation_alias="SOURCE_CONTAINER")
    refs_container: str = Field(default="refs", validation_alias="REFS_CONTAINER")
    url_scheme: UrlScheme = Field(default="abfs", validation_alias="REFERENCE_URL_SCHEME")
    reference_format: ReferenceFormat = Field(default="auto", validation_alias="REFERENCE_FORMAT")
    parquet_chunk_threshold: int = Field(default=100_000, ge=1, validation_alias="PARQUET_CHUNK_THRESHOLD")
    # Variables of at most this many stored bytes (scalars, short coordinates) are copied into
    # the reference; 0: none. Dimension coordinates up to 64 KiB always are, unless 0.
    inline_threshold: int = Field(default=500, ge=0, validation_alias="INLINE_THRESHOLD")
    # Smallest ranged read of a source; sequential reads grow from it (see shared/reader.py).
    read_block_size: int = Field(default=4096, ge=512, validation_alias="READ_BLOCK_SIZE")

    # Limits on what one file may cost: any file is parsed in a separate process under them,
    # so a hostile or broken file fails with limits_exceeded instead of taking the worker down.
    parse_timeout_s: float = Field(default=120, gt=0, validation_alias="PARSE_TIMEOUT_S")
    parse_memory_mb: int = Field(default=1536, ge=512, validation_alias="PARSE_MEMORY_MB")
    # Chunks a file's variables may have in all (counted from the header, before any index is read).
    max_chunks: int = Field(default=2_000_000, ge=1, validation_alias="MAX_CHUNKS")
    # Bytes of the source one reference may read in all.
    max_read_mb: int = Field(default=256, ge=1, validation_alias="MAX_READ_MB")
    # Refuse a file with any variable Zarr cannot reference exactly, instead of leaving it out (and saying so).
    strict: bool = Field(default=False, validation_alias="STRICT_REFERENCES")
    # After the blob trigger writes a reference, read the first chunk of each variable through it and from the
    # original (shared/verify.py); a mismatch removes the reference and records verification_failed.
    verify_after_write: bool = Field(default=False, validation_alias="VERIFY_AFTER_WRITE")
    # At most this many parser processes, kept warm; another starts only when a file has waited (sandbox/pool.py).
    parse_workers: int = Field(default=4, ge=1, le=64, validation_alias="PARSE_WORKERS")
    # The storage queue of the fan-out backfill (`ncrefs backfill --queue` -> the queue trigger), in the data
    # account; the Functions host parks messages that failed every attempt in `<name>-poison`.
    reference_queue: str = Field(default="reference-requests", validation_alias="REFERENCE_QUEUE")

    @field_validator("connection_string", "blob_service_uri", "queue_service_uri", "credential", "client_id",
                     "az_connection_string", "az_account", "host_connection_string", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("reference_queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        # Azure's queue names, with room for the host's "-poison" suffix (63 in all).
        if not re.fullmatch(r"(?=.{3,56}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*", value):
            raise ValueError("a queue name is 3-56 lowercase letters, digits and single hyphens, starting and ending "
                             "with a letter or digit (the host adds '-poison' for failed messages)")
        return value

    @field_validator("az_account")
    @classmethod
    def _account_name(cls, value: str | None) -> str | None:
        if value is not None:
            account_blob_url(value)  # raises for a name that cannot be an account
        return value

    @model_validator(mode="after")
    def _fall_back(self) -> Settings:
        """DATA_STORAGE (a string or identity settings) wins; then the az CLI's variables; then the host's storage."""
        if self.connection_string is None and self.blob_service_uri is None:
            if self.az_connection_string:
                self.connection_string = self.az_connection_string
            elif self.az_account:
                self.blob_service_uri = account_blob_url(self.az_account)
            else:
                self.connection_string = self.host_connection_string
        return self

    def with_connection(self, *, connection_string: str | None = None, account_name: str | None = None,
                        blob_endpoint: str | None = None) -> Settings:
        """These settings with the connection a caller gave (``--connection-string``, or ``--account-name`` /
        ``--blob-endpoint`` for az login / managed identity); unchanged when none is given."""
        if connection_string:
            return self.model_copy(update={"connection_string": connection_string, "blob_service_uri": None,
                                           "queue_service_uri": None})
        if account_name or blob_endpoint:
            if blob_endpoint and not re.match(r"^https?://[^/?#@\s]+(/[^?#\s]*)?$", blob_endpoint):
                shown = blob_endpoint.split("?", 1)[0]  # never echo a SAS token
                raise ValueError(f"--blob-endpoint {shown!r} is not a blob service URL such as "
                                 "https://<account>.blob.core.windows.net (no SAS token: sign-in is used).")
            uri = blob_endpoint or account_blob_url(account_name)
            return self.model_copy(update={"connection_string": None, "blob_service_uri": uri, "queue_service_uri": None,
                                           "credential": None, "client_id": None})
        return self


def app_setting_names() -> set[str]:
    """The names of every setting the app reads, as they appear in app settings."""
    names: set[str] = set(HOST_SETTING_NAMES)
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.update(alias.choices if isinstance(alias, AliasChoices) else [alias])  # type: ignore[arg-type]
    return {n for n in names if isinstance(n, str) and "__" not in n} - CLI_SETTING_NAMES


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def describe_invalid_settings(error: Exception) -> str:
    """One line: which setting is wrong and what it takes (never the value of a connection setting)."""
    from pydantic import ValidationError

    if not isinstance(error, ValidationError):
        return str(error)
    aliases = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        aliases[name] = alias.choices[0] if isinstance(alias, AliasChoices) else alias
    problems = []
    for item in error.errors():
        where = str(item["loc"][0]) if item["loc"] else ""
        setting = aliases.get(where, where) or "settings"
        secret = not where or setting.startswith(("DATA_STORAGE", "AzureWebJobsStorage", "AZURE_STORAGE"))
        shown = "" if secret else f"={item.get('input')!r}"
        problems.append(f"{setting}{shown}: {item['msg']}")
    return "Invalid setting " + "; ".join(problems) + "."


def load_local_settings(path: Path = Path("local.settings.json")) -> bool:
    """Put a Functions ``local.settings.json``'s Values into the environment, without overriding it."""
    if not path.is_file():
        return False
    try:
        document = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it should look like local.settings.sample.json.") from None
    values = document.get("Values", {}) if isinstance(document, dict) else {}
    for name, value in values.items():
        os.environ.setdefault(name, str(value))
    get_settings.cache_clear()
    return True
