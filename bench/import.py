"""Import benchmark: calls/s from a local sdrtrunk-rdio-api database, and live uploads' latency
while an import runs. Prints one JSON line per phase.

Not a test: it measures. It builds an sdrtrunk-rdio-api archive (``radio_calls`` rows and one
small WAV per call, tests/importer_fixtures.py), then:

1. ``import alone``: ``rdio-api import sdrtrunk-rdio-api`` into a fresh data dir (SQLite), no server;
2. ``uploads alone``: a spawned ``rdio-api serve`` takes SDRTrunk-shaped uploads at ``--rate``/s
   (bench/ingest.py's request bytes) for ``--seconds``: the baseline p50/p99;
3. ``uploads during import``: the same uploads while the same import runs into that server's
   database (another process, the way a user runs it): p50/p99 beside the baseline, and the
   import's own rate under that load.

Both sides run on this machine, so the figures of one run compare with each other, not with another
machine's.

    python bench/import.py --rows 20000
    python bench/import.py --rows 100000 --rate 20 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.importer_fixtures import sdrtrunk_bulk  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_ingest", REPO / "bench" / "ingest.py")
assert _spec is not None and _spec.loader is not None
ingest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ingest)


def run_import(
    config: Path, db: Path, audio_dir: Path, link: bool, batch: int
) -> tuple[dict, subprocess.Popen[bytes]]:
    cmd = [
        sys.executable, "-m", "rdio_api", "import", "sdrtrunk-rdio-api",
        "--config", str(config), "--db", str(db), "--audio-dir", str(audio_dir), "--batch", str(batch),
    ]  # fmt: skip
    if link:
        cmd.append("--link")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    return {}, proc


def finish(proc: subprocess.Popen[bytes]) -> dict:
    out, _ = proc.communicate()
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"import failed ({proc.returncode}): {out.decode()[-500:]}")
    return json.loads(lines[-1])


async def paced_uploads(port: int, rate: float, seconds: float, audio: bytes, tag: int) -> dict:
    """Uploads at ``rate`` per second for ``seconds``, each on a free connection of a small pool."""
    host, total = "127.0.0.1", int(rate * seconds)
    latencies: list[float] = []
    errors: list[str] = []
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(8):
        pool.put_nowait(await asyncio.open_connection(host, port))
    now = int(time.time())

    async def one(i: int) -> None:
        request = ingest.build_request(
            host, port, ingest.BENCH_KEY, 42, 9000 + tag, now + i * 5, i + 1, audio
        )
        reader, writer = await pool.get()
        start = time.perf_counter()
        try:
            writer.write(request)
            await writer.drain()
            status, body, keep_alive = await ingest.read_response(reader)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(f"{status} {body[:60]!r}")
            if not keep_alive:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            errors.append(type(exc).__name__)
            reader, writer = await asyncio.open_connection(host, port)
        pool.put_nowait((reader, writer))

    started = time.perf_counter()
    tasks = []
    for i in range(total):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    latencies.sort()
    return {
        "latencies": latencies,
        "uploads": len(latencies),
        "p50_ms": round(ingest.percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(ingest.percentile(latencies, 0.99) * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "errors": len(errors),
        "error_sample": errors[:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20000, help="calls in the archive")
    parser.add_argument("--rate", type=float, default=20.0, help="live uploads per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the baseline upload phase")
    parser.add_argument("--link", action="store_true", help="import with --link (hard links, same disk)")
    parser.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=[128],
        help="import --batch values to compare (a fresh server each)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rdio-import-bench-"))
    db, audio_dir = work / "theirs" / "rdio_calls.db", work / "theirs" / "audio"
    t0 = time.perf_counter()
    sdrtrunk_bulk(db, audio_dir, args.rows)
    print(
        json.dumps(
            {"phase": "archive built", "rows": args.rows, "seconds": round(time.perf_counter() - t0, 1)}
        ),
        flush=True,
    )

    alone_cfg = work / "alone.yaml"
    alone_cfg.write_text(
        f"data_dir: {work / 'alone'}\nlog_level: WARNING\ntranscription:\n  enabled: false\n"
    )
    _, proc = run_import(alone_cfg, db, audio_dir, args.link, args.batch[0])
    result = finish(proc)
    print(json.dumps({"phase": "import alone", "batch": args.batch[0], **result}), flush=True)
    audio = ingest.CLIP.read_bytes()
    for batch in args.batch:
        during_import(args, db, audio_dir, audio, batch)
    return 0


def during_import(args: argparse.Namespace, db: Path, audio_dir: Path, audio: bytes, batch: int) -> None:
    """A fresh server: uploads alone, then the same uploads while the archive is imported into it."""
    server, port, server_work = ingest.spawn_server(None, {})
    config = server_work / "config.yaml"
    try:
        asyncio.run(paced_uploads(port, args.rate, 2, audio, 0))  # warm-up
        base = asyncio.run(paced_uploads(port, args.rate, args.seconds, audio, 1))
        base.pop("latencies")
        print(json.dumps({"phase": "uploads alone", "rate": args.rate, **base}), flush=True)
        _, proc = run_import(config, db, audio_dir, args.link, batch)
        during: list[dict] = []
        started = time.perf_counter()
        while proc.poll() is None:
            during.append(asyncio.run(paced_uploads(port, args.rate, 5, audio, 2 + len(during))))
        imported = finish(proc)
        wall = time.perf_counter() - started
        latencies = sorted(x for d in during for x in d["latencies"])
        print(
            json.dumps(
                {
                    "phase": "uploads during import",
                    "batch": batch,
                    "rate": args.rate,
                    "uploads": len(latencies),
                    "p50_ms": round(ingest.percentile(latencies, 0.50) * 1000, 1),
                    "p99_ms": round(ingest.percentile(latencies, 0.99) * 1000, 1),
                    "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
                    "p99_ms_worst_5s_window": max((d["p99_ms"] for d in during), default=None),
                    "errors": sum(d["errors"] for d in during),
                    "import_calls_per_second": imported["calls_per_second"],
                    "import_imported": imported["imported"],
                    "import_wall_seconds": round(wall, 1),
                }
            ),
            flush=True,
        )
    finally:
        server.terminate()
        server.wait(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
