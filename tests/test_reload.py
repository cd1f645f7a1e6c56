"""Per-system/talkgroup transcription settings and live config reload (file change and SIGHUP)."""

from __future__ import annotations

import os
import signal
import time

import httpx
import yaml

from rdio_core.settings import TranscriptionSettings
from tests.conftest import UPLOAD_KEY, base_config
from tests.helpers import ServerProcess, clip, wait_for
from tests.test_upload import fresh_system, post, sdrtrunk_fields


def test_talkgroup_beats_system_beats_global():
    tx = TranscriptionSettings(
        model="tiny.en",
        initial_prompt="global",
        replacements=[{"find": "ten four", "replace": "10-4"}],
        talkgroups_exclude=[9],
        systems=[
            {
                "id": 1,
                "model": "small.en",
                "language": "en",
                "talkgroups": [
                    {"id": 100, "enabled": False},
                    {"id": 101, "initial_prompt": "tg 101", "replacements": []},
                    {"id": 9, "enabled": True},
                ],
            }
        ],
    )
    assert tx.resolve(1, 100).enabled is False and tx.resolve(1, 100).model == "small.en"
    tg101 = tx.resolve(1, 101)
    assert (tg101.initial_prompt, tg101.replacements, tg101.language) == ("tg 101", (), "en")
    other = tx.resolve(2, 100)
    assert (other.model, other.initial_prompt, other.replacements) == (
        "tiny.en",
        "global",
        (("ten four", "10-4"),),
    )
    assert tx.resolve(2, 9).enabled is False  # global exclude list
    assert tx.resolve(1, 9).enabled is True  # an explicit talkgroup setting wins over it


def job_status(srv, call_id: int) -> str:
    r = httpx.get(f"{srv.url}/api/calls/{call_id}/transcription", headers={"X-API-Key": "admin-key"})
    return r.json()["latest_job"]["status"]


def test_config_edits_apply_without_restart(tmp_path, database_url):
    system = fresh_system()
    # Transcription on, but a broker nobody listens on: jobs stay pending, which is all we look at.
    config = base_config(
        tmp_path / "data",
        database_url,
        broker_url="redis://127.0.0.1:9/0",
        transcription={"enabled": True, "min_audio_seconds": 0},
    )
    srv = ServerProcess(tmp_path, config).start()
    try:
        first = post(srv, sdrtrunk_fields(system, talkgroup=500), clip("speech_sdrtrunk.mp3"))
        assert job_status(srv, int(first.headers["x-call-id"])) in ("pending", "queued")
        assert post(srv, sdrtrunk_fields(system, key="new-key"), clip("speech.wav")).status_code == 401

        # Edit the file: a new key, and talkgroup 500 of this system no longer transcribed.
        config["api_keys"].append({"key": "new-key", "name": "added later", "scopes": ["upload"]})
        config["transcription"]["systems"] = [{"id": system, "talkgroups": [{"id": 500, "enabled": False}]}]
        srv.config_path.write_text(yaml.safe_dump(config))
        assert wait_for(
            lambda: (
                post(
                    srv,
                    sdrtrunk_fields(system, talkgroup=7, key="new-key", source=fresh_system()),
                    clip("speech.wav"),
                ).status_code
                == 200
            )
        )
        second = post(
            srv,
            sdrtrunk_fields(system, talkgroup=500, when=int(time.time()) + 60, source=2),
            clip("speech_sdrtrunk.mp3"),
        )
        assert job_status(srv, int(second.headers["x-call-id"])) == "skipped"

        # A broken edit is ignored: the running settings stay.
        srv.config_path.write_text("api_keys: [\n")
        # The watcher has read the broken file (its log line), so the next upload meets whatever
        # that read left: it must be the running settings.
        assert wait_for(lambda: "config reload ignored" in srv.log()), srv.log()[-2000:]
        assert (
            post(srv, sdrtrunk_fields(fresh_system(), key=UPLOAD_KEY), clip("speech.wav")).status_code == 200
        )
        assert "config reload ignored" in srv.log()

        # SIGHUP re-reads even when the mtime is unchanged.
        config["api_keys"] = [k for k in config["api_keys"] if k["key"] != "new-key"]
        srv.config_path.write_text(yaml.safe_dump(config))
        srv.proc.send_signal(signal.SIGHUP)
        assert wait_for(
            lambda: (
                post(srv, sdrtrunk_fields(fresh_system(), key="new-key"), clip("speech.wav")).status_code
                == 401
            )
        )
    finally:
        srv.stop()


def test_worker_reload_keeps_restart_only_keys(tmp_path, monkeypatch, caplog):
    """The worker follows the API's rule: per-call settings apply to the next call, while the
    broker and what the Celery worker fixed at start keep their running values, and a file that
    moves the database is refused. (Before, an edited ``database_url`` was applied live, under an
    engine built for the old one.)"""
    from rdio_tasks import context as worker_context

    path = tmp_path / "config.yaml"
    config = {
        "data_dir": str(tmp_path / "data"),
        "database_url": f"sqlite:///{tmp_path / 'first.db'}",
        "broker_url": "redis://127.0.0.1:9/0",
        "transcription": {"model": "tiny.en", "concurrency": 2, "radio": {"beam_size": 5}},
    }
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("RDIO_CONFIG", str(path))
    worker_context._build.cache_clear()
    try:
        ctx = worker_context.context()
        assert ctx.settings.transcription.model == "tiny.en"
        config["broker_url"] = "redis://127.0.0.1:10/0"
        config["transcription"] = {"model": "base.en", "concurrency": 8, "radio": {"beam_size": 2}}
        path.write_text(yaml.safe_dump(config))
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a visible mtime change
        ctx = worker_context.context()
        tx = ctx.settings.transcription
        assert (tx.model, tx.radio.beam_size) == ("base.en", 2)  # applied to the next call
        assert ctx.settings.broker_url == "redis://127.0.0.1:9/0" and tx.concurrency == 2
        assert "broker_url, transcription.concurrency" in caplog.text
        assert "take effect after a restart" in caplog.text

        # A file that moves the database is refused whole: the engine was built for the running one.
        config["database_url"] = f"sqlite:///{tmp_path / 'second.db'}"
        config["transcription"]["model"] = "small.en"
        path.write_text(yaml.safe_dump(config))
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 15 * 10**8))
        ctx = worker_context.context()
        assert ctx.settings.database_url.endswith("first.db")  # kept
        assert ctx.settings.transcription.model == "base.en"  # and nothing else applied
        assert "database_url changed" in caplog.text

        # A file that no longer validates is ignored: the running settings stay.
        path.write_text("transcription:\n  radio: {no_such_option: 1}\n")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
        assert worker_context.context().settings.transcription.model == "base.en"
        assert "transcription.radio.no_such_option" in caplog.text
    finally:
        worker_context.context().engine.dispose()
        worker_context._build.cache_clear()


def reload_count(srv) -> int:
    """Reloads the server has acted on so far, applied or refused."""
    text = srv.log()
    return text.count("config reloaded from") + text.count("config reload ignored")


def ready_config(srv) -> str | None:
    return httpx.get(f"{srv.url}/ready").json()["checks"].get("config")


def test_a_config_that_would_lock_everyone_out_is_refused(tmp_path, database_url):
    """Issue 25, item 1. Before: an empty file (an editor's truncate-then-write) was applied, every
    upload got 401, and the log called data_dir and database_url "changed"."""
    config = base_config(tmp_path / "data", database_url)
    srv = ServerProcess(tmp_path, config).start()
    system = fresh_system()

    def upload_status() -> int:
        return post(srv, sdrtrunk_fields(system, source=fresh_system()), clip("speech.wav")).status_code

    def write_and_wait(text: str, sighup: bool = False) -> None:
        seen = reload_count(srv)
        srv.config_path.write_text(text)
        if sighup:
            srv.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: reload_count(srv) > seen), srv.log()[-2000:]

    try:
        assert upload_status() == 200 and ready_config(srv) == "ok"
        moved = {**config, "data_dir": str(tmp_path / "elsewhere")}
        for text, why, sighup in (
            ("", "is empty", False),
            ("# being rewritten\n\n", "is empty", True),
            (yaml.safe_dump({**config, "api_keys": []}), "api_keys", False),
            (yaml.safe_dump({k: v for k, v in config.items() if k != "api_keys"}), "api_keys", True),
            (yaml.safe_dump(moved), "data_dir", False),
        ):
            write_and_wait(text, sighup)
            assert upload_status() == 200, (text, srv.log()[-2000:])
            shown = ready_config(srv)
            assert shown is not None and shown.startswith("reload ignored") and why in shown, shown
            assert httpx.get(f"{srv.url}/ready").status_code == 200  # the running settings still serve
        refusals = [line for line in srv.log().splitlines() if "config reload ignored" in line]
        assert len(refusals) == 5 and "write the file atomically" in refusals[0], refusals
        assert "take effect after a restart" not in srv.log()  # nothing was half-applied

        # A good file clears the error.
        config["api_keys"].append({"key": "later-key", "scopes": ["upload"]})
        write_and_wait(yaml.safe_dump(config))
        assert ready_config(srv) == "ok"
        assert post(srv, sdrtrunk_fields(system, key="later-key"), clip("speech.wav")).status_code == 200
    finally:
        srv.stop()


def test_an_empty_config_file_is_refused_at_start(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "config.yaml"
    path.write_text("# nothing here yet\n")
    proc = subprocess.run(
        [sys.executable, "-m", "rdio_api", "serve", "--config", str(path), "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is empty" in proc.stderr and not (tmp_path / "data").exists()
