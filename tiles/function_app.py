"""The tile server as its own Azure Function app (Flex Consumption, Python 3.12): every route of
``tiles.app`` through one HTTP trigger (``AsgiFunctionApp``), with ``routePrefix`` "" in host.json so
TiTiler's routes stay at the root (``/info``, ``/tiles/…``, ``/map``).

``scripts/package_tiles`` builds its package: this file as ``function_app.py``, ``tiles/host.json`` as
``host.json``, ``requirements-tiles.txt`` as ``requirements.txt``, ``shared/`` and ``tiles/`` (with MapLibre
copied into ``tiles/static/maplibre``). It reads the same settings as the ingestion app (DATA_STORAGE
identity-based, SOURCE_CONTAINER, REFS_CONTAINER) with a read-only identity.
"""

import azure.functions as func

from shared.settings import get_settings
from tiles.app import create_app

app = func.AsgiFunctionApp(app=create_app(get_settings()), http_auth_level=func.AuthLevel.ANONYMOUS)
