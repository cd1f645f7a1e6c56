"""scripts/test-deps.sh: what `make test` runs first so a fresh machine passes it alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "test-deps.sh"


def _run(env: dict[str, str], *prefix: str, script: Path = SCRIPT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, "bash", str(script)], env=env, capture_output=True, text=True, timeout=60)


def test_make_test_and_ci_run_share_the_script():
    makefile = (REPO / "Makefile").read_text()
    test_target = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/test-deps.sh" in test_target
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci and "apt-get" not in ci.replace("# ", "")


def test_nothing_missing_is_a_no_op(tmp_path):
    if not (os.path.exists("/usr/bin/chromium") and shutil.which("promtool")):
        pytest.fail("run scripts/test-deps.sh (make test does) before the suite", pytrace=False)
    result = _run({**os.environ, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_not_root_stops_at_once_with_the_one_command(tmp_path):
    """A user who cannot apt-get gets the command, not an install attempt (nor a hang on sudo)."""
    if os.geteuid() != 0:
        env = {**os.environ, "RDIO_CHROMIUM": str(tmp_path / "no-chromium")}
        result = _run(env)
    else:  # CI runs as root: drop to nobody to see the other branch
        # nobody may not reach a clone under a 0700 folder (mktemp -d, /tmp/pytest-of-root): run a
        # copy from a folder it can read.
        readable = Path(tempfile.mkdtemp(prefix="rdio-test-deps-"))
        readable.chmod(0o755)
        script = readable / SCRIPT.name
        shutil.copy(SCRIPT, script)
        script.chmod(0o755)
        env = {"PATH": "/usr/bin:/bin", "RDIO_CHROMIUM": str(tmp_path / "no-chromium")}
        try:
            result = _run(env, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", script=script)
        finally:
            shutil.rmtree(readable)
    assert result.returncode == 1
    assert "chromium chromium-driver" in result.stderr
    assert "sudo sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium" in (
        result.stderr
    )
    assert "installing" not in result.stdout
