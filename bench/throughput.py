"""Throughput benchmark: per-call vs cross-call batched transcription in one warm process.

Not a test: it measures. N calls (default 64) are drawn from the project's corpus (2-15 s radio
and clean speech), decoded to memory once, then transcribed twice by the same loaded model:

- per-call: one call at a time, each decoded on its own (cross-call batching off);
- batched:  ``--concurrency`` calls in flight (as the Celery threads pool runs them), their speech
  chunks sharing model passes of up to ``--batch-size``.

Prints one table (calls/s, audio seconds per wall second, process CPU milliseconds per call, p50/p95
per-call latency = time inside transcribe, peak RSS, the 1-minute load average at the start and end
of each phase), the batched/per-call ratio, the mean batch fill (share of ``--batch-size``), the
preparation stages' cost per call (decode, conditioning, VAD, features) and, with ``--json``, one
JSON line.

On a shared machine the wall-clock figures follow the other processes' load; CPU ms per call does
not (much): compare runs by it, and compare wall-clock figures only within one run at a low load.
On 2 CPU cores the batched path gains by keeping both cores busy, not by spending less CPU per
call (the encoder's CPU time per 30 s window does not fall with the batch on a CPU), so the ratio
is bounded by 2 / (the cores per-call uses). With one CTranslate2 worker on two threads,
per-call used 1.15 cores on an AMD EPYC (bound near 1.75x) and 1.25 on a Xeon with AMX (bound
near 1.6x); with one worker per core on one thread each (runtime.model_parallelism) it uses
about one, and batched passes run side by side: 1.80-1.90x on that Xeon.

``--batch-size`` and ``--concurrency`` default to a worker's settings (8 in flight, the batch
sized by them). Batches hold about half the calls in flight per inference thread: the calls of the
batch in flight are not waiting for the next one, so two halves take turns. So the batch size left
unset is ``--concurrency`` / (2 x inference threads), which they fill (asr/config.py
batch_size_for); a larger ``--batch-size`` runs part empty.
With ``--matrix-tflops`` (the GPU's measured dense matrix throughput), it also reports the achieved
fraction of the encoder-bound limit: one 30-second encoder window per chunk, with the encoder FLOPs
counted from the model's dimensions.

    python bench/throughput.py                                   # tiny.en int8 on CPU
    python bench/throughput.py --model large-v3 --device cuda --compute-type float16 \\
        --batch-size 32 --concurrency 64 --matrix-tflops 700
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import resource
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus"


def corpus_speech() -> list:
    """The corpus clips with speech (radio and clean), decoded to 16 kHz float32."""
    from rdio_tasks.audio_decode import decode_audio

    rows = [line.split("\t") for line in (CORPUS / "manifest.tsv").read_text().splitlines()[1:]]
    return [decode_audio(CORPUS / r[0]) for r in rows if r[1] in ("radio_mp3", "radio_m4a", "clean")]


def load_calls(n: int, seed: int, seconds: float | None = None) -> list:
    """``n`` calls drawn from the corpus: as they are (2-15 s), or each exactly ``seconds`` long
    (a clip cut to length, or repeated until it is long enough)."""
    import numpy as np

    pool = corpus_speech()
    if seconds is None:
        pool = [a for a in pool if 2 * 16000 <= a.shape[0] <= 15 * 16000]
    else:
        want = int(seconds * 16000)
        pool = [np.tile(a, -(-want // a.shape[0]))[:want] for a in pool if a.shape[0] >= 16000]
    rng = random.Random(seed)
    return [pool[rng.randrange(len(pool))] for _ in range(n)]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pool_cpu_s(engine) -> float:  # type: ignore[no-untyped-def]
    """CPU seconds used so far by the engine's preparation processes (live children: getrusage
    does not count them until they are reaped)."""
    pool = engine._prepare_pool
    total = 0.0
    for pid in pool.pids() if pool is not None else []:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run(engine, calls: list, concurrency: int) -> dict:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    chunks = 0
    load_start = os.getloadavg()[0]
    cpu_start = time.process_time() + pool_cpu_s(engine)

    def one(audio):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        result = engine.transcribe(audio)
        latencies.append(time.perf_counter() - start)
        return result

    start = time.perf_counter()
    if concurrency <= 1:
        results = [one(a) for a in calls]
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, calls))
    wall = time.perf_counter() - start
    cpu = time.process_time() + pool_cpu_s(engine) - cpu_start  # preparation processes included
    chunks = sum(len(r.raw_segments) for r in results)
    audio_s = sum(a.shape[0] for a in calls) / 16000
    latencies.sort()
    return {
        "calls": len(calls),
        "wall_s": round(wall, 2),
        "calls_per_s": round(len(calls) / wall, 3),
        "audio_s_per_s": round(audio_s / wall, 2),
        "cpu_ms_per_call": round(cpu / len(calls) * 1000),
        "load_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "p50_ms": round(statistics.median(latencies) * 1000),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000),
        "peak_rss_mb": round(peak_rss_mb()),
        "chunks": chunks,
        "texts": [r.text for r in results],
    }


def stage_costs(engine, calls: list, files: int = 16) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Milliseconds per call of each stage before the model pass, one call at a time: decoding the
    compressed file, conditioning, VAD and log-mel features. Their sum over the batched calls/s
    says how many cores keep the GPU fed (the stages run in the Celery threads, in parallel)."""
    from rdio_tasks import radio
    from rdio_tasks.asr.prepare import chunk_features
    from rdio_tasks.asr.vad import speech_chunks
    from rdio_tasks.audio_decode import decode_audio

    rows = [line.split("\t") for line in (CORPUS / "manifest.tsv").read_text().splitlines()[1:]]
    paths = [CORPUS / r[0] for r in rows if r[1] == "radio_mp3"][:files]
    options = engine.config.radio or radio.RadioOptions()
    totals = dict.fromkeys(("decode_file", "condition", "vad", "features"), 0.0)
    start = time.perf_counter()
    for path in paths:
        decode_audio(path)
    totals["decode_file"] = (time.perf_counter() - start) / len(paths) * 1000
    pipeline = engine._pipeline  # the loaded pipeline: the same objects transcribe() uses
    engine._pin_torch_threads()  # the torch threads transcribe() prepares a call with
    for audio in calls:
        t0 = time.perf_counter()
        prepared, _ = radio.prepare_audio(audio, options)
        t1 = time.perf_counter()
        chunks, _ = speech_chunks(
            pipeline.vad_model,
            prepared,
            options.vad_pad_seconds,
            onset=engine.config.vad_onset,
            offset=engine.config.vad_offset,
            lock=engine._vad_lock,
        )
        t2 = time.perf_counter()
        chunk_features(pipeline.model.feat_kwargs.get("feature_size") or 80, prepared, chunks)
        t3 = time.perf_counter()
        totals["condition"] += (t1 - t0) * 1000 / len(calls)
        totals["vad"] += (t2 - t1) * 1000 / len(calls)
        totals["features"] += (t3 - t2) * 1000 / len(calls)
    return {k: round(v, 2) for k, v in totals.items()}


def measure_matrix_tflops(n: int = 8192, repeat: int = 10) -> float | None:
    """Dense float16 matrix throughput of this GPU (TFLOP/s), measured with torch; None on CPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    a = torch.randn(n, n, device="cuda", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeat
    del a, b
    torch.cuda.empty_cache()
    return 2 * n**3 / seconds / 1e12


def encoder_flops_per_window(model_dir: str) -> float | None:
    """Multiply-adds x2 of one 30 s encoder pass (1500 frames), from the model's dimensions
    (``dims.json``, written by bench/gpu/make_model.py, or a Hugging Face ``config.json``)."""
    path = Path(model_dir) / "dims.json"
    if not path.is_file():
        path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text())
    d = cfg.get("d_model")
    layers = cfg.get("encoder_layers")
    ffn = cfg.get("encoder_ffn_dim") or (4 * d if d else None)
    mels = cfg.get("num_mel_bins", 80)
    if not (d and layers and ffn):
        return None
    t = 1500
    conv = 2 * (3000 * mels * d * 3 + t * d * d * 3)  # two conv1d layers, kernel 3
    attn_proj = 2 * 4 * t * d * d
    attn_scores = 2 * 2 * t * t * d
    mlp = 2 * 2 * t * d * ffn
    return conv + layers * (attn_proj + attn_scores + mlp)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=64)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compute-type", default="auto")
    from rdio_core.settings import TranscriptionSettings

    defaults = TranscriptionSettings()  # a worker's defaults, so the bench measures what users run
    parser.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="default: sized by --concurrency"
    )
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--max-batch-wait-ms", type=float, default=defaults.max_batch_wait_ms)
    parser.add_argument("--plain", action="store_true", help="plain WhisperX pipeline instead of radio")
    parser.add_argument(
        "--matrix-tflops",
        default=None,
        help="GPU dense matrix TFLOP/s, or 'measure' to time a float16 product here",
    )
    parser.add_argument(
        "--max-prepare-wait-ms",
        type=float,
        default=None,
        help="a batch that is not full waits this long for calls still being prepared "
        "(transcription.max_prepare_wait_ms; default: the settings default)",
    )
    parser.add_argument("--no-stages", action="store_true", help="skip timing decode/VAD/features per call")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--call-seconds", type=float, default=None, help="every call exactly this long")
    parser.add_argument("--language", default=None, help="fixed language (no detection)")
    parser.add_argument("--no-align", action="store_true", help="skip word alignment")
    parser.add_argument("--encoder", default="auto", choices=["auto", "ctranslate2", "torch"])
    parser.add_argument(
        "--prepare-processes",
        type=int,
        default=0,
        help="processes that prepare calls (transcription.prepare_processes); 0: in the threads",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, help="tokens per window (radio.max_new_tokens)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from rdio_core.text_normalize import wer
    from rdio_tasks.asr import EngineConfig, get_engine

    calls = load_calls(args.calls, args.seed, args.call_seconds)
    radio: dict | bool = False if args.plain else {"max_new_tokens": args.max_new_tokens}
    base = EngineConfig(
        model=args.model,
        device=args.device,
        compute_type=args.compute_type,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        cross_call_batching=False,
        max_batch_wait_ms=args.max_batch_wait_ms,
        **({} if args.max_prepare_wait_ms is None else {"max_prepare_wait_ms": args.max_prepare_wait_ms}),
        radio=radio,
        language=args.language,
        align=not args.no_align,
        encoder=args.encoder,
        prepare_processes=args.prepare_processes,
    )
    engine = get_engine(base)
    for audio in calls[:2]:  # warm-up: first calls pay one-off initialisation
        engine.transcribe(audio)
    per_call = run(engine, calls, 1)
    engine.reconfigure(dataclasses.replace(base, cross_call_batching=True))
    run(engine, calls[:4], args.concurrency)  # warm the batcher
    batched = run(engine, calls, args.concurrency)
    stats = engine.batch_stats
    batch_size = engine.batch_size  # the configured size, else sized by --concurrency
    diffs = [wer(a, b) for a, b in zip(per_call["texts"], batched["texts"], strict=True) if a != b]
    ratio = batched["calls_per_s"] / per_call["calls_per_s"]

    print(
        f"model {args.model} on {engine.device}/{engine.compute_type} ({engine.encoder} encoder), {len(calls)} calls, "
        f"{sum(a.shape[0] for a in calls) / 16000:.0f} s of audio, batch_size {batch_size}, "
        f"concurrency {args.concurrency}, {'plain' if args.plain else 'radio'} pipeline, "
        f"{engine.config.prepare_processes} preparation processes, "
        f"batch waits {engine.config.max_batch_wait_ms:g} ms / {engine.config.max_prepare_wait_ms:g} ms for calls in preparation"
    )
    header = (
        f"{'mode':<9} {'calls/s':>8} {'audio s/s':>10} {'CPU ms/call':>12} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'peak RSS MB':>12} {'load (1 min)':>14}"
    )
    print(header)
    print("-" * len(header))
    for name, r in (("per-call", per_call), ("batched", batched)):
        load = "{:.2f}->{:.2f}".format(*r["load_start_end"])
        print(
            f"{name:<9} {r['calls_per_s']:>8.3f} {r['audio_s_per_s']:>10.2f} {r['cpu_ms_per_call']:>12} "
            f"{r['p50_ms']:>8} {r['p95_ms']:>8} {r['peak_rss_mb']:>12} {load:>14}"
        )
    fill = (stats.get("mean_batch") or 0) / batch_size
    print(
        f"batched/per-call ratio: {ratio:.2f}x; mean batch {stats.get('mean_batch')} chunks = "
        f"{fill:.0%} of batch_size {batch_size} (sizes {stats.get('sizes')}); "
        f"transcripts differing: {len(diffs)} of {len(calls)}"
        + (f" (max WER diff {max(diffs):.3f})" if diffs else "")
    )
    summary = {
        "model": args.model,
        "device": engine.device,
        "compute_type": engine.compute_type,
        "encoder": engine.encoder,
        "call_seconds": args.call_seconds,
        "calls": len(calls),
        "batch_size": batch_size,
        "concurrency": args.concurrency,
        "prepare_processes": engine.config.prepare_processes,
        "max_prepare_wait_ms": engine.config.max_prepare_wait_ms,
        "per_call": {k: v for k, v in per_call.items() if k != "texts"},
        "batched": {k: v for k, v in batched.items() if k != "texts"},
        "ratio": round(ratio, 3),
        "mean_batch_fill": round(fill, 3),
        "batch_stats": stats,
        "differing_transcripts": len(diffs),
    }
    if not args.no_stages:
        costs = stage_costs(engine, calls)
        per_call_ms = sum(v for k, v in costs.items())
        summary["stage_ms_per_call"] = costs
        print(
            f"stages per call (ms): {costs}; at {batched['calls_per_s']:.1f} calls/s they need "
            f"{per_call_ms * batched['calls_per_s'] / 1000:.2f} cores"
        )
    tflops = measure_matrix_tflops() if args.matrix_tflops == "measure" else args.matrix_tflops
    if tflops:
        tflops = float(tflops)
        summary["matrix_tflops"] = round(tflops, 1)
        print(f"matrix throughput: {tflops:.0f} TFLOP/s (float16)")
        flops = encoder_flops_per_window(engine.model_path)
        if flops:
            limit = tflops * 1e12 / flops  # windows/s if the GPU only ran encoders
            achieved = batched["chunks"] / batched["wall_s"]
            summary["encoder_gflops_per_window"] = round(flops / 1e9, 1)
            summary["encoder_bound_windows_per_s"] = round(limit, 1)
            summary["achieved_fraction_of_encoder_bound"] = round(achieved / limit, 4)
            print(
                f"encoder: {flops / 1e9:.1f} GFLOP per 30 s window; bound {limit:.1f} windows/s; "
                f"achieved {achieved:.1f} windows/s = {achieved / limit:.1%} of the encoder-bound limit"
            )
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
