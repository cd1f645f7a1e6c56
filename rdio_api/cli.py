"""``rdio-api`` command line: serve, db upgrade (and, with the worker side, up/sweep/flower)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rdio_api.logging_setup import configure
from rdio_core.settings import ConfigError, Settings, load_settings

Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn

    return register


@command("serve")
def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from rdio_api import server

    server.run(
        settings,
        args.host or settings.server.host,
        args.port if args.port is not None else settings.server.port,
    )
    return 0


@command("db")
def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from rdio_core import db

    engine = db.make_engine(settings.resolved_database_url)
    db.upgrade(engine)
    print(f"database at head: {engine.url.render_as_string()}")
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
    except Exception:
        sup.stop()
        raise
    return sup.wait()


@command("sweep")
def cmd_sweep(args: argparse.Namespace, settings: Settings) -> int:
    from rdio_core import db
    from rdio_core.alerts import publish as alert_publish
    from rdio_tasks.celery_app import app
    from rdio_tasks.dispatch import Dispatcher

    if not settings.broker_url:
        return _no_broker("sweep")
    engine = db.make_engine(settings.resolved_database_url)
    db.upgrade(engine)
    factory = db.make_session_factory(engine)
    dispatcher = Dispatcher(settings, factory, app)
    while True:
        print(
            json.dumps(
                {**dispatcher.sweep_once(), "alerts": alert_publish.sweep_once(factory, settings, app)}
            ),
            flush=True,
        )
        if args.once:
            return 0
        time.sleep(settings.transcription.sweep_interval_seconds)


@command("worker")
def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """A Celery worker on the given queues: ``gpu`` transcribes (loads Whisper), ``alerts`` sends
    alerts and analyses tones (loads no model)."""
    from rdio_tasks.celery_app import worker_argv

    if not settings.broker_url:
        return _no_broker("worker")
    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    unknown = set(queues) - {"gpu", "alerts"}
    if not queues or unknown:
        print(f"rdio-api worker: queues are gpu and/or alerts, not {args.queues!r}", file=sys.stderr)
        return 2
    extra = ["-c", str(args.concurrency)] if args.concurrency else []
    argv = worker_argv(args.name or f"rdio-{'-'.join(queues)}@%h", *extra, queues=queues)
    os.execv(sys.executable, [sys.executable, *argv])
    return 0  # not reached


@command("flower")
def cmd_flower(args: argparse.Namespace, settings: Settings) -> int:
    from rdio_tasks.flower_guard import flower_argv

    try:
        argv = flower_argv(settings, args.host, args.port, args.no_auth)
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
    parser = argparse.ArgumentParser(prog="rdio-api", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config file (default: $RDIO_CONFIG or ./config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the HTTP API (Hypercorn)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    up = sub.add_parser("up", parents=[common], help="run the whole system: Redis, API, worker, Flower")
    up.add_argument("--host")
    up.add_argument("--port", type=int)

    sweep = sub.add_parser("sweep", parents=[common], help="re-publish stuck transcription jobs and alerts")
    sweep.add_argument("--once", action="store_true", help="one sweep, print the result, exit")

    worker = sub.add_parser("worker", parents=[common], help="a Celery worker (gpu and/or alerts queue)")
    worker.add_argument("-Q", "--queues", default="gpu", help="comma-separated: gpu, alerts (default gpu)")
    worker.add_argument("-n", "--name", help="Celery node name (default rdio-<queues>@<host>)")
    worker.add_argument("-c", "--concurrency", type=int, help="threads (default transcription.concurrency)")

    flower = sub.add_parser("flower", parents=[common], help="Flower monitoring with basic auth")
    flower.add_argument("--host")
    flower.add_argument("--port", type=int)
    flower.add_argument("--no-auth", action="store_true", help="allow no credentials (loopback only)")

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
