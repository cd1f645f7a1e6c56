"""Radio numbers as digits in stored transcripts, so that search and alerts find them.

Whisper writes the same number several ways ("ten four", "10-4"; "one zero four three", "1043";
"Engine five", "Engine 5"), and a search for ``1043`` or an alert on ``10-50`` only matches the
digits. :func:`numbers_to_digits` rewrites spelled numbers the way radio traffic writes them:

* a 10-code: "ten" followed by a number up to 99 -> ``10-4``, ``10-97``;
* two or more number words in a row -> their digits run together (unit ids, addresses, plates
  are read digit by digit or in pairs): "one zero four three" -> ``1043``, "twenty three fifty"
  -> ``2350``, "one hundred five" -> ``105``;
* one number word right after a unit word ("Engine five", "Medic twelve") -> ``Engine 5``;
* three or more single digits Whisper wrote apart ("1, 0, 0, 1 9") -> one run, ``10019``: a digit
  string read one digit at a time (tiny.en writes the vosk digits clip so), which search for
  ``10019`` or "one zero zero one nine" would otherwise miss.

A lone number word elsewhere stays a word ("one of them", "the first two"). The number grammar is
:mod:`rdio_core.text_normalize`'s, so the WER normaliser and this formatter agree on what a
number is; the digit-level score in ``bench/quality.py`` measures the result.
"""

from __future__ import annotations

import re

from rdio_core.text_normalize import is_number_word, parse_number_words

__all__ = ["UNIT_WORDS", "numbers_to_digits"]

UNIT_WORDS = frozenset(
    [
        "unit",
        "engine",
        "medic",
        "ladder",
        "truck",
        "rescue",
        "squad",
        "battalion",
        "ambulance",
        "car",
        "channel",
        "tac",
        "box",
        "station",
        "district",
        "zone",
        "sector",
        "beat",
        "code",
        "signal",
        "adam",
        "baker",
        "charlie",
        "david",
        "edward",
        "king",
        "lincoln",
        "mary",
        "paul",
        "sam",
        "tom",
        "boy",
    ]
)
"""Words after which a single spelled number is an identifier ("Engine five" -> "Engine 5")."""

_TOKEN = re.compile(r"[A-Za-z]+|\d+")
_DIGITS_APART = re.compile(r"(?<![\d.,-])\d(?:,? \d){2,}(?![\d.-])")
_JOINER = re.compile(r"^[ \-]+$")  # what separates the words of one spoken number ("two, three" is a list)


def numbers_to_digits(text: str) -> str:
    """``text`` with its spelled radio numbers written as digits (see the module docstring)."""
    tokens = list(_TOKEN.finditer(text))
    words = [t.group().lower() for t in tokens]
    out: list[str] = []
    last = 0
    i = 0
    while i < len(tokens):
        end = _run_end(text, tokens, words, i)
        run = words[i:end]
        spelled = any(not w.isdigit() for w in run)
        previous = words[i - 1] if i > 0 else ""
        if spelled and (len(run) > 1 or previous in UNIT_WORDS):
            out += [text[last : tokens[i].start()], _digits(run)]
            last = tokens[end - 1].end()
            i = end
        else:
            i = max(end, i + 1)
    out.append(text[last:])
    return _DIGITS_APART.sub(lambda m: re.sub(r"\D", "", m.group()), "".join(out))


def _run_end(text: str, tokens: list[re.Match[str]], words: list[str], i: int) -> int:
    """One past the last token of the number run starting at ``i`` (``i`` if none starts there)."""
    end = i
    while end < len(tokens) and is_number_word(words, end):
        if end > i and not _JOINER.match(text[tokens[end - 1].end() : tokens[end].start()]):
            break
        end += 1
    return end


def _digits(run: list[str]) -> str:
    numbers = parse_number_words(run)
    if run[0] == "ten" and len(numbers) == 2 and numbers[0] == "10" and int(numbers[1]) < 100:
        return f"10-{numbers[1]}"
    return "".join(numbers)
