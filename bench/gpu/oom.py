"""Out-of-memory on the GPU halves the batch and loses nothing: a deliberately oversize batch.

Not a test (it needs a GPU): ``--calls`` concurrent calls share batches of up to ``--batch-size``
windows, which is more than the GPU can hold (large-v3 float16 holds ~90 MB of attention scores
per window and layer on an 80 GB H100), so the first pass runs out of memory, the batcher halves
it until it fits, and every call still gets its transcript. Prints the batch sizes that ran, the
number of halvings and whether each call's text equals its one-at-a-time transcript.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from throughput import load_calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--calls", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--encoder", default="auto", choices=["auto", "ctranslate2", "torch"])
    parser.add_argument("--check", type=int, default=8, help="calls compared with a one-at-a-time run")
    args = parser.parse_args()

    from rdio_tasks.asr import EngineConfig, get_engine

    calls = load_calls(args.calls, 5, 5.0)
    config = EngineConfig(
        model=args.model,
        device="cuda",
        compute_type="float16",
        batch_size=args.batch_size,
        cross_call_batching=True,
        max_batch_wait_ms=2000,  # let the whole oversize batch gather
        radio={"max_new_tokens": args.max_new_tokens},
        language="en",
        align=False,
        encoder=args.encoder,
    )
    engine = get_engine(config)
    with ThreadPoolExecutor(args.calls) as pool:
        results = list(pool.map(engine.transcribe, calls))
    stats = engine.batch_stats
    engine.reconfigure(dataclasses.replace(config, cross_call_batching=False, batch_size=1))
    alone = [engine.transcribe(a).text for a in calls[: args.check]]  # one window per pass
    same = sum(a == r.text for a, r in zip(alone, results, strict=False))
    print(
        json.dumps(
            {
                "calls": len(calls),
                "transcribed": sum(r is not None for r in results),
                "batch_sizes": stats.get("sizes"),
                "oom_splits": stats.get("oom_splits"),
                "same_as_alone": f"{same}/{len(alone)}",
            }
        )
    )
    return 0 if stats.get("oom_splits") and len(results) == len(calls) else 1


if __name__ == "__main__":
    raise SystemExit(main())
