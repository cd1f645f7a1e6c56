"""Per-system/talkgroup glossaries: the decoder prompt that lists them, and near-miss correction.

A glossary holds the words a talkgroup says that Whisper does not know: unit names ("Medic 12"),
streets ("Wolcott Street"), 10-codes. Two uses, both in the radio pipeline:

* As the decoder prompt, gated (:meth:`rdio_tasks.asr.engine.WhisperXEngine`): only the windows
  that the unprompted decode already kept as speech are decoded again with the glossary, so the
  prompt can change how words are spelled but cannot put words into a silent call. Ungated, a
  dispatch prompt wrote 6 words on 9 real P25 no-speech calls where the pipeline wrote none
  (issue 23).
* :func:`correct_near_misses`: a run of words that is spelled almost like a glossary term
  ("Walcott street" for "Wolcott Street") becomes the term. Numbers must match exactly: "Medic 13"
  never becomes "Medic 12".

Pure Python (difflib), no model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher

__all__ = ["correct_near_misses", "glossary_prompt"]

_WORD = re.compile(r"[\w'-]+")
_MIN_LETTERS = 5  # shorter terms match too many ordinary words ("Main" ~ "Maine", "rain")


def glossary_prompt(glossary: Sequence[str], prompt: str | None = None) -> str | None:
    """The decoder prompt: the call's own prompt, then the glossary terms as a comma list."""
    terms = ", ".join(t.strip() for t in glossary if t.strip())
    parts = [p for p in ((prompt or "").strip(), f"{terms}." if terms else "") if p]
    return " ".join(parts) or None


def correct_near_misses(
    text: str, glossary: Sequence[str], min_similarity: float = 0.8
) -> tuple[str, list[tuple[str, str]]]:
    """Replace word runs spelled like a glossary term by the term; returns (text, [(was, now)]).

    A run of the term's word count (or one word fewer, or up to two more: "Hen a pin" for "Hennepin") is
    compared as lower-case letters and digits with the spaces removed: its digits must equal the
    term's, and its letters must have a difflib similarity of at least ``min_similarity`` with the
    term's. Terms with fewer than five letters are only kept as prompt words, never corrected to.
    """
    changes: list[tuple[str, str]] = []
    for term in sorted({t.strip() for t in glossary if t.strip()}, key=len, reverse=True):
        key = _key(term)
        if sum(c.isalpha() for c in key) < _MIN_LETTERS:
            continue
        text = _correct_term(text, term, key, min_similarity, changes)
    return text, changes


def _correct_term(
    text: str, term: str, key: str, min_similarity: float, changes: list[tuple[str, str]]
) -> str:
    size = len(term.split())
    out = text
    matches = list(_WORD.finditer(text))
    i = 0
    pieces: list[str] = []
    last = 0
    while i < len(matches):
        best: tuple[float, int] | None = None
        for n in (size, size + 1, size + 2, size - 1):
            if n < 1 or i + n > len(matches):
                continue
            span = text[matches[i].start() : matches[i + n - 1].end()]
            score = _similarity(_key(span), key)
            if score >= min_similarity and (best is None or score > best[0]):
                best = (score, n)
        if best is None:
            i += 1
            continue
        start, end = matches[i].start(), matches[i + best[1] - 1].end()
        span = text[start:end]
        if span != term:
            changes.append((span, term))
        pieces += [text[last:start], term]
        last = end
        i += best[1]
    if pieces:
        out = "".join(pieces) + text[last:]
    return out


def _key(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _similarity(candidate: str, term: str) -> float:
    digits = "".join(c for c in candidate if c.isdigit())
    if digits != "".join(c for c in term if c.isdigit()):
        return 0.0
    letters_c = "".join(c for c in candidate if c.isalpha())
    letters_t = "".join(c for c in term if c.isalpha())
    if not letters_c or letters_c[0] != letters_t[0]:
        return 0.0
    return SequenceMatcher(None, letters_c, letters_t).ratio()
