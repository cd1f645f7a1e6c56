"""Whether a rule matches a call: its text, system, talkgroup, units and tones.

Text goes through ``text_normalize.normalize_words``, the normaliser of the search index, so a rule
reads transcripts the way search does: case and punctuation do not count and every number is
spelled digit by digit (``10-50``, ``10 50`` and ``ten fifty`` are all ``1 0 5 0``). A word or
phrase matches a run of whole normalised tokens (``engin*`` a prefix); a pattern is searched,
ignoring case, in the transcript as written and then in the normalised text, so ``engine \\d``
finds "Engine 12" as well as "engine twelve" (normalised: ``engine 1 2``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from rdio_core.alerts.redact import action_target
from rdio_core.alerts.settings import TONE_KINDS, AlertRule, AlertSettings
from rdio_core.text_normalize import normalize_words

__all__ = ["CallFacts", "CompiledRule", "call_units", "compile_rules"]


@dataclass(frozen=True)
class CallFacts:
    """What the non-text conditions look at."""

    system: int
    talkgroup: int
    units: frozenset[int]
    tones: tuple[dict[str, Any], ...] | None  # None: not analysed yet


def call_units(source: int | None, sources: Any, extra: Iterable[int] = ()) -> frozenset[int]:
    """Every unit heard on a call: SDRTrunk's ``source``, each ``src`` of trunk-recorder's srcList
    (or a bare id in ``sources``), and any others given (the transmissions table)."""
    units: set[int] = set(extra)
    if source is not None:
        units.add(int(source))
    for entry in sources if isinstance(sources, list) else ():
        value = entry.get("src") if isinstance(entry, dict) else entry
        if isinstance(value, int) and not isinstance(value, bool):
            units.add(value)
        elif isinstance(value, str) and value.isdigit():
            units.add(int(value))
    units.discard(0)  # trunk-recorder's "unknown unit"
    return frozenset(units)


@dataclass(frozen=True)
class _Term:
    tokens: tuple[str, ...]
    prefix: bool  # the last token is a prefix (engin*)

    def find(self, tokens: list[str]) -> int | None:
        """Index of the first token of a match in ``tokens``, else None."""
        n = len(self.tokens)
        for start in range(len(tokens) - n + 1):
            if tokens[start : start + n - 1] != list(self.tokens[:-1]):
                continue
            last, want = tokens[start + n - 1], self.tokens[-1]
            if last == want or (self.prefix and last.startswith(want)):
                return start
        return None


def _term(text: str) -> _Term:
    prefix = text.endswith("*")
    return _Term(tuple(normalize_words(text.rstrip("*"))), prefix)


def _original_words(transcript: str, term: _Term) -> str | None:
    """The words of ``transcript`` as written that ``term`` matched, when they can be told apart
    word by word (a number spelled across words may only match the whole text's normalisation)."""
    words = list(re.finditer(r"\S+", transcript))
    flat: list[tuple[str, int]] = [(t, i) for i, w in enumerate(words) for t in normalize_words(w.group())]
    start = term.find([t for t, _ in flat])
    if start is None:
        return None
    first, last = flat[start][1], flat[start + len(term.tokens) - 1][1]
    return transcript[words[first].start() : words[last].end()].strip(" ,.;:!?")


class CompiledRule:
    """An :class:`AlertRule` ready to test calls against (terms normalised, patterns compiled)."""

    def __init__(self, rule: AlertRule, tone_tolerance_percent: float) -> None:
        self.rule = rule
        self.name = rule.name
        self.stage = rule.stage
        self.terms = [_term(w) for w in [*rule.words, *rule.phrases]]
        self.patterns = [re.compile(p, re.IGNORECASE) for p in rule.patterns]
        self.tolerance = tone_tolerance_percent / 100

    @cached_property
    def targets(self) -> list[str]:
        """Each action's target as history shows it (redacted), worked out once per rule."""
        return [action_target(action) for action in self.rule.actions]

    def match(self, facts: CallFacts, transcript: str | None = None) -> str | None:
        """What matched (text for the alert's ``matched`` field), or None when the rule does not."""
        rule = self.rule
        if rule.systems and facts.system not in rule.systems:
            return None
        if rule.talkgroups and facts.talkgroup not in rule.talkgroups:
            return None
        if rule.units and not facts.units & set(rule.units):
            return None
        said: list[str] = []
        if rule.tones:
            tone = self._tone(facts.tones or ())
            if tone is None:
                return None
            said.append(tone)
        if rule.has_text:
            text = self._text(transcript or "")
            if text is None:
                return None
            said.insert(0, text)
        if not said and rule.units:
            said.append("unit " + ", ".join(str(u) for u in sorted(facts.units & set(rule.units))))
        if not said:
            said.append(f"talkgroup {facts.talkgroup}")
        return "; ".join(said)

    def _text(self, transcript: str) -> str | None:
        if not transcript.strip():
            return None
        tokens = normalize_words(transcript)
        for term in self.terms:
            if term.find(tokens) is not None:
                return _original_words(transcript, term) or " ".join(term.tokens)
        normalised = " ".join(tokens)
        for pattern in self.patterns:
            found = pattern.search(transcript) or pattern.search(normalised)
            if found is not None:
                return found.group(0)
        return None

    def _tone(self, tones: Iterable[dict[str, Any]]) -> str | None:
        for tone in tones:
            for spec in self.rule.tones:
                if self._tone_is(tone, spec):
                    return _describe_tone(tone)
        return None

    def _tone_is(self, tone: dict[str, Any], spec: str | float) -> bool:
        """A name (case-insensitive) or kind matches by equality; a frequency within the tolerance
        of any detected frequency (1.5 %: well under the ~5 % step between neighbouring tones of a
        Quick Call II group, well over a detector's error on a clean page)."""
        if isinstance(spec, str):
            wanted = spec.strip().casefold()
            if wanted in TONE_KINDS:
                return str(tone.get("kind", "")).casefold() == wanted
            name = tone.get("name")
            return isinstance(name, str) and name.casefold() == wanted
        freqs = tone.get("frequencies") or []
        return any(
            isinstance(f, int | float) and abs(float(f) - spec) <= spec * self.tolerance for f in freqs
        )


def _describe_tone(tone: dict[str, Any]) -> str:
    freqs = " / ".join(f"{float(f):.1f} Hz" for f in tone.get("frequencies") or [])
    label = tone.get("name") or tone.get("kind") or "tone"
    digits = f" {tone['digits']}" if tone.get("digits") else ""
    return f"{label}{digits} ({freqs})" if freqs else f"{label}{digits}"


_cache: tuple[AlertSettings, list[CompiledRule]] | None = None


def compile_rules(settings: AlertSettings) -> list[CompiledRule]:
    """The enabled rules of ``settings``, compiled once per settings object (a reload makes a new
    one, so edited rules apply to the next call)."""
    global _cache
    cached = _cache
    if cached is not None and cached[0] is settings:
        return cached[1]
    compiled = [CompiledRule(r, settings.tone_tolerance_percent) for r in settings.rules if r.enabled]
    _cache = (settings, compiled)
    return compiled
