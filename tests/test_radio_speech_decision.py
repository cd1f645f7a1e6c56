"""The radio pipeline's speech decision: no-speech probability, log-probability and the VAD's score
weighed together (``radio.speech_decision: evidence``) instead of one threshold at a time.

The scores are ones measured on the vocoded corpus (tests/corpus/vocoded, base): speech windows
score VAD 0.79-0.96 with no_speech_prob <= 0.2; the no-speech calls' windows (key-up, squelch tail,
corrupt voice frames, data burst) VAD 0.31-0.53 by their mean.
"""

from __future__ import annotations

import pytest

from rdio_tasks.radio import RadioOptions, clean


def _seg(text: str, nsp: float, lp: float, vad: float | None) -> dict[str, object]:
    seg: dict[str, object] = {
        "text": text,
        "start": 0.0,
        "end": 2.0,
        "no_speech_prob": nsp,
        "avg_logprob": lp,
    }
    if vad is not None:
        seg["vad_score"] = vad
    return seg


def test_unsure_decode_of_clear_speech_is_kept() -> None:
    """Vocoded speech the decoder is unsure of: the log-prob floor alone used to drop all its words."""
    raw = [_seg("Engine 5 copies, en route to Wolcott and Main.", nsp=0.05, lp=-1.6, vad=0.92)]
    old = clean(raw, RadioOptions(speech_decision="threshold"))
    assert old.text == "" and old.removed[0]["reason"] == "low_logprob"
    new = clean(raw, RadioOptions())
    assert new.text == "Engine 5 copies, en route to Wolcott and Main." and new.removed == []


def test_weak_ending_with_a_high_no_speech_head_is_kept_when_the_decoder_is_sure() -> None:
    raw = [_seg("Medic 12 clear.", nsp=0.7, lp=-0.4, vad=0.85)]
    assert clean(raw, RadioOptions()).text == "Medic 12 clear."


@pytest.mark.parametrize(
    ("text", "nsp", "lp", "vad"),
    [
        ("Copy that, Engine 5.", 0.80, -0.78, 0.48),  # squelch tail, fluent (a prompt's words)
        ("Medic 12 responding.", 0.85, -0.95, 0.39),  # key-up
        ("Okay, Wolcott Street.", 0.42, -1.06, 0.41),  # data burst: the no-speech head missed it
    ],
)
def test_fluent_words_over_noise_are_dropped_by_two_votes(
    text: str, nsp: float, lp: float, vad: float
) -> None:
    """None of these is a listed hallucination phrase, and Whisper's rule alone keeps each."""
    raw = [_seg(text, nsp, lp, vad)]
    assert clean(raw, RadioOptions(speech_decision="threshold")).text == text
    result = clean(raw, RadioOptions())
    assert result.text == "" and result.no_speech
    (removal,) = result.removed
    assert removal["reason"] in ("no_speech", "low_logprob") and "vad_score" in removal["detail"]


def test_without_a_vad_score_the_threshold_rule_applies() -> None:
    raw = [_seg("maybe words", nsp=0.05, lp=-1.6, vad=None)]
    assert clean(raw, RadioOptions()).removed[0]["reason"] == "low_logprob"


def test_switching_a_vote_off_keeps_the_segment() -> None:
    raw = [_seg("Copy that.", nsp=0.80, lp=-0.5, vad=0.48)]
    assert clean(raw, RadioOptions(filter_phrases=False)).text == ""
    assert clean(raw, RadioOptions(filter_phrases=False, drop_no_speech=False)).text == "Copy that."
