"""The request and result models shared by the CLI, the HTTP API and the blob trigger."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.settings import ReferenceFormat


class ReferenceRequest(BaseModel):
    """What to reference: the one request every entry point builds."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(max_length=4096, description="Blob URL, container/path or (CLI only) local path of the NetCDF file.")
    target: str | None = Field(default=None, max_length=4096, description="Where to write the reference; default: the mapped refs location.")
    format: ReferenceFormat | None = Field(default=None, description="json, parquet, or auto (by chunk count).")
    scan_only: bool = Field(default=False, description="Report only; write nothing.")


class GenerateReferenceBody(BaseModel):
    """The body of ``POST /api/generate-reference`` (field names as in the original API)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    netcdf_url: str = Field(min_length=1, max_length=4096)
    output_url: str | None = Field(default=None, min_length=1, max_length=4096)
    format: ReferenceFormat | None = None
    scan_only: bool = False

    def to_request(self) -> ReferenceRequest:
        return ReferenceRequest(source=self.netcdf_url, target=self.output_url, format=self.format, scan_only=self.scan_only)


class VariableReport(BaseModel):
    name: str
    dimensions: list[str]
    shape: list[int]
    dtype: str
    chunks: list[int]
    codecs: list[str]
    chunk_count: int
    chunk_grid_count: int
    inlined_chunks: int
    stored_bytes: int
    mean_chunk_bytes: int
    uncompressed_chunk_bytes: int


class ScanReport(BaseModel):
    variables: list[VariableReport]
    warnings: list[str]
    skipped_variables: dict[str, str] = Field(default_factory=dict, description="Variables left out of the reference, and why.")


class ErrorInfo(BaseModel):
    code: str
    message: str
    hint: str
    retryable: bool
    variable: str | None = None
    correlation_id: str | None = None


class ReferenceResult(BaseModel):
    status: Literal["success", "scanned", "error"]
    input: str
    output: str | None = None
    format: Literal["json", "parquet"] | None = None
    dimensions: dict[str, int] = Field(default_factory=dict)
    variables: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    groups: list[str] = Field(default_factory=list)
    skipped_variables: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    chunk_count: int = 0
    bytes_read: int = 0
    requests: int = 0
    reference_bytes: int = 0
    read_plan: str | None = None
    elapsed_s: float = 0.0
    source_etag: str | None = None
    source_size: int | None = None
    scan: ScanReport | None = None
    error: ErrorInfo | None = None
