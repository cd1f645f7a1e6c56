"""``rdio-api`` command line: serve, db upgrade (and, with the worker side, up/sweep/flower)."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rdio_api.logging_setup import configure
from rdio_core.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from rdio_core import backfill

Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn

    return register


@command("serve")
def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """The server on a socket a parent holds (``--fd``), or that parent (rdio_api.handoff)."""
    host, port = args.host or settings.server.host, _port(args, settings)
    if args.fd is not None or args.no_handoff:
        from rdio_api import server

        server.run(settings, host, port, fd=args.fd, ready_fd=args.ready_fd)
        return 0
    from rdio_api import handoff

    child = [sys.executable, "-m", "rdio_api", "serve", "--host", host, "--port", str(port)]
    parent = [sys.executable, "-m", "rdio_api", *_without_resume(sys.argv[1:])]
    resume = handoff.Resume.decode(args.resume) if args.resume else None
    try:
        return handoff.serve_parent(
            child, host, port, settings.data_dir.resolve(), parent_argv=parent, resume=resume
        )
    except (OSError, RuntimeError) as exc:
        print(f"rdio-api serve: {exc}", file=sys.stderr)
        return 1


def _without_resume(argv: list[str]) -> list[str]:
    """This parent's own arguments without a previous ``--resume`` (re-executed on restart)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            out.append(arg)
    return out


@command("restart")
def cmd_restart(args: argparse.Namespace, settings: Settings) -> int:
    """Zero-downtime restart of the ``serve``/``up`` of this config with the code now installed."""
    from rdio_api import handoff

    code, message = handoff.request_restart(settings.data_dir.resolve(), args.timeout)
    print(f"rdio-api restart: {message}", file=sys.stderr if code else sys.stdout)
    return code


@command("db")
def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from rdio_core import db

    engine = db.make_engine(settings.resolved_database_url)
    db.upgrade(engine)
    print(f"database at head: {engine.url.render_as_string()}")
    return 0


@command("models")
def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    """``rdio-api models fetch [NAME ...]``: the Whisper models (default: the configured one) and
    the word-alignment model into models_dir, checked (rdio_tasks.asr.fetch)."""
    from rdio_tasks.asr import fetch
    from rdio_tasks.errors import ModelNotFoundError

    tx = settings.transcription
    models_dir = (tx.models_dir or settings.data_dir / "models").resolve()
    wanted: list[tuple[str, Callable[[], fetch.Fetched]]] = [
        (name, functools.partial(fetch.fetch_whisper, name, models_dir)) for name in args.names or [tx.model]
    ]
    wanted += [
        (f"alignment {lang}", functools.partial(fetch.fetch_alignment, lang, models_dir))
        for lang in args.align or []
    ]
    failed = 0
    for label, get in wanted:
        try:
            done = get()
        except (ModelNotFoundError, OSError) as exc:
            print(f"{label}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{label}: {done.how} at {done.path}")
        for line in done.checked:
            print(f"  {line}")
    return 1 if failed else 0


@command("init")
def cmd_init(args: argparse.Namespace, settings: Settings) -> int:
    """A first config.yaml: fresh keys, no samples (config.example.yaml documents the rest)."""
    from rdio_api.first_config import CONSOLE_KEY_NAME, UPLOAD_KEY_NAME, write_first_config

    path = Path(args.path)
    if not write_first_config(path):
        print(f"{path} exists; left as it is", file=sys.stderr)
        return 0
    print(
        f"created {path} with fresh API keys: '{UPLOAD_KEY_NAME}' (upload: give it to SDRTrunk) and "
        f"'{CONSOLE_KEY_NAME}' (read + admin: enter it in the console)"
    )
    return 0


@command("up")
def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from rdio_api.supervisor import Supervisor
    from rdio_core.settings import config_path

    path = config_path(args.config)
    sup = Supervisor(
        settings, args.host or settings.server.host, _port(args, settings), str(path) if path else None
    )
    try:
        sup.start()
    except BaseException:  # Ctrl-C while waiting for the worker stops everything too
        sup.stop()
        raise
    return sup.wait()


@command("sweep")
def cmd_sweep(args: argparse.Namespace, settings: Settings) -> int:
    from rdio_api.maintenance import run_retention
    from rdio_core import db
    from rdio_core.pipeline import Pipeline
    from rdio_core.storage import AudioStore
    from rdio_tasks.broker import connect

    if not settings.broker_url:
        return _no_broker("sweep")
    engine = db.make_engine(settings.resolved_database_url)
    db.upgrade(engine)
    factory = db.make_session_factory(engine)
    pipeline = Pipeline(connect(settings.broker_url), factory, lambda: settings)
    store = AudioStore(settings.resolved_audio_dir)
    next_retention = 0.0
    while True:
        if time.monotonic() >= next_retention:  # at start, then every storage interval
            run_retention(settings, factory, store)
            next_retention = time.monotonic() + settings.storage.orphan_sweep_interval_seconds
        print(json.dumps(pipeline.sweep_once()), flush=True)
        if args.once:
            return 0
        time.sleep(settings.transcription.sweep_interval_seconds)


@command("transcribe")
def cmd_transcribe(args: argparse.Namespace, settings: Settings) -> int:
    """Backfill: queue jobs for historical calls behind live ones, and follow them to the end."""
    from rdio_core import backfill, db
    from rdio_core.bounds import OutOfRange, naive_utc

    if not settings.transcription.enabled:
        print(
            "rdio-api transcribe: transcription is disabled (transcription.enabled: false)", file=sys.stderr
        )
        return 2
    try:
        since = naive_utc(datetime.fromisoformat(args.since)) if args.since else None
        until = naive_utc(datetime.fromisoformat(args.until)) if args.until else None
    except (ValueError, OutOfRange) as exc:
        print(
            f"rdio-api transcribe: --since/--until: {exc} (use ISO 8601, e.g. 2026-01-31T00:00)",
            file=sys.stderr,
        )
        return 2
    if since is not None and until is not None and until <= since:
        print("rdio-api transcribe: --until must be after --since", file=sys.stderr)
        return 2
    engine = db.make_engine(settings.resolved_database_url)
    db.upgrade(engine)
    factory = db.make_session_factory(engine)
    wanted = backfill.BackfillRequest(
        since, until, args.system, args.talkgroup, args.model, args.only_missing
    )
    run, resumed = backfill.open_run(factory, wanted, settings.transcription.backfill_priority, "cli")
    publish: backfill.Publish | None = None
    if settings.broker_url:
        from rdio_core.pipeline import Pipeline, job_message
        from rdio_tasks.broker import connect

        jobs_out = Pipeline(connect(settings.broker_url), factory, lambda: settings).jobs

        def publish(items: list[tuple[int, int]]) -> None:
            jobs_out.publish_all([job_message(job_id, priority) for job_id, priority in items])
    else:
        print(
            "no broker_url: the API's sweeper (or `rdio-api sweep`) publishes the jobs,"
            " transcription.backfill_slots at a time",
            file=sys.stderr,
        )
    print(f"backfill run {run.id}{' (resumed)' if resumed else ''}", file=sys.stderr)
    try:
        created = backfill.queue_run(factory, run.id, publish, slots=settings.transcription.backfill_limit())
        print(f"{created} new jobs queued at priority {run.priority}", file=sys.stderr)  # held or sent
        final = None if args.no_wait else _follow(factory, run.id)
    except KeyboardInterrupt:
        print(f"interrupted: run the same command to resume backfill run {run.id}", file=sys.stderr)
        return 130
    with factory() as session:
        final = final or backfill.progress(session, run.id)
    assert final is not None
    print(json.dumps({"run": run.id, "total": final.total, "done": final.done, **final.counts}), flush=True)
    return 0


def _follow(factory: sessionmaker[Session], run_id: int) -> backfill.Progress:
    """A progress bar over the run's jobs, polled from the database until every one ended."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rdio_core import backfill

    columns = (
        TextColumn("[bold]backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("", total=None)

        def show(p: backfill.Progress) -> None:
            under_way = ", ".join(f"{n} {s}" for s, n in sorted(p.counts.items()) if n)
            bar.update(task, total=p.total, completed=p.done, description=under_way)

        return backfill.wait(factory, run_id, show)


@command("import")
def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Bring calls in from sdrtrunk-rdio-api, rdio-scanner or trunk-recorder (rdio_api.importers)."""
    from rdio_api.importers import command as importers

    return importers.main(args, settings)


@command("worker")
def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """A Celery worker on the given queues (rdio_core.outbox.Queue): ``gpu`` transcribes (loads
    Whisper), ``tones`` analyses tones and ``alerts`` sends alerts (neither loads a model)."""
    from rdio_core.outbox import Queue
    from rdio_tasks.celery_app import worker_argv

    if not settings.broker_url:
        return _no_broker("worker")
    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    known = [q.value for q in Queue]
    if not queues or set(queues) - set(known):
        print(f"rdio-api worker: queues are among {', '.join(known)}, not {args.queues!r}", file=sys.stderr)
        return 2
    extra = ["-c", str(args.concurrency)] if args.concurrency else []
    argv = worker_argv(args.name or f"rdio-{'-'.join(queues)}@%h", *extra, queues=queues)
    os.execv(sys.executable, [sys.executable, *argv])
    return 0  # not reached


@command("flower")
def cmd_flower(args: argparse.Namespace, settings: Settings) -> int:
    from rdio_tasks.flower_guard import flower_argv, flower_options

    try:
        argv = flower_argv(settings, args.host, args.port, args.no_auth)
        # Flower reads FLOWER_BASIC_AUTH from the environment: off the command line, out of `ps`.
        os.environ.update(flower_options(settings, args.host, args.port, args.no_auth))
        if args.no_auth:
            os.environ["RDIO_FLOWER_NO_AUTH"] = "1"
    except ValueError as exc:
        print(f"rdio-api: {exc}", file=sys.stderr)
        return 2
    if not settings.broker_url:
        return _no_broker("flower")
    os.execv(sys.executable, [sys.executable, "-m", "celery", "-A", "rdio_tasks", *argv])
    return 0  # not reached


def _no_broker(name: str) -> int:
    """The broker is never guessed (a default would reach whatever Redis runs on localhost)."""
    from rdio_tasks.celery_app import NO_BROKER

    print(f"rdio-api {name}: {NO_BROKER}", file=sys.stderr)
    return 2


def _port(args: argparse.Namespace, settings: Settings) -> int:
    return args.port if args.port is not None else settings.server.port


def build_parser() -> argparse.ArgumentParser:
    from rdio_core.outbox.refs import Queue

    parser = argparse.ArgumentParser(prog="rdio-api", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config file (default: $RDIO_CONFIG or ./config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the HTTP API (Hypercorn)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-handoff", action="store_true", help="one process, no restart handle")
    serve.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # the parent's listening socket
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--resume", help=argparse.SUPPRESS)  # a re-executed parent (rdio_api.handoff)

    restart = sub.add_parser(
        "restart", parents=[common], help="restart the running serve/up of this config, refusing no upload"
    )
    restart.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the new server")

    init = sub.add_parser("init", parents=[common], help="write a first config.yaml with fresh keys")
    init.add_argument("path", nargs="?", default="config.yaml", help="where (default ./config.yaml)")

    up = sub.add_parser("up", parents=[common], help="run the whole system: Redis, API, worker, Flower")
    up.add_argument("--host")
    up.add_argument("--port", type=int)

    sweep = sub.add_parser("sweep", parents=[common], help="re-publish stuck transcription jobs and alerts")
    sweep.add_argument("--once", action="store_true", help="one sweep, print the result, exit")

    worker = sub.add_parser("worker", parents=[common], help="a Celery worker (gpu and/or alerts queue)")
    worker.add_argument(
        "-Q", "--queues", default=Queue.GPU.value, help="comma-separated: gpu, tones, alerts (default gpu)"
    )
    worker.add_argument("-n", "--name", help="Celery node name (default rdio-<queues>@<host>)")
    worker.add_argument("-c", "--concurrency", type=int, help="threads (default transcription.concurrency)")

    flower = sub.add_parser("flower", parents=[common], help="Flower monitoring with basic auth")
    flower.add_argument("--host")
    flower.add_argument("--port", type=int)
    flower.add_argument("--no-auth", action="store_true", help="allow no credentials (loopback only)")

    tr = sub.add_parser(
        "transcribe", parents=[common], help="backfill: (re)transcribe historical calls, with progress"
    )
    tr.add_argument("--since", help="calls at or after this time (ISO 8601; UTC unless an offset is given)")
    tr.add_argument("--until", help="calls before this time")
    tr.add_argument("--system", type=int)
    tr.add_argument("--talkgroup", type=int)
    tr.add_argument("--model", help="Whisper model for these jobs (default: the call's configured model)")
    tr.add_argument("--only-missing", action="store_true", help="only calls with no completed transcript")
    tr.add_argument("--no-wait", action="store_true", help="queue the jobs and exit (no progress bar)")

    from rdio_api.importers.arguments import add_parser as add_import

    add_import(sub, common)

    models = sub.add_parser(
        "models", parents=[common], help="fetch and check models for an offline worker (models_dir)"
    )
    models.add_argument("action", choices=["fetch"])
    models.add_argument("names", nargs="*", help="Whisper models (default: transcription.model)")
    models.add_argument(
        "--align",
        nargs="*",
        metavar="LANG",
        help="also the word-alignment model of these languages (e.g. en)",
    )
    dbp = sub.add_parser("db", parents=[common], help="database maintenance")
    dbp.add_argument("action", choices=["upgrade"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        # Children (worker, flower) and celeryconfig read the same file.
        os.environ["RDIO_CONFIG"] = str(Path(args.config).resolve())
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"rdio-api: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level)
    return COMMANDS[args.command](args, settings)
