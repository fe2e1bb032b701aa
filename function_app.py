"""The Azure Functions app (Python v2 programming model): it only registers the blueprints."""

import azure.functions as func
import azurefunctions.extensions.bindings.blob  # noqa: F401 - enables SDK-type blob bindings for the worker

from functions.blob_deleted import bp as blob_deleted
from functions.blob_reference import bp as blob_reference
from functions.http_api import bp as http_api
from functions.queue_reference import bp as queue_reference

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(blob_reference)
app.register_functions(blob_deleted)
app.register_functions(http_api)
app.register_functions(queue_reference)
