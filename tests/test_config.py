"""Configuration: YAML + env layering and one-line errors with exit code 2."""

from __future__ import annotations

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


def test_example_config_loads_and_documents_every_key():
    example = REPO / "config.example.yaml"
    settings = load_settings(example)
    assert settings.find_key("change-me").scopes == ["upload"]
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
