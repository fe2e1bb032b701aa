"""What a dataset is (its definition, kept in storage) and what ncrefs knows about it (its state).

Everything lives under ``<refs container>/_datasets/<name>/``:

- ``dataset.json``: the definition a team writes (``ncrefs dataset create``): name, source
  container and prefix, the dimension files are concatenated along, the outputs;
- ``state.json``: the members (source, ETag, Last-Modified, their extent along the concat
  dimension), the signature every new file is checked against, the last error;
- the outputs: ``<name>.icechunk/`` (an Icechunk repository), ``<name>.parquet/`` and/or
  ``<name>.json`` (kerchunk references);
- ``errors/<source path>.json``: why a file could not join.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from shared.errors import InvalidRequest
from shared.paths import BlobLocation, validate_blob_name

DATASETS_PREFIX = "_datasets"
NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
Output = Literal["icechunk", "parquet", "json"]
OUTPUT_SUFFIXES: dict[str, str] = {"icechunk": ".icechunk", "parquet": ".parquet", "json": ".json"}


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest(f"{name!r} is not a dataset name.",
                             hint="Use 1-63 lowercase letters, digits and hyphens, e.g. tas-daily.")
    return name


class DatasetDefinition(BaseModel):
    name: str
    container: str = Field(description="the source container")
    prefix: str = ""
    concat_dim: str = "time"
    outputs: list[Output] = Field(default_factory=lambda: ["icechunk"], min_length=1)
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value:
            validate_blob_name(value.rstrip("/") or "/", what="prefix")
        return value

    @field_validator("outputs")
    @classmethod
    def _outputs(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    def holds(self, source: BlobLocation) -> bool:
        return source.container == self.container and source.path.startswith(self.prefix)


class Member(BaseModel):
    source: str  # container/path
    etag: str
    last_modified: datetime
    reference: str  # the per-file reference it was combined from
    first: str  # its first and last value along the concat dimension (ISO text for times)
    last: str
    length: int


class DatasetError(BaseModel):
    source: str | None = None
    etag: str | None = None
    code: str
    message: str
    hint: str
    at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class DatasetState(BaseModel):
    members: list[Member] = Field(default_factory=list)
    # What every member must match (see shared/datasets/combine.py); set by the first member.
    signature: dict | None = None
    error: DatasetError | None = None
    updated_at: datetime | None = None


def folder(refs_container: str, name: str) -> BlobLocation:
    return BlobLocation(refs_container, f"{DATASETS_PREFIX}/{check_name(name)}")


def definition_location(refs_container: str, name: str) -> BlobLocation:
    return _in(folder(refs_container, name), "dataset.json")


def state_location(refs_container: str, name: str) -> BlobLocation:
    return _in(folder(refs_container, name), "state.json")


def output_location(refs_container: str, name: str, output: str) -> BlobLocation:
    return _in(folder(refs_container, name), name + OUTPUT_SUFFIXES[output])


def error_location(refs_container: str, name: str, source: BlobLocation) -> BlobLocation:
    return _in(folder(refs_container, name), f"errors/{source.container}/{source.path}.json")


def _in(directory: BlobLocation, name: str) -> BlobLocation:
    return BlobLocation(directory.container, f"{directory.path}/{name}")
