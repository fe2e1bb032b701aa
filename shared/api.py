"""The HTTP API, independent of any web framework: a request body in, a status and JSON out.

``GET /api/datasets/{name}`` and ``POST /api/datasets/{name}/build`` answer as ``ncrefs dataset
show/build --json`` do, ``GET /api/status`` as ``ncrefs status --json``. ``POST /api/generate-reference`` takes ``{"netcdf_url", "output_url"?, "format"?, "scan_only"?}``
and answers 200 with the pipeline's result model, or ``{"status": "error", "error": {...}}``
with the status ``shared.errors.ERROR_TABLE`` gives the error's code. ``GET /api/health``
reports whether storage and both containers answer.

The body is read strictly: more than ``MAX_BODY_BYTES`` (1 MiB) is 413 ``payload_too_large``
before any parsing (the largest body the schema admits, two 4096-character URLs with every
character ``\\u``-escaped, is under 100 KB); JSON nested too deeply for the parser, or an object
with the same key twice (at any depth), is 400 ``invalid_request`` naming the problem.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib.metadata import version

from pydantic import ValidationError

from shared import __version__
from shared.errors import ERROR_TABLE, InvalidRequest, NcrefsError
from shared.models import ErrorInfo, GenerateReferenceBody
from shared.pipeline import AccessPolicy, error_result, generate_reference
from shared.settings import Settings
from shared.storage import Storage

RETRY_AFTER_S = "30"
MAX_BODY_BYTES = 1024 * 1024


@dataclass
class ApiResponse:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> str:
        return json.dumps(self.body, default=str)


def generate(body: bytes, content_type: str | None, settings: Settings, storage: Storage) -> ApiResponse:
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        return ApiResponse(415, _error_body("unsupported_media_type", f"The request body must be JSON, not {content_type or 'untyped'}.",
                                            "Send Content-Type: application/json with a JSON object."))
    if len(body or b"") > MAX_BODY_BYTES:
        return ApiResponse(413, _error_body("payload_too_large",
                                            f"The request body is {len(body):,} bytes; at most {MAX_BODY_BYTES:,} are accepted.",
                                            'Send only {"netcdf_url", "output_url", "format", "scan_only"}.'))
    try:
        payload = json.loads(body or b"", object_pairs_hook=_refuse_duplicate_keys)
    except _DuplicateKey as error:
        return _error(InvalidRequest(f"The request body has the key {error.key!r} more than once.",
                                     hint="Give each field once; which of two values counts would be a guess."))
    except RecursionError:
        return _error(InvalidRequest("The request body's JSON is nested too deeply.",
                                     hint='Send a flat JSON object such as {"netcdf_url": "abfs://raw-netcdf/a.nc"}.'))
    except (ValueError, UnicodeDecodeError) as error:
        return _error(InvalidRequest(f"The request body is not valid JSON: {error}."))
    if not isinstance(payload, dict):
        return _error(InvalidRequest("The request body must be a JSON object.", hint='Send {"netcdf_url": "abfs://raw-netcdf/a.nc"}.'))
    try:
        request = GenerateReferenceBody.model_validate(payload).to_request()
    except ValidationError as error:
        return _error(InvalidRequest(_describe_validation(error), hint='Send {"netcdf_url": "abfs://raw-netcdf/a.nc"}; '
                                     'optional: output_url, format (json|parquet|auto), scan_only (true|false).'))
    try:
        result = generate_reference(request, settings, storage, AccessPolicy.configured(settings))
    except Exception as error:  # noqa: BLE001 - every failure becomes a typed response
        failed = error_result(request.source, error)
        return _error_from_info(failed.error)
    return ApiResponse(200, result.model_dump(mode="json", exclude_none=True))


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """``json.loads``' object hook: the same key twice is an error, not last-one-wins."""
    payload: dict = {}
    for key, value in pairs:
        if key in payload:
            raise _DuplicateKey(key)
        payload[key] = value
    return payload


def dataset_show(name: str, settings: Settings, storage: Storage) -> ApiResponse:
    """``GET /api/datasets/{name}``: what ``ncrefs dataset show --json`` prints."""
    from shared import datasets

    return _dataset_call(name, lambda: datasets.show(settings, storage, name))


def dataset_build(name: str, rebuild: str | None, settings: Settings, storage: Storage) -> ApiResponse:
    """``POST /api/datasets/{name}/build[?rebuild=true]``: what ``ncrefs dataset build --json`` prints."""
    from shared import datasets

    if rebuild not in (None, "", "true", "false"):
        return _error(InvalidRequest(f"rebuild={rebuild!r} is neither true nor false."))
    return _dataset_call(name, lambda: datasets.build(settings, storage, name, rebuild=rebuild == "true"))


def _dataset_call(name: str, call) -> ApiResponse:
    try:
        return ApiResponse(200, call().model_dump(mode="json"))
    except Exception as error:  # noqa: BLE001 - every failure becomes a typed response
        return _error_from_info(error_result(name, error).error)


def status(prefix: str | None, settings: Settings, storage: Storage) -> ApiResponse:
    """``GET /api/status[?prefix=P]``: what ``ncrefs status --json`` prints."""
    from shared.status import status as archive_status

    try:
        return ApiResponse(200, archive_status(settings, storage, prefix).model_dump(mode="json"))
    except Exception as error:  # noqa: BLE001 - every failure becomes a typed response
        return _error_from_info(error_result(f"{settings.source_container}/{prefix or ''}", error).error)


def health(settings: Settings, storage: Storage) -> ApiResponse:
    checks: dict[str, str] = {}
    for container in (settings.source_container, settings.refs_container):
        try:
            checks[container] = "ok" if storage.service.get_container_client(container).exists() else "missing"
        except Exception as error:  # noqa: BLE001 - health reports, it does not raise
            checks[container] = f"unreachable: {type(error).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    body = {
        "status": "ok" if healthy else "unhealthy",
        "containers": checks,
        "versions": {"ncrefs": __version__, "virtualizarr": version("virtualizarr"), "python": platform.python_version()},
    }
    return ApiResponse(200 if healthy else 503, body, {} if healthy else {"Retry-After": RETRY_AFTER_S})


def _describe_validation(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        if item["type"] == "missing":
            problems.append(f"{where} is required")
        elif item["type"] == "extra_forbidden":
            problems.append(f"{where} is not a known field")
        else:
            problems.append(f"{where}: {item['msg']}")
    return "The request is invalid: " + "; ".join(problems) + "."


def _error_body(code: str, message: str, hint: str, **extra) -> dict:
    return {"status": "error", "error": {"code": code, "message": message, "hint": hint, **extra}}


def _error(error: NcrefsError) -> ApiResponse:
    return _error_from_info(ErrorInfo(**error.to_dict()))


def _error_from_info(info: ErrorInfo) -> ApiResponse:
    kind = ERROR_TABLE[info.code]
    body = {"status": "error", "error": info.model_dump(exclude_none=True)}
    return ApiResponse(kind.http_status, body, {"Retry-After": RETRY_AFTER_S} if kind.http_status == 503 else {})
