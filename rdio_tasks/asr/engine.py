"""The WhisperX engine: a loaded model plus the two pipelines that use it, plain and radio.

Orchestration only; each step lives in its own module of :mod:`rdio_tasks.asr`:
model lookup (``models``), device and compute type (``runtime``), quiet import and load
(``loader``), language (``language``), VAD windows (``vad``), CTranslate2 decoding and the
temperature fallback (``decode``), cross-call batching (``batching``), word alignment
(``align``), the result shape (``result``), and the process-wide cache (``cache``).

Design constraints, and why:

* Nothing heavy is imported at module import time. The API process imports
  ``rdio_tasks`` without torch installed, and the Celery parent process must never
  initialise CUDA (a CUDA context does not survive ``fork``). torch, whisperx,
  ctranslate2 and faster_whisper are imported inside functions that only run in a
  worker child, and ``device="auto"`` is resolved there too.
* One model per worker process by default (:func:`rdio_tasks.asr.get_engine`), because a
  Whisper model is hundreds of MB to GBs of (GPU) memory and loading it takes seconds.
* Plain mode mutates the whisperx pipeline's options, so it runs one call at a time. The
  radio path only needs the pyannote VAD and the aligner serialised: CTranslate2 models are
  thread-safe, so concurrent calls overlap decoding, VAD and inference.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rdio_tasks import radio
from rdio_tasks.asr import compat, decode
from rdio_tasks.asr.align import Aligner
from rdio_tasks.asr.batching import SharedBatcher
from rdio_tasks.asr.config import (
    ONE_CALL_WINDOWS,
    SAMPLE_RATE,
    EngineConfig,
    batch_size_for,
    radio_options,
)
from rdio_tasks.asr.language import detect_encoded, detect_language, fixed_language
from rdio_tasks.asr.loader import import_whisperx_asr, load_pipeline
from rdio_tasks.asr.prepare import Prepared, PreparePool, VadParams, prepare
from rdio_tasks.asr.result import Decoded, TranscriptionResult, confidence, json_safe
from rdio_tasks.asr.runtime import Runtime, resolve_runtime
from rdio_tasks.audio_decode import decode_audio
from rdio_tasks.batcher import Expected, is_out_of_memory
from rdio_tasks.errors import AudioDecodeError
from rdio_tasks.priority_lock import PriorityLock
from rdio_tasks.radio import RadioOptions

if TYPE_CHECKING:
    import numpy as np  # runtime imports are local: the slim API install has no numpy

__all__ = ["WhisperXEngine"]

logger = logging.getLogger(__name__)

_CONFIG: Any = object()  # sentinel: "use config.radio"


class WhisperXEngine:
    """A loaded WhisperX pipeline (faster-whisper + pyannote VAD) plus cached align models.

    Construct through :func:`rdio_tasks.asr.get_engine` so each worker process loads the
    model once. Plain-mode ``transcribe`` is serialised by a lock: the pipeline mutates its
    own tokenizer/options per call and is not thread-safe.
    """

    def __init__(self, config: EngineConfig, runtime: Runtime | None = None) -> None:
        runtime = runtime or resolve_runtime(config)
        self.config = config
        self.model_path = runtime.model_path
        self.device = runtime.device
        self.compute_type = runtime.compute_type
        self.cpu_threads = runtime.cpu_threads
        self._lock = threading.Lock()  # plain mode, reconfigure, close
        self._vad_lock = PriorityLock()  # a live call's VAD before waiting backfill calls'
        self._aligner = Aligner(self.device)
        self._tokenizers: dict[str, Any] = {}
        self._batches = SharedBatcher(self._run_batch, runtime.model_workers)
        self._prepare_pool: PreparePool | None = None

        started = time.perf_counter()
        asr = import_whisperx_asr()

        self.torch_threads = self._torch_threads(config) if self.device == "cpu" else None
        self._pin_torch_threads()
        self.import_ms = (time.perf_counter() - started) * 1000

        logger.info(
            "loading whisper model %s (%s) on %s/%s, %d model workers of %d threads",
            config.model,
            self.model_path,
            self.device,
            self.compute_type,
            runtime.model_workers,
            runtime.model_threads,
        )
        self._pipeline = load_pipeline(asr, config, runtime)
        # English-only checkpoints (*.en) reject language tokens; whisperx only infers
        # that from a name ending in ".en", which a local directory path does not have.
        self.multilingual: bool = bool(self._pipeline.model.model.is_multilingual)
        self.encoder = self._encoder_name(config)
        self._encode: decode.Encode | None = None
        if self.encoder == "torch":
            from rdio_tasks.asr.torch_encoder import TorchEncoder

            dtype = (
                "float32"
                if self.device == "cpu"
                else "bfloat16"
                if "bfloat16" in self.compute_type
                else "float16"
            )
            self._encode = TorchEncoder(self.model_path, self.device, dtype).encode
        self.load_ms = (time.perf_counter() - started) * 1000
        logger.info(
            "whisper model %s ready in %.0f ms (multilingual=%s)",
            config.model,
            self.load_ms,
            self.multilingual,
        )
        self._pool()  # start the preparation processes with the model, not on call 1
        fixed = self._fixed_language(None)
        if config.align and fixed:
            self._aligner.get(
                fixed, config.models_dir
            )  # pay the alignment load with the model, not on call 1

    # -- configuration ---------------------------------------------------------------

    def _torch_threads(self, config: EngineConfig) -> int:
        """Torch's intra-op threads on the CPU while a call is prepared and decoded: one, unless
        torch runs the encoder here (the aligner gets ``cpu_threads``, as before).

        Torch runs each call's VAD (a small LSTM) and log-mel features: thousands of tiny ops, run
        for several calls at once by the worker's threads. With two threads each op's OpenMP
        hand-off costs more than the op once CTranslate2 has run in the process: the VAD of a 6 s
        call took 303 ms against 57 ms with one thread (41 ms with two before the first
        transcription; ``OMP_WAIT_POLICY=PASSIVE`` makes it 315 ms from the start). One thread
        took ``bench/throughput.py --calls 48`` (tiny.en, 2 cores) from 1.24 to 1.69-1.81 calls/s
        per call and from 2.07 to 2.26-2.35 batched (two runs).
        """
        if self._encoder_name(config) == "torch":
            return self.cpu_threads  # one large matrix product per window: threads pay off
        return 1

    def _pin_torch_threads(self, count: int | None = None) -> None:
        """Give the calling thread ``count`` torch threads (default ``torch_threads``; nothing off
        the CPU). Torch's count is an OpenMP setting of each OS thread, and CTranslate2 (whose
        OpenMP calls land in torch's libgomp) sets its own in the thread that loads a model: a
        process-wide set once at load does not reach every thread."""
        if self.torch_threads is None:
            return
        import torch

        want = count or self.torch_threads
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)

    def _encoder_name(self, config: EngineConfig) -> str:
        """auto: PyTorch's encoder on CUDA (CTranslate2's spends half its time in one softmax kernel
        there, bench/gpu), CTranslate2's on the CPU (int8, and no flash attention to gain)."""
        if config.encoder != "auto":
            return config.encoder
        return "torch" if self.device == "cuda" else "ctranslate2"

    def reconfigure(self, config: EngineConfig) -> None:
        """Adopt per-call options (batch size, language, VAD thresholds, align, radio) from ``config``."""
        with self._lock:
            if (config.models_dir, config.align) != (self.config.models_dir, self.config.align):
                self._aligner.clear()  # availability depends on models_dir; re-check lazily
            old = self.config
            self.config = config
            if self._pipeline is not None:
                compat.set_vad_thresholds(self._pipeline, config.vad_onset, config.vad_offset)
        limits = (
            "batch_size",
            "concurrency",
            "max_batch_wait_ms",
            "max_prepare_wait_ms",
            "cross_call_batching",
        )
        if any(getattr(old, name) != getattr(config, name) for name in limits):
            self._batches.close()  # rebuilt with the new limits on the next call

    @property
    def batch_size(self) -> int:
        """Chunks per cross-call pass: the configured size, else what the calls in flight fill."""
        return batch_size_for(self.config, self._batches.workers)

    @property
    def _one_call_batch(self) -> int:
        """Windows of one call per pass where no cross-call batcher runs: the configured size, else
        ``ONE_CALL_WINDOWS`` (a call's windows are all ready at once)."""
        return self.config.batch_size or ONE_CALL_WINDOWS

    def _fixed_language(self, language: str | None) -> str | None:
        """Language to decode with, if known without detection."""
        return fixed_language(
            language,
            multilingual=self.multilingual,
            default=self.config.language,
            model_name=self.config.model,
        )

    def _detect_language(self, audio: np.ndarray) -> tuple[str, float]:
        return detect_language(self._pipeline.model, audio)

    # -- transcription ---------------------------------------------------------------

    def transcribe(
        self,
        audio: np.ndarray | str | Path,
        *,
        language: str | None = None,
        initial_prompt: str | None = None,
        glossary: Sequence[str] = (),
        radio: RadioOptions | bool | object | None = _CONFIG,
        priority: int = 3,
    ) -> TranscriptionResult:
        """Transcribe one call: decode (if a path), VAD, Whisper, filters, optional alignment.

        ``language`` overrides the config default for this call; on multilingual
        models ``None`` means detect. ``initial_prompt`` biases decoding (talkgroup
        names, unit IDs). ``radio`` overrides ``config.radio`` for this call:
        :class:`RadioOptions` (or True) for the radio pipeline, None/False for plain
        WhisperX. ``glossary`` (the call's ``transcription.glossary``: unit names, streets,
        10-codes) is the radio pipeline's gated prompt and near-miss list; plain mode ignores it.
        ``processing_ms`` covers everything here, decode included. ``priority`` (the job's, 1 most
        urgent .. 5) orders this call's windows in the cross-call batcher.

        Raises:
            AudioDecodeError: unreadable or empty audio.
            PermanentError: invalid language code.
        """
        started = time.perf_counter()
        self._pin_torch_threads()
        samples = self._samples(audio)
        options = self.config.radio if radio is _CONFIG else radio_options(radio)
        if self._pipeline is None:
            raise RuntimeError("engine has been closed")
        config = self.config
        if options is None:
            with self._lock:
                out = self._run_plain(samples, language, initial_prompt, priority)
        else:
            prompt = initial_prompt or options.initial_prompt
            out = self._run_radio(samples, language, prompt, options, tuple(glossary), priority)
        score = confidence(out.segments)
        if self.config.align:
            self._pin_torch_threads(self.cpu_threads)  # wav2vec2's products gain from threads
        segments, aligned, note = self._aligner.align(
            out.segments,
            samples,
            out.language,
            enabled=self.config.align,
            models_dir=self.config.models_dir,
            priority=priority,
        )

        segments = [json_safe(seg) for seg in segments]
        processing_s = time.perf_counter() - started
        audio_seconds = samples.shape[0] / SAMPLE_RATE
        text = " ".join(seg["text"] for seg in segments if seg["text"]).strip()
        return TranscriptionResult(
            text=text,
            segments=segments,
            language=out.language,
            language_probability=out.language_probability,
            model=config.model,
            device=self.device,
            compute_type=self.compute_type,
            audio_seconds=round(audio_seconds, 3),
            processing_ms=round(processing_s * 1000, 1),
            real_time_factor=round(processing_s / audio_seconds, 4) if audio_seconds > 0 else 0.0,
            aligned=aligned,
            alignment_note=note,
            confidence=round(score, 4) if score is not None else None,
            mode="plain" if options is None else "radio",
            raw_text=" ".join(seg["text"] for seg in out.raw_segments if seg["text"]).strip(),
            raw_segments=[json_safe(seg) for seg in out.raw_segments],
            removed=[json_safe(item) for item in out.removed],
            no_speech=not text,
            filters=out.filters,
            preprocessing=json_safe(out.preprocessing),
            language_note=out.language_note,
        )

    def _samples(self, audio: np.ndarray | str | Path) -> np.ndarray:
        """16 kHz mono float32 samples from a path (decoded) or an array (checked)."""
        import numpy as np

        if isinstance(audio, str | Path):
            return decode_audio(audio, SAMPLE_RATE)
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"expected mono 1-D 16 kHz audio, got shape {samples.shape}")
        if samples.size == 0:
            raise AudioDecodeError("audio array is empty")
        return samples

    def _run_plain(
        self, samples: np.ndarray, language: str | None, initial_prompt: str | None, priority: int
    ) -> Decoded:
        """whisperx's own batched pipeline with its default options (the baseline).

        Its transcribe runs the engine's one pyannote VAD, which is not thread-safe, so it holds the
        VAD lock as radio calls' preparation does (a talkgroup with radio off beside radio calls
        once ran the model from two threads at once)."""
        pipeline = self._pipeline
        lang = self._fixed_language(language)
        lang_prob: float | None = None
        if lang is None:
            lang, lang_prob = self._detect_language(samples)
        saved_options = pipeline.options
        if initial_prompt:
            pipeline.options = dataclasses.replace(saved_options, initial_prompt=initial_prompt)
        try:
            with self._vad_lock.hold(priority):
                raw = pipeline.transcribe(samples, batch_size=self._one_call_batch, language=lang)
        finally:
            pipeline.options = saved_options
        segments = [dict(seg, text=seg["text"].strip()) for seg in raw["segments"]]
        return Decoded(
            segments=segments,
            raw_segments=[dict(seg) for seg in segments],
            language=lang,
            language_probability=lang_prob,
        )

    # -- radio pipeline ----------------------------------------------------------------

    def _run_radio(
        self,
        samples: np.ndarray,
        language: str | None,
        prompt: str | None,
        options: RadioOptions,
        glossary: tuple[str, ...] = (),
        priority: int = 3,
    ) -> Decoded:
        """Condition the audio, find speech, decode with no-speech scores, then filter.

        Until its windows reach the shared batcher the call is expected there, so a batch that is
        not full waits for it (``max_prepare_wait_ms``)."""
        batcher = self._batches.get(self.config)
        expected = batcher.expect(priority) if batcher is not None else None
        try:
            prepared = self._prepare(samples, options, priority)
            chunks = prepared.chunks
            lang, lang_prob, lang_note, first = self._radio_language(prepared, language, options)
            raw_segments = (
                self._decode_chunks(
                    chunks, prepared.features, lang, prompt, options, priority, first, expected
                )
                if chunks
                else []
            )
        finally:
            if expected is not None:
                expected.done()
        cleaned = radio.clean(raw_segments, options, prompt=prompt, glossary=glossary)
        if glossary and options.glossary_prompt and cleaned.segments:
            raw_segments, cleaned = self._glossary_pass(
                prepared, raw_segments, cleaned, lang, prompt, options, glossary, priority
            )
        return Decoded(
            segments=cleaned.segments,
            raw_segments=raw_segments,
            language=lang,
            language_probability=lang_prob,
            removed=cleaned.removed,
            filters=cleaned.steps,
            preprocessing=prepared.info,
            language_note=lang_note,
        )

    def _prepare(self, samples: np.ndarray, options: RadioOptions, priority: int = 3) -> Prepared:
        """Conditioning, VAD windows and features: in a pool process when one is configured."""
        vad_params = VadParams(
            onset=self.config.vad_onset if options.vad_onset is None else options.vad_onset,
            offset=self.config.vad_offset if options.vad_offset is None else options.vad_offset,
        )
        n_mels = int(self._pipeline.model.feat_kwargs.get("feature_size") or 80)
        pool = self._pool()
        if pool is not None:
            prepared = pool.prepare(samples, options, vad_params, n_mels)
            if prepared is not None:
                return prepared
        return prepare(
            samples, options, self._pipeline.vad_model, vad_params, n_mels, self._vad_lock, priority
        )

    def _pool(self) -> PreparePool | None:
        """The preparation pool for the configured process count (None: prepare in the thread)."""
        processes = self.config.prepare_processes
        pool = self._prepare_pool
        if processes == 0 or self._pipeline is None:  # off, or the engine closed
            if pool is not None:  # switched off by a reload: its processes go
                with self._lock:
                    pool, self._prepare_pool = self._prepare_pool, None
                if pool is not None:
                    pool.close()
            return None
        if pool is None or pool.processes != processes:
            with self._lock:
                pool = self._prepare_pool
                if pool is None or pool.processes != processes:
                    if pool is not None:
                        pool.close()
                    pool = self._prepare_pool = PreparePool(processes, self.device)
                    pool.warm()  # False: not started; its calls are prepared in their threads
        return pool if pool.usable() else None

    def _glossary_pass(
        self,
        prepared: Prepared,
        raw_segments: list[dict[str, Any]],
        cleaned: radio.CleanResult,
        language: str,
        prompt: str | None,
        options: RadioOptions,
        glossary: tuple[str, ...],
        priority: int = 3,
    ) -> tuple[list[dict[str, Any]], radio.CleanResult]:
        """Decode the windows kept as speech again with the glossary as the prompt (the gate).

        A window the unprompted decode judged silent is never decoded with the glossary, so the
        prompt cannot write into silence; a prompted window the filters then reject (an echo of
        the glossary, a low log-prob) keeps its unprompted decode.
        """
        gone = {r["segment"] for r in cleaned.removed if r["reason"] != radio.REPETITION}
        kept = [i for i in range(len(raw_segments)) if i not in gone]
        gloss_prompt = radio.glossary_prompt(glossary, prompt)
        redo = self._decode_chunks(
            [prepared.chunks[i] for i in kept],
            [prepared.features[i] for i in kept],
            language,
            gloss_prompt,
            options,
            priority,  # the call's own: a backfill call's second decode must not jump live calls
        )
        merged = list(raw_segments)
        for i, seg in zip(kept, redo, strict=True):
            merged[i] = {**seg, "glossary_prompt": True, "text_without_glossary": raw_segments[i]["text"]}
        second = radio.clean(merged, options, prompt=gloss_prompt, glossary=glossary)
        rejected = {r["segment"] for r in second.removed if r["reason"] != radio.REPETITION} & set(kept)
        if not rejected:
            return merged, second
        for i in rejected:
            merged[i] = raw_segments[i]
        return merged, radio.clean(merged, options, prompt=gloss_prompt, glossary=glossary)

    def _radio_language(
        self, prepared: Prepared, language: str | None, options: RadioOptions
    ) -> tuple[str, float | None, str | None, Any]:
        """Fixed language, or detection on the call's first speech window with a short-call fallback
        (all the call's speech when that window is under ``language_min_seconds``).

        Also returns the first window's encoder output when detection ran on the CPU, so the
        decoding pass reuses it: with base on 2 cores detection had encoded the call's speech a
        second time, 0.48 of 1.58 s per call (bench/e2e.py). On CUDA the encoder runs batched and
        the output stays on the GPU, so it is not handed on (None)."""
        fixed = self._fixed_language(language)
        if fixed is not None:
            return fixed, None, None, None
        detected = probability = encoded = None
        chunks = prepared.chunks
        if chunks and prepared.speech_seconds >= options.language_min_seconds:
            if chunks[0]["end"] - chunks[0]["start"] >= options.language_min_seconds:
                # CTranslate2's encoder, as before: its output is what detect_language was built on.
                window = [decode.Window(prepared.features[0])]
                encoded = decode.encode_windows(self._pipeline.model, window)
                detected, probability = self._detect_encoded(encoded)
            else:  # the first window is too short to judge: all the speech, encoded for this alone
                import numpy as np

                speech = np.concatenate(
                    [
                        prepared.audio[int(c["start"] * SAMPLE_RATE) : int(c["end"] * SAMPLE_RATE)]
                        for c in chunks
                    ]
                )
                detected, probability = self._detect_language(speech)
        lang, note = radio.choose_language(detected, probability, prepared.speech_seconds, options)
        lang = self._fixed_language(lang) or "en"  # validates the fallback code
        shared = encoded if self.device == "cpu" and self._encode is None else None
        return lang, (probability if note is None else None), note, shared

    def _detect_encoded(self, encoded: Any) -> tuple[str, float]:
        return detect_encoded(self._pipeline.model, encoded)

    def _tokenizer(self, language: str) -> Any:
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            tokenizer = decode.make_tokenizer(self._pipeline.model, language)
            self._tokenizers[language] = tokenizer
        return tokenizer

    def _decode_chunks(
        self,
        chunks: list[dict[str, float]],
        features: list[Any],
        language: str,
        prompt: str | None,
        options: RadioOptions,
        priority: int = 3,
        first_encoded: Any = None,
        expected: Expected | None = None,
    ) -> list[dict[str, Any]]:
        """Decode each window with ctranslate2 directly, keeping ``no_speech_prob`` (see ``decode``).

        With cross-call batching the windows go to the shared inference thread and may ride with
        other calls' windows; otherwise they are decoded here in groups of ``batch_size`` (unset: ``ONE_CALL_WINDOWS``).
        ``first_encoded`` is the first window's encoder output, when language detection made it;
        ``expected``, the call's place in the batcher, is given up as its windows arrive there.
        """
        windows = [decode.Window(f) for f in features]
        if first_encoded is not None:
            windows[0] = decode.Window(features[0], first_encoded)
        model = self._pipeline.model
        tokenizer = self._tokenizer(language)
        prompt_ids = decode.prompt_ids(model, tokenizer, prompt)
        batcher = self._batches.get(self.config)
        if batcher is not None:
            key = (
                language,
                tuple(prompt_ids),
                options.beam_size,
                options.suppress_blank,
                options.max_new_tokens,
            )
            decoded = batcher.run(key, windows, priority, expected)
        else:
            batch = self._one_call_batch
            decoded = []
            for first in range(0, len(windows), batch):
                decoded += decode.generate(
                    model,
                    windows[first : first + batch],
                    prompt_ids,
                    tokenizer,
                    options.beam_size,
                    options.suppress_blank,
                    options.max_new_tokens,
                    self._encode,
                )
        return decode.to_segments(
            chunks,
            features,
            decoded,
            options,
            lambda feature, first: self._fallback(feature, prompt_ids, tokenizer, options, first),
        )

    def _fallback(
        self,
        feature: Any,
        prompt_ids: list[int],
        tokenizer: Any,
        options: RadioOptions,
        first: tuple[str, float, float],
    ) -> tuple[str, float, float]:
        """Temperature fallback for one window (a method, so tests can watch it run)."""
        return decode.fallback(
            self._pipeline.model, feature, prompt_ids, tokenizer, options, first, self._encode
        )

    # -- cross-call batching ------------------------------------------------------------

    def _run_batch(self, key: Hashable, windows: Sequence[decode.Window]) -> list[decode.WindowDecode]:
        """One model pass over chunks from any number of calls that share ``key``
        (language, prompt token ids, beam size, suppress_blank, max_new_tokens: built in
        ``_decode_chunks``)."""
        language, prompt_ids, beam_size, suppress_blank, max_new_tokens = cast(tuple[Any, ...], key)
        try:
            return decode.generate(
                self._pipeline.model,
                list(windows),
                list(prompt_ids),
                self._tokenizer(language),
                beam_size,
                suppress_blank,
                max_new_tokens,
                self._encode,
            )
        except Exception as exc:
            if self._encode is not None and self.device == "cuda" and is_out_of_memory(exc):
                # PyTorch's cache keeps the encoder's activations of the failed pass; CTranslate2
                # allocates from the same GPU, so the halves the batcher retries would fail too
                # (seen on the H100 with a 1024-window batch).
                import torch

                torch.cuda.empty_cache()
            raise

    @property
    def batch_stats(self) -> dict[str, Any]:
        return self._batches.stats()

    def close(self) -> None:
        """Drop the model and align models and return their memory (GPU included)."""
        self._batches.close()
        with self._lock:
            self._pipeline = None
            pool, self._prepare_pool = self._prepare_pool, None
            self._aligner.clear()
        if pool is not None:
            pool.close()
        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()
