"""What stalled clients without a key cost the server: RSS, disk, and legitimate upload latency.

Not a test: it measures. It spawns its own rdio-api (defaults: 50 MB upload cap, 64 MiB per
address and 256 MiB in total before a key), then opens N connections, each from its own loopback
address (127.0.0.2, .3, ...), that declare a Content-Length of 50 MB, send a form with no ``key``
part and ``--audio-mb`` of audio, and stall. Meanwhile it times SDRTrunk-shaped uploads with a valid
key and compares them with the same uploads before the stall.

    python bench/stalled.py --connections 200 --audio-mb 1
    python bench/stalled.py --connections 10 --audio-mb 45      # the attack of issue 13
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from pathlib import Path

import psutil
from ingest import BENCH_KEY, BOUNDARY, build_request, percentile, spawn_server


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def stall(port: int, source: str, audio_bytes: int) -> socket.socket | None:
    head = (
        f"POST /api/call-upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 50000000\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    ).encode()
    body = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="system"\r\n\r\n11\r\n'.encode()
    body += f'--{BOUNDARY}\r\nContent-Disposition: form-data; filename="a.mp3"; name="audio"\r\n\r\n'.encode()
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        sock.sendall(head + body)
        chunk = b"\0" * 65536
        sent = 0
        sock.settimeout(2)
        while sent < audio_bytes:
            sock.sendall(chunk[: audio_bytes - sent])
            sent += min(len(chunk), audio_bytes - sent)
    except OSError:  # refused mid-way (budget): the server answered and closed
        return None
    return sock


def legit_latencies(port: int, audio: bytes, n: int, talkgroup: int) -> list[float]:
    out = []
    for i in range(n):
        request = build_request(
            "127.0.0.1", port, BENCH_KEY, 11, talkgroup, int(time.time()), 1000 + i, audio
        )
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            data = b""
            while b"Call imported successfully." not in data:
                got = sock.recv(65536)
                if not got:
                    raise RuntimeError(f"upload failed: {data[:200]!r}")
                data += got
        out.append((time.perf_counter() - started) * 1000)
        talkgroup += 1
    return sorted(out)


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--audio-mb", type=float, default=1.0, help="audio each stalled client sends")
    parser.add_argument("--uploads", type=int, default=50, help="legitimate uploads timed before/during")
    args = parser.parse_args()

    audio = (
        Path(__file__).resolve().parents[1] / "tests" / "data" / "clips" / "speech_sdrtrunk.mp3"
    ).read_bytes()
    proc, port, work = spawn_server(None, {})
    try:
        legit_latencies(port, audio, 10, 1)  # warm-up
        before_lat = legit_latencies(port, audio, args.uploads, 100)
        time.sleep(0.5)
        rss_before = rss_mb(proc.pid)
        peak = [rss_before]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.05):
                peak.append(rss_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        held = []
        refused = 0
        for i in range(args.connections):
            sock = stall(port, f"127.0.{(i + 2) // 250}.{(i + 2) % 250 + 1}", int(args.audio_mb * 2**20))
            if sock is None:
                refused += 1
            else:
                held.append(sock)
        # Steady state: the server has read everything the stalled clients sent (the spool stops growing).
        spool = work / "data" / "audio" / ".incoming"
        last, stable_since = -1.0, time.monotonic()
        while time.monotonic() - stable_since < 1.0:
            now = du_mb(spool)
            if now != last:
                last, stable_since = now, time.monotonic()
            time.sleep(0.1)
        sampling.set()
        sampler.join()
        rss_during = rss_mb(proc.pid)
        disk_during = du_mb(spool)
        during_lat = legit_latencies(port, audio, args.uploads, 10_000)
        open_now = sum(1 for s in held if _still_open(s))
        for sock in held:
            sock.close()
        time.sleep(1.0)
        print(
            f"stalled no-key connections: {args.connections} x {args.audio_mb:g} MB audio, from distinct addresses"
        )
        print(f"  refused while sending (429/503 budget): {refused}; still open after 1 s: {open_now}")
        print(
            f"  server RSS: {rss_before:.1f} MB before -> {rss_during:.1f} MB with all stalled "
            f"(+{rss_during - rss_before:.1f} MB); peak while they were sending {max(peak):.1f} MB"
        )
        print(
            f"  spooled on disk during the stall: {disk_during:.1f} MB; after they closed: "
            f"{du_mb(work / 'data' / 'audio' / '.incoming'):.1f} MB"
        )
        for label, lat in (("before", before_lat), ("during", during_lat)):
            print(
                f"  legit uploads {label}: p50 {percentile(lat, 0.5):.1f} ms, p95 {percentile(lat, 0.95):.1f} ms, "
                f"max {lat[-1]:.1f} ms (n={len(lat)})"
            )
    finally:
        proc.terminate()
        proc.wait(15)
    return 0


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


if __name__ == "__main__":
    os.environ.setdefault("RDIO_LOOP", "uvloop")
    raise SystemExit(main())
