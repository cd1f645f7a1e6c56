"""Dispatch tone detection accuracy and speed (not a test: it measures).

Synthesised pages at random frequencies (two-tone A 1 s + B 3 s, long 3-6 s, hi-low with 0.2-0.5 s
halves, DTMF 3-6 digits), alone or followed by a corpus speech clip, under white noise at several
SNRs (tone level over noise in 0-4 kHz), each through SDRTrunk's codec (MP3 16 kbps, 8 kHz) and the
worker's decoder. Then every corpus clip (speech and no-speech) as it is. Prints, per kind and SNR:
pages found, misses, false detections (tones reported that were not sent), frequency error (mean
and max Hz), start/end error, and the detector's time per call.

    python bench/tones.py [--pages 12] [--seed 1] [--min-purity 0.7] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rdio_core.tone_settings import ToneSettings
from rdio_tasks.audio_decode import decode_audio
from rdio_tasks.tones import Tone, detect_tones
from tests import tone_signals as ts

KINDS = ("two_tone", "long", "hi_low", "dtmf")
SNRS: tuple[float | None, ...] = (None, 20, 10, 5, 3, 0)
SPEECH = (
    "jfk_radio.mp3",
    "librispeech_61-70968-0000_radio.mp3",
    "vosk_digits_radio.mp3",
    "ldc93s1_8k_radio.mp3",
)
#: A detection is the page sent when kind, digits and every frequency (within 1.5%) agree and it
#: starts and ends within 0.15 s of the page.
MATCH_PERCENT = 1.5
MATCH_SECONDS = 0.15


def random_page(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, ts.Expected]:
    def hz() -> float:
        return round(float(np.exp(rng.uniform(np.log(300), np.log(3000)))), 1)

    def apart(first: float) -> float:
        while abs((other := hz()) / first - 1) < 0.08:
            pass
        return other

    if kind == "two_tone":
        a = hz()
        b = apart(a)
        return ts.two_tone(a, b), ts.Expected(kind, (a, b), 0, 4.0)
    if kind == "long":
        f, seconds = hz(), float(rng.uniform(3, 6))
        return ts.tone(f, seconds), ts.Expected(kind, (f,), 0, seconds)
    if kind == "hi_low":
        high = hz()
        low = apart(high)
        half, cycles = float(rng.uniform(0.2, 0.5)), int(rng.integers(3, 7))
        return ts.hi_low(high, low, half, cycles), ts.Expected(kind, (high, low), 0, 2 * half * cycles)
    digits = "".join(rng.choice(list("0123456789*#ABCD"), int(rng.integers(3, 7))))
    sig = ts.dtmf(digits)
    hz_pairs: list[float] = []
    for key in digits:
        row = next(i for i, keys in enumerate(ts.DTMF_KEYS) if key in keys)
        hz_pairs += [ts.DTMF_ROWS[row], ts.DTMF_COLS[ts.DTMF_KEYS[row].index(key)]]
    return sig, ts.Expected(kind, tuple(hz_pairs), 0, sig.size / ts.RATE, digits)


def matches(found: Tone, want: ts.Expected) -> bool:
    return (
        found.kind.value == want.kind
        and found.digits == want.digits
        and len(found.frequencies) == len(want.frequencies)
        and all(
            abs(f - w) <= w * MATCH_PERCENT / 100
            for f, w in zip(found.frequencies, want.frequencies, strict=True)
        )
        and abs(found.start - want.start) <= MATCH_SECONDS
        and abs(found.end - want.end) <= MATCH_SECONDS
    )


def run(pages: int, seed: int, settings: ToneSettings) -> dict:
    rng = np.random.default_rng(seed)
    speech = [ts.speech(name) for name in SPEECH]
    rows = []
    timings: list[tuple[float, float]] = []  # (ms, audio seconds)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            for snr in SNRS:
                hits = misses = false = 0
                hz_err: list[float] = []
                t_err: list[float] = []
                for i in range(pages):
                    sig, want = random_page(kind, rng)
                    lead = float(rng.uniform(0.2, 1.0))
                    parts = [ts.silence(lead), sig, ts.silence(0.3)]
                    if i % 2:  # every other page is followed by speech
                        parts.append(speech[i // 2 % len(speech)])
                    call = ts.with_noise(np.concatenate(parts), snr, seed=int(rng.integers(1 << 30)))
                    want = ts.Expected(
                        want.kind, want.frequencies, lead + want.start, lead + want.end, want.digits
                    )
                    audio = ts.through_mp3(call, Path(tmp))
                    started = time.perf_counter()
                    found = detect_tones(audio, ts.WORKER_RATE, settings)
                    timings.append(((time.perf_counter() - started) * 1000, audio.size / ts.WORKER_RATE))
                    hit = next((t for t in found if matches(t, want)), None)
                    if hit is None:
                        misses += 1
                    else:
                        hits += 1
                        hz_err += [abs(f - w) for f, w in zip(hit.frequencies, want.frequencies, strict=True)]
                        t_err += [abs(hit.start - want.start), abs(hit.end - want.end)]
                    false += sum(1 for t in found if t is not hit)
                rows.append(
                    {
                        "kind": kind,
                        "snr_db": snr,
                        "pages": pages,
                        "found": hits,
                        "missed": misses,
                        "false": false,
                        "hz_mean": round(statistics.fmean(hz_err), 3) if hz_err else None,
                        "hz_max": round(max(hz_err), 3) if hz_err else None,
                        "time_err_mean_s": round(statistics.fmean(t_err), 3) if t_err else None,
                        "time_err_max_s": round(max(t_err), 3) if t_err else None,
                    }
                )
    corpus = []
    for path, subset in ts.corpus_files():
        audio = decode_audio(path, ts.WORKER_RATE)
        started = time.perf_counter()
        found = detect_tones(audio, ts.WORKER_RATE, settings)
        timings.append(((time.perf_counter() - started) * 1000, audio.size / ts.WORKER_RATE))
        expected = 1 if path.name == "nospeech_two_tone_page.mp3" else 0
        corpus.append(
            {"file": path.name, "subset": subset, "expected": expected, "found": [t.to_json() for t in found]}
        )
    ms = [m for m, _ in timings]
    return {
        "synthetic": rows,
        "corpus": corpus,
        "timing": {
            "calls": len(ms),
            "mean_audio_s": round(statistics.fmean(s for _, s in timings), 2),
            "mean_ms": round(statistics.fmean(ms), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "ms_per_audio_s": round(sum(ms) / sum(s for _, s in timings), 2),
        },
    }


def report(result: dict) -> None:
    print(
        f"{'kind':9} {'SNR':>5} {'found':>7} {'missed':>6} {'false':>5} {'Hz mean':>8} {'Hz max':>7} {'t mean':>7} {'t max':>6}"
    )
    for r in result["synthetic"]:
        snr = "clean" if r["snr_db"] is None else f"{r['snr_db']}dB"
        hz_mean = "-" if r["hz_mean"] is None else f"{r['hz_mean']:.3f}"
        hz_max = "-" if r["hz_max"] is None else f"{r['hz_max']:.2f}"
        t_mean = "-" if r["time_err_mean_s"] is None else f"{r['time_err_mean_s']:.3f}"
        t_max = "-" if r["time_err_max_s"] is None else f"{r['time_err_max_s']:.3f}"
        print(
            f"{r['kind']:9} {snr:>5} {r['found']:>3}/{r['pages']:<3} {r['missed']:>6} {r['false']:>5} "
            f"{hz_mean:>8} {hz_max:>7} {t_mean:>7} {t_max:>6}"
        )
    by_subset: dict[str, list[int]] = {}
    for c in result["corpus"]:
        extra = max(0, len(c["found"]) - c["expected"])
        counts = by_subset.setdefault(c["subset"], [0, 0, 0])
        counts[0] += 1
        counts[1] += extra
        counts[2] += min(len(c["found"]), c["expected"])
    print("\ncorpus clips: false detections (expected page found)")
    for subset, (clips, extra, expected) in by_subset.items():
        print(
            f"  {subset:10} {clips:2} clips: {extra} false"
            + (f" ({expected} page found)" if expected else "")
        )
    t = result["timing"]
    print(
        f"\ntime per call: mean {t['mean_ms']} ms (p95 {t['p95_ms']} ms) for {t['mean_audio_s']} s of audio "
        f"on average; {t['ms_per_audio_s']} ms per audio second ({t['calls']} calls)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=12, help="pages per kind and SNR")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    parser.add_argument("--min-purity", type=float, default=None, help="override tones.min_purity")
    args = parser.parse_args()
    overrides = {} if args.min_purity is None else {"min_purity": args.min_purity}
    result = run(args.pages, args.seed, ToneSettings(**overrides))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
