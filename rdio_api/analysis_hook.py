"""Wire tone analysis into the API process: publish ``analyze_call`` for every call the writer
commits, and sweep for calls whose publish was lost (``rdio_tasks.analyze``).

Independent of transcription: tone alerts fire with transcription switched off. Installed whatever
``tones.enabled`` says, which is read per call (a reload that switches it on needs no restart).
Without a broker
nothing is published; the calls keep ``analyzed_at`` NULL and a system with one (``rdio-api up``)
analyses those still within ``tones.sweep_max_age_seconds``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rdio_api.state import AppState

log = logging.getLogger(__name__)


def install(state: AppState) -> Callable[[], None] | None:
    if not state.settings.broker_url:
        if state.settings.tones.enabled:
            log.warning("tones: broker_url is not set, so calls are not analysed for dispatch tones")
        return None
    from rdio_tasks.analyze import AnalysisPublisher
    from rdio_tasks.celery_app import app as celery_app

    celery_app.conf.update(broker_url=state.settings.broker_url)
    publisher = AnalysisPublisher(lambda: state.settings, state.factory, celery_app).start()
    state.writer.on_calls_committed = publisher.publish_later
    return publisher.stop
