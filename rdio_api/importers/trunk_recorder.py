"""trunk-recorder's capture tree: one audio file per call with a ``.json`` sidecar beside it.

Its layout (facts from its documentation): ``<captureDir>/<shortName>/<YYYY>/<M>/<D>/``
``<talkgroup>-<start_time>_<freq>[-call_<n>].{wav,m4a}`` plus the same name with ``.json``, holding
``talkgroup``, ``talkgroup_tag``, ``talkgroup_description``, ``talkgroup_group``, ``start_time``
(epoch seconds), ``freq``, ``emergency``, ``short_name``, ``srcList`` (each key-up: ``src``, ``pos``,
``tag``, ``emergency``) and ``freqList``. That JSON is what trunk-recorder uploads as ``meta``, so
it is read by the upload's own parser (``from_trunk_recorder``): the same call, units and
transmissions as if it had been uploaded. The sidecar names no numeric system id, so the command
takes one (``--system``) or one per short name (``--system-map``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from rdio_api.call_fields import CallData, from_trunk_recorder, strict_json
from rdio_api.importers.run import RowError, SourceCall

AUDIO_EXTENSIONS = (".m4a", ".wav", ".mp3", ".opus", ".ogg", ".flac", ".aac")
MAX_SIDECAR_BYTES = 4_000_000  # a 15-minute call's srcList is ~1 MB


class SystemIds:
    """``short_name`` -> system id, with an optional id for every other short name."""

    def __init__(self, default: int | None = None, by_name: dict[str, int] | None = None) -> None:
        self.default = default
        self.by_name = by_name or {}

    def lookup(self, short_name: object) -> int:
        if isinstance(short_name, str) and short_name in self.by_name:
            return self.by_name[short_name]
        if self.default is not None:
            return self.default
        raise RowError(
            "no system id",
            f"short_name {short_name!r} is not in --system-map and no --system was given",
        )


def audio_for(sidecar: Path) -> Path | None:
    for ext in AUDIO_EXTENSIONS:
        candidate = sidecar.with_suffix(ext)
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(sidecar: Path) -> dict[str, object]:
    try:
        if sidecar.stat().st_size > MAX_SIDECAR_BYTES:
            raise RowError("bad sidecar", f"larger than {MAX_SIDECAR_BYTES} bytes")
        loaded = strict_json(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RowError("bad sidecar", str(exc)) from None
    except ValueError as exc:
        raise RowError("bad sidecar", f"invalid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise RowError("bad sidecar", "not a JSON object")
    return loaded


def call_from_sidecar(sidecar: Path, systems: SystemIds) -> CallData:
    """The call a sidecar describes, parsed exactly as trunk-recorder's upload of it would be."""
    meta = read_sidecar(sidecar)
    system = systems.lookup(meta.get("short_name"))
    return from_trunk_recorder({"meta": json.dumps(meta), "system": str(system)})


def count(root: Path) -> int:
    return sum(1 for _ in _files(root))


def rows(root: Path, systems: SystemIds) -> Iterator[SourceCall]:
    """Every call under ``root``, in path order (a rerun walks the same order); an audio file with
    no sidecar is reported, not guessed at."""
    for path in _files(root):
        if path.suffix == ".json":
            sidecar = path

            def make_call(sidecar: Path = sidecar) -> CallData:
                return call_from_sidecar(sidecar, systems)

            audio = audio_for(sidecar)
            yield SourceCall(
                ref=str(sidecar),
                make_call=make_call,
                audio=audio if audio is not None else sidecar.with_suffix(".wav"),
                client_kind="trunk-recorder",
            )
        else:
            orphan = path

            def no_sidecar(orphan: Path = orphan) -> CallData:
                raise RowError("no .json sidecar", str(orphan))

            yield SourceCall(ref=str(orphan), make_call=no_sidecar, audio=None, client_kind="trunk-recorder")


def _files(root: Path) -> Iterator[Path]:
    """Sidecars, and audio files that have none (each call counted once)."""
    if not root.is_dir():
        raise ValueError(f"no trunk-recorder capture directory at {root}")
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".json" or (
            path.suffix.lower() in AUDIO_EXTENSIONS and not path.with_suffix(".json").exists()
        ):
            yield path
