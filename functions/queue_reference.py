"""Queue trigger: one message of the reference queue (``ncrefs backfill --queue``) -> one file referenced.

The Functions host scales this out over instances (Flex Consumption: up to maximumInstanceCount);
host.json ``extensions.queues`` sets how many messages an instance takes at once and how often one is
tried (maxDequeueCount) before the host moves it to ``<queue>-poison``.
"""

import logging

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("reference_from_queue")
@bp.queue_trigger(arg_name="message", queue_name="%REFERENCE_QUEUE%", connection="DATA_STORAGE")
def reference_from_queue(message: func.QueueMessage) -> None:
    # The core decides: a malformed message is dropped (logged), a file already current is left alone,
    # a retryable failure raises so the host retries (and, at the last attempt, leaves an error record first).
    from shared.fanout import reference_queued  # the core loads at first use, not at the host's start
    from shared.settings import get_settings
    from shared.storage import shared_storage

    settings = get_settings()
    outcome = reference_queued(message.get_body(), message.dequeue_count, settings, shared_storage(settings))
    logging.info("queue message %s: %s %s", message.id, outcome.action, outcome.source or outcome.reason or "")
