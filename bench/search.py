"""Search latency over a large synthetic archive, on SQLite and PostgreSQL.

Not a test: it measures. It loads ``--rows`` synthetic calls (radio-style transcripts with unit
numbers, addresses and ten-codes written every way, labels, unit ids) into a fresh database built
by the project's migrations, then times ``GET /api/search``'s handler (query, key restriction,
snippets, serialisation; no HTTP) for word, phrase, prefix, number and filtered queries.

    python bench/search.py --rows 1000000 --db sqlite
    python bench/search.py --rows 1000000 --db postgres --pg postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rdio_api.routes.search import search_calls
from rdio_core import db, search
from rdio_core.models import Call, System, Talkgroup, TranscriptionJob

UNITS = ["Engine", "Medic", "Ladder", "Truck", "Rescue", "Battalion", "Squad", "Unit", "Car", "Tower"]
STREETS = ["Main", "Oak", "Maple", "Elm", "Washington", "Lake", "Hill", "Park", "Pine", "Cedar", "River"]
EVENTS = [
    "respond to a structure fire at {addr}",
    "is on scene at {addr}, nothing showing",
    "en route to {addr} for a medical call",
    "requesting additional units at {addr}",
    "copy, {code}, clear of the scene",
    "traffic stop at {addr}, plate {plate}",
    "10-4, returning to quarters",
    "respond priority one to {addr} for a fall victim",
    "caller reports smoke from the roof at {addr}",
    "be advised {code} at {addr}",
]
CODES = ["10-4", "ten four", "10-50", "ten fifty", "10-23", "10-8", "ten eight", "10-97", "code 3", "10-33"]
NUMBER_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def address(rng: random.Random) -> str:
    n = rng.randint(10, 9999)
    street = rng.choice(STREETS)
    if n >= 1000 and rng.random() < 0.3:  # spoken the radio way
        return f"{n // 100}-{n % 100:02d} {street}"
    return f"{n} {street}"


def transcript(rng: random.Random) -> str:
    unit = f"{rng.choice(UNITS)} {rng.randint(1, 60) if rng.random() < 0.7 else rng.choice(NUMBER_WORDS)}"
    parts = [unit]
    for _ in range(rng.randint(1, 3)):
        parts.append(
            rng.choice(EVENTS).format(
                addr=address(rng), code=rng.choice(CODES), plate=secrets.token_hex(3).upper()
            )
        )
    return ". ".join(parts)


def load(url: str, rows: int, seed: int) -> float:
    engine = db.make_engine(url, pool_size=2)
    db.upgrade(engine)
    rng = random.Random(seed)
    started = time.perf_counter()
    base = datetime(2026, 1, 1)
    batch = 10_000
    with engine.begin() as conn:
        conn.execute(insert(System), [{"id": s, "label": f"County {s}"} for s in range(1, 6)])
        conn.execute(
            insert(Talkgroup),
            [
                {"system_id": s, "talkgroup": t, "label": f"TG {t} Dispatch"}
                for s in range(1, 6)
                for t in range(1, 51)
            ],
        )
    for first in range(0, rows, batch):
        n = min(batch, rows - first)
        calls, jobs, docs = [], [], []
        for i in range(first + 1, first + n + 1):
            system, talkgroup, source = rng.randint(1, 5), rng.randint(1, 50), rng.randint(1000, 1_999_999)
            when = base + timedelta(seconds=i * 3)
            calls.append(
                {
                    "id": i,
                    "system_id": system,
                    "talkgroup": talkgroup,
                    "date_time": when,
                    "source": source,
                    "talkgroup_label": f"TG {talkgroup} Dispatch",
                    "system_label": f"County {system}",
                    "audio_path": f"x/{i}.mp3",
                    "audio_sha256": "0" * 64,
                    "audio_bytes": 1000,
                    "audio_mime": "audio/mpeg",
                    "received_at": when,
                    "client_kind": "bench",
                }
            )
            words = transcript(rng)
            jobs.append(
                {
                    "call_id": i,
                    "status": "completed",
                    "attempts": 1,
                    "priority": 3,
                    "text": words,
                    "created_at": when,
                    "updated_at": when,
                    "finished_at": when,
                }
            )
            docs.append(
                (i, search.document_text(words, f"County {system}", f"TG {talkgroup} Dispatch", source))
            )
        with engine.begin() as conn:
            conn.execute(insert(Call), calls)
            conn.execute(insert(TranscriptionJob), jobs)
            search.index_calls(conn, docs)
        if first // batch % 20 == 0:
            print(f"  loaded {first + n:,} rows ({time.perf_counter() - started:.0f}s)", flush=True)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("INSERT INTO call_search(call_search) VALUES ('optimize')"))
            conn.execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


QUERIES = {
    "word (common)": [{"q": w} for w in ["respond", "scene", "smoke", "fire", "medical"]],
    "word (rare)": [{"q": w} for w in ["victim", "quarters", "roof", "plate", "advised"]],
    "phrase": [
        {"q": f'"{p}"'}
        for p in ["structure fire", "on scene", "nothing showing", "medical call", "fall victim"]
    ],
    "prefix": [{"q": p} for p in ["engin*", "resp*", "struct*", "med*", "addition*"]],
    "number": [{"q": p} for p in ["10-50", "ten fifty", "1437", "14-37", "medic 12"]],
    "filtered": [
        {"q": "fire", "system": 3},
        {"q": "smoke", "system": 2, "talkgroup": 17},
        {"q": "scene", "since": datetime(2026, 1, 15)},
        {"q": '"structure fire"', "system": 1, "talkgroup": 5},
        {"q": "10-4", "system": 4},
    ],
    "relevance": [{"q": w, "order": "relevance"} for w in ["respond", "smoke roof", "structure fire"]],
}


def measure(url: str, repeats: int) -> None:
    engine = db.make_engine(url, pool_size=2)
    factory = db.make_session_factory(engine)
    defaults = {
        "system": None,
        "talkgroup": None,
        "since": None,
        "until": None,
        "has_audio": None,
        "order": "newest",
        "cursor": None,
        "limit": 20,
        "key": None,
    }
    print(f"  {'query type':<16} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  results/page")
    for kind, params_list in QUERIES.items():
        timings, counts = [], []
        for _ in range(repeats):
            for params in params_list:
                with factory() as session:
                    started = time.perf_counter()
                    out = search_calls(**{**defaults, **params}, session=session)
                    timings.append((time.perf_counter() - started) * 1000)
                    counts.append(len(out.results))
        timings.sort()
        p50, p95 = (timings[min(len(timings) - 1, round(q * (len(timings) - 1)))] for q in (0.5, 0.95))
        print(f"  {kind:<16} {p50:8.1f} {p95:8.1f} {timings[-1]:8.1f}  {min(counts)}-{max(counts)}")
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.db == "sqlite":
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='rdio-search-')) / 'bench.db'}"
        admin = None
    else:
        base = make_url(args.pg).set(drivername="postgresql+psycopg")
        name = f"rdio_bench_{secrets.token_hex(3)}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = base.set(database=name).render_as_string(hide_password=False)
    try:
        print(f"{args.db}: loading {args.rows:,} synthetic calls")
        seconds = load(url, args.rows, args.seed)
        print(f"  loaded and indexed in {seconds:.0f}s ({args.rows / seconds:,.0f} calls/s)")
        measure(url, args.repeats)
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
