"""Archives as the other servers write them, built from their documented schemas and file layouts
(sdrtrunk-rdio-api's ``radio_calls`` and config, rdio-scanner v6 and v7, trunk-recorder's capture
tree). Used by tests/test_importers.py and bench/import.py."""

from __future__ import annotations

import io
import json
import math
import sqlite3
import struct
import wave
from pathlib import Path
from typing import Any

import yaml


def wav(seed: int, seconds: float = 0.6, rate: int = 8000) -> bytes:
    """A short mono WAV whose samples differ per ``seed`` (so every call has its own sha256)."""
    frames = int(seconds * rate)
    freq = 300 + (seed % 2000)
    samples = (int(8000 * math.sin(2 * math.pi * freq * n / rate)) for n in range(frames))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(struct.pack(f"<{frames}h", *samples) + seed.to_bytes(8, "little"))
    return buf.getvalue()


# -- sdrtrunk-rdio-api ----------------------------------------------------------------------------

SDR_SCHEMA = """
CREATE TABLE radio_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at DATETIME NOT NULL,
    call_timestamp DATETIME NOT NULL,
    system_id VARCHAR(50) NOT NULL,
    system_label VARCHAR(255),
    frequency INTEGER,
    talkgroup_id INTEGER,
    talkgroup_label VARCHAR(255),
    talkgroup_group VARCHAR(255),
    talkgroup_tag VARCHAR(255),
    source_radio_id INTEGER,
    talker_alias VARCHAR(255),
    audio_filename VARCHAR(255),
    audio_content_type VARCHAR(100),
    audio_size_bytes INTEGER,
    audio_file_path VARCHAR(500),
    patches TEXT,
    frequencies TEXT,
    sources TEXT,
    upload_ip VARCHAR(45),
    upload_timestamp DATETIME NOT NULL,
    upload_api_key_id VARCHAR(100)
);
CREATE INDEX idx_system_talkgroup ON radio_calls (system_id, talkgroup_id);
"""


def sdrtrunk_archive(
    root: Path, rows: list[dict[str, Any]], keys: list[dict[str, Any]] | None = None
) -> Path:
    """Its layout: ``config/config.yaml``, ``data/rdio_calls.db``, ``data/audio/YYYY/MM/DD/<system>/``.
    Each row may carry ``audio`` (bytes written to its file) or ``audio_file_path`` as given."""
    (root / "config").mkdir(parents=True, exist_ok=True)
    audio_dir = root / "data" / "audio"
    db = root / "data" / "rdio_calls.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "database": {"path": str(db), "enable_wal": True},
        "security": {"api_keys": keys or []},
        "file_handling": {"storage": {"strategy": "filesystem", "directory": str(audio_dir)}},
    }
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    conn = sqlite3.connect(db)
    conn.executescript(SDR_SCHEMA)
    for n, row in enumerate(rows):
        row = dict(row)
        audio = row.pop("audio", None)
        if audio is not None and "audio_file_path" not in row:
            path = (
                audio_dir
                / "2024"
                / "05"
                / "01"
                / str(row.get("system_id"))
                / f"{n}_{row.get('talkgroup_id')}.mp3"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(audio)
            row["audio_file_path"] = str(path)
            row.setdefault("audio_size_bytes", len(audio))
        row.setdefault("created_at", "2024-05-01 12:00:00")
        row.setdefault("upload_timestamp", "2024-05-01 12:00:00")
        row.setdefault("audio_filename", f"call{n}.mp3")
        row.setdefault("audio_content_type", "audio/mpeg")
        cols = ", ".join(row)
        conn.execute(
            f"INSERT INTO radio_calls ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values())
        )
    conn.commit()
    conn.close()
    return root / "config" / "config.yaml"


def sdrtrunk_bulk(db: Path, audio_dir: Path, count: int, *, audio_bytes: int = 4000) -> None:
    """``count`` distinct rows (one system, 50 talkgroups, a call every 3 s): the benchmark's archive."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    conn.executescript(SDR_SCHEMA)
    rows = []
    for n in range(count):
        path = audio_dir / f"{n // 1000:04d}" / f"{n}.wav"
        if n % 1000 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wav(n, seconds=audio_bytes / 16000))
        rows.append(
            (
                "2024-01-01 00:00:00",
                f"{1704067200 + 3 * n}",
                "1",
                "County",
                851012500,
                100 + n % 50,
                f"TG {100 + n % 50}",
                1000 + n % 300,
                str(path),
                "2024-01-01 00:00:00",
            )
        )
    conn.executemany(
        "INSERT INTO radio_calls (created_at, call_timestamp, system_id, system_label, frequency, talkgroup_id,"
        " talkgroup_label, source_radio_id, audio_file_path, upload_timestamp) VALUES (?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.commit()
    conn.close()


# -- rdio-scanner ---------------------------------------------------------------------------------

V6_SCHEMA = """
CREATE TABLE rdioScannerCalls (id integer primary key autoincrement, audio longblob not null,
  audioName varchar(255), audioType varchar(255), dateTime datetime not null, frequencies text not null,
  frequency integer, patches text not null, source integer, sources text not null, system integer not null,
  talkgroup integer not null);
CREATE TABLE rdioScannerSystems (_id integer primary key autoincrement, autoPopulate tinyint(1) default 0,
  blacklists text not null, id integer not null unique, label varchar(255) not null, led varchar(255),
  "order" integer, talkgroups text not null, units text not null);
CREATE TABLE rdioScannerGroups (_id integer primary key autoincrement, label varchar(255) not null);
CREATE TABLE rdioScannerTags (_id integer primary key autoincrement, label varchar(255) not null);
"""

V7_SCHEMA = """
CREATE TABLE "groups" ("groupId" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "alert" text NOT NULL DEFAULT '',
  "label" text NOT NULL, "led" text NOT NULL DEFAULT '', "order" integer NOT NULL DEFAULT 0);
CREATE TABLE "tags" ("tagId" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "alert" text NOT NULL DEFAULT '',
  "label" text NOT NULL, "led" text NOT NULL DEFAULT '', "order" integer NOT NULL DEFAULT 0);
CREATE TABLE "systems" ("systemId" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "label" text NOT NULL,
  "order" integer NOT NULL DEFAULT 0, "systemRef" integer NOT NULL, "type" text NOT NULL DEFAULT '');
CREATE TABLE "talkgroups" ("talkgroupId" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "label" text NOT NULL,
  "name" text NOT NULL, "order" integer NOT NULL DEFAULT 0, "systemId" integer NOT NULL, "tagId" integer NOT NULL,
  "talkgroupRef" integer NOT NULL, "type" text NOT NULL DEFAULT '');
CREATE TABLE "talkgroupGroups" ("talkgroupGroupId" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
  "groupId" integer NOT NULL, "talkgroupId" integer NOT NULL);
CREATE TABLE "calls" ("callId" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "audio" blob NOT NULL,
  "audioFilename" text NOT NULL, "audioMime" text NOT NULL, "siteRef" integer NOT NULL DEFAULT 0,
  "systemId" integer NOT NULL, "talkgroupId" integer NOT NULL, "timestamp" integer NOT NULL);
CREATE TABLE "callFrequencies" ("callFrequencyId" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
  "callId" integer NOT NULL, "dbm" real NOT NULL DEFAULT 0, "errors" integer NOT NULL DEFAULT 0,
  "frequency" integer NOT NULL, "offset" real NOT NULL, "spikes" integer NOT NULL DEFAULT 0);
CREATE TABLE "callPatches" ("callPatchId" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "callId" integer NOT NULL,
  "talkgroupId" integer NOT NULL);
CREATE TABLE "callUnits" ("callUnitId" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "callId" integer NOT NULL,
  "offset" real NOT NULL, "unitRef" integer NOT NULL);
CREATE TABLE "units" ("unitId" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "label" text NOT NULL,
  "order" integer NOT NULL DEFAULT 0, "systemId" integer NOT NULL, "unitRef" integer NOT NULL DEFAULT 0,
  "unitFrom" integer NOT NULL DEFAULT 0, "unitTo" integer NOT NULL DEFAULT 0);
"""


def rdio_scanner_db(path: Path, schema: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.executescript(schema)
    return conn


# -- trunk-recorder -------------------------------------------------------------------------------


def tr_call(
    root: Path, short_name: str, meta: dict[str, Any], audio: bytes | None, ext: str = ".wav"
) -> Path:
    """One call where trunk-recorder puts it: ``<short>/<Y>/<M>/<D>/<tg>-<start>_<freq>.<ext>`` + .json."""
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(meta["start_time"], UTC)
    folder = root / short_name / str(when.year) / str(when.month) / str(when.day)
    folder.mkdir(parents=True, exist_ok=True)
    stem = (
        folder / f"{meta['talkgroup']}-{meta['start_time']}_{meta['freq']}.0-call_{meta.get('call_num', 1)}"
    )
    if audio is not None:
        stem.with_suffix(ext).write_bytes(audio)
    stem.with_suffix(".json").write_text(json.dumps(meta))
    return stem


def tr_meta(talkgroup: int, start: int, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "freq": 851012500,
        "start_time": start,
        "stop_time": start + 4,
        "emergency": 0,
        "priority": 4,
        "mode": 0,
        "duplex": 0,
        "encrypted": 0,
        "call_length": 4,
        "talkgroup": talkgroup,
        "talkgroup_tag": "Fire Dispatch",
        "talkgroup_description": "County Fire Dispatch",
        "talkgroup_group_tag": "Fire-Tac",
        "talkgroup_group": "Fire",
        "audio_type": "digital",
        "short_name": "county",
        "freqList": [
            {"freq": 851012500, "time": start, "pos": 0.0, "len": 4.0, "error_count": 0, "spike_count": 0}
        ],
        "srcList": [
            {"src": 1234, "time": start, "pos": 0.0, "emergency": 0, "signal_system": "", "tag": "Engine 7"},
            {"src": 5678, "time": start + 2, "pos": 2.1, "emergency": 1, "signal_system": "", "tag": ""},
        ],
    }
    meta.update(extra)
    return meta
