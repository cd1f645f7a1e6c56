"""The radio pipeline's options: the ``transcription.radio`` settings model, under the engine's name.

One definition, in :mod:`rdio_core.radio_settings`: the settings layer validates it at load and the
engine, the filters and the phrase lists read the same frozen object. Per-call changes (a
talkgroup's word replacements) are ``options.model_copy(update=...)``.
"""

from __future__ import annotations

from rdio_core.radio_settings import RadioSettings as RadioOptions

__all__ = ["RadioOptions"]
