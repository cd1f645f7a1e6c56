"""Unit tests of the radio filters, language fallback, audio conditioning and WER normaliser.

No model: ``clean`` works on segment dicts shaped like the engine's raw segments
(text, start, end, avg_logprob, no_speech_prob), so every step is tested directly.
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import pytest

from rdio_core.text_normalize import normalize, wer, word_errors
from rdio_tasks import radio
from rdio_tasks.radio import RadioOptions, choose_language, clean, collapse_repetitions, parse_phrases
from tests.helpers import loaded_after

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus" / "audio"


def seg(text: str, lp: float | None = -0.2, nsp: float | None = 0.05, start: float = 0.0) -> dict:
    out = {"text": text, "start": start, "end": start + 2.0}
    if lp is not None:
        out["avg_logprob"] = lp
    if nsp is not None:
        out["no_speech_prob"] = nsp
    return out


def reasons(result: radio.CleanResult) -> list[str]:
    return [r["reason"] for r in result.removed]


# --------------------------------------------------------------------------- options


def test_options_defaults_and_coercion() -> None:
    opts = RadioOptions(temperatures=[0, 0.2], phrase_files="extra.txt", replacements=[["ten four", "10-4"]])
    assert opts.temperatures == (0.0, 0.2)
    assert opts.phrase_files == ("extra.txt",)
    assert opts.replacements == (("ten four", "10-4"),)
    hash(opts)  # frozen and hashable: usable in configs and caches
    assert RadioOptions().no_speech_threshold == 0.6 and RadioOptions().no_speech_logprob_threshold == -1.0


@pytest.mark.parametrize(
    "bad",
    [
        {"no_speech_threshold": 1.5},
        {"temperatures": []},
        {"temperatures": [-0.1]},
        {"beam_size": 0},
        {"repetition_min_repeats": 1},
        {"prompt_echo_min_words": 0},
        {"replacements": [(" ", "x")]},
        {"vad_pad_seconds": -1},
        {"vad_pad_seconds": 20},
    ],
)
def test_options_reject_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        RadioOptions(**bad)


def test_options_reject_unknown_keys() -> None:
    """A typo is an error naming the key, not a setting silently ignored."""
    with pytest.raises(ValueError, match="not_a_field"):
        RadioOptions.model_validate({"beam_size": 3, "not_a_field": 1})
    assert RadioOptions.model_validate({"beam_size": 3}).beam_size == 3


def test_import_is_light() -> None:
    """The API process imports the radio module and the normaliser without numpy."""
    code = "import rdio_tasks.radio, rdio_core.text_normalize"
    assert loaded_after(code, {"numpy", "torch", "whisperx", "ctranslate2"}) == []


# --------------------------------------------------------------------------- step 1: no speech


def test_no_segments_is_no_speech() -> None:
    result = clean([], RadioOptions())
    assert result.no_speech is True
    assert result.text == "" and result.segments == [] and result.removed == []
    assert result.steps[0] == "vad"


def test_clean_speech_is_kept_untouched() -> None:
    raw = [seg("Engine 5 responding to Main Street.")]
    result = clean(raw, RadioOptions())
    assert result.text == "Engine 5 responding to Main Street."
    assert result.no_speech is False and result.removed == []
    assert result.segments == raw


# --------------------------------------------------------------------------- step 2: confidence gates


def test_whisper_no_speech_rule() -> None:
    opts = RadioOptions()
    silent = clean([seg("Copy that.", lp=-1.2, nsp=0.9)], opts)
    assert reasons(silent) == ["no_speech"] and silent.no_speech
    assert "no_speech_prob 0.90" in silent.removed[0]["detail"]
    # High no-speech probability but a confident decode: Whisper keeps it, so do we.
    assert clean([seg("Copy that.", lp=-0.2, nsp=0.9)], opts).text == "Copy that."
    # Without the log-prob condition the no-speech probability alone decides.
    strict = RadioOptions(no_speech_logprob_threshold=None)
    assert reasons(clean([seg("Copy that.", lp=-0.2, nsp=0.9)], strict)) == ["no_speech"]


def test_low_logprob_floor() -> None:
    result = clean([seg("Garbled words here.", lp=-2.0, nsp=0.1)], RadioOptions())
    assert reasons(result) == ["low_logprob"]
    assert clean([seg("Garbled words here.", lp=-2.0)], RadioOptions(drop_low_logprob=False)).text


def test_missing_scores_never_drop_a_segment() -> None:
    """Plain-mode segments have no no_speech_prob; gates must not guess."""
    result = clean([seg("Unit 12 clear.", lp=None, nsp=None)], RadioOptions())
    assert result.text == "Unit 12 clear."


def test_gates_can_be_disabled() -> None:
    opts = RadioOptions(drop_no_speech=False, drop_low_logprob=False, filter_phrases=False)
    assert clean([seg("Copy.", lp=-3.0, nsp=0.99)], opts).text == "Copy."


# --------------------------------------------------------------------------- step 3: phrases


def test_always_phrase_is_removed_even_when_confident() -> None:
    for text in ("Thanks for watching!", "Subtitles by the Amara.org community", "Please subscribe."):
        result = clean([seg(text, lp=-0.05, nsp=0.01)], RadioOptions())
        assert reasons(result) == ["hallucination_phrase"], text
        assert result.text == "" and result.no_speech


def test_ambiguous_phrase_depends_on_confidence() -> None:
    opts = RadioOptions()
    unsure = clean([seg("Thank you.", lp=-0.8, nsp=0.3)], opts)
    assert reasons(unsure) == ["hallucination_phrase"]
    assert "ambiguous" in unsure.removed[0]["detail"]
    assert clean([seg("Thank you.", lp=-0.1, nsp=0.02)], opts).text == "Thank you."
    assert reasons(clean([seg("Okay.", lp=-0.1, nsp=0.5)], opts)) == ["hallucination_phrase"]


def test_phrase_must_be_the_whole_segment() -> None:
    result = clean([seg("Thank you, Engine 5, responding.", lp=-0.9, nsp=0.3)], RadioOptions())
    assert result.text == "Thank you, Engine 5, responding."


def test_chained_phrases_and_split_phrases() -> None:
    assert reasons(clean([seg("Thank you. Bye.", lp=-0.7)], RadioOptions())) == ["hallucination_phrase"]
    split = clean([seg("Thanks for", start=0), seg("watching.", start=3)], RadioOptions())
    assert reasons(split) == ["hallucination_phrase", "hallucination_phrase"]
    assert "whole transcript" in split.removed[0]["detail"]


def test_phrase_filter_off() -> None:
    assert clean([seg("Thanks for watching!")], RadioOptions(filter_phrases=False)).text


def test_user_phrase_file_extends_and_reloads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    extra = tmp_path / "mine.txt"
    extra.write_text("# local\nbrought to you by *\n")
    opts = RadioOptions(phrase_files=(str(extra), str(tmp_path / "missing.txt")))
    assert reasons(clean([seg("Brought to you by ACME radio")], opts)) == ["hallucination_phrase"]
    assert "missing.txt" in caplog.text  # logged, not fatal
    assert clean([seg("Signal 7")], opts).text == "Signal 7"
    time.sleep(0.01)
    extra.write_text("signal 7\n")
    os.utime(extra, (time.time() + 5, time.time() + 5))  # a new mtime even on coarse filesystems
    assert reasons(clean([seg("Signal 7")], opts)) == ["hallucination_phrase"]
    no_builtin = RadioOptions(builtin_phrases=False, phrase_files=(str(extra),))
    assert clean([seg("Thanks for watching")], no_builtin).text == "Thanks for watching"


def test_phrase_file_format() -> None:
    phrases = parse_phrases(["# comment", "", "Thank You!", "? okay", "subtitles by *", "?  so  "])
    assert ("thank", "you") in phrases.always
    assert ("okay",) in phrases.ambiguous and ("so",) in phrases.ambiguous
    assert ("subtitles", "by") in phrases.prefixes
    assert phrases.match(["subtitles", "by", "anyone", "at", "all"]) == "always"
    assert phrases.match(["okay", "thank", "you"]) == "ambiguous"
    assert phrases.match(["okay", "engine"]) is None
    assert phrases.match([]) is None


def test_builtin_phrase_file_parses() -> None:
    phrases = radio.load_phrases(RadioOptions())
    assert len(phrases) > 50
    assert ("thank", "you") in phrases.ambiguous
    assert ("thanks", "for", "watching") in phrases.always


# --------------------------------------------------------------------------- step 4: repetition


def test_runaway_repetition_is_collapsed() -> None:
    result = clean([seg("long, long, long, long, long")], RadioOptions())
    assert result.text == "long,"
    assert reasons(result) == ["repetition"]
    assert result.removed[0]["text"] == "long, long, long, long" and "5 times" in result.removed[0]["detail"]


def test_repeated_ngram_and_real_numbers() -> None:
    text, cut = collapse_repetitions("I'm going I'm going I'm going I'm going home now")
    assert text == "I'm going home now" and cut == [("I'm going I'm going I'm going", 4)]
    # Digit strings are information: "zero zero zero" and "1 1 1 1" survive.
    assert collapse_repetitions("one zero zero zero one")[0] == "one zero zero zero one"
    assert collapse_repetitions("unit 1 1 1 1 respond")[0] == "unit 1 1 1 1 respond"
    assert collapse_repetitions("1 " * 12)[0] == "1"  # ... but not a runaway loop of them
    assert collapse_repetitions("copy copy copy")[0] == "copy copy copy"  # three is still speech
    assert clean([seg("go go go go")], RadioOptions(collapse_repetitions=False)).text == "go go go go"


def test_repetition_then_phrase() -> None:
    """A looped hallucination collapses to the phrase and is then removed as one."""
    result = clean([seg("Thank you. Thank you. Thank you. Thank you.", lp=-0.9)], RadioOptions())
    assert reasons(result) == ["repetition", "hallucination_phrase"]
    assert result.text == ""


# --------------------------------------------------------------------------- step 5: prompt echo

PROMPT = "Engine 5, Medic 12, Ladder 3, Battalion 1, Station 9."


def test_prompt_echo_is_dropped() -> None:
    result = clean([seg("Medic 12, Ladder 3, Battalion 1.")], RadioOptions(), prompt=PROMPT)
    assert reasons(result) == ["prompt_echo"]
    assert "prompt_echo" in result.steps


def test_short_prompt_words_in_real_speech_are_kept() -> None:
    opts = RadioOptions()
    assert clean([seg("Engine 5.")], opts, prompt=PROMPT).text == "Engine 5."
    assert clean([seg("Engine 5 on scene at Station 9.")], opts, prompt=PROMPT).text
    assert reasons(clean([seg("Engine 5, Medic 12")], opts, prompt=PROMPT)) == ["prompt_echo"]
    assert clean([seg("Medic 12, Ladder 3, Battalion 1.")], opts).text  # no prompt, no echo test
    off = RadioOptions(drop_prompt_echo=False)
    assert clean([seg("Medic 12, Ladder 3, Battalion 1.")], off, prompt=PROMPT).text


def test_whole_short_prompt_echo() -> None:
    assert reasons(clean([seg("Dispatch.")], RadioOptions(), prompt="Dispatch")) == ["prompt_echo"]


# --------------------------------------------------------------------------- replacements, raw output


def test_replacements() -> None:
    opts = RadioOptions(replacements=(("ten four", "10-4"), ("signal seven", "Signal 7")))
    result = clean([seg("Ten four, copy. Ten-four. often four"), seg("signal seven", start=3)], opts)
    assert result.text == "10-4, copy. 10-4. often four Signal 7"
    assert "replacements" in result.steps
    assert radio.apply_replacements("ten, four", opts.replacements) == "10-4"


def test_raw_segments_are_not_modified_and_removals_are_indexed() -> None:
    raw = [
        seg("Thanks for watching!", start=0.0),
        seg("Medic 7 en route, en route, en route, en route, en route.", start=2.0),
        seg("Copy that.", lp=-1.4, nsp=0.95, start=5.0),
    ]
    raw[1]["words"] = [{"word": "Medic", "start": 2.0, "end": 2.3}]
    before = copy.deepcopy(raw)
    result = clean(raw, RadioOptions())
    assert raw == before
    assert result.text == "Medic 7 en route,"
    assert [(r["segment"], r["reason"]) for r in result.removed] == [
        (0, "hallucination_phrase"),
        (1, "repetition"),
        (2, "no_speech"),
    ]
    assert result.removed[2]["start"] == 5.0 and result.removed[2]["text"] == "Copy that."
    result.segments[0]["words"].append({"word": "x"})
    assert raw == before  # kept segments are copies, nested lists included
    assert result.to_dict()["no_speech"] is False


def test_clean_is_fast() -> None:
    raw = [seg(f"Unit {i} responding to call number {i * 7}, code three.", start=i) for i in range(200)]
    started = time.perf_counter()
    clean(raw, RadioOptions(replacements=(("code three", "Code 3"),)), prompt=PROMPT)
    assert time.perf_counter() - started < 0.5


# --------------------------------------------------------------------------- language


def test_language_fallback_on_short_or_unsure_calls() -> None:
    opts = RadioOptions(language_min_seconds=2.0, language_min_probability=0.5, fallback_language="en")
    assert choose_language("es", 0.9, 5.0, opts) == ("es", None)
    lang, note = choose_language("cy", 0.95, 0.8, opts)
    assert lang == "en" and "language_min_seconds" in note
    lang, note = choose_language("nn", 0.3, 8.0, opts)
    assert lang == "en" and "p=0.30" in note
    lang, note = choose_language(None, None, 0.5, opts, default="de")
    assert lang == "de" and "only 0.5s" in note
    lang, note = choose_language(None, None, 5.0, opts)
    assert lang == "en" and "no language detected" in note


# --------------------------------------------------------------------------- audio conditioning

np = pytest.importorskip("numpy")
SR = 16000


def _tone(hz: float, seconds: float, dbfs: float = -6.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (10 ** (dbfs / 20) * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _hiss(seconds: float, dbfs: float, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 10 ** (dbfs / 20)).astype(
        np.float32
    )


def _vowels(seconds: float, seed: int = 2) -> np.ndarray:
    """Speech-like: harmonics of a gliding pitch (110-160 Hz) in syllables with pauses."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 135 + 25 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2  # syllables and pauses
    return (0.1 * x * envelope).astype(np.float32) + _hiss(seconds, -50, seed)


def test_find_tones_detects_pages_but_not_voiced_speech() -> None:
    page = np.concatenate([_hiss(0.25, -55), _tone(568.1, 1.0), _tone(1006.9, 3.0), _hiss(0.25, -55, 3)])
    tones = radio.find_tones(page)
    assert tones[0]["start"] < 0.3 and tones[-1]["end"] > 4.2  # the abrupt switch may split it
    assert sorted(hz for t in tones for hz in t["hz"]) == [560.0, 1000.0]  # 15.6 Hz bins
    dtmf = _tone(697, 0.6) + _tone(1209, 0.6)
    assert len(radio.find_tones(dtmf)) == 1
    assert radio.find_tones(_vowels(4.0)) == []
    assert radio.find_tones(_tone(1000, 0.3)) == []  # shorter than tone_min_seconds
    assert radio.find_tones(np.zeros(SR, dtype=np.float32)) == []


def test_suppress_tones_keeps_the_speech_after_a_tone() -> None:
    voice = _vowels(2.0)
    call = np.concatenate([_tone(1000, 1.0) + _hiss(1.0, -50, 4), _hiss(0.2, -50, 5), voice])
    out, tones = radio.suppress_tones(call)
    assert len(tones) == 1 and tones[0]["end"] < 1.2
    tone_part = slice(int(0.1 * SR), int(0.9 * SR))
    drop_db = 10 * np.log10(np.mean(call[tone_part] ** 2) / np.mean(out[tone_part] ** 2))
    assert drop_db > 25
    after = int(1.3 * SR)
    np.testing.assert_array_equal(out[after:], call[after:])  # the voice is untouched


def test_normalize_level() -> None:
    quiet_voice = (_vowels(2.0) * 0.05).astype(np.float32)
    out, gain = radio.normalize_level(quiet_voice, -20.0, 20.0)
    assert 10 < gain <= 20
    assert abs(radio.active_level_dbfs(out) - (radio.active_level_dbfs(quiet_voice) + gain)) < 0.1
    hiss = _hiss(2.0, -60)
    assert radio.normalize_level(hiss, -20.0, 20.0)[1] == 0.0  # steady noise is not lifted
    loud = np.clip(_vowels(1.0) * 20, -0.999, 0.999).astype(np.float32)
    out, gain = radio.normalize_level(loud, -20.0, 20.0)
    assert gain < 0 and np.abs(out).max() <= 0.99
    silence = np.zeros(SR, dtype=np.float32)
    assert radio.normalize_level(silence, -20.0, 20.0)[1] == 0.0


def test_highpass_removes_rumble_not_voice() -> None:
    x = _tone(30, 1.0, -10) + _tone(1000, 1.0, -10) + 0.2
    y = radio.highpass(x, 80.0)
    spectrum = np.abs(np.fft.rfft(y)) / len(y)
    assert spectrum[0] < 1e-4  # DC gone
    assert spectrum[30] < 0.2 * np.abs(np.fft.rfft(x))[30] / len(x)
    assert abs(spectrum[1000] / (np.abs(np.fft.rfft(x))[1000] / len(x)) - 1) < 0.01


def test_prepare_audio_reports_what_it_did() -> None:
    call = np.concatenate([_tone(1000, 1.0), _vowels(2.0)])
    out, info = radio.prepare_audio(call, RadioOptions())
    assert out.dtype == np.float32 and out.shape == call.shape
    assert info["highpass_hz"] == 80.0 and len(info["tones"]) == 1 and "gain_db" in info
    _, none = radio.prepare_audio(
        call, RadioOptions(highpass_hz=None, suppress_tones=False, normalize_loudness=False)
    )
    assert none == {}


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not present")
def test_no_tones_found_in_corpus_speech() -> None:
    """The tone detector must not fire on any real speech clip of the corpus."""
    pytest.importorskip("av")
    from rdio_tasks.audio_decode import decode_audio

    for path in sorted(CORPUS.glob("*")):
        if path.name.startswith("nospeech_"):
            continue
        assert radio.find_tones(radio.highpass(decode_audio(path), 80.0)) == [], path.name


# --------------------------------------------------------------------------- WER normalisation


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("10-4", "ten four"),
        ("one zero zero", "100"),
        ("one hundred", "100"),
        ("Engine twenty-one", "engine 21"),
        ("nineteen eighty four", "1984"),
        ("two thousand three hundred twenty one", "2,321"),
        ("one zero zero zero one nine oh two", "1,0001. 902"),
        ("oh one eight zero three", "01803"),
        ("It's 2.5 miles", "its two point five miles"),
        ("Don't STOP!", "dont stop"),
    ],
)
def test_normalize_equivalences(a: str, b: str) -> None:
    assert normalize(a) == normalize(b)


def test_normalize_keeps_words_and_oh() -> None:
    assert normalize("Oh, I see.") == "oh i see"  # "oh" is a digit only next to numbers
    assert normalize("five oh two") == "5 0 2"


def test_wer() -> None:
    assert wer("Engine 5 responding", "engine five responding") == 0.0
    assert word_errors("a b c d", "a x c") == (2, 4)
    assert wer("", "thank you") == 2.0
    assert wer("", "") == 0.0


def test_drawn_out_interjections_match_fillers() -> None:
    """Whisper writes noise and data bursts as "Ahhh!" or "Hmmmm"; they are fillers however long."""
    for text in ("Ahhh!", "Hmmmmm.", "Ohhhh", "Mmm"):
        assert reasons(clean([seg(text, lp=-0.1, nsp=0.0)], RadioOptions())) == ["hallucination_phrase"], text
    assert radio.phrase_tokens("Ahhh, Hmmm, 1000 zzz") == ("ah", "hm", "1", "0", "0", "0", "z")
    assert clean([seg("Aaron, 1000 block of Main.")], RadioOptions()).text == "Aaron, 1000 block of Main."
