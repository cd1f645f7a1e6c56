"""The whole system under load: SDRTrunk-shaped uploads at a fixed rate, timed until transcribed.

Not a test: it measures. Starts ``rdio-api up`` (embedded Redis, SQLite, API, one Celery worker
with the threads pool) in a temp folder with the given transcription settings, then:

1. warm-up: ``--warmup`` uploads at once, waited for (model load, CUDA kernels, batcher);
2. burst: ``--burst`` uploads at once, and the time until every one is transcribed;
3. paced: uploads at ``--rate`` per second for ``--seconds``; each call's upload-to-transcript
   latency (p50/p95/max) and the completion rate over the window.

Completion times come from the live event stream (``GET /api/events``, ``transcript.updated``),
not from polling: polling 100 calls/s would load the API more than the uploads do. Every call is
``--call-seconds`` of corpus speech (a clip cut or repeated), sent as 16-bit WAV.

    python bench/gpu/load.py --model /tmp/large-v3-random --device cuda --compute-type float16 \\
        --batch-size 32 --concurrency 64 --rate 100 --seconds 30 --max-new-tokens 24
"""

from __future__ import annotations

import argparse
import io
import json
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from e2e import Completions, multipart, spawn
from throughput import load_calls


def wav_bytes(samples) -> bytes:  # type: ignore[no-untyped-def]
    import numpy as np

    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)
    return out.getvalue()


class Uploader:
    def __init__(self, url: str, key: str, clips: list[bytes], threads: int) -> None:
        self.url, self.key, self.clips = url, key, clips
        self.system = random.randint(10**6, 10**7)
        self.pool = ThreadPoolExecutor(threads)
        self.local = threading.local()
        self.counter = 0
        self.lock = threading.Lock()

    def _client(self) -> httpx.Client:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(timeout=60)
        return client

    def one(self) -> tuple[int, float]:
        with self.lock:
            n = self.counter = self.counter + 1
        body = multipart(
            self.key, self.system, 100 + n % 50, 1_700_000_000 + n, n, self.clips[n % len(self.clips)]
        )
        body = body.replace(b'.mp3"; name="audio"', b'.wav"; name="audio"')
        start = time.monotonic()
        r = self._client().post(
            f"{self.url}/api/call-upload",
            content=body,
            headers={"Content-Type": "multipart/form-data; boundary=--sdrtrunk-sdrtrunk-sdrtrunk"},
        )
        r.raise_for_status()
        return int(r.headers["x-call-id"]), start

    def burst(self, n: int) -> list[tuple[int, float]]:
        return list(self.pool.map(lambda _: self.one(), range(n)))

    def paced(self, rate: float, seconds: float) -> list[tuple[int, float]]:
        futures = []
        start = time.monotonic()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(self.pool.submit(self.one))
        return [f.result() for f in futures]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compute-type", default="auto")
    parser.add_argument("--encoder", default="auto", choices=["auto", "ctranslate2", "torch"])
    parser.add_argument("--language", default="en")
    parser.add_argument("--batch-size", type=int, default=8, help="1 turns cross-call batching off")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-batch-wait-ms", type=float, default=30.0)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--call-seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=int, default=64)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--upload-threads", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    radio = {"max_new_tokens": args.max_new_tokens} if args.max_new_tokens else {}
    extra = {
        "transcription": {
            "model": args.model,
            "device": args.device,
            "compute_type": args.compute_type,
            "encoder": args.encoder,
            "language": args.language,
            "batch_size": args.batch_size,
            "concurrency": args.concurrency,
            "max_batch_wait_ms": args.max_batch_wait_ms,
            "radio": radio,
        },
    }
    clips = [wav_bytes(a) for a in load_calls(32, 11, args.call_seconds)]
    workdir = Path(tempfile.mkdtemp(prefix="rdio-gpu-load-"))
    proc, url, key = spawn(workdir, extra)
    result: dict = {"settings": extra["transcription"], "call_seconds": args.call_seconds}
    events = Completions(url, key)
    try:
        up = Uploader(url, key, clips, args.upload_threads)
        ids = [i for i, _ in up.burst(args.warmup)]
        if not events.wait(ids, args.timeout):
            raise RuntimeError(f"warm-up did not finish; see {workdir / 'up.log'}")
        if args.burst:
            start = time.monotonic()
            sent = up.burst(args.burst)
            uploaded = time.monotonic() - start
            ok = events.wait([i for i, _ in sent], args.timeout)
            ends = [events.done[i][0] for i, _ in sent if i in events.done]
            result["burst"] = {
                "calls": len(sent),
                "upload_s": round(uploaded, 2),
                "all_done": ok,
                "wall_s": round(max(ends) - start, 2),
                "calls_per_s": round(len(ends) / (max(ends) - start), 1),
                "statuses": _statuses(events, sent),
            }
        if args.rate:
            start = time.monotonic()
            sent = up.paced(args.rate, args.seconds)
            ok = events.wait([i for i, _ in sent], args.timeout)
            lat = [(events.done[i][0] - t) * 1000 for i, t in sent if i in events.done]
            ends = [events.done[i][0] for i, _ in sent if i in events.done]
            result["paced"] = {
                "rate": args.rate,
                "calls": len(sent),
                "all_done": ok,
                "completed_per_s": round(len(ends) / (max(ends) - start), 1),
                "p50_ms": round(statistics.median(lat)),
                "p95_ms": round(pct(lat, 0.95)),
                "max_ms": round(max(lat)),
                "statuses": _statuses(events, sent),
            }
    finally:
        events.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except Exception:
            proc.kill()
    print(json.dumps(result), flush=True)
    return 0


def _statuses(events: Completions, sent: list[tuple[int, float]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, _ in sent:
        status = events.done.get(i, (0.0, "missing"))[1]
        out[status] = out.get(status, 0) + 1
    return out


if __name__ == "__main__":
    raise SystemExit(main())
