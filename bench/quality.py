"""Transcription quality benchmark: radio pipeline vs plain WhisperX, one table.

Runs every clip of ``tests/corpus/manifest.tsv`` (and, when present, the shared
speech clips as a ``sanity`` subset) through the same loaded model twice: plain
WhisperX (``whisperx.load_model`` defaults: its VAD and ASR options) and the radio
pipeline (``rdio_tasks.radio``). Prints per subset the word error rate after
``rdio_core.text_normalize`` (case, punctuation, number words vs digits), the
words produced on clips that hold no speech, and the real-time factor of each.

    .venv/bin/python bench/quality.py                  # tiny.en and base, one pass, tables
    .venv/bin/python bench/quality.py --models base    # one model
    .venv/bin/python bench/quality.py --shifts 4       # mean over 4 sub-frame offsets
    .venv/bin/python bench/quality.py --json --per-clip
    .venv/bin/python bench/quality.py --set beam_size=8 --set vad_pad_seconds=0
    .venv/bin/python bench/quality.py --ablation --models base   # vocoded corpus, each stage off
    .venv/bin/python bench/quality.py --ablation --models base --stages --shifts 3  # glossary rows

``--ablation`` runs the vocoded corpus (``tests/corpus/vocoded``, human speech through Codec2 as
SDRTrunk MP3 and trunk-recorder WAV, plus no-speech calls) through plain WhisperX, the whole radio
pipeline, and the pipeline with each stage switched off in turn, and prints per configuration the
WER, the digit-level WER (``rdio_core.text_normalize.digit_errors``), the words written on the
no-speech calls, and per stage the reference words it saves (right with it, wrong without) and
costs (right without it, wrong with it). Stages that only filter text re-run
:func:`rdio_tasks.radio.clean` on the full pipeline's raw segments (what the engine does), so
only the audio and VAD stages cost another decode.

Each model gets its own table, then one summary line per model (radio pipeline: WER on the radio
and clean subsets, words on the no-speech clips, RTF). The ``lang_*`` subsets (Spanish and Italian,
see tests/corpus/make_languages.py) are kept out of "all" and summed as "other languages": tiny.en
is English-only, so its WER there measures nothing but the model's limit.

Why ``--shifts``: on a corpus this small, tiny.en's WER moves by several points
when the audio starts 2.5 ms later (a different alignment with Whisper's 10 ms
frame grid), which is noise, not quality. Each extra shift trims another 2.5 ms
from the start of every clip and averages, so that differences between the
modes that survive are real. RTF counts decode, conditioning, VAD, ASR and
filters (``processing_ms``), after one warm-up call per mode.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rdio_core.text_normalize import (  # noqa: E402
    digit_errors,
    matched_reference,
    normalize_words,
    word_errors,
)

MANIFEST = REPO / "tests" / "corpus" / "manifest.tsv"
VOCODED_MANIFEST = REPO / "tests" / "corpus" / "vocoded" / "manifest.tsv"
SPEECH_DIRS = (REPO.parent / "shared" / "speech", Path("/work/shared/speech"))
SHIFT_SECONDS = 0.0025
MODES = ("plain", "radio")
RADIO_SUBSETS = ("radio_mp3", "radio_m4a")
LANGUAGE_PREFIX = "lang_"
DEFAULT_MODELS = ("tiny.en", "base")


@dataclass(frozen=True)
class Clip:
    path: Path
    subset: str
    reference: str


@dataclass
class Tally:
    """Sums for one (subset, mode): micro-averaged WER and pooled RTF."""

    clips: int = 0
    errors: int = 0
    ref_words: int = 0
    no_speech_clips: int = 0
    no_speech_words: int = 0
    no_speech_clips_with_words: int = 0
    processing_s: float = 0.0
    audio_s: float = 0.0

    def add(self, clip: Clip, text: str, processing_ms: float, audio_seconds: float) -> None:
        self.clips += 1
        self.processing_s += processing_ms / 1000
        self.audio_s += audio_seconds
        if clip.reference.strip():
            errors, n = word_errors(clip.reference, text)
            self.errors += errors
            self.ref_words += n
        else:
            words = len(normalize_words(text))
            self.no_speech_clips += 1
            self.no_speech_words += words
            self.no_speech_clips_with_words += words > 0

    @property
    def wer(self) -> float | None:
        return self.errors / self.ref_words if self.ref_words else None

    @property
    def rtf(self) -> float | None:
        return self.processing_s / self.audio_s if self.audio_s else None


@dataclass
class Report:
    shifts: int
    model: str
    radio_options: dict[str, Any]
    tallies: dict[str, dict[str, Tally]] = field(default_factory=lambda: defaultdict(dict))
    clips: list[dict[str, Any]] = field(default_factory=list)


def load_clips(manifest: Path, speech_dir: Path | None) -> list[Clip]:
    with manifest.open(newline="") as fh:
        clips = [
            Clip(manifest.parent / row["file"], row["subset"], row["reference"])
            for row in csv.DictReader(fh, delimiter="\t")
        ]
    if speech_dir is not None and (speech_dir / "refs.tsv").is_file():
        with (speech_dir / "refs.tsv").open(newline="") as fh:
            clips += [
                Clip(speech_dir / row["file"], "sanity", row["reference"])
                for row in csv.DictReader(fh, delimiter="\t")
            ]
    return clips


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are Python literals when they parse as one."""
    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key.strip()] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key.strip()] = raw
    return out


def shifted(samples: Any, shift: int) -> Any:
    """The clip starting ``shift`` sub-frame offsets later (see ``--shifts``)."""
    return samples[round(shift * SHIFT_SECONDS * 16000) :]


def run(clips: list[Clip], shifts: int, overrides: dict[str, Any], per_clip: bool, model: str) -> Report:
    from rdio_tasks.asr import EngineConfig, RadioOptions, WhisperXEngine
    from rdio_tasks.audio_decode import decode_audio

    radio = RadioOptions(**overrides)
    engine = WhisperXEngine(EngineConfig(model=model, align=False, radio=radio))  # loads once
    report = Report(shifts=shifts, model=engine.config.model, radio_options=radio.model_dump(mode="json"))
    options = {"plain": None, "radio": radio}
    warm = decode_audio(clips[0].path)
    for mode in MODES:  # first-call warm-up (ct2 and torch allocations) kept out of the RTF
        engine.transcribe(warm, radio=options[mode])

    for clip in clips:
        samples = decode_audio(clip.path)
        for k in range(shifts):
            audio = shifted(samples, k)
            for mode in MODES:
                result = engine.transcribe(audio, radio=options[mode])
                tally = report.tallies[clip.subset].setdefault(mode, Tally())
                tally.add(clip, result.text, result.processing_ms, result.audio_seconds)
                if per_clip:
                    report.clips.append(_clip_row(clip, k, mode, result))
    engine.close()
    return report


def _clip_row(clip: Clip, shift: int, mode: str, result: Any) -> dict[str, Any]:
    errors, n = word_errors(clip.reference, result.text)
    return {
        "file": str(clip.path.relative_to(REPO) if clip.path.is_relative_to(REPO) else clip.path),
        "subset": clip.subset,
        "shift": shift,
        "mode": mode,
        "errors": errors,
        "ref_words": n,
        "text": result.text,
        "raw_text": result.raw_text,
        "removed": [f"{r['reason']}: {r['text']}" for r in result.removed],
        "rtf": result.real_time_factor,
    }


def combined(report: Report) -> dict[str, dict[str, Tally]]:
    """Per-subset tallies plus 'radio' (mp3 + m4a) and 'all'."""
    rows: dict[str, dict[str, Tally]] = dict(report.tallies)
    english = tuple(s for s in report.tallies if not s.startswith(LANGUAGE_PREFIX))
    other = tuple(s for s in report.tallies if s.startswith(LANGUAGE_PREFIX))
    groups = {"radio (mp3+m4a)": RADIO_SUBSETS, "all": english}
    if other:
        groups["other languages"] = other
    for name, members in groups.items():
        merged = {mode: Tally() for mode in MODES}
        for subset in members:
            for mode, t in report.tallies.get(subset, {}).items():
                m = merged[mode]
                for attr in (
                    "clips",
                    "errors",
                    "ref_words",
                    "no_speech_clips",
                    "no_speech_words",
                    "no_speech_clips_with_words",
                    "processing_s",
                    "audio_s",
                ):
                    setattr(m, attr, getattr(m, attr) + getattr(t, attr))
        rows[name] = merged
    return rows


def table(report: Report) -> str:
    header = (
        "subset",
        "n",
        "WER plain",
        "WER radio",
        "ratio",
        "no-speech words plain/radio",
        "RTF plain",
        "RTF radio",
    )
    lines = [header]
    for subset, tallies in combined(report).items():
        plain, radio = tallies.get("plain", Tally()), tallies.get("radio", Tally())
        n = plain.clips // max(1, report.shifts)
        ratio = radio.wer / plain.wer if plain.wer and radio.wer is not None else None
        lines.append(
            (
                subset,
                str(n),
                _fmt(plain.wer),
                _fmt(radio.wer),
                _fmt(ratio, 2),
                f"{plain.no_speech_words}/{radio.no_speech_words}" if plain.no_speech_clips else "-",
                _fmt(plain.rtf, 3),
                _fmt(radio.rtf, 3),
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    rule = "-+-".join("-" * w for w in widths)
    out = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in lines]
    return "\n".join([out[0], rule, *out[1:]])


def summary(reports: list[Report]) -> str:
    """One line per model, radio pipeline: the figures the README's model table quotes."""
    header = ("model", "WER radio", "WER clean", "WER sanity", "no-speech words", "WER other lang", "RTF")
    lines = [header]
    for report in reports:
        rows = {name: t.get("radio", Tally()) for name, t in combined(report).items()}
        empty = Tally()
        lines.append(
            (
                report.model,
                _fmt(rows.get("radio (mp3+m4a)", empty).wer),
                _fmt(rows.get("clean", empty).wer),
                _fmt(rows.get("sanity", empty).wer),
                f"{rows.get('no_speech', empty).no_speech_words} on "
                f"{rows.get('no_speech', empty).no_speech_clips_with_words}/"
                f"{rows.get('no_speech', empty).no_speech_clips} clips",
                _fmt(rows.get("other languages", empty).wer),
                _fmt(rows.get("all", empty).rtf, 3),
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    rule = "-+-".join("-" * w for w in widths)
    out = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in lines]
    return "\n".join([out[0], rule, *out[1:]])


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def as_json(report: Report) -> dict[str, Any]:
    rows = []
    for subset, tallies in combined(report).items():
        row: dict[str, Any] = {"subset": subset}
        for mode, t in tallies.items():
            row[mode] = {
                "clips": t.clips,
                "wer": t.wer,
                "errors": t.errors,
                "ref_words": t.ref_words,
                "no_speech_clips": t.no_speech_clips,
                "no_speech_words": t.no_speech_words,
                "no_speech_clips_with_words": t.no_speech_clips_with_words,
                "rtf": t.rtf,
            }
        plain_wer, radio_wer = row.get("plain", {}).get("wer"), row.get("radio", {}).get("wer")
        row["wer_ratio"] = radio_wer / plain_wer if plain_wer and radio_wer is not None else None
        rows.append(row)
    return {
        "model": report.model,
        "shifts": report.shifts,
        "radio_options": report.radio_options,
        "rows": rows,
        "clips": report.clips,
    }


# --------------------------------------------------------------------------- ablation

STAGES: dict[str, dict[str, Any]] = {
    "high-pass": {"highpass_hz": None},
    "tone notching": {"suppress_tones": False},
    "loudness": {"normalize_loudness": False},
    "VAD cut": {"vad_cut": False},
    "VAD padding": {"vad_pad_seconds": 0.0},
    "no-speech drop": {"drop_no_speech": False},
    "low-logprob drop": {"drop_low_logprob": False},
    "phrase filter": {"filter_phrases": False},
    "repetition collapse": {"collapse_repetitions": False},
    "replacements": {"replacements": ()},
}
"""Each radio stage and the options that switch it off (from the pipeline under test)."""

GLOSSARY_GATED = "glossary (gated prompt + correction)"
GLOSSARY_UNGATED = "glossary as an ungated initial_prompt"
TEXT_ONLY = {"drop_no_speech", "drop_low_logprob", "filter_phrases", "collapse_repetitions", "replacements"}
"""Options read only by the text filters: their ablation re-filters the raw segments, no decode."""


@dataclass
class Score:
    """One configuration over the corpus: speech errors, digit errors, junk, and the words it got."""

    errors: int = 0
    ref_words: int = 0
    digit_errors: int = 0
    ref_digits: int = 0
    junk_words: int = 0
    junk_clips: int = 0
    hits: dict[str, set[int]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    def add(self, clip: Clip, text: str, shift: int = 0) -> None:
        key = f"{clip.path}@{shift}" if shift else str(clip.path)
        self.texts[key] = text
        if clip.reference.strip():
            e, n = word_errors(clip.reference, text)
            d, m = digit_errors(clip.reference, text)
            self.errors, self.ref_words = self.errors + e, self.ref_words + n
            self.digit_errors, self.ref_digits = self.digit_errors + d, self.ref_digits + m
            self.hits[key] = matched_reference(clip.reference, text)
        else:
            words = len(normalize_words(text))
            self.junk_words += words
            self.junk_clips += words > 0

    @property
    def wer(self) -> float | None:
        return self.errors / self.ref_words if self.ref_words else None

    @property
    def digit_wer(self) -> float | None:
        return self.digit_errors / self.ref_digits if self.ref_digits else None


def load_glossary(path: Path) -> tuple[str, ...]:
    """One term a line; ``#`` starts a comment."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line)


def run_ablation(
    clips: list[Clip],
    overrides: dict[str, Any],
    model: str,
    glossary: tuple[str, ...] = (),
    shifts: int = 1,
    stages: list[str] | None = None,
) -> dict[str, Score]:
    """Plain, the full radio pipeline, and the pipeline with each stage off: one Score each.

    ``stages`` limits the stages switched off (None: all of them); ``shifts`` sums every
    configuration over that many sub-frame offsets, as :func:`run` does.

    With a ``glossary``, two more: the pipeline with the glossary (gated prompt and near-miss
    correction, as a talkgroup's ``transcription.glossary``), and the same terms as an ungated
    ``initial_prompt`` (what a user could do before), whose words on no-speech calls the gate is for.
    """
    from rdio_tasks import radio as radio_filters
    from rdio_tasks.asr import EngineConfig, RadioOptions, WhisperXEngine
    from rdio_tasks.audio_decode import decode_audio

    full = RadioOptions(**overrides)
    engine = WhisperXEngine(EngineConfig(model=model, align=False, radio=full))
    chosen = STAGES if stages is None else {name: STAGES[name] for name in stages}
    variants = {name: full.model_copy(update=change) for name, change in chosen.items()}
    scores: dict[str, Score] = {"plain": Score(), "radio": Score()}
    scores.update({name: Score() for name, v in variants.items() if v != full})
    ungated = full.model_copy(update={"glossary_prompt": False})
    if glossary:
        scores.update({GLOSSARY_GATED: Score(), GLOSSARY_UNGATED: Score()})
    for n, clip in enumerate(clips, start=1):
        print(f"[{n}/{len(clips)}] {clip.path.name}", file=sys.stderr, flush=True)
        decoded = decode_audio(clip.path)
        for k in range(shifts):
            samples = shifted(decoded, k)
            if glossary:
                gated = engine.transcribe(samples, radio=full, glossary=glossary)
                scores[GLOSSARY_GATED].add(clip, gated.text, k)
                prompt = radio_filters.glossary_prompt(glossary)
                ungated_text = engine.transcribe(samples, radio=ungated, initial_prompt=prompt).text
                scores[GLOSSARY_UNGATED].add(clip, ungated_text, k)
            scores["plain"].add(clip, engine.transcribe(samples, radio=None).text, k)
            result = engine.transcribe(samples, radio=full)
            scores["radio"].add(clip, result.text, k)
            for name, variant in variants.items():
                if name not in scores:
                    continue
                if set(STAGES[name]) <= TEXT_ONLY:
                    text = radio_filters.clean(
                        result.raw_segments, variant, prompt=variant.initial_prompt
                    ).text
                else:
                    text = engine.transcribe(samples, radio=variant).text
                scores[name].add(clip, text, k)
    engine.close()
    return scores


def ablation_table(scores: dict[str, Score], stages: list[str] | None = None) -> str:
    """Markdown: one row per configuration; per stage the words it saves and costs."""
    chosen_stages = list(STAGES) if stages is None else stages
    full = scores["radio"]
    header = "| configuration | WER | digit WER | words on no-speech calls | words the stage saves | words it costs |"
    lines = [header, "|---|---|---|---|---|---|"]
    for name, score in scores.items():
        saves = costs = "-"
        if name not in ("plain", "radio", GLOSSARY_GATED, GLOSSARY_UNGATED):
            saved = sum(len(full.hits[k] - score.hits[k]) for k in full.hits)
            cost = sum(len(score.hits[k] - full.hits[k]) for k in full.hits)
            saves, costs = str(saved), str(cost)
        label = {"plain": "plain WhisperX", "radio": "radio pipeline (all stages)"}.get(
            name, f"radio without {name}"
        )
        if name in (GLOSSARY_GATED, GLOSSARY_UNGATED):
            label = f"radio + {name}"
        lines.append(
            f"| {label} | {_fmt(score.wer)} ({score.errors}/{score.ref_words}) | {_fmt(score.digit_wer)} "
            f"| {score.junk_words} on {score.junk_clips} | {saves} | {costs} |"
        )
    skipped = [name for name in STAGES if name not in scores and name in chosen_stages]
    if skipped:
        lines.append(f"\nOff by default (nothing to ablate): {', '.join(skipped)}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="models to compare")
    parser.add_argument(
        "--speech-dir",
        type=Path,
        default=next((d for d in SPEECH_DIRS if d.is_dir()), None),
        help="folder with refs.tsv, run as the 'sanity' subset (default: shared/speech if present)",
    )
    parser.add_argument("--no-sanity", action="store_true", help="skip the sanity subset")
    parser.add_argument("--subsets", nargs="*", help="only these subsets")
    parser.add_argument("--shifts", type=int, default=1, help="sub-frame offsets to average over")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="RadioOptions field")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--per-clip", action="store_true", help="include every transcript (JSON)")
    parser.add_argument(
        "--ablation", action="store_true", help="each radio stage off in turn, on the vocoded corpus"
    )
    parser.add_argument(
        "--stages",
        nargs="*",
        choices=list(STAGES),
        metavar="STAGE",
        help=f"with --ablation: only these stages off in turn (default all; none: plain, radio and the "
        f"glossary rows only): {', '.join(STAGES)}",
    )
    parser.add_argument(
        "--glossary",
        default=str(VOCODED_MANIFEST.parent / "glossary.txt"),
        help="with --ablation: glossary file (one term a line) for the glossary rows; '' for none",
    )
    args = parser.parse_args(argv)

    if args.ablation:
        manifest = VOCODED_MANIFEST if args.manifest == MANIFEST else args.manifest
        clips = load_clips(manifest, None)
        if args.subsets:
            clips = [c for c in clips if c.subset in args.subsets]
        started = time.perf_counter()
        for model in args.models:
            glossary = load_glossary(Path(args.glossary)) if args.glossary else ()
            shifts = max(1, args.shifts)
            scores = run_ablation(clips, parse_overrides(args.set), model, glossary, shifts, args.stages)
            print(f"model {model}, {manifest.relative_to(REPO)}: {len(clips)} clips x {shifts} shift(s)\n")
            print(ablation_table(scores, args.stages))
            if args.per_clip:
                for name, score in scores.items():
                    for key, text in score.texts.items():
                        print(f"{name}\t{Path(key).name}\t{text}")
        print(f"\n{time.perf_counter() - started:.0f}s, CPU threads {os.cpu_count()}")
        return 0

    clips = load_clips(args.manifest, None if args.no_sanity else args.speech_dir)
    if args.subsets:
        clips = [c for c in clips if c.subset in args.subsets]
    if not clips:
        parser.error("no clips selected")
    started = time.perf_counter()
    overrides, detail = parse_overrides(args.set), args.per_clip or args.json
    reports = [run(clips, max(1, args.shifts), overrides, detail, model) for model in args.models]
    if args.json:
        print(json.dumps([as_json(report) for report in reports], indent=2))
        return 0
    for report in reports:
        print(f"model {report.model}\n{table(report)}\n")
    print(summary(reports))
    print(
        f"\n{len(clips)} clips x {max(1, args.shifts)} shift(s), CPU threads {os.cpu_count()}; radio "
        f"pipeline in the summary; WER normalised (case, punctuation, numbers); no-speech words "
        f"summed over shifts; {time.perf_counter() - started:.0f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
