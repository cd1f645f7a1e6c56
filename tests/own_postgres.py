"""A PostgreSQL instance a test starts, stops and starts again: the database-outage tests need one
they own (never the machine's :5432). ``initdb`` refuses to run as root, and CI runs as root, so
the cluster is made and run as ``nobody`` in a temporary directory it owns."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.helpers import free_port


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return versions[-1] if versions else None


class OwnPostgres:
    def __init__(self) -> None:
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError(
                "initdb/pg_ctl not found: install Debian's postgresql package (make test does: scripts/test-deps.sh)"
            )
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="rdio-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "nobody")
            self._as_user = ["runuser", "-u", "nobody", "--"]

    def _run(self, *argv: str, timeout: float = 60) -> None:
        subprocess.run(
            [*self._as_user, *argv], check=True, capture_output=True, timeout=timeout, cwd=self.root
        )

    def init(self) -> OwnPostgres:
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nfsync = off\nmax_connections = 50\n"
            )
        return self.start()

    def start(self) -> OwnPostgres:
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as in a restart or failover."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        subprocess.run(
            [*self._as_user, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)
