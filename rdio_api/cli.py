"""``rdio-api`` command line: serve, db upgrade (and, with the worker side, up/sweep/flower)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rdio-api", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config file (default: $RDIO_CONFIG or ./config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the HTTP API (Hypercorn)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    dbp = sub.add_parser("db", parents=[common], help="database maintenance")
    dbp.add_argument("action", choices=["upgrade"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"rdio-api: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level)
    return COMMANDS[args.command](args, settings)
