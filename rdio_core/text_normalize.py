"""Text normalisation for word error rate on radio traffic.

Why a custom normaliser: radio speech is full of numbers, and Whisper writes them
inconsistently ("10-4", "ten four", "1,0001", "one zero zero"). A plain
lowercase-and-split WER would count "100" against "one zero zero" as three
errors although the digits are right, and would reward or punish a model for
its number formatting rather than for what it heard. So both reference and
hypothesis go through the same steps:

1. lowercase, Unicode NFKC, apostrophes dropped ("don't" -> "dont");
2. punctuation becomes a space, except digit grouping commas ("1,000") and
   decimal points ("2.5" -> "2 point 5");
3. runs of number words become numbers ("twenty one" -> "21", "one hundred
   five" -> "105", "nineteen eighty four" -> "19 84"; "oh" counts as zero only
   next to another number);
4. every number is spelled as single digits ("105" -> "1 0 5").

Step 4 is the one that makes "10-4" and "ten four", or "one zero zero" and
"100", compare equal: radio users read unit numbers digit by digit, so digit
tokens are the fair common ground. Pure Python, no dependencies: the API process
may import it for search normalisation too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

__all__ = [
    "digit_errors",
    "is_number_word",
    "matched_reference",
    "normalize",
    "normalize_words",
    "parse_number_words",
    "wer",
    "word_errors",
]

_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
_TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000}
_NUMBER_WORDS = {**_UNITS, **_TEENS, **_TENS, **_SCALES, "oh": 0}

_APOSTROPHES = re.compile(r"['\u2019\u2018`]")
_DIGIT_GROUPING = re.compile(r"(?<=\d),(?=\d)")
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_DIGITS_OR_LETTERS = re.compile(r"\d+|[a-z]+")


def normalize_words(text: str) -> list[str]:
    """Tokens of ``text`` after the four steps in the module docstring."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _APOSTROPHES.sub("", text)
    text = _DIGIT_GROUPING.sub("", text)
    text = _DECIMAL_POINT.sub(" point ", text)
    text = text.replace("%", " percent ").replace("&", " and ")
    tokens: list[str] = []
    for chunk in _NON_WORD.split(text):
        tokens.extend(_DIGITS_OR_LETTERS.findall(chunk))  # "10am" -> "10", "am"
    return _spell_digits(_numbers_from_words(tokens))


def normalize(text: str) -> str:
    """``normalize_words`` joined by single spaces (handy for equality checks)."""
    return " ".join(normalize_words(text))


def is_number_word(tokens: Sequence[str], i: int) -> bool:
    """Whether lower-case ``tokens[i]`` is part of a number (digits, number words; "oh" only next to one)."""
    return _is_number_token(tokens, i)


def parse_number_words(run: list[str]) -> list[str]:
    """The numbers a run of lower-case number words spells, as digit strings ("twenty one" -> "21")."""
    return _parse_number_run(run)


def _is_number_token(tokens: Sequence[str], i: int) -> bool:
    """Whether ``tokens[i]`` is part of a number; "oh" only when a neighbour is a number."""
    word = tokens[i]
    if word.isdigit() or (word in _NUMBER_WORDS and word != "oh"):
        return True
    if word != "oh":
        return False
    neighbours = [tokens[j] for j in (i - 1, i + 1) if 0 <= j < len(tokens)]
    return any(n.isdigit() or (n in _NUMBER_WORDS and n != "oh") for n in neighbours)


def _numbers_from_words(tokens: list[str]) -> list[str]:
    """Replace each run of number words by the numbers it spells."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if not _is_number_token(tokens, i):
            out.append(tokens[i])
            i += 1
            continue
        run: list[str] = []
        while i < len(tokens) and _is_number_token(tokens, i):
            run.append(tokens[i])
            i += 1
        out.extend(_parse_number_run(run))
    return out


def _parse_number_run(run: list[str]) -> list[str]:
    """Group a run of number words into numbers.

    A word joins the number being built only where English allows it: a unit
    after a bare tens word ("twenty one"), a scale after a smaller number
    ("five hundred", "two thousand"), or a smaller number after a scale
    ("hundred five"). Otherwise it starts a new number, which is how
    digit-by-digit reading ("one zero zero") and year-style pairs ("nineteen
    eighty") come out.
    """
    numbers: list[str] = []  # digit tokens stay as written: "01803" keeps its zero
    thousands = 0  # completed "N thousand" part of the number being built
    group: int | None = None  # the 0-999 part being built; None = no number open
    last = ""  # kind of the previous word: digits|unit|teen|tens|hundred|thousand

    def flush() -> None:
        nonlocal thousands, group
        if group is not None:
            numbers.append(str(thousands + group))
        thousands, group = 0, None

    for word in run:
        if word.isdigit():
            flush()
            numbers.append(word)
            last = "digits"
            continue
        value = _NUMBER_WORDS[word]
        kind = _kind(word)
        if group is not None and _joins(kind, value, group, thousands, last):
            if kind == "hundred":
                group *= 100
            elif kind == "thousand":
                thousands, group = group * 1000, 0
            else:
                group += value
        else:
            flush()
            group = value
        last = kind
    flush()
    return numbers


def _kind(word: str) -> str:
    if word in _SCALES:
        return word
    if word in _TENS:
        return "tens"
    return "teen" if word in _TEENS else "unit"


def _joins(kind: str, value: int, group: int, thousands: int, last: str) -> bool:
    """Whether a number word continues the number built so far (see ``_parse_number_run``)."""
    if kind == "hundred":
        return 0 < group < 100 and last != "hundred"
    if kind == "thousand":
        return group > 0 and thousands == 0 and last != "thousand"
    if last == "tens":
        return kind == "unit" and value > 0 and group % 10 == 0
    if last in ("hundred", "thousand"):
        return value < 100 and group % 100 == 0
    return False


def _spell_digits(tokens: Iterable[str]) -> list[str]:
    """Split every numeric token into single digits ("105" -> "1", "0", "5")."""
    out: list[str] = []
    for token in tokens:
        if token.isdigit():
            out.extend(token)
        else:
            out.append(token)
    return out


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in normalised words, number of reference words).

    Returned separately so a corpus WER can be the sum of errors over the sum
    of reference words (micro average), which weights clips by their length.
    """
    ref = normalize_words(reference)
    hyp = normalize_words(hypothesis)
    return _levenshtein(ref, hyp), len(ref)


def digit_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance between the digit tokens only, number of reference digits).

    The digit-level score for search and alerts: a unit number, address or 10-code is found only
    when its digits come out right, whatever the words around them do. Both sides are normalised
    first, so "ten four" and "10-4" are the same two digits.
    """
    ref = [t for t in normalize_words(reference) if t.isdigit()]
    hyp = [t for t in normalize_words(hypothesis) if t.isdigit()]
    return _levenshtein(ref, hyp), len(ref)


def matched_reference(reference: str, hypothesis: str) -> set[int]:
    """Indexes of the normalised reference words that a minimum-edit alignment finds correct.

    For an ablation that asks which words a pipeline stage costs or saves, not just how many.
    """
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    rows = [list(range(len(hyp) + 1))]
    for i, r in enumerate(ref, start=1):
        row = [i]
        for j, h in enumerate(hyp, start=1):
            row.append(min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + (r != h)))
        rows.append(row)
    hits: set[int] = set()
    i, j = len(ref), len(hyp)
    while i and j:
        if ref[i - 1] == hyp[j - 1] and rows[i][j] == rows[i - 1][j - 1]:
            hits.add(i - 1)
            i, j = i - 1, j - 1
        elif rows[i][j] == rows[i - 1][j - 1] + 1:
            i, j = i - 1, j - 1
        elif rows[i][j] == rows[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return hits


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after normalisation; hypothesis word count when the reference is empty."""
    errors, n = word_errors(reference, hypothesis)
    return errors / n if n else float(errors)


def _levenshtein(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Substitutions + insertions + deletions, O(len(ref) * len(hyp)) with one row of memory."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i]
        for j, h in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]
