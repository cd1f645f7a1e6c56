"""What ``rdio-api import ...`` runs around an importer: our database and storage, the live path's
writer, the publishers that follow a stored call, a progress bar with rate and ETA, the summary.

Transcription jobs (``--transcribe``) are created with the calls at
``transcription.backfill_priority``, so live calls are served first, and published as the upload's
are; without a broker they stay pending for the server's sweeper. Tone analysis is handed to the
``tones`` queue a few hundred calls at a time, only while that queue is empty
(:class:`AnalysisFeeder`): an archive of 100k calls must not put live tone alerts behind 25 minutes
of old ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable
from datetime import tzinfo
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from rdio_api.importers.run import Options, SourceCall, Summary, run_import
from rdio_api.ingest import CallWriter
from rdio_core import db
from rdio_core.outbox import Broker, Message, Publisher, TaskRef
from rdio_core.pipeline import Pipeline
from rdio_core.settings import Settings, load_settings
from rdio_core.storage import AudioStore

log = logging.getLogger(__name__)

FEED_CHUNK = 200  # analyses published at once, only into an empty tones queue
#: After the last call is stored, how long the command waits for the tones queue to take the tone
#: analyses still held back; the rest are left to the server's sweeper (calls of the last hour).
ANALYSIS_WAIT_SECONDS = 30.0


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} calls/s" if speed else "- calls/s", style="progress.data.speed")


def naive_zone(name: str | None) -> tzinfo:
    from datetime import UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as America/Chicago)") from None


class AnalysisFeeder:
    """Publishes tone analysis of imported calls behind live traffic (see the module docstring),
    through a publisher of its own (rdio_core.outbox): only into an empty ``tones`` queue."""

    def __init__(self, broker: Broker) -> None:
        self.publisher = Publisher(TaskRef.ANALYZE, broker)
        self._held: list[Message] = []
        self._lock = threading.Lock()
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="analysis-feeder", daemon=True)
        self._thread.start()

    def publish_later(self, messages: list[Message]) -> None:
        with self._lock:
            self._held += messages

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._held)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            counts = self.publisher.broker_counts() if self.waiting else None
            if counts is None or counts.waiting != 0:
                continue
            with self._lock:
                chunk, self._held = self._held[:FEED_CHUNK], self._held[FEED_CHUNK:]
            sent = self.publisher.publish_all(chunk)
            self.published += sent
            if sent < len(chunk):
                with self._lock:
                    self._held[:0] = chunk[sent:]

    def close(self) -> int:
        """Stop; how many calls were left unpublished."""
        self._stop.set()
        self._thread.join(timeout=5)
        return self.waiting


def execute(
    settings: Settings,
    source: str,
    rows: Iterable[SourceCall],
    total: int | None,
    options: Options,
    *,
    wait_for_analysis: float = ANALYSIS_WAIT_SECONDS,
) -> Summary:
    """Run one import against our configured database and storage, with a progress bar on stderr."""
    engine = db.make_engine(settings.resolved_database_url)
    db.upgrade(engine)
    factory = db.make_session_factory(engine)
    store = AudioStore(settings.resolved_audio_dir)
    pipeline = feeder = None
    if not options.dry_run and settings.broker_url:
        from rdio_tasks.broker import connect

        broker = connect(settings.broker_url)  # a Celery app of its own, bound to this broker
        feeder = AnalysisFeeder(broker) if settings.tones.enabled else None
        # No sweepers here: the server's publish what this command leaves pending.
        pipeline = Pipeline(broker, factory, lambda: settings, analysis=feeder)
    writer = None if options.dry_run else CallWriter(factory, settings, pipeline, max_batch=options.batch)
    console = Console(stderr=True)
    columns = (
        TextColumn(f"[bold]{source}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("import", total=total)
            summary = run_import(
                settings, factory, writer, store, rows, options, lambda done: bar.update(task, completed=done)
            )
        if feeder is not None:
            deadline = time.monotonic() + wait_for_analysis
            while feeder.waiting and time.monotonic() < deadline:
                time.sleep(0.5)
    finally:
        if writer is not None:
            writer.close()
        if pipeline is not None:
            pipeline.stop()
        left = feeder.close() if feeder is not None else 0
        engine.dispose()
    report(summary, console)
    if feeder is not None:
        print(
            f"tone analysis: {feeder.published} calls sent to the {TaskRef.ANALYZE.queue} queue"
            + (f", {left} left for the server's sweeper" if left else ""),
            file=sys.stderr,
        )
    return summary


def report(summary: Summary, console: Console) -> None:
    """Each failure shown (up to run.SHOWN_FAILURES) with its row, then one JSON line on stdout."""
    for ref, why in summary.examples:
        console.print(f"[yellow]skipped[/] {ref}: {why}", highlight=False, markup=True)
    shown, failed = len(summary.examples), sum(summary.failed.values())
    if failed > shown:
        console.print(f"... and {failed - shown} more (counts by reason below)")
    verb = "would import" if summary.dry_run else "imported"
    console.print(
        f"{summary.seen} rows in {summary.seconds:.1f} s ({summary.rate:,.0f}/s): {verb} {summary.imported}, "
        f"duplicates {summary.duplicates}, failed {failed}"
        + (" (" + ", ".join(f"{n} {why}" for why, n in summary.failed.most_common()) + ")" if failed else ""),
        highlight=False,
    )
    print(json.dumps(summary.as_dict()), flush=True)


def redacted(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries as printed: a key's first 4 characters only."""
    return [{**e, "key": e["key"][:4] + "..."} for e in entries]


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        zone = naive_zone(args.naive_timezone)
        options = Options(
            source=args.source,
            dry_run=args.dry_run,
            transcribe=args.transcribe,
            alerts=args.alerts,
            link=getattr(args, "link", False),
            batch=max(1, args.batch),
        )
        if args.source == "sdrtrunk-rdio-api":
            return _sdrtrunk(args, settings, options, zone)
        if args.source == "rdio-scanner":
            return _rdio_scanner(args, settings, options, zone)
        return _trunk_recorder(args, settings, options)
    except ValueError as exc:
        print(f"rdio-api import {args.source}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: run the same command again to carry on (nothing is imported twice)", file=sys.stderr
        )
        return 130


def _sdrtrunk(args: argparse.Namespace, settings: Settings, options: Options, zone: tzinfo) -> int:
    from rdio_api.importers import keys
    from rdio_api.importers import sdrtrunk_rdio_api as sdr
    from rdio_core.settings import config_path

    if args.from_config:
        archive = sdr.read_config(Path(args.from_config))
    elif args.db:
        archive = sdr.Archive(Path(args.db), None, [])
    else:
        raise ValueError("give --from-config THEIR_CONFIG.yaml, or --db (and --audio-dir)")
    if args.db:
        archive.db = Path(args.db)
    if args.audio_dir:
        archive.audio_dir = Path(args.audio_dir)
    entries = sdr.key_entries(archive.keys)
    names = {k.key: e["name"] for k, e in zip(archive.keys, entries, strict=True)}
    names.update(
        {k.description: e["name"] for k, e in zip(archive.keys, entries, strict=True) if k.description}
    )
    if entries and not args.no_keys:
        ours = config_path(args.config) or Path("config.yaml")
        todo = keys.missing(ours, entries)
        if options.dry_run:
            print(
                f"would add {len(todo)} API key(s) to {ours}:\n{keys.snippet(redacted(todo))}",
                file=sys.stderr,
            )
        elif todo:
            try:
                added = keys.add_keys(ours, todo)
            except keys.KeysNotWritten as exc:
                print(str(exc), file=sys.stderr)
            else:
                print(
                    f"added {len(added)} API key(s) to {ours}: {', '.join(e['name'] for e in added)}",
                    file=sys.stderr,
                )
                settings = load_settings(ours)
    total = sdr.count(archive.db)
    execute(settings, options.source, sdr.rows(archive, zone, names), total, options)
    return 0


def _rdio_scanner(args: argparse.Namespace, settings: Settings, options: Options, zone: tzinfo) -> int:
    from rdio_api.importers import rdio_scanner as rs

    engine = rs.engine_for(args.db)
    try:
        version = rs.detect(engine)
        print(f"rdio-scanner {version} schema", file=sys.stderr)
        execute(settings, options.source, rs.rows(engine, version, zone), rs.count(engine, version), options)
    finally:
        engine.dispose()
    return 0


def _trunk_recorder(args: argparse.Namespace, settings: Settings, options: Options) -> int:
    from rdio_api.importers import trunk_recorder as trr

    by_name: dict[str, int] = {}
    for pair in args.system_map:
        name, _, value = pair.partition("=")
        if not name or not value.strip().isdigit():
            raise ValueError(f"--system-map {pair!r}: expected SHORT_NAME=ID")
        by_name[name] = int(value)
    root = Path(args.dir)
    systems = trr.SystemIds(args.system, by_name)
    execute(settings, options.source, trr.rows(root, systems), trr.count(root), options)
    return 0
