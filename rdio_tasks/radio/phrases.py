"""Hallucination phrase lists: the file format, its parser, and the per-mtime cache of loaded files.

A phrase list is data the filters consult, edited by operators without a restart; it sits in its own
module so the format (``rdio_tasks/data/hallucinations.txt``, plus user files) and its matcher can be
read and tested apart from the filter order in :mod:`rdio_tasks.radio.filters`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rdio_core.text_normalize import normalize_words
from rdio_tasks.radio.options import RadioOptions

__all__ = ["BUILTIN_PHRASES", "PhraseList", "load_phrases", "parse_phrases", "phrase_tokens"]

logger = logging.getLogger(__name__)

BUILTIN_PHRASES = Path(__file__).resolve().parents[1] / "data" / "hallucinations.txt"


@dataclass(frozen=True)
class PhraseList:
    """Hallucination phrases as normalised token tuples.

    ``always``: removed whenever a segment consists only of them. ``ambiguous``:
    phrases that are also real radio speech, removed only from unconfident
    segments. ``prefixes``: "phrase *" lines, matching the phrase and anything after.
    """

    always: frozenset[tuple[str, ...]] = frozenset()
    ambiguous: frozenset[tuple[str, ...]] = frozenset()
    prefixes: frozenset[tuple[str, ...]] = frozenset()

    def __len__(self) -> int:
        return len(self.always) + len(self.ambiguous) + len(self.prefixes)

    def match(self, tokens: Sequence[str]) -> str | None:
        """ "always" or "ambiguous" when ``tokens`` is made only of phrases, else None.

        A segment may chain several phrases ("thank you bye"); it is "always" when
        some way of splitting it uses no ambiguous phrase. Dynamic programming over
        token positions; phrases are a few words, so this is cheap.
        """
        n = len(tokens)
        if n == 0:
            return None
        best: list[int | None] = [None] * (n + 1)  # fewest ambiguous phrases to reach i
        best[0] = 0
        lengths = sorted({len(p) for p in self.always | self.ambiguous | self.prefixes})
        for i in range(n):
            here = best[i]
            if here is None:
                continue
            for length in lengths:
                piece = tuple(tokens[i : i + length])
                if len(piece) < length:
                    break
                if piece in self.prefixes:
                    best[n] = _min_opt(best[n], here)
                if piece in self.always:
                    best[i + length] = _min_opt(best[i + length], here)
                elif piece in self.ambiguous:
                    best[i + length] = _min_opt(best[i + length], here + 1)
        if best[n] is None:
            return None
        return "always" if best[n] == 0 else "ambiguous"


def _min_opt(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


_ELONGATED = re.compile(r"([a-z])\1{2,}")


def phrase_tokens(text: str) -> tuple[str, ...]:
    """Normalised words for phrase matching, with letters held 3+ times squeezed to one.

    Whisper spells the sounds it hears in noise and data bursts as drawn-out
    interjections ("Ahhh!", "Hmmmm", "Ohhh"); squeezing makes them match the
    plain fillers in the list ("ah", "hm", "oh") however long they are drawn.
    """
    return tuple(_ELONGATED.sub(r"\1", token) for token in normalize_words(text))


def parse_phrases(lines: Iterable[str]) -> PhraseList:
    """Parse the phrase file format described in ``data/hallucinations.txt``."""
    always: set[tuple[str, ...]] = set()
    ambiguous: set[tuple[str, ...]] = set()
    prefixes: set[tuple[str, ...]] = set()
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        target = always
        if line.startswith("?"):
            target, line = ambiguous, line[1:].strip()
        if line.endswith("*"):
            target, line = prefixes, line[:-1].strip()
        tokens = phrase_tokens(line)
        if tokens:
            target.add(tokens)
    return PhraseList(frozenset(always), frozenset(ambiguous - always), frozenset(prefixes))


def load_phrases(options: RadioOptions) -> PhraseList:
    """The built-in list (unless disabled) plus ``options.phrase_files``.

    Cached per (file, modification time), so editing a user file takes effect on
    the next call without a worker restart, and unchanged files are not re-read.
    A missing user file is logged and skipped: a typo in settings must not fail
    every transcription.
    """
    paths = ([BUILTIN_PHRASES] if options.builtin_phrases else []) + [
        Path(p).expanduser() for p in options.phrase_files
    ]
    stamped: list[tuple[str, float]] = []
    for path in paths:
        try:
            stamped.append((str(path), path.stat().st_mtime))
        except OSError as exc:
            logger.warning("hallucination phrase file %s not readable: %s", path, exc)
    return _load_phrase_files(tuple(stamped))


@functools.lru_cache(maxsize=16)
def _load_phrase_files(stamped: tuple[tuple[str, float], ...]) -> PhraseList:
    lines: list[str] = []
    for path, _mtime in stamped:
        try:
            lines.extend(Path(path).read_text(encoding="utf-8").splitlines())
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("hallucination phrase file %s not readable: %s", path, exc)
    return parse_phrases(lines)
