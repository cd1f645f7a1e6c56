"""Configuration: YAML + env layering and one-line errors with exit code 2."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import yaml
from pydantic import BaseModel

from rdio_core.settings import ConfigError, Settings, load_settings
from tests.helpers import REPO


def run_cli(*args: str, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rdio_api", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_yaml_then_env_override(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data_dir: /srv/rdio\nupload:\n  max_upload_bytes: 1000\n"
        "api_keys:\n  - key: k1\n    scopes: [upload, read]\n    systems: [{id: 11, talkgroups: [1, 2]}]\n"
    )
    monkeypatch.setenv("RDIO_UPLOAD__MAX_UPLOAD_BYTES", "2000")
    s = load_settings(cfg)
    assert str(s.data_dir) == "/srv/rdio" and s.upload.max_upload_bytes == 2000
    key = s.find_key("k1")
    assert key is not None and key.allows(11, 2) and not key.allows(11, 3) and not key.allows(12, 1)
    assert s.resolved_database_url == "sqlite:////srv/rdio/rdio.db"


def test_rdio_config_env_and_postgres_url(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("database_url: postgresql://u@db/rdio\n")
    monkeypatch.setenv("RDIO_CONFIG", str(cfg))
    assert load_settings().resolved_database_url == "postgresql+psycopg://u@db/rdio"


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("api_keys:\n  - key: k\n    scopes: [write]\n", "api_keys.0.scopes.0"),
        ("upload:\n  max_upload_bytes: -5\n", "upload.max_upload_bytes"),
        ("no_such_key: 1\n", "no_such_key"),
        ("api_keys:\n  - key: k\n    allowed_ips: [not-an-ip]\n", "api_keys.0.allowed_ips"),
        ("tls:\n  cert: /x.pem\n", "tls"),
        ("upload: [\n", "invalid YAML"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path, yaml_text, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(cfg)
    proc = run_cli("db", "upgrade", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rdio-api: ") and "Traceback" not in proc.stderr


def test_missing_config_file(tmp_path):
    proc = run_cli("serve", "--config", str(tmp_path / "absent.yaml"), cwd=tmp_path)
    assert proc.returncode == 2 and "config file not found" in proc.stderr


def test_db_upgrade_command(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'd'}\n")
    proc = run_cli("db", "upgrade", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "d" / "rdio.db").is_file()


def _field_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for name, field in model.model_fields.items():
        paths.add(prefix + name)
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                paths |= _field_paths(candidate, f"{prefix}{name}.")
            for inner in getattr(candidate, "__args__", ()):  # list[ApiKey]
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    paths |= _field_paths(inner, f"{prefix}{name}.")
    return paths


def _yaml_paths(value, prefix: str = "") -> set[str]:
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            paths.add(prefix + key)
            paths |= _yaml_paths(inner, f"{prefix}{key}.")
    elif isinstance(value, list):
        for item in value:
            paths |= _yaml_paths(item, prefix)
    return paths


SAMPLES = "# samples below: uncomment and edit"


def _with_samples(text: str) -> str:
    """config.example.yaml with its commented samples switched on: each ``key: []  # samples below``
    line gives way to the commented block under it, uncommented."""
    out: list[str] = []
    sample_indent: str | None = None
    block = ""  # the commented key line, then its deeper lines
    for line in text.splitlines():
        if sample_indent is not None and line.startswith(sample_indent + block):
            out.append(sample_indent + line[len(sample_indent) + 2 :])
            block = "#  "
            continue
        sample_indent = None
        if line.rstrip().endswith(SAMPLES):
            sample_indent, block = line[: len(line) - len(line.lstrip())], "# "
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def test_example_config_samples_are_commented_out():
    """Copied as it is, the example transcribes every talkgroup with no prompt and fires no alert."""
    settings = load_settings(REPO / "config.example.yaml")
    assert settings.transcription.systems == [] and settings.transcription.replacements == []
    assert settings.transcription.resolve(1, 52198).enabled
    assert settings.alerts.rules == [] and settings.units.systems == [] and settings.tones.sets == []


def test_example_config_loads_and_documents_every_key(tmp_path):
    example = tmp_path / "config.yaml"
    example.write_text(_with_samples((REPO / "config.example.yaml").read_text()))
    settings = load_settings(example)
    assert settings.find_key("change-me").scopes == ["upload"]
    assert settings.transcription.resolve(1, 52198).enabled is False  # the samples are whole
    assert [r.name for r in settings.alerts.rules] == ["working fire"]
    documented = _yaml_paths(yaml.safe_load(example.read_text()))
    # Grants inside `systems` are documented in a comment (id, talkgroups); per-system replacement
    # lists have the same shape as the global one, documented once.
    expected = {
        p
        for p in _field_paths(Settings)
        if not p.startswith("api_keys.systems.")
        and not (p.startswith("transcription.systems.") and ".replacements." in p)
    }
    assert expected - documented == set()


def test_init_writes_a_neutral_first_config(tmp_path):
    """`make run`'s first config: two fresh keys (upload; read + admin for the console) and no
    sample that would change what a newcomer's calls get."""
    path = tmp_path / "config.yaml"
    run = [sys.executable, "-m", "rdio_api", "init", str(path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDIO_")}
    first = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "'sdrtrunk' (upload" in first.stdout and "'console' (read + admin" in first.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = load_settings(path)
    upload, console = settings.api_keys
    assert upload.scopes == ["upload"] and sorted(console.scopes) == ["admin", "read"]
    assert len({upload.key, console.key}) == 2 and not upload.key.startswith("change-me")
    assert settings.transcription.systems == [] and settings.alerts.rules == []
    assert settings.transcription.resolve(1, 52198).enabled
    assert len(path.read_text().splitlines()) < 40
    text = path.read_text()
    again = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "exists" in again.stderr and path.read_text() == text
