"""What stalled clients without a key cost the server: RSS, disk, and legitimate upload latency.

Not a test: it measures. It spawns its own rdio-api (defaults: 50 MB upload cap, 64 MiB per
address and 256 MiB in total before a key), then opens N connections, each from its own loopback
address (127.0.0.2, .3, ...), that declare a Content-Length of 50 MB, send a form with no ``key``
part and ``--audio-mb`` of audio, and stall. Meanwhile it times SDRTrunk-shaped uploads with a valid
key and compares them with the same uploads before the stall.

    python bench/stalled.py --connections 200 --audio-mb 1
    python bench/stalled.py --connections 10 --audio-mb 45      # the attack of issue 13

HTTP/2 (h2c, prior knowledge) modes, each against a fresh server unless --h2 names several, with
legitimate SDRTrunk-shaped uploads at 5/s meanwhile (issue 24):

    python bench/stalled.py --h2 continuation,settings,window-update,rapid-reset,uploads --seconds 22
"""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from pathlib import Path

import psutil
from h2_attacks import ATTACKS
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


def _one_attack(
    pid: int, port: int, name: str, seconds: float, attackers: int, audio: bytes, talkgroup: int
) -> None:
    before = rss_mb(pid)
    peak = [before]
    done = threading.Event()
    lat: list[float] = []
    failed = [0]

    def sample() -> None:
        while not done.wait(0.1):
            peak.append(rss_mb(pid))

    def legit(tg: int) -> None:
        # 5 uploads a second over HTTP/1.1, each timed; bounded by the attack's duration.
        while not done.is_set():
            tick = time.monotonic()
            try:
                lat.extend(legit_latencies(port, audio, 1, tg))
            except (OSError, RuntimeError):
                failed[0] += 1
            tg += 1
            done.wait(max(0.0, 0.2 - (time.monotonic() - tick)))

    outcomes = []
    attack = ATTACKS[name]

    def attacker(i: int) -> None:
        outcomes.append(attack(port, f"127.{list(ATTACKS).index(name) + 1}.1.{i + 2}", seconds))

    threads = [
        threading.Thread(target=sample, daemon=True),
        threading.Thread(target=legit, args=(talkgroup,), daemon=True),
    ]
    workers = [threading.Thread(target=attacker, args=(i,), daemon=True) for i in range(attackers)]
    for t in [*threads, *workers]:
        t.start()
    for t in workers:
        t.join(seconds + 30)
    done.set()
    for t in threads:
        t.join(15)
    time.sleep(3.0)
    after = rss_mb(pid)
    lat.sort()
    sent = sum(o.bytes_sent for o in outcomes) / 2**20
    conns = sum(o.connections for o in outcomes)
    closed = sum(o.closed_by_server for o in outcomes)
    p95 = percentile(lat, 0.95) if lat else float("nan")
    print(
        f"  {name:14s} RSS {before:.1f} -> peak {max(peak):.1f} -> after {after:.1f} MB "
        f"(+{after - before:.1f}); sent {sent:.1f} MB on {conns} conn(s), {closed} closed by the server; "
        f"legit p95 {p95:.0f} ms, ok {len(lat)}, failed {failed[0]}",
        flush=True,
    )


def h2_attacks(names: list[str], seconds: float, attackers: int, audio: bytes) -> None:
    """Run the named HTTP/2 attacks one after another against one fresh server and print RSS
    before, peak and after each (after: 3 s once the attackers have gone) and legit latency."""
    proc, port, _work = spawn_server(None, {})
    try:
        legit_latencies(port, audio, 10, 1)  # warm-up
        time.sleep(0.5)
        start = rss_mb(proc.pid)
        talkgroup = 20_000
        print(
            f"HTTP/2 attacks, {attackers} attacker(s) x {seconds:g} s each; server RSS at start {start:.1f} MB"
        )
        for name in names:
            _one_attack(proc.pid, port, name, seconds, attackers, audio, talkgroup)
            talkgroup += 1000
        print(f"  all attacks: RSS {start:.1f} -> {rss_mb(proc.pid):.1f} MB")
    finally:
        proc.terminate()
        proc.wait(15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--audio-mb", type=float, default=1.0, help="audio each stalled client sends")
    parser.add_argument("--uploads", type=int, default=50, help="legitimate uploads timed before/during")
    parser.add_argument("--h2", default=None, help=f"HTTP/2 attacks, comma-separated: {', '.join(ATTACKS)}")
    parser.add_argument("--seconds", type=float, default=22.0, help="each HTTP/2 attack's duration")
    parser.add_argument("--attackers", type=int, default=1, help="HTTP/2 attacking threads (addresses)")
    args = parser.parse_args()

    audio = (
        Path(__file__).resolve().parents[1] / "tests" / "data" / "clips" / "speech_sdrtrunk.mp3"
    ).read_bytes()
    if args.h2:
        h2_attacks(args.h2.split(","), args.seconds, args.attackers, audio)
        return 0
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
