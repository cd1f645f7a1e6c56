"""End-to-end benchmark: SDRTrunk-shaped uploads into a running system, timed until transcribed.

Not a test: it measures. ``--spawn`` starts the whole embedded system (``rdio-api up``) in a temp
directory; otherwise point ``--url``/``--key`` at a running one. Two modes:

- ``paced`` (default): one upload at a time, each timed from the upload to a completed transcript
  (what a listener waits for); prints p50/p95/max.
- ``burst``: all N uploads at once, then the time until every one is transcribed (throughput).
- ``alerts``: with two alert rules and a local webhook receiver, one upload at a time, each timed
  from the upload to the signed POST arriving: a talkgroup rule (fires at upload, must not wait
  for transcription) and a text rule on words of the corpus transcripts (bounded by the
  transcription, reported next to it).
- ``backfill``: ``--backfill`` calls (500) are stored on a talkgroup with transcription off, then
  re-transcribed by a backfill run (``transcription.backfill_priority``, 5); while it runs, live
  calls go up one at a time, each timed from the upload to its transcript. Prints the live p50/p95,
  how many backfill calls were transcribed meanwhile, and the load average.

    python bench/e2e.py --spawn --calls 20
    python bench/e2e.py --spawn --mode burst --calls 64
    python bench/e2e.py --spawn --mode alerts --calls 20
    python bench/e2e.py --spawn --mode backfill --backfill 500 --calls 20 \
        --set transcription.model='"tiny.en"'
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus"
BOUNDARY = "--sdrtrunk-sdrtrunk-sdrtrunk"


def corpus_clips(subsets: tuple[str, ...] = ("radio_mp3",)) -> list[Path]:
    rows = (CORPUS / "manifest.tsv").read_text().splitlines()[1:]
    return [CORPUS / r.split("\t")[0] for r in rows if r.split("\t")[1] in subsets]


def multipart(key: str, system: int, talkgroup: int, when: int, source: int, audio: bytes) -> bytes:
    out = bytearray()
    for name, value in (
        ("key", key),
        ("system", system),
        ("dateTime", when),
        ("talkgroup", talkgroup),
        ("source", source),
        ("talkgroupLabel", "Bench"),
    ):
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; filename="{when}.mp3"; name="audio"\r\n\r\n'.encode()
    return bytes(out + audio + f"\r\n--{BOUNDARY}--\r\n".encode())


def upload(
    client: httpx.Client, url: str, key: str, system: int, n: int, audio: bytes, talkgroup: int | None = None
) -> int:
    tg = talkgroup if talkgroup is not None else 100 + n % 7
    # In the past: the server takes a start time in the future for a wrong clock (the upload time)
    body = multipart(key, system, tg, int(time.time()) - n * 10, n + 1, audio)
    r = client.post(
        f"{url}/api/call-upload",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    r.raise_for_status()
    if "x-call-id" not in r.headers:
        raise RuntimeError(f"upload {n} not stored: {r.status_code} {r.text[:200]!r}")
    return int(r.headers["x-call-id"])


def status(client: httpx.Client, url: str, key: str, call_id: int) -> str | None:
    r = client.get(f"{url}/api/calls/{call_id}/transcription", headers={"X-API-Key": key})
    return r.json()["latest_job"]["status"] if r.status_code == 200 else None


class Completions:
    """Reads the event stream in a thread; records when each call's transcript ended."""

    def __init__(self, url: str, key: str) -> None:
        self.done: dict[int, tuple[float, str]] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(url, key), daemon=True)
        self._thread.start()

    def _run(self, url: str, key: str) -> None:
        last: str | None = None
        while not self._stop:
            headers = {"X-API-Key": key, **({"Last-Event-ID": last} if last else {})}
            try:
                with httpx.stream("GET", f"{url}/api/events", headers=headers, timeout=None) as r:
                    event = None
                    for line in r.iter_lines():
                        if line.startswith("id: "):
                            last = line[4:]
                        elif line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: ") and event == "transcript.updated":
                            data = json.loads(line[6:])
                            with self._cond:
                                self.done.setdefault(data["call_id"], (time.monotonic(), data["status"]))
                                self._cond.notify_all()
            except httpx.HTTPError:
                time.sleep(0.2)

    def wait(self, ids: list[int], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(i in self.done for i in ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        self._stop = True


_streams: dict[tuple[str, str], Completions] = {}


def wait_done(
    client: httpx.Client, url: str, key: str, call_ids: list[int], timeout: float
) -> dict[int, float]:
    """When each call's job ended, from the event stream (``transcript.updated``).

    Polling each call's status every 50 ms had cost the API 19 s of CPU in a 48-call burst, about
    a fifth of what the system used on 2 cores, so the benchmark slowed what it measured. A status
    sweep every 5 s still catches an event the stream missed (a call that ended before the
    stream connected)."""
    events = _streams.get((url, key)) or _streams.setdefault((url, key), Completions(url, key))
    done: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    swept = time.monotonic()
    while len(done) < len(call_ids) and time.monotonic() < deadline:
        events.wait(call_ids, min(1.0, max(0.0, deadline - time.monotonic())))
        sweep = time.monotonic() - swept >= 5
        for cid in call_ids:
            if cid in done:
                continue
            if cid in events.done:
                done[cid] = events.done[cid][0]
            elif sweep and status(client, url, key, cid) in ("completed", "failed", "skipped"):
                done[cid] = time.monotonic()
        swept = time.monotonic() if sweep else swept
    return done


TALKGROUP_RULE_TG = 900
TEXT_RULE_TG = 901
#: A word of each radio_mp3 clip's reference transcript that tiny.en gets right.
CORPUS_WORDS = ["country", "wizard", "curtain", "horizon", "distant", "zero", "greasy", "suit", "wash"]


class Receiver:
    """A local webhook receiver: the arrival time of each alert, by call id."""

    def __init__(self) -> None:
        self.arrived: dict[tuple[str, int], float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.monotonic()
                doc = json.loads(body)
                receiver.arrived.setdefault((doc["rule"], doc["call"]["id"]), now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, rule: str, call_id: int, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (rule, call_id) in self.arrived:
                return self.arrived[(rule, call_id)]
            time.sleep(0.005)
        return None


def alert_rules(receiver: Receiver) -> dict:
    action = [{"webhook": {"url": receiver.url, "secret": "bench-secret"}}]
    return {
        "rules": [
            {"name": "talkgroup", "talkgroups": [TALKGROUP_RULE_TG], "actions": action},
            {"name": "text", "talkgroups": [TEXT_RULE_TG], "words": CORPUS_WORDS, "actions": action},
        ]
    }


BACKFILL_TG = 950  # the backfill's talkgroup: stored with transcription off, then backfilled


def bench_backfill(
    client: httpx.Client, url: str, key: str, system: int, clips: list[bytes], calls: int, backlog: int
) -> dict:
    """Live calls' upload-to-transcript while a ``backlog``-call backfill runs."""
    base = 100_000
    for i in range(backlog):  # stored, job skipped (talkgroup off)
        upload(client, url, key, system, base + i, clips[i % len(clips)], talkgroup=BACKFILL_TG)
    r = client.post(
        f"{url}/api/transcription/backfill",
        headers={"X-API-Key": key},
        json={"system": system, "talkgroup": BACKFILL_TG},
    )
    r.raise_for_status()
    run = r.json()["id"]

    def progress() -> dict:
        got = client.get(f"{url}/api/transcription/backfill/{run}", headers={"X-API-Key": key})
        return got.json() if got.status_code == 200 else {}

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the backfill is queued and under way
        now = progress()
        if now.get("queuing_finished") and now.get("done", 0) >= 8:
            break
        time.sleep(0.5)
    done_before = progress().get("done", 0)
    started = time.monotonic()
    latencies: list[float] = []
    waited: list[float] = []  # job created -> a worker started it
    ran: list[float] = []  # started -> finished (the worker's own time)
    loads = []
    for i in range(calls):
        start = time.monotonic()
        cid = upload(client, url, key, system, i, clips[i % len(clips)])
        finished = wait_done(client, url, key, [cid], 300)
        latencies.append((finished[cid] - start) * 1000)
        loads.append(os.getloadavg()[0])
        job = client.get(f"{url}/api/calls/{cid}/transcription", headers={"X-API-Key": key}).json()
        times = {
            k: datetime.fromisoformat(job["latest_job"][k])
            for k in ("created_at", "started_at", "finished_at")
        }
        waited.append((times["started_at"] - times["created_at"]).total_seconds() * 1000)
        ran.append((times["finished_at"] - times["started_at"]).total_seconds() * 1000)
        time.sleep(0.5)  # live calls come and go; the backfill keeps the worker full meanwhile
    after = progress()
    spent = time.monotonic() - started
    return {
        "mode": "backfill",
        "backfill_calls": backlog,
        "live": percentiles(latencies),
        "live_waiting_for_a_worker": percentiles(waited),
        "live_on_the_worker": percentiles(ran),
        "backfill_done_during_live": after.get("done", 0) - done_before,
        "backfill_calls_per_s_during_live": round((after.get("done", 0) - done_before) / spent, 3),
        "backfill_left": backlog - after.get("done", 0),
        "load_avg_1m": {"min": round(min(loads), 2), "max": round(max(loads), 2)},
    }


def percentiles(values: list[float]) -> dict[str, int]:
    values = sorted(values)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values)),
        "p95_ms": round(values[int(0.95 * (len(values) - 1))]),
        "max_ms": round(values[-1]),
    }


def bench_alerts(
    client: httpx.Client,
    receiver: Receiver,
    url: str,
    key: str,
    system: int,
    clips: list[bytes],
    calls: int,
    timeout: float,
) -> dict:
    """Paced: per round one talkgroup-rule call, then one text-rule call (timed to its transcript
    too); the receiver stamps each POST's arrival."""
    tg_ms, text_ms, transcribed_ms = [], [], []
    for i in range(calls):
        start = time.monotonic()
        cid = upload(client, url, key, system, 20_000 + 2 * i, clips[i % len(clips)], TALKGROUP_RULE_TG)
        got = receiver.wait("talkgroup", cid, timeout)
        if got is not None:
            tg_ms.append((got - start) * 1000)
        start = time.monotonic()
        cid = upload(client, url, key, system, 20_001 + 2 * i, clips[i % len(clips)], TEXT_RULE_TG)
        finished = wait_done(client, url, key, [cid], timeout)
        got = receiver.wait("text", cid, 10)
        if cid in finished:
            transcribed_ms.append((finished[cid] - start) * 1000)
        if got is not None:
            text_ms.append((got - start) * 1000)
    return {
        "mode": "alerts",
        "talkgroup_rule_upload_to_alert": percentiles(tg_ms),
        "text_rule_upload_to_alert": percentiles(text_ms),
        "text_rule_upload_to_transcript": percentiles(transcribed_ms),
        "text_alerts_missed": calls - len(text_ms),
    }


def spawn(workdir: Path, extra: dict) -> tuple[subprocess.Popen, str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        flower = s.getsockname()[1]
    key = "bench-e2e"
    import yaml

    config = {
        "data_dir": str(workdir / "data"),
        "log_level": "WARNING",
        "flower": {"port": flower},
        "api_keys": [{"key": key, "name": "bench", "scopes": ["admin"], "rate_limit_per_minute": 0}],
        **extra,
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDIO_")}
    env.setdefault("HF_HUB_OFFLINE", "1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rdio_api",
            "up",
            "--config",
            str(workdir / "config.yaml"),
            "--port",
            str(port),
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "up.log", "wb"),  # noqa: SIM115 - the child owns it
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/transcription/queue/status", headers={"X-API-Key": key}).json()[
                "active_workers"
            ]:
                return proc, url, key
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    raise RuntimeError(f"system did not come up; see {workdir / 'up.log'}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url")
    parser.add_argument("--key")
    parser.add_argument("--spawn", action="store_true")
    parser.add_argument("--mode", choices=["paced", "burst", "alerts", "backfill"], default="paced")
    parser.add_argument("--backfill", type=int, default=500, help="backfill calls (--mode backfill)")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2, help="uploads before measuring (model warm-up)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="config override for --spawn, e.g. transcription.batch_size=1",
    )
    args = parser.parse_args()

    extra: dict = {}
    for item in args.set:
        dotted, _, raw = item.partition("=")
        node = extra
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = json.loads(raw)
    proc = None
    receiver = Receiver() if args.mode == "alerts" else None
    if receiver is not None:
        if not (args.spawn or not args.url):
            parser.error("--mode alerts needs --spawn (its rules point at this process's receiver)")
        extra["alerts"] = alert_rules(receiver)
    system = random.randint(10**6, 10**7)
    if args.mode == "backfill":
        tx = extra.setdefault("transcription", {})
        tx.setdefault("systems", []).append(
            {"id": system, "talkgroups": [{"id": BACKFILL_TG, "enabled": False}]}
        )
    if args.spawn or not args.url:
        proc, url, key = spawn(Path(tempfile.mkdtemp(prefix="rdio-e2e-")), extra)
    else:
        url, key = args.url.rstrip("/"), args.key
    _streams[(url, key)] = Completions(url, key)  # listening before the first upload
    clips = [p.read_bytes() for p in corpus_clips()]
    try:
        with httpx.Client(timeout=30) as client:
            for i in range(args.warmup):
                cid = upload(client, url, key, system, 10_000 + i, clips[i % len(clips)])
                wait_done(client, url, key, [cid], args.timeout)
            load_start = os.getloadavg()[0]  # the machine may be shared: report its load
            if args.mode == "backfill":
                result = bench_backfill(client, url, key, system, clips, args.calls, args.backfill)
            elif receiver is not None:
                result = bench_alerts(client, receiver, url, key, system, clips, args.calls, args.timeout)
                result["rules"] = f"talkgroup rule (tg {TALKGROUP_RULE_TG}), text rule (tg {TEXT_RULE_TG})"
            elif args.mode == "paced":
                latencies = []
                for i in range(args.calls):
                    start = time.monotonic()
                    cid = upload(client, url, key, system, i, clips[i % len(clips)])
                    finished = wait_done(client, url, key, [cid], args.timeout)
                    latencies.append((finished[cid] - start) * 1000)
                latencies.sort()
                result = {
                    "mode": "paced",
                    "calls": len(latencies),
                    "p50_ms": round(statistics.median(latencies)),
                    "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))]),
                    "max_ms": round(latencies[-1]),
                }
            else:
                start = time.monotonic()
                ids = [upload(client, url, key, system, i, clips[i % len(clips)]) for i in range(args.calls)]
                finished = wait_done(client, url, key, ids, args.timeout)
                wall = max(finished.values()) - start
                result = {
                    "mode": "burst",
                    "calls": len(ids),
                    "transcribed": len(finished),
                    "wall_s": round(wall, 2),
                    "calls_per_s": round(len(finished) / wall, 3),
                }
            result["overrides"] = extra
            result["load_avg_1m_start_end"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
            print(json.dumps(result), flush=True)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
