"""Uploads refused under faults: restarts, an upgrade, a database outage. One JSON line per fault.

Not a test: it measures what tests/test_spool.py and tests/test_restart.py assert. A steady stream
of distinct SDRTrunk-shaped uploads (tests.upload_stream, 20/s from 16 threads with keep-alive)
runs against a real server while each fault happens; every answer is counted, since SDRTrunk
never retries a refused upload. Printed per fault: uploads sent and refused, upload latency p50/p99
during the fault window, and for database outages the spool's drain time (from the first spooled
call to the spool empty, and the drain itself as /metrics reports it).

    python bench/faults.py                       # every fault
    python bench/faults.py --only pg_stop --outage 15
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import READ_KEY, UPLOAD_KEY, base_config  # noqa: E402
from tests.helpers import ServerProcess, wait_for  # noqa: E402
from tests.own_postgres import OwnPostgres  # noqa: E402
from tests.upload_stream import UploadStream  # noqa: E402

RATE = 20.0
wait = functools.partial(wait_for, timeout=120.0)  # a fault's phases take longer than a test's waits


def spool_empty(server: ServerProcess) -> bool:
    try:
        return httpx.get(f"{server.url}/ready", timeout=2).json()["checks"].get("spool") == "empty"
    except (httpx.HTTPError, ValueError):
        return False


def drain_metric(server: ServerProcess) -> float | None:
    text = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": READ_KEY}, timeout=10).text
    for line in text.splitlines():
        if line.startswith("rdio_spool_last_drain_seconds "):
            return round(float(line.split()[1]), 3)
    return None


def report(name: str, stream: UploadStream, window: tuple[float, float], **extra: object) -> None:
    since, until = window
    during = [a for a in stream.answers if since <= a.sent_at <= until]
    print(
        json.dumps(
            {
                "fault": name,
                "sent": len(stream.answers),
                "refused": len(stream.refused),
                "sent_during_fault": len(during),
                "p50_ms_during": round(stream.latency(0.5, since, until) * 1000, 1),
                "p99_ms_during": round(stream.latency(0.99, since, until) * 1000, 1),
                "p50_ms_all": round(stream.latency(0.5) * 1000, 1),
                "p99_ms_all": round(stream.latency(0.99) * 1000, 1),
                **extra,
                "refused_sample": [f"{a.status} {a.body[:60]}" for a in stream.refused[:2]],
            }
        ),
        flush=True,
    )


def _stream(server: ServerProcess, system: int) -> UploadStream:
    stream = UploadStream(lambda: server.url, UPLOAD_KEY, system=system, rate=RATE).start()
    wait(lambda: stream.accepted >= 20)
    return stream


def plain_restarts(work: Path, count: int) -> None:
    """SIGTERM and start again, as systemctl restart does with no socket held (the old way)."""
    config = base_config(work / "data", f"sqlite:///{work / 'rdio.db'}")
    server = ServerProcess(work, config).start()
    stream = _stream(server, 901)
    since = time.monotonic()
    for _ in range(count):
        server.stop()
        server.start()
        wait(lambda n=len(stream.answers): len(stream.answers) >= n + 40)
    until = time.monotonic()
    stream.stop()
    server.stop()
    report(f"plain restart x{count} (SIGTERM + start)", stream, (since, until))


def handoff_restarts(work: Path, count: int) -> None:
    config = base_config(work / "data", f"sqlite:///{work / 'rdio.db'}")
    server = ServerProcess(work, config).start()
    stream = _stream(server, 902)
    since = time.monotonic()
    took = []
    for _ in range(count):
        t = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "rdio_api", "restart", "--config", str(server.config_path)],
            capture_output=True,
            text=True,
        )
        took.append(round(time.monotonic() - t, 2))
        if done.returncode:
            print(done.stderr, file=sys.stderr)
        wait(lambda n=len(stream.answers): len(stream.answers) >= n + 40)
    until = time.monotonic()
    stream.stop()
    server.stop()
    report(f"rdio-api restart x{count}", stream, (since, until), restart_seconds=took)


def pg_stop(work: Path, outage: float, spool: bool) -> None:
    pg = OwnPostgres().init()
    try:
        config = base_config(work / "data", pg.url, spool={"enabled": spool})
        server = ServerProcess(work, config).start()
        stream = _stream(server, 903 if spool else 904)
        since = time.monotonic()
        pg.stop()
        time.sleep(outage)
        pg.start()
        until = time.monotonic()
        emptied = wait(lambda: spool_empty(server)) if spool else True
        drained_after = round(time.monotonic() - until, 2)
        time.sleep(2)
        stream.stop()
        extra = (
            {"spool_drained_s_after_db_back": drained_after, "drain_s": drain_metric(server)} if spool else {}
        )
        server.stop()
        report(
            f"PostgreSQL stopped {outage:g} s, spool {'on' if spool else 'off'}",
            stream,
            (since, until),
            **extra,
            drained=emptied,
        )
    finally:
        pg.destroy()


def sqlite_locked(work: Path, outage: float) -> None:
    path = work / "rdio.db"
    server = ServerProcess(work, base_config(work / "data", f"sqlite:///{path}")).start()
    stream = _stream(server, 905)
    since = time.monotonic()
    other = sqlite3.connect(path, timeout=30, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    time.sleep(outage)
    other.execute("COMMIT")
    other.close()
    until = time.monotonic()
    wait(lambda: spool_empty(server))
    drained_after = round(time.monotonic() - until, 2)
    time.sleep(2)
    stream.stop()
    drain = drain_metric(server)
    server.stop()
    report(
        f"SQLite locked {outage:g} s",
        stream,
        (since, until),
        spool_drained_s_after_unlock=drained_after,
        drain_s=drain,
    )


def sigkill_spooled(work: Path, outage: float) -> None:
    pg = OwnPostgres().init()
    try:
        config = base_config(work / "data", pg.url)
        server = ServerProcess(work, config).start()
        stream = _stream(server, 906)
        since = time.monotonic()
        pg.stop()
        time.sleep(outage)
        stream.stop()
        until = time.monotonic()
        assert server.proc is not None
        spooled = len(list((work / "data" / "spool").glob("*.json")))
        for proc in [*psutil.Process(server.proc.pid).children(), psutil.Process(server.proc.pid)]:
            proc.kill()
        server.proc.wait(10)
        pg.start()
        t = time.monotonic()
        again = ServerProcess(work, config).start()
        wait(lambda: spool_empty(again))
        drained = round(time.monotonic() - t, 2)
        import sqlalchemy as sa

        engine = sa.create_engine(pg.url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM calls WHERE system_id = 906")).scalar_one()
        engine.dispose()
        again.stop()
        report(
            f"SIGKILL with the database stopped {outage:g} s, then restart",
            stream,
            (since, until),
            spooled_at_kill=spooled,
            start_and_drain_s=drained,
            accepted=stream.accepted,
            rows=rows,
        )
    finally:
        pg.destroy()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--outage", type=float, default=15.0, help="seconds the database is away")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["plain", "handoff", "pg_stop", "pg_stop_nospool", "sqlite_locked", "sigkill"],
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    faults: dict[str, Callable[[Path], None]] = {
        "plain": lambda w: plain_restarts(w, args.restarts),
        "handoff": lambda w: handoff_restarts(w, args.restarts),
        "pg_stop_nospool": lambda w: pg_stop(w, args.outage, spool=False),
        "pg_stop": lambda w: pg_stop(w, args.outage, spool=True),
        "sqlite_locked": lambda w: sqlite_locked(w, args.outage),
        "sigkill": lambda w: sigkill_spooled(w, args.outage / 3),
    }
    for name, run in faults.items():
        if args.only and name not in args.only:
            continue
        run(Path(tempfile.mkdtemp(prefix=f"rdio-fault-{name}-")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
