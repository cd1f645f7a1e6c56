"""Wire alert deliveries into the API process: the sweeper that republishes what the broker lost.

Deliveries fired here (at upload) are published by ``rdio_core.alerts.publish``'s own thread; this
hook adds the sweeper, with or without transcription (a talkgroup rule needs no Whisper). Without a
``broker_url`` there is nothing to publish to, as for transcription jobs: deliveries wait as
``pending`` for a system with a broker (`rdio-api sweep`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rdio_api.state import AppState

log = logging.getLogger(__name__)


def install(state: AppState) -> Callable[[], None] | None:
    if not state.settings.broker_url:
        if state.settings.alerts.rules:
            log.warning("alerts: broker_url is not set, so deliveries stay pending (no alerts worker)")
        return None
    from rdio_core.alerts.publish import Sweeper
    from rdio_tasks.celery_app import app as celery_app

    celery_app.conf.update(broker_url=state.settings.broker_url)
    sweeper = Sweeper(state.factory, lambda: state.settings).start()
    return sweeper.stop
