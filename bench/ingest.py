"""Ingest benchmark: SDRTrunk-shaped uploads at a fixed concurrency; prints one JSON line per run.

Not a test: it measures. With ``--spawn`` it starts its own rdio-api (fresh data dir, SQLite,
a bench key with no rate limit) pinned to one CPU and reports the server's CPU time per upload
from /proc; the load generator pins itself to another CPU. The client is raw asyncio sockets with
keep-alive, sending the same bytes SDRTrunk's JDK client sends (h2c upgrade headers and all), so
the generator costs little CPU and the figures are the server's.

    python bench/ingest.py --spawn --concurrency 32 --requests 3000 --runs 3
    python bench/ingest.py --url http://127.0.0.1:8080 --key KEY --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "tests" / "data" / "clips" / "speech_sdrtrunk.mp3"
BOUNDARY = "--sdrtrunk-sdrtrunk-sdrtrunk"
BENCH_KEY = "bench-key"


def build_request(
    host: str, port: int, key: str, system: int, talkgroup: int, when: int, source: int, audio: bytes
) -> bytes:
    fields = [
        ("key", key),
        ("system", str(system)),
        ("dateTime", str(when)),
        ("talkgroup", str(talkgroup)),
        ("source", str(source)),
        ("frequency", "851012500"),
        ("talkgroupLabel", "Bench TG"),
        ("talkgroupGroup", "null"),
        ("systemLabel", "Bench"),
        ("patches", "[]"),
    ]
    body = bytearray()
    for name, value in fields:
        body += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    body += f'--{BOUNDARY}\r\nContent-Disposition: form-data; filename="{when}.mp3"; name="audio"\r\n\r\n'.encode()
    body += audio + f"\r\n--{BOUNDARY}--\r\n".encode()
    head = (
        f"POST /api/call-upload HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        f"HTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA\r\nUpgrade: h2c\r\n"
        f"Content-Length: {len(body)}\r\nUser-Agent: Java-http-client/21\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    )
    return head.encode() + bytes(body)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Return (status, body, keep_alive): a server may close after N requests (Connection: close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and "close" in value.lower():
            keep_alive = False
    body = await reader.readexactly(length) if length else b""
    return status, body, keep_alive


async def worker(
    host: str, port: int, jobs: asyncio.Queue, latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            try:
                request = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            start = time.perf_counter()
            writer.write(request)
            await writer.drain()
            try:
                status, body, keep_alive = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                errors.append(type(exc).__name__)
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            latencies.append(time.perf_counter() - start)
            if not keep_alive:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            if status != 200 or b"Call imported successfully." not in body:
                errors.append(f"{status} {body[:80]!r}")
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants: ``rdio-api serve`` is a parent holding
    the socket (rdio_api.handoff) and the server it runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    total = (int(fields[11]) + int(fields[12])) / ticks
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(cpu_seconds(int(child)) for child in children)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run_once(
    host: str, port: int, key: str, concurrency: int, total: int, audio: bytes, server_pid: int | None
) -> dict:
    base_system = random.randint(10_000, 10_000_000)
    now = int(time.time())
    jobs: asyncio.Queue = asyncio.Queue()
    for i in range(total):
        # Distinct system/source per upload so none is a duplicate.
        jobs.put_nowait(build_request(host, port, key, base_system, 1000 + i % 50, now + i * 5, i + 1, audio))
    latencies: list[float] = []
    errors: list[str] = []
    cpu0 = cpu_seconds(server_pid) if server_pid else None
    start = time.perf_counter()
    await asyncio.gather(*[worker(host, port, jobs, latencies, errors) for _ in range(concurrency)])
    elapsed = time.perf_counter() - start
    latencies.sort()
    result = {
        "concurrency": concurrency,
        "uploads": len(latencies),
        "seconds": round(elapsed, 3),
        "uploads_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "errors": len(errors),
        "error_sample": errors[:3],
    }
    if cpu0 is not None and server_pid:
        result["server_cpu_ms_per_upload"] = round(
            (cpu_seconds(server_pid) - cpu0) * 1000 / max(1, len(latencies)), 3
        )
    return result


def spawn_server(cpu: int | None, extra_env: dict[str, str]) -> tuple[subprocess.Popen, int, Path]:
    work = Path(tempfile.mkdtemp(prefix="rdio-bench-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (work / "config.yaml").write_text(
        f"data_dir: {work / 'data'}\nlog_level: WARNING\ntranscription:\n  enabled: false\n"
        f"api_keys:\n  - key: {BENCH_KEY}\n    name: bench\n    scopes: [upload]\n    rate_limit_per_minute: 0\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "rdio_api",
        "serve",
        "--config",
        str(work / "config.yaml"),
        "--port",
        str(port),
    ]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    proc = subprocess.Popen(
        cmd,
        cwd=work,
        env={**os.environ, **extra_env},
        stdout=subprocess.DEVNULL,
        stderr=open(work / "server.log", "wb"),  # noqa: SIM115 - the child owns it
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.5)
    return proc, port, work


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=None, help="a running server (default: --spawn one)")
    parser.add_argument("--key", default=BENCH_KEY, help="upload key (use one with rate_limit_per_minute: 0)")
    parser.add_argument("--spawn", action="store_true", help="start a fresh server for the run")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU to pin a spawned server to (-1: none)")
    parser.add_argument("--client-cpu", type=int, default=1, help="CPU to pin this generator to (-1: none)")
    parser.add_argument(
        "--server-pid", type=int, default=None, help="PID of a running server, for CPU figures"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32])
    parser.add_argument("--requests", type=int, default=2000, help="uploads per run")
    parser.add_argument("--runs", type=int, default=1, help="runs per concurrency (one JSON line each)")
    parser.add_argument("--warmup", type=int, default=200, help="uploads sent before measuring")
    parser.add_argument("--audio", type=Path, default=CLIP)
    args = parser.parse_args()

    if args.client_cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.client_cpu})
    audio = args.audio.read_bytes()
    proc = None
    server_pid = args.server_pid
    if args.url is None or args.spawn:
        proc, port, _work = spawn_server(None if args.server_cpu < 0 else args.server_cpu, {})
        host, server_pid = "127.0.0.1", proc.pid
    else:
        parsed = urlparse(args.url)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    try:
        if args.warmup:
            asyncio.run(run_once(host, port, args.key, 8, args.warmup, audio, None))
        for concurrency in args.concurrency:
            for _ in range(args.runs):
                result = asyncio.run(
                    run_once(host, port, args.key, concurrency, args.requests, audio, server_pid)
                )
                print(json.dumps(result), flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
