"""``rdio-api models fetch`` (rdio_tasks.asr.fetch): offline, a model already here is reported and
checked, a missing one is a clear error at once (never a hang), and a damaged download is caught by
its hash."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from rdio_tasks.asr.fetch import check_snapshot
from rdio_tasks.errors import ModelNotFoundError


def _snapshot(root: Path, files: dict[str, bytes], damage: str | None = None) -> Path:
    """A Hugging Face cache snapshot: each file a link to a blob named by the content's SHA-256."""
    blobs, snap = root / "blobs", root / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for name, data in files.items():
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data + (b"!" if name == damage else b""))
        (snap / name).symlink_to(blob)
    return snap


def test_a_snapshot_is_checked_file_by_file_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    files = {"model.bin": b"weights" * 1000, "tokenizer.json": b"{}"}
    good = _snapshot(tmp_path / "good", files)
    assert check_snapshot(good) == ["model.bin: sha256 ok", "tokenizer.json: sha256 ok"]
    bad = _snapshot(tmp_path / "bad", files, damage="model.bin")
    with pytest.raises(ModelNotFoundError, match=r"model\.bin .* is damaged"):
        check_snapshot(bad)


def test_fetch_offline_reports_what_is_here_and_refuses_what_is_not(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    done = subprocess.run(
        [sys.executable, "-m", "rdio_api", "models", "fetch", "tiny.en", "small", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,  # offline, a missing model must fail at once, not wait on the network
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 1, done.stderr
    assert "tiny.en: local at " in done.stdout
    assert "small: Whisper model 'small' is not available offline" in done.stderr


def test_a_local_alignment_checkpoint_is_reported_with_its_hash(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import torchaudio

    from rdio_tasks.asr import compat
    from rdio_tasks.asr.fetch import fetch_alignment, sha256_of

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    checkpoint = tmp_path / compat.torchaudio_bundle_filename(torchaudio.pipelines.WAV2VEC2_ASR_BASE_960H)
    checkpoint.write_bytes(b"stand-in weights")
    done = fetch_alignment("en", tmp_path)
    assert (done.path, done.how) == (checkpoint, "local")
    assert done.checked == [f"{checkpoint.name}: sha256 {sha256_of(checkpoint)}"]
