"""Settings, read from the environment (the names in ``local.settings.sample.json``)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ReferenceFormat = Literal["json", "parquet", "auto"]
UrlScheme = Literal["abfs", "az", "https"]

# Read by the Functions host or by the trigger bindings, not by the core.
HOST_SETTING_NAMES = frozenset({"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "BLOB_TRIGGER_SOURCE"})


class Settings(BaseSettings):
    """Everything the core needs to know about where files live and how to write references.

    The data storage connection follows the Functions convention for a connection named
    ``DATA_STORAGE``: either a connection string in ``DATA_STORAGE``, or identity-based
    settings ``DATA_STORAGE__blobServiceUri`` (+ ``__credential``, ``__clientId``).
    Without either, ``AzureWebJobsStorage`` is used, as the Functions host would.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, case_sensitive=True)

    connection_string: str | None = Field(
        default=None, validation_alias=AliasChoices("DATA_STORAGE", "AzureWebJobsStorage")
    )
    blob_service_uri: str | None = Field(default=None, validation_alias="DATA_STORAGE__blobServiceUri")
    credential: str | None = Field(default=None, validation_alias="DATA_STORAGE__credential")
    client_id: str | None = Field(default=None, validation_alias="DATA_STORAGE__clientId")

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
    # Parser processes kept warm; more files at once wait for one.
    parse_workers: int = Field(default=4, ge=1, le=64, validation_alias="PARSE_WORKERS")

    @field_validator("connection_string", "blob_service_uri", "credential", "client_id", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


def app_setting_names() -> set[str]:
    """The names of every setting the app reads, as they appear in app settings."""
    names: set[str] = set(HOST_SETTING_NAMES)
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.update(alias.choices if isinstance(alias, AliasChoices) else [alias])  # type: ignore[arg-type]
    return {n for n in names if isinstance(n, str) and "__" not in n}


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
        where = str(item["loc"][0]) if item["loc"] else "settings"
        setting = aliases.get(where, where)
        secret = setting.startswith(("DATA_STORAGE", "AzureWebJobsStorage"))
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
