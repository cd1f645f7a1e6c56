"""Shared fixtures: the database under test (SQLite, or PostgreSQL when RDIO_TEST_DATABASE_URL is
set) and a real rdio-api server process."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from rdio_core.db import make_engine
from tests.helpers import ServerProcess

if TYPE_CHECKING:
    from tests.stack import Stack

os.environ.setdefault("HF_HUB_OFFLINE", "1")

UPLOAD_KEY = "upload-key-123"
READ_KEY = "read-key-456"
SCOPED_KEY = "scoped-key-789"
IP_KEY = "ip-key-000"
DISABLED_KEY = "disabled-key"
RATE_KEY = "rate-key"
ADMIN_KEY = "admin-key"
MAX_UPLOAD = 300_000


def _pg_admin_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database for this test session."""
    with fresh_database(tmp_path_factory) as url:
        yield url


@contextmanager
def fresh_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new empty database: SQLite, or one on RDIO_TEST_DATABASE_URL's PostgreSQL, dropped after."""
    base = os.environ.get("RDIO_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'rdio.db'}"
        return
    admin = create_engine(_pg_admin_url(base), isolation_level="AUTOCOMMIT")
    name = f"rdio_test_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(_pg_admin_url(base)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def base_config(data_dir: Path, database_url: str, **extra) -> dict:
    config = {
        "data_dir": str(data_dir),
        "database_url": database_url,
        "log_level": "INFO",
        "upload": {"max_upload_bytes": MAX_UPLOAD, "dedup_window_seconds": 2},
        "transcription": {"enabled": False},
        "api_keys": [
            {"key": UPLOAD_KEY, "name": "county sdrtrunk", "scopes": ["upload"], "rate_limit_per_minute": 0},
            {"key": READ_KEY, "name": "reader", "scopes": ["read"]},
            {"key": ADMIN_KEY, "name": "admin", "scopes": ["admin"], "rate_limit_per_minute": 0},
            {
                "key": SCOPED_KEY,
                "name": "scoped",
                "scopes": ["upload", "read"],
                "systems": [{"id": 11, "talkgroups": "*"}, {"id": 12, "talkgroups": [100, 101]}],
            },
            {
                "key": IP_KEY,
                "name": "elsewhere",
                "scopes": ["upload", "read"],
                "allowed_ips": ["10.9.9.0/24"],
            },
            {"key": DISABLED_KEY, "name": "old", "scopes": ["upload", "read"], "disabled": True},
            {"key": RATE_KEY, "name": "slow", "scopes": ["upload"], "rate_limit_per_minute": 3},
        ],
    }
    config.update(extra)
    return config


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[ServerProcess]:
    """One real rdio-api (Hypercorn) for the upload and read tests."""
    work = tmp_path_factory.mktemp("server")
    proc = ServerProcess(work, base_config(work / "data", database_url)).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def db_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One real transcription stack (redis-server, Hypercorn, a Celery worker with tiny.en) for the
    worker modules that need nothing of their own: each boot costs a Whisper load and three
    processes. Its users take fresh system ids (``fresh_system``) and never stop its parts; modules
    that kill workers, stop Redis or need other settings start their own ``Stack``.

    ``lease_seconds=30``: a call on this 2-core machine under load can outlast the default 10 s
    lease, and a lapsed lease re-runs the job (a second history entry the backfill tests count).

    Its own database: it lives for the whole session, and its sweeper would otherwise take up other
    stacks' jobs (deferred, pending) from the session database and fail them, their audio being
    in another stack's data directory."""
    from tests.stack import Stack

    with fresh_database(tmp_path_factory) as url:
        stack = Stack(tmp_path_factory.mktemp("shared-stack"), url, lease_seconds=30).start()
        try:
            yield stack
        finally:
            stack.stop()


def pytest_configure(config: pytest.Config) -> None:
    """Files go to pytest-xdist workers in the order ``pytest_collection_modifyitems`` gives them.

    By default xdist's ``--dist loadfile`` hands files out by their number of tests (its
    ``--loadscope-reorder``), which undid that order: one-test modules of one to two minutes (a
    database outage, a killed worker) ran last while a core stood idle. On this 2-core machine the
    suite took 710 s in xdist's order and 539 s in this one."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules that start a transcription worker first, each module's tests in their own order:
    they hold the long tests (a Whisper model, a recovery that waits out a lease)."""
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("worker")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)
