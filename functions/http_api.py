"""HTTP triggers: POST /api/generate-reference, the dataset routes and GET /api/health."""

import azure.functions as func

from shared import api
from shared.settings import get_settings
from shared.storage import shared_storage

bp = func.Blueprint()


def _respond(response: api.ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(response.json(), status_code=response.status, headers=response.headers,
                             mimetype="application/json")


@bp.function_name("generate_reference")
@bp.route(route="generate-reference", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.FUNCTION)
def generate_reference(req: func.HttpRequest) -> func.HttpResponse:
    settings = get_settings()
    return _respond(api.generate(req.get_body(), req.headers.get("content-type"), settings, shared_storage(settings)))


@bp.function_name("dataset_show")
@bp.route(route="datasets/{name}", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.FUNCTION)
def dataset_show(req: func.HttpRequest) -> func.HttpResponse:
    settings = get_settings()
    return _respond(api.dataset_show(req.route_params.get("name", ""), settings, shared_storage(settings)))


@bp.function_name("dataset_build")
@bp.route(route="datasets/{name}/build", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.FUNCTION)
def dataset_build(req: func.HttpRequest) -> func.HttpResponse:
    settings = get_settings()
    return _respond(api.dataset_build(req.route_params.get("name", ""), req.params.get("rebuild"), settings,
                                      shared_storage(settings)))


@bp.function_name("health")
@bp.route(route="health", methods=[func.HttpMethod.GET], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    settings = get_settings()
    return _respond(api.health(settings, shared_storage(settings)))
