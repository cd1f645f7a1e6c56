"""GET /api/health/transcription, the gauges on /metrics, and deploy/prometheus/alerts.yml.

A server of its own, on a database of its own, so every figure is known: each of the plan's
conditions (queue depth > 50, success rate < 90%, p95 processing > 5x audio, a worker silent for
5 minutes, disk under storage.min_free_bytes) is driven past its line and read back."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from datetime import timedelta

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, update

from rdio_core.db import make_session_factory
from rdio_core.models import JobStatus, TranscriptionJob, utcnow
from rdio_core.workers import Heartbeat, Identity, Worker
from tests.conftest import READ_KEY, base_config
from tests.helpers import REPO, ServerProcess, call_with_job

ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"


@pytest.fixture(scope="module")
def health_server(tmp_path_factory):
    work = tmp_path_factory.mktemp("health")
    url = f"sqlite:///{work / 'health.db'}"
    proc = ServerProcess(work, base_config(work / "data", url)).start()
    engine = create_engine(url)
    yield proc, make_session_factory(engine)
    proc.stop()
    engine.dispose()


def health(proc: ServerProcess) -> dict:
    r = httpx.get(f"{proc.url}/api/health/transcription", headers={"X-API-Key": READ_KEY}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def gauges(proc: ServerProcess) -> dict[str, float]:
    """Every sample on /metrics: ``name`` or ``name{label="value"}`` -> value."""
    text = httpx.get(f"{proc.url}/metrics", headers={"X-API-Key": READ_KEY}, timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def failing(report: dict) -> set[str]:
    return {name for name, check in report["checks"].items() if not check["ok"]}


def set_jobs(factory, ids: list[int], **values) -> None:
    with factory() as session:
        session.execute(update(TranscriptionJob).where(TranscriptionJob.id.in_(ids)).values(**values))
        session.commit()


def test_each_condition_is_measured_against_its_line(health_server):
    proc, factory = health_server
    report = health(proc)
    assert report["status"] == "healthy", report
    checks = report["checks"]
    assert checks["queue_depth"]["value"] == 0 and checks["queue_depth"]["threshold"] == 50
    assert checks["success_rate"]["value"] is None and checks["success_rate"]["threshold"] == 0.9
    assert checks["processing_ratio"]["value"] is None and checks["processing_ratio"]["threshold"] == 5
    assert checks["workers_offline"]["value"] == 0 and checks["workers_offline"]["threshold"] == 300
    assert checks["disk_free_bytes"]["value"] > 1e9 and checks["disk_free_bytes"]["threshold"] == 1e9

    # 51 jobs waiting: one over the plan's 50.
    ids = [call_with_job(factory, 7_000_000 + i, "health") for i in range(51)]
    report = health(proc)
    assert failing(report) == {"queue_depth"} and report["status"] == "degraded"
    assert report["checks"]["queue_depth"]["value"] == 51

    # They finish: 45 completed, 6 failed = 88.2% (under 90%); processing well under 5x audio.
    now = utcnow()
    set_jobs(factory, ids[:45], status=JobStatus.COMPLETED, finished_at=now, real_time_factor=0.2)
    set_jobs(factory, ids[45:], status=JobStatus.FAILED, finished_at=now, error="bad audio")
    report = health(proc)
    assert failing(report) == {"success_rate"}
    assert report["checks"]["success_rate"]["value"] == pytest.approx(45 / 51, abs=1e-4)
    assert report["checks"]["processing_ratio"]["value"] == pytest.approx(0.2)

    # Failures older than the window no longer count; three slow jobs make the p95 9x audio.
    set_jobs(factory, ids[45:], finished_at=now - timedelta(hours=2))
    set_jobs(factory, ids[:3], real_time_factor=9.0)
    report = health(proc)
    assert failing(report) == {"processing_ratio"}
    assert report["checks"]["success_rate"]["value"] == 1.0
    assert report["checks"]["processing_ratio"]["value"] == pytest.approx(9.0)
    set_jobs(factory, ids[:3], real_time_factor=0.3)

    # A worker silent for 10 minutes, never stopped: offline. One stopped cleanly is not.
    for name in ("gone@box:1", "retired@box:2"):
        Heartbeat(factory, Identity(name, ["gpu"], "tiny.en", "cpu"), lambda: 20, 5).beat()
    with factory() as session:
        session.execute(update(Worker).values(last_heartbeat_at=utcnow() - timedelta(minutes=10)))
        session.execute(update(Worker).where(Worker.name == "retired@box:2").values(stopped_at=utcnow()))
        session.commit()
    report = health(proc)
    assert failing(report) == {"workers_offline"}
    assert report["checks"]["workers_offline"]["value"] == 1
    assert "gone@box:1" in report["checks"]["workers_offline"]["detail"]
    assert "retired" not in report["checks"]["workers_offline"]["detail"]

    values = gauges(proc)
    assert values["rdio_transcription_backlog"] == 0
    assert values["rdio_transcription_success_ratio"] == 1.0
    assert values["rdio_transcription_processing_ratio_p95"] == pytest.approx(0.3)
    assert values["rdio_workers_offline"] == 1
    assert values['rdio_health_check_ok{check="workers_offline"}'] == 0
    assert values['rdio_health_check_ok{check="queue_depth"}'] == 1
    assert values["rdio_disk_free_bytes"] > 1e9
    assert values['rdio_worker_up{worker="gone@box:1"}'] == 0
    assert 'rdio_worker_up{worker="retired@box:2"}' not in values  # stopped: not exported

    # Less free disk than storage.min_free_bytes (raised past any real disk; reloaded live).
    config = yaml.safe_load(proc.config_path.read_text())
    config["storage"] = {"min_free_bytes": 10**18}
    proc.config_path.write_text(yaml.safe_dump(config))
    deadline = time.monotonic() + 15
    while "disk_free_bytes" not in failing(report) and time.monotonic() < deadline:
        time.sleep(0.3)
        report = health(proc)
    assert failing(report) == {"workers_offline", "disk_free_bytes"}, report
    assert gauges(proc)['rdio_health_check_ok{check="disk_free_bytes"}'] == 0


def test_health_needs_a_read_key_like_metrics(health_server):
    proc, _ = health_server
    assert httpx.get(f"{proc.url}/api/health/transcription", timeout=10).status_code == 401


def rule_exprs() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_use_only_metrics_the_api_exports(health_server):
    """Every series a rule reads is on /metrics of a running server (a renamed gauge would leave a
    rule that never fires), and every plan condition has a rule."""
    proc, _ = health_server
    exported = {name.split("{")[0] for name in gauges(proc)}
    used = {m for expr in rule_exprs() for m in re.findall(r"\brdio_[a-z0-9_]+", expr)}
    assert used and used <= exported, used - exported
    for needed in (
        "rdio_transcription_backlog",
        "rdio_transcription_success_ratio",
        "rdio_transcription_processing_ratio_p95",
        "rdio_workers_offline",
        "rdio_disk_free_bytes",
    ):
        assert needed in used


def test_alert_rules_pass_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip(
            "promtool not installed (scripts/test-deps.sh, run by make test, installs Debian's `prometheus` package)"
        )
    result = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout
