"""The Functions app, invoked in-process (no Functions host can be installed here)."""

from __future__ import annotations

import json

import azure.functions as func
import pytest


@pytest.fixture(scope="session")
def app_functions() -> dict:
    """The registered functions by name; ``get_functions()`` is called once per app."""
    from function_app import app

    return {fn.get_function_name(): fn for fn in app.get_functions()}


@pytest.fixture
def call_http(app_functions):
    def _call(name: str, body: bytes | dict | None = None, *, method: str = "POST",
              content_type: str | None = "application/json") -> tuple[int, dict, func.HttpResponse]:
        raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        headers = {"content-type": content_type} if content_type else {}
        route = json.loads(app_functions[name].get_function_json())["bindings"][0]["route"]
        request = func.HttpRequest(method=method, url=f"http://localhost:7071/api/{route}", body=raw, headers=headers)
        response = app_functions[name].get_user_function()(request)
        return response.status_code, json.loads(response.get_body()), response

    return _call
