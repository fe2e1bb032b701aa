"""Event Grid trigger: a source deleted from the source container takes its reference, error record,
STAC item and dataset membership with it (``shared/prune.py``), once it is really gone."""

import logging

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("source_deleted")
@bp.event_grid_trigger(arg_name="event")
def source_deleted(event: func.EventGridEvent) -> None:
    # Events are at-least-once and unordered: the core acts only when a HEAD says the blob is gone. A
    # retryable failure raises, so Event Grid delivers the event again (then dead-letters it).
    from shared.prune import blob_deleted_event  # the core loads at first use, not at the host's start
    from shared.settings import get_settings
    from shared.storage import shared_storage

    settings = get_settings()
    removal = blob_deleted_event(event.event_type, event.subject, event.get_json(), settings, shared_storage(settings))
    if removal is not None:
        logging.info("%s: %s", removal.source, removal.action)
