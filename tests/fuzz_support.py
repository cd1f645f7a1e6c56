"""Shared parts of the fuzz suite (tests/test_fuzz_api.py, tests/test_fuzz_upload.py).

Each fuzz module runs its own server with its own database and broker, so the thousands of rows and
odd values it leaves behind never reach the other tests' counts. Every request a fuzzer sends is
tallied (route, status) and the tally is written to ``fuzz-counts.json`` in the module's work dir
and printed at the end, so CI logs carry the figures the issue asks for: inputs tried, 5xx = 0.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from rdio_core.embedded_redis import EmbeddedRedis
from tests.conftest import ADMIN_KEY, UPLOAD_KEY, base_config
from tests.helpers import SDRTRUNK_BOUNDARY, ServerProcess, clip, sdrtrunk_body

# Scale every fuzz budget at once: RDIO_FUZZ_SCALE=10 for a long local hunt, the default for CI.
SCALE = float(os.environ.get("RDIO_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    return max(1, round(n * SCALE))


def fuzz_settings(max_examples: int) -> settings:
    """Bounded and reproducible: derandomize gives CI the same inputs on every run; no deadline
    (a real server on a 2-core machine shared with other tests has slow moments that are not bugs);
    no example database (it would replay stale failures after the fix, and CI has none anyway)."""
    return settings(
        max_examples=examples(max_examples),
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


@dataclass
class Tally:
    """Requests sent by a fuzzer, by route and status; 5xx kept with the request that caused them."""

    path: Path
    by_route: dict[str, Counter[int]] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)

    def record(self, route: str, status: int, request: str = "") -> None:
        self.by_route.setdefault(route, Counter())[status] += 1
        if status >= 500:
            self.server_errors.append(f"{route} -> {status}: {request[:600]}")

    def record_transport_error(self, route: str, error: str) -> None:
        """The connection died without a status line: a server that crashed or hung."""
        self.by_route.setdefault(route, Counter())[0] += 1
        self.transport_errors.append(f"{route}: {error[:600]}")

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.by_route.values())

    @property
    def count_5xx(self) -> int:
        return sum(n for c in self.by_route.values() for status, n in c.items() if status >= 500)

    def summary(self) -> str:
        lines = [f"fuzz: {self.total} inputs tried, {self.count_5xx} answered 5xx"]
        for route, counts in sorted(self.by_route.items()):
            spread = ", ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
            lines.append(f"  {route}: {sum(counts.values())} ({spread})")
        return "\n".join(lines)

    def write(self) -> None:
        self.path.write_text(
            json.dumps(
                {
                    "inputs": self.total,
                    "server_errors": self.count_5xx,
                    "by_route": {r: {str(s): n for s, n in c.items()} for r, c in self.by_route.items()},
                    "server_error_samples": self.server_errors[:50],
                    "transport_errors": self.transport_errors[:50],
                },
                indent=1,
            )
        )


TRACEBACK = re.compile(r"^Traceback \(most recent call last\):\n(?:[ \t].*\n|\n)*\S.*$", re.MULTILINE)


def tracebacks(log: str) -> list[str]:
    """Distinct tracebacks in a server log, keyed on their last line (the exception)."""
    seen: dict[str, str] = {}
    for match in TRACEBACK.finditer(log):
        block = match.group(0)
        seen.setdefault(block.rsplit("\n", 1)[-1], block)
    return list(seen.values())


@contextmanager
def _own_database(work: Path) -> Iterator[str]:
    """SQLite in the work dir, or a throwaway PostgreSQL database when RDIO_TEST_DATABASE_URL is set
    (the 2^63 and year-limit failures differ between the two drivers)."""
    base = os.environ.get("RDIO_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{work / 'rdio.db'}"
        return
    url = make_url(base).set(drivername="postgresql+psycopg")
    admin = create_engine(url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    name = f"rdio_fuzz_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def fuzz_server(work: Path) -> Iterator[ServerProcess]:
    """A real server with transcription on (so the job routes answer) and a broker of its own (no
    worker consumes it: published jobs just wait). Fails the module if the server logged a
    traceback, since a 4xx that logs a traceback is a hidden 500."""
    redis = EmbeddedRedis(work / "redis", persist=False).start()
    try:
        with _own_database(work) as database_url:
            config = base_config(
                work / "data",
                database_url,
                broker_url=redis.url,
                transcription={"enabled": True, "sweep_interval_seconds": 3600},
            )
            server = ServerProcess(work / "server", config)
            try:
                server.start()
                yield server
            finally:
                server.stop()
    finally:
        redis.stop()


def seed_calls(server: ServerProcess, tally: Tally, count: int = 3) -> list[int]:
    """Upload a few real calls so the read routes have rows to find (ids the fuzzers will hit).
    A refused seed is tallied, not raised: the fuzz still runs and the final count shows it."""
    ids = []
    audio = clip("speech_sdrtrunk.mp3")
    for n in range(count):
        fields = [
            ("key", UPLOAD_KEY),
            ("system", "11"),
            ("talkgroup", str(100 + n)),
            ("dateTime", str(1_767_000_000 + n * 60)),
            ("source", "4242"),
            ("talkgroupLabel", f"seed {n}"),
        ]
        answer = httpx.post(
            f"{server.url}/api/call-upload",
            content=sdrtrunk_body(fields, audio),
            headers={"Content-Type": f"multipart/form-data; boundary={SDRTRUNK_BOUNDARY}"},
            timeout=30,
        )
        tally.record("seed POST /api/call-upload", answer.status_code, answer.text)
        if answer.status_code == 200:
            ids.append(int(answer.headers["x-call-id"]))
    return ids


def admin_headers() -> dict[str, str]:
    return {"X-API-Key": ADMIN_KEY}


# --- schemathesis hooks -------------------------------------------------------------------------
# Loaded only inside the schemathesis CLI that tests/test_fuzz_api.py starts (config `hooks =
# "tests.fuzz_support"` with RDIO_FUZZ_TALLY set): they give upload forms a key and real audio, and
# append one line per request sent ("METHOD path status") to the tally file the test reads.
UPLOAD_PATHS = ("/api/call-upload", "/api/trunk-recorder-call-upload")


def _register_schemathesis_hooks(tally_file: Path, form_key: str | None) -> None:
    import schemathesis

    audio = clip("speech_sdrtrunk.mp3")

    @schemathesis.hook
    def before_call(context, case, kwargs) -> None:  # type: ignore[no-untyped-def]
        """A key cannot be stated in a schema (a random one only ever reaches the 401) and the
        audio's format is sniffed from its bytes: upload forms get the pass's key and, for half of
        the generated audio parts (by length parity, so runs repeat), a real clip."""
        if case.path not in UPLOAD_PATHS or not isinstance(case.body, dict):
            return
        if form_key is not None and isinstance(case.body.get("key"), str):
            case.body["key"] = form_key
        part = case.body.get("audio")
        if isinstance(part, bytes | str) and len(part) % 2 == 0:
            case.body["audio"] = audio

    @schemathesis.hook
    def after_call(context, case, response) -> None:  # type: ignore[no-untyped-def]
        line = f"{case.method} {case.operation.path} {response.status_code}"
        if response.status_code >= 500:
            line += " " + json.dumps(case.as_curl_command())
        with tally_file.open("a") as out:
            out.write(line + "\n")


if os.environ.get("RDIO_FUZZ_TALLY"):
    _register_schemathesis_hooks(Path(os.environ["RDIO_FUZZ_TALLY"]), os.environ.get("RDIO_FUZZ_FORM_KEY"))
