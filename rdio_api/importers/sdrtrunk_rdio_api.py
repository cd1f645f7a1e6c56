"""sdrtrunk-rdio-api's archive: its SQLite ``radio_calls`` table, its audio files, its API keys.

What it holds (its models and example config, read as facts): one ``radio_calls`` row per upload
with ``call_timestamp``, ``system_id`` (text), ``system_label``, ``frequency``, ``talkgroup_id``
and its ``_label``/``_group``/``_tag``, ``source_radio_id``, ``talker_alias``, ``audio_filename``,
``audio_content_type``, ``audio_size_bytes``, ``audio_file_path`` (the stored file's full path),
``patches``/``frequencies``/``sources`` as comma-separated text, ``upload_ip`` and
``upload_api_key_id``. Its YAML config names the database (``database.path``), the audio directory
(``file_handling.storage.directory``) and the upload keys (``security.api_keys``: ``key``,
``description``, ``allowed_ips``, ``allowed_systems``; empty lists mean any).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

import yaml

from rdio_api.call_fields import CallData, from_rdio_fields
from rdio_api.importers.run import SourceCall
from rdio_api.importers.times import epoch_text

TABLE = "radio_calls"


@dataclass
class TheirKey:
    key: str
    description: str | None = None
    allowed_ips: list[str] = field(default_factory=list)
    allowed_systems: list[str] = field(default_factory=list)


@dataclass
class Archive:
    db: Path
    audio_dir: Path | None
    keys: list[TheirKey]


def read_config(path: Path) -> Archive:
    """Where its database and audio are, and its keys. Relative paths are tried against the current
    directory (it resolves them against its working directory), then the config's folder and the
    folder above it (its example lives in ``config/``)."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    database = _section(loaded, "database")
    storage = _section(_section(loaded, "file_handling"), "storage")
    db = _resolve(path, str(database.get("path") or "data/rdio_calls.db"))
    audio = storage.get("directory")
    keys = []
    for entry in _section(loaded, "security").get("api_keys") or []:
        if isinstance(entry, str):
            keys.append(TheirKey(entry))
        elif isinstance(entry, dict) and entry.get("key"):
            keys.append(
                TheirKey(
                    str(entry["key"]),
                    str(entry["description"]) if entry.get("description") else None,
                    [str(ip) for ip in entry.get("allowed_ips") or []],
                    [str(s) for s in entry.get("allowed_systems") or []],
                )
            )
    return Archive(db, _resolve(path, str(audio)) if audio else None, keys)


def _section(mapping: dict[str, Any], name: str) -> dict[str, Any]:
    value = mapping.get(name)
    return value if isinstance(value, dict) else {}


def _resolve(config: Path, value: str) -> Path:
    candidate = Path(value).expanduser()
    if candidate.is_absolute():
        return candidate
    for base in (Path.cwd(), config.resolve().parent, config.resolve().parent.parent):
        if (base / candidate).exists():
            return base / candidate
    return Path.cwd() / candidate


def key_entries(keys: list[TheirKey]) -> list[dict[str, Any]]:
    """Our ``api_keys`` entries for theirs: the same key string (SDRTrunk changes nothing), upload
    scope, the same address and system limits."""
    out = []
    for index, key in enumerate(keys, 1):
        entry: dict[str, Any] = {
            "key": key.key,
            "name": key.description or f"sdrtrunk-rdio-api key {index}",
            "scopes": ["upload"],
        }
        systems = [int(s) for s in key.allowed_systems if s.strip().isdigit()]
        if systems:
            entry["systems"] = [{"id": s} for s in systems]
        if key.allowed_ips:
            entry["allowed_ips"] = key.allowed_ips
        out.append(entry)
    return out


def count(db: Path) -> int:
    with _connect(db) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])


def _connect(db: Path) -> sqlite3.Connection:
    if not db.is_file():
        raise ValueError(f"no sdrtrunk-rdio-api database at {db}")
    # Read-only: the archive is never written, and its server may still be running on it.
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def rows(archive: Archive, naive_zone: tzinfo, key_names: dict[str, str]) -> Iterator[SourceCall]:
    """Every ``radio_calls`` row in id order, as a call to import."""
    conn = _connect(archive.db)
    try:
        columns = {r[1] for r in conn.execute(f"PRAGMA table_info({TABLE})")}
        if not columns:
            raise ValueError(f"{archive.db} has no {TABLE} table: not an sdrtrunk-rdio-api database")
        last = -1
        while True:
            page = conn.execute(
                f"SELECT * FROM {TABLE} WHERE id > ? ORDER BY id LIMIT 1000", (last,)
            ).fetchall()
            if not page:
                return
            for row in page:
                last = row["id"]
                yield _source_call(dict(row), archive.audio_dir, naive_zone, key_names)
    finally:
        conn.close()


def _source_call(
    row: dict[str, Any], audio_dir: Path | None, naive_zone: tzinfo, key_names: dict[str, str]
) -> SourceCall:
    def make_call() -> CallData:
        fields = {
            "dateTime": epoch_text(row.get("call_timestamp"), naive_zone),
            "system": row.get("system_id"),
            "systemLabel": row.get("system_label"),
            "frequency": row.get("frequency"),
            "talkgroup": row.get("talkgroup_id"),
            "talkgroupLabel": row.get("talkgroup_label"),
            "talkgroupGroup": row.get("talkgroup_group"),
            "talkgroupTag": row.get("talkgroup_tag"),
            "source": row.get("source_radio_id"),
            "talkerAlias": row.get("talker_alias"),
            "patches": row.get("patches"),
            "frequencies": row.get("frequencies"),
            "sources": row.get("sources"),
            "audioName": row.get("audio_filename"),
            "audioType": row.get("audio_content_type"),
        }
        return from_rdio_fields({k: str(v) for k, v in fields.items() if v is not None})

    their_key = row.get("upload_api_key_id")
    return SourceCall(
        ref=f"{TABLE} id {row.get('id')}",
        make_call=make_call,
        audio=_audio_path(row, audio_dir),
        client_kind="sdrtrunk",
        key_name=key_names.get(str(their_key), str(their_key)) if their_key else None,
        remote_addr=str(row["upload_ip"])[:64] if row.get("upload_ip") else None,
    )


def _audio_path(row: dict[str, Any], audio_dir: Path | None) -> Path | None:
    """The row's audio file: its stored path, else the same name under the audio directory (an
    archive moved to another disk keeps its layout below the directory, not its absolute path)."""
    stored = row.get("audio_file_path")
    if not stored:
        if audio_dir is not None and row.get("audio_filename"):
            return audio_dir / Path(str(row["audio_filename"])).name
        return None
    path = Path(str(stored))
    if path.exists() or audio_dir is None:
        return path
    candidates = [audio_dir / path] if not path.is_absolute() else []
    candidates += [audio_dir / Path(*path.parts[-k:]) for k in range(min(6, len(path.parts)), 0, -1)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return path  # reported as missing with the path the row names
