"""Dispatch tone detection on synthesised pages at known frequencies, through the MP3 codec SDRTrunk
uses, alone, before corpus speech and under white noise; no detections on the corpus's speech and
no-speech clips; naming from the config; cutting tones and telling a call that is only tones."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from rdio_core.settings import ConfigError, load_settings
from rdio_core.tone_settings import ToneSettings
from rdio_tasks.tones import Cuts, Tone, ToneKind, cut_tones, detect_tones, only_tones, whisper_input
from tests import tone_signals as ts
from tests.helpers import loaded_after

SETTINGS = ToneSettings()
RATE = ts.WORKER_RATE
#: Frequency error allowed: 0.5 Hz on single tones (the detector's error is ~0.1 Hz at 5 dB SNR),
#: 1% on DTMF (the grid tolerates 1.5%; digits are 100 ms long).
HZ_TOLERANCE = 0.5
TIME_TOLERANCE = 0.06


def detected(signal: np.ndarray, tmp_path, settings: ToneSettings = SETTINGS) -> list[Tone]:
    return detect_tones(ts.through_mp3(signal, tmp_path), RATE, settings)


def assert_matches(found: Tone, want: ts.Expected) -> None:
    assert found.kind.value == want.kind
    assert found.digits == want.digits
    assert len(found.frequencies) == len(want.frequencies)
    for got, expected in zip(found.frequencies, want.frequencies, strict=True):
        limit = expected * 0.01 if want.kind == "dtmf" else HZ_TOLERANCE
        assert abs(got - expected) <= limit, (found, want)
    assert abs(found.start - want.start) <= TIME_TOLERANCE, (found, want)
    assert abs(found.end - want.end) <= TIME_TOLERANCE, (found, want)


@pytest.mark.parametrize("kind", ["two_tone", "long", "hi_low", "dtmf"])
@pytest.mark.parametrize("snr_db", [None, 20, 10, 5, 3])
def test_each_kind_alone_under_noise(kind, snr_db, tmp_path):
    signal, want = ts.page(kind)
    found = detected(ts.with_noise(np.concatenate([signal, ts.silence(0.5)]), snr_db), tmp_path)
    assert len(found) == 1, found
    assert_matches(found[0], want)


@pytest.mark.parametrize("kind", ["two_tone", "long", "hi_low", "dtmf"])
def test_each_kind_before_speech(kind, tmp_path):
    """A page then the dispatcher's voice: the page, and nothing from the speech."""
    signal, want = ts.page(kind)
    call = ts.with_noise(np.concatenate([signal, ts.silence(0.3), ts.speech()]), 15)
    found = detected(call, tmp_path)
    assert len(found) == 1, found
    assert_matches(found[0], want)


@pytest.mark.parametrize(
    ("a", "b"), [(288.5, 433.7), (568.1, 1006.9), (1002.3, 1270.7), (2468.2, 1816.8), (2934.0, 330.5)]
)
def test_two_tone_across_the_paging_band(a, b, tmp_path):
    call = np.concatenate([ts.silence(0.3), ts.two_tone(a, b), ts.silence(0.3)])
    (found,) = detected(ts.with_noise(call, 10), tmp_path)
    assert found.kind is ToneKind.TWO_TONE
    assert abs(found.frequencies[0] - a) <= HZ_TOLERANCE and abs(found.frequencies[1] - b) <= HZ_TOLERANCE


def test_stacked_pages_and_lone_tone_b(tmp_path):
    """Two two-tone pages back to back are two pages; a tone B whose A the recorder missed is a
    long tone; an alert beep shorter than long_min_seconds is nothing."""
    call = np.concatenate(
        [ts.two_tone(1002.3, 1270.7), ts.two_tone(568.1, 1006.9), ts.silence(0.5), ts.tone(1500.0, 3.0)]
    )
    call = np.concatenate([call, ts.silence(0.5), ts.tone(1000.0, 1.5), ts.silence(0.3)])
    found = detected(call, tmp_path)
    assert [(t.kind.value, round(t.frequencies[0])) for t in found] == [
        ("two_tone", 1002),
        ("two_tone", 568),
        ("long", 1500),
    ]


def test_ctcss_and_hum_are_not_tones(tmp_path):
    """A sub-audible CTCSS tone (254.1 Hz, the highest) and mains hum run through whole calls."""
    call = ts.tone(254.1, 6.0, -15) + ts.tone(120.0, 6.0, -20)
    assert detected(call, tmp_path) == []


def test_corpus_has_no_false_detections():
    """Speech clips (radio MP3, radio M4A, clean) hold no tones; of the no-speech clips only the
    two-tone page does (568.1 Hz 1 s then 1006.9 Hz 3 s, from 0.25 s); the 1.5 s 1 kHz alert beep
    is below long_min_seconds."""
    from rdio_tasks.audio_decode import decode_audio

    for path, subset in ts.corpus_files():
        found = detect_tones(decode_audio(path, RATE), RATE, SETTINGS)
        if path.name == "nospeech_two_tone_page.mp3":
            assert len(found) == 1, found
            assert_matches(found[0], ts.Expected("two_tone", (568.1, 1006.9), 0.25, 4.25))
        else:
            assert found == [], (path.name, subset, found)


def test_names_from_sets(tmp_path):
    settings = ToneSettings(
        sets=[
            {"name": "Station 7", "tones": [1002.3, 1270.7], "kind": "two_tone"},
            {"name": "Reversed", "tones": [1270.7, 1002.3]},
            {"name": "Warble", "tones": [1000, 1500], "kind": "hi_low"},
            {"name": "Tight", "tones": [853.2], "tolerance_hz": 0.5},
            {"name": "All call", "digits": "1590#"},
        ]
    )
    for kind, name in [
        ("two_tone", "Station 7"),
        ("hi_low", "Warble"),
        ("long", "Tight"),
        ("dtmf", "All call"),
    ]:
        signal, _ = ts.page(kind)
        (tone,) = detected(ts.with_noise(np.concatenate([signal, ts.silence(0.3)]), 20), tmp_path, settings)
        assert tone.name == name, (kind, tone)
        assert tone.to_json()["name"] == name


def test_name_tolerance_and_order():
    settings = ToneSettings(
        sets=[{"name": "Station 7", "tones": [1002.3, 1270.7]}], match_tolerance_percent=1.5
    )
    from rdio_tasks.tones.names import name_tones

    def name(a: float, b: float) -> str | None:
        return name_tones([Tone(ToneKind.TWO_TONE, (a, b), 0, 4)], settings)[0].name

    assert name(1002.3 * 1.014, 1270.7 * 0.986) == "Station 7"  # within 1.5%
    assert name(1002.3 * 1.02, 1270.7) is None  # a neighbouring tone of the table
    assert name(1270.7, 1002.3) is None  # B then A is another page
    long_tone = name_tones([Tone(ToneKind.LONG, (1002.3,), 0, 4)], settings)[0]
    assert long_tone.name is None and "name" not in long_tone.to_json()


def test_tone_json_is_the_stored_shape():
    tone = Tone(ToneKind.DTMF, (697.04, 1209.0), 0.5, 0.6, digits="1", name="x")
    assert tone.to_json() == {
        "kind": "dtmf",
        "frequencies": [697.0, 1209.0],
        "start": 0.5,
        "end": 0.6,
        "digits": "1",
        "name": "x",
    }
    assert Tone.from_json(tone.to_json()) == Tone(ToneKind.DTMF, (697.0, 1209.0), 0.5, 0.6, "1", "x")


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("tones:\n  sets:\n    - {name: a, tones: [1000], digits: '1'}\n", "tones.sets.0"),
        ("tones:\n  sets:\n    - {name: a}\n", "tones.sets.0"),
        ("tones:\n  sets:\n    - {name: a, digits: '12X'}\n", "tones.sets.0"),
        ("tones:\n  sets:\n    - {name: a, tones: [1, 2, 3]}\n", "tones.sets.0.tones"),
        ("tones:\n  min_purity: 2\n", "tones.min_purity"),
        ("tones:\n  min_hz: 3000\n  max_hz: 300\n", "tones"),
        ("tones:\n  kinds: [two_tone, siren]\n", "tones.kinds.1"),
        ("tones:\n  no_such: 1\n", "tones.no_such"),
    ],
)
def test_bad_tone_settings_are_one_line_errors(tmp_path, yaml_text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(cfg)


def test_settings_are_frozen():
    with pytest.raises(ValidationError):
        SETTINGS.enabled = False  # type: ignore[misc]


def test_kinds_switch_detectors_off(tmp_path):
    signal, _ = ts.page("two_tone")
    assert detected(signal, tmp_path, ToneSettings(kinds=["dtmf", "long"]))[0].kind is ToneKind.LONG
    assert detected(signal, tmp_path, ToneSettings(kinds=["dtmf"])) == []
    assert detected(signal, tmp_path, ToneSettings(enabled=False)) == []


# -- keeping tones from Whisper ------------------------------------------------------------------


def test_cuts_map_times_back():
    cuts = Cuts.of([(1.0, 2.0), (3.0, 3.5)])  # kept: 0-1, 2-3, 3.5-...; in the cut audio 0-1, 1-2, 2-...
    segments = [
        {"start": 0.2, "end": 1.0, "text": "a", "words": [{"word": "a", "start": 0.2, "end": 0.9}]},
        {"start": 1.0, "end": 2.0, "text": "b"},
        {"start": 2.5, "end": 3.0, "text": "c", "words": [{"word": "c", "start": 2.5, "end": None}]},
    ]
    assert cuts.restore(segments) == [
        {"start": 0.2, "end": 1.0, "text": "a", "words": [{"word": "a", "start": 0.2, "end": 0.9}]},
        {"start": 2.0, "end": 3.0, "text": "b"},
        {"start": 4.0, "end": 4.5, "text": "c", "words": [{"word": "c", "start": 4.0, "end": None}]},
    ]
    assert cuts.seconds == 1.5


def test_cut_removes_the_tones_and_keeps_the_rest(tmp_path):
    signal, _ = ts.page("two_tone")
    speech = ts.speech()
    call = ts.through_mp3(np.concatenate([signal, ts.silence(0.3), speech]), tmp_path)
    tones = detect_tones(call, RATE, SETTINGS)
    rest, cuts = cut_tones(call, RATE, tones, SETTINGS.cut_margin_seconds)
    assert len(cuts.spans) == 1
    start, end = cuts.spans[0]
    assert abs(start - 0.45) < 0.06 and abs(end - 4.55) < 0.06
    assert rest.size == call.size - round(end * RATE) + round(start * RATE)
    assert detect_tones(rest, RATE, SETTINGS) == []
    # The speech is all still there: its last second is the call's last second.
    assert np.allclose(rest[-RATE:], call[-RATE:])


@pytest.mark.parametrize(
    ("tail", "is_only_tones"),
    [
        ("nothing", True),
        ("hiss", True),  # squelch left open after the page: -35 dBFS steady hiss
        ("keyup", True),  # a key-up click and carrier noise (0.4 s)
        ("speech", False),
        ("short reply", False),  # "She had your dark suit..." (2.9 s)
    ],
)
def test_only_tones(tail, is_only_tones, tmp_path):
    signal, _ = ts.page("two_tone")
    after = {
        "nothing": ts.silence(0.5),
        "hiss": np.random.default_rng(1).standard_normal(3 * ts.RATE) * 10 ** (-35 / 20),
        "keyup": ts.speech("nospeech_keyup.mp3") * 10 ** (-30 / 20),
        "speech": ts.speech(),
        "short reply": ts.speech("ldc93s1_8k_radio.mp3"),
    }[tail]
    call = ts.through_mp3(ts.with_noise(np.concatenate([signal, ts.silence(0.2), after]), 20), tmp_path)
    tones = detect_tones(call, RATE, SETTINGS)
    assert only_tones(call, RATE, tones, SETTINGS) is is_only_tones


def test_speech_alone_is_never_only_tones(tmp_path):
    call = ts.through_mp3(ts.speech(), tmp_path)
    assert only_tones(call, RATE, detect_tones(call, RATE, SETTINGS), SETTINGS) is False


def test_whisper_input_uses_stored_tones_first(tmp_path):
    signal, _ = ts.page("two_tone")
    page_only = ts.through_mp3(signal, tmp_path)
    detected_here = whisper_input(page_only, RATE, None, SETTINGS)
    assert detected_here.skip_reason is not None
    assert detected_here.skip_reason.startswith("only dispatch tones, no speech: two-tone 1002.3/1270.7 Hz")
    # The analyze task found none (stored []): nothing is detected again, nothing is cut.
    trusted = whisper_input(page_only, RATE, [], SETTINGS)
    assert trusted.skip_reason is None and trusted.audio is page_only and trusted.cuts.spans == ()
    stored = [{"kind": "long", "frequencies": [853.2], "start": 1.0, "end": 2.0, "name": "Quiet"}]
    mixed = whisper_input(ts.through_mp3(ts.speech(), tmp_path), RATE, stored, SETTINGS)
    assert mixed.skip_reason is None and mixed.cuts.spans == ((0.95, 2.05),)
    assert whisper_input(page_only, RATE, None, ToneSettings(enabled=False)).tones == []
    keep = whisper_input(
        page_only, RATE, None, ToneSettings(skip_tone_only=False, cut_from_transcription=False)
    )
    assert keep.skip_reason is None and keep.audio is page_only and len(keep.tones) == 1


def test_api_side_imports_no_numpy():
    """The API process imports the analysis publisher and hook; numpy stays in the workers."""
    code = "import rdio_api.runtime, rdio_tasks.analyze, rdio_core.tone_settings"
    assert loaded_after(code, {"numpy", "torch", "av"}) == []
