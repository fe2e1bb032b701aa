"""HTTP triggers: POST /api/generate-reference, the dataset routes, GET /api/status and GET /api/health.

Each handler only translates: the request to ``shared.api``, its answer to an HttpResponse.
The core is imported at the first request, not when the host loads the app (cold start).
"""

import azure.functions as func

bp = func.Blueprint()


def _call(name: str, *args) -> func.HttpResponse:
    """``shared.api.<name>(*args, settings, storage)`` as an HttpResponse."""
    from shared import api
    from shared.settings import get_settings
    from shared.storage import shared_storage

    settings = get_settings()
    response = getattr(api, name)(*args, settings, shared_storage(settings))
    return func.HttpResponse(response.json(), status_code=response.status, headers=response.headers,
                             mimetype="application/json")


@bp.function_name("generate_reference")
@bp.route(route="generate-reference", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.FUNCTION)
def generate_reference(req: func.HttpRequest) -> func.HttpResponse:
    return _call("generate", req.get_body(), req.headers.get("content-type"))


@bp.function_name("dataset_show")
@bp.route(route="datasets/{name}", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.FUNCTION)
def dataset_show(req: func.HttpRequest) -> func.HttpResponse:
    return _call("dataset_show", req.route_params.get("name", ""))


@bp.function_name("dataset_build")
@bp.route(route="datasets/{name}/build", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.FUNCTION)
def dataset_build(req: func.HttpRequest) -> func.HttpResponse:
    return _call("dataset_build", req.route_params.get("name", ""), req.params.get("rebuild"))


@bp.function_name("status")
@bp.route(route="status", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.FUNCTION)
def status(req: func.HttpRequest) -> func.HttpResponse:
    return _call("status", req.params.get("prefix"))


@bp.function_name("health")
@bp.route(route="health", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return _call("health")
