"""The ``rdio-api import`` arguments, apart from what runs them (:mod:`.command`).

Every ``rdio-api`` command builds the whole parser. Importing the importer with it pulled the
database layer, Alembic and the ingest path into each one: with the outbox package's eager imports,
0.5 s of CPU to the ``serve`` parent that only holds the socket (0.78 -> 0.27 s), paid again on
every restart, which re-executes that parent."""

from __future__ import annotations

import argparse
from typing import Any

#: Rows read, checked and stored together by default; the command's writer commits as many per
#: transaction, so one import batch fills one commit (``--batch``).
BATCH = 128


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``rdio-api import {sdrtrunk-rdio-api,rdio-scanner,trunk-recorder}``."""
    imp = sub.add_parser("import", parents=[common], help="bring calls in from another archive")
    kinds = imp.add_subparsers(dest="source", required=True)
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument(
        "--config", default=argparse.SUPPRESS, help="our YAML config (default: $RDIO_CONFIG or ./config.yaml)"
    )
    shared.add_argument("--dry-run", action="store_true", help="read and check everything, write nothing")
    shared.add_argument(
        "--transcribe", action="store_true", help="queue transcription at transcription.backfill_priority"
    )
    shared.add_argument("--alerts", action="store_true", help="let alert rules fire on imported calls")
    shared.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help=f"calls per transaction (default {BATCH}; 32 measured no better for live uploads' p99 on SQLite)",
    )
    shared.add_argument(
        "--naive-timezone",
        default="UTC",
        help="zone of times stored without one (default UTC), e.g. America/Chicago",
    )
    sdr = kinds.add_parser(
        "sdrtrunk-rdio-api", parents=[shared], help="its SQLite radio_calls, audio and keys"
    )
    sdr.add_argument("--from-config", help="its config.yaml: database, audio directory and API keys")
    sdr.add_argument("--db", help="its SQLite database (default: from --from-config)")
    sdr.add_argument("--audio-dir", help="its audio directory (default: from --from-config)")
    sdr.add_argument("--link", action="store_true", help="hard-link audio instead of copying (same disk)")
    sdr.add_argument("--no-keys", action="store_true", help="do not add its API keys to our config")
    rs = kinds.add_parser("rdio-scanner", parents=[shared], help="its database (v6 or v7), audio inside")
    rs.add_argument("--db", required=True, help="SQLite file, or a database URL (postgresql+psycopg://...)")
    tr = kinds.add_parser("trunk-recorder", parents=[shared], help="its capture tree (audio + .json)")
    tr.add_argument("dir", help="trunk-recorder's captureDir")
    tr.add_argument("--system", type=int, help="our system id for its calls (any short_name)")
    tr.add_argument(
        "--system-map", action="append", default=[], metavar="SHORT_NAME=ID", help="system id per short_name"
    )
    tr.add_argument("--link", action="store_true", help="hard-link audio instead of copying (same disk)")
