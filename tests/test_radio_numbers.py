"""Radio numbers written as digits (rdio_tasks/radio/numbers.py) and the digit-level score."""

from __future__ import annotations

import pytest

from rdio_core.text_normalize import digit_errors
from rdio_tasks.radio import RadioOptions, clean, numbers_to_digits


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        ("Ten four, Engine five responding.", "10-4, Engine 5 responding."),
        ("ten-ninety seven on scene", "10-97 on scene"),
        ("unit one zero four three at twenty three fifty Main", "unit 1043 at 2350 Main"),
        ("Medic twelve, one hundred five Elm", "Medic 12, 105 Elm"),
        ("caller says nine one one", "caller says 911"),
        ("plate oh two one oh", "plate 0210"),
        ("Copy 10-4 at 1043", "Copy 10-4 at 1043"),  # already digits: untouched
        ("1, 0, 0, 1 9, 0, 2", "1001902"),  # single digits written apart: one run
        ("units 1, 2 and 3.5", "units 1, 2 and 3.5"),  # two digits, a decimal: left alone
    ],
)
def test_spelled_radio_numbers_become_digits(spoken: str, written: str) -> None:
    assert numbers_to_digits(spoken) == written


@pytest.mark.parametrize(
    "text",
    [
        "one of them is down",  # a lone number word that is not an identifier
        "the first two, three cars",  # a comma separates list items, not digits
        "I have one",
        "someone is here",  # "one" inside a word
    ],
)
def test_ordinary_words_stay_words(text: str) -> None:
    assert numbers_to_digits(text) == text


def test_digit_score_counts_only_digits_and_ignores_their_spelling() -> None:
    assert digit_errors("Engine ten four at one zero four three", "engine 10-4 at 1043") == (0, 7)
    assert digit_errors("Engine ten four at one zero four three", "engine 10-4 at 1034") == (2, 7)
    assert digit_errors("no numbers here", "none either 5") == (1, 0)


def test_clean_writes_digits_and_says_so() -> None:
    raw = [{"text": "Ten four, unit one two.", "avg_logprob": -0.2, "no_speech_prob": 0.01}]
    result = clean(raw, RadioOptions())
    assert result.text == "10-4, unit 12."
    assert "digits" in result.steps
    assert clean(raw, RadioOptions(digits=False)).text == "Ten four, unit one two."
