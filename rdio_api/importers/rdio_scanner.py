"""rdio-scanner's database: calls with their audio inside (BLOB), and its systems, talkgroups and
units with their labels. SQLite by path, or any database URL SQLAlchemy has a driver for
(``postgresql+psycopg://...`` ships with rdio-api; MySQL needs a driver such as PyMySQL).

Two schemas, told apart by their tables (facts from rdio-scanner's published schema):

- v6: ``rdioScannerCalls`` (``id``, ``audio``, ``audioName``, ``audioType``, ``dateTime``,
  ``frequencies``/``patches``/``sources`` as JSON text, ``frequency``, ``source``, ``system``,
  ``talkgroup`` as radio ids) and ``rdioScannerSystems`` (``id`` = system id, ``label``,
  ``talkgroups`` and ``units`` as JSON lists), with ``rdioScannerGroups``/``rdioScannerTags`` labels.
- v7: ``calls`` (``callId``, ``audio``, ``audioFilename``, ``audioMime``, ``systemId`` and
  ``talkgroupId`` pointing at its own rows, ``timestamp`` in epoch ms), ``callFrequencies``,
  ``callUnits`` and ``callPatches`` per call, ``systems.systemRef`` / ``talkgroups.talkgroupRef`` /
  ``units.unitRef`` holding the radio ids, ``tags`` and ``groups`` (via ``talkgroupGroups``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, inspect, text

from rdio_api.call_fields import CallData, from_rdio_fields
from rdio_api.importers.run import SourceCall
from rdio_api.importers.times import epoch_text

PAGE = 200  # calls (with their audio) read per query
Version = Literal["v6", "v7"]


def engine_for(db: str) -> Engine:
    """A read-only SQLite engine for a path, else an engine for the URL as given."""
    if "://" not in db:
        path = Path(db)
        if not path.is_file():
            raise ValueError(f"no rdio-scanner database at {path}")
        return create_engine(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true")
    return create_engine(db)


def detect(engine: Engine) -> Version:
    tables = set(inspect(engine).get_table_names())
    if "rdioScannerCalls" in tables:
        return "v6"
    if "calls" in tables and "callUnits" in tables:
        return "v7"
    raise ValueError(f"no rdio-scanner calls table (rdioScannerCalls or calls) in {engine.url!r}")


def count(engine: Engine, version: Version) -> int:
    table = "rdioScannerCalls" if version == "v6" else "calls"
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {_q(conn, table)}")).scalar_one())


def rows(engine: Engine, version: Version, naive_zone: tzinfo) -> Iterator[SourceCall]:
    with engine.connect() as conn:
        yield from (_v6 if version == "v6" else _v7)(conn, naive_zone)


def _q(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


def _cols(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(table)}


def _json(value: Any) -> Any:
    if value is None or isinstance(value, list | dict):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return None


@dataclass
class _Talkgroup:
    label: str | None = None
    name: str | None = None
    tag: str | None = None
    group: str | None = None


def _source_call(
    ref: str, fields: dict[str, Any], audio: bytes | None, naive_zone: tzinfo, when: Any
) -> SourceCall:
    def make_call() -> CallData:
        as_text = {
            k: (json.dumps(v) if isinstance(v, list) else str(v)) for k, v in fields.items() if v is not None
        }
        as_text["dateTime"] = epoch_text(when, naive_zone) or ""
        return from_rdio_fields(as_text)

    return SourceCall(
        ref=ref, make_call=make_call, audio=bytes(audio) if audio else None, client_kind="rdio-scanner"
    )


# -- v6 -------------------------------------------------------------------------------------------


def _v6(conn: Connection, naive_zone: tzinfo) -> Iterator[SourceCall]:
    tables = set(inspect(conn).get_table_names())

    def labels(table: str) -> dict[Any, str]:
        if table not in tables:
            return {}
        return {
            r[0]: r[1] for r in conn.execute(text(f"SELECT {_q(conn, '_id')}, label FROM {_q(conn, table)}"))
        }

    groups, tags = labels("rdioScannerGroups"), labels("rdioScannerTags")
    systems: dict[Any, str | None] = {}
    talkgroups: dict[tuple[Any, Any], _Talkgroup] = {}
    unit_labels: dict[tuple[Any, Any], str] = {}
    if "rdioScannerSystems" in tables:
        for sys_row in conn.execute(text(f"SELECT * FROM {_q(conn, 'rdioScannerSystems')}")).mappings():
            system = sys_row.get("id")
            if not isinstance(system, int):
                continue
            systems[system] = sys_row.get("label")
            for tg in _json(sys_row.get("talkgroups")) or []:
                if isinstance(tg, dict) and isinstance(tg.get("id"), int):
                    talkgroups[(system, tg["id"])] = _Talkgroup(
                        tg.get("label"),
                        tg.get("name"),
                        tags.get(tg.get("tagId")) or tg.get("tag"),
                        groups.get(tg.get("groupId")) or tg.get("group"),
                    )
            for unit in _json(sys_row.get("units")) or []:
                if isinstance(unit, dict) and isinstance(unit.get("id"), int) and unit.get("label"):
                    unit_labels[(system, unit["id"])] = str(unit["label"])
    has_patches = "patches" in _cols(conn, "rdioScannerCalls")
    table, last = _q(conn, "rdioScannerCalls"), -1
    while True:
        page = (
            conn.execute(
                text(f"SELECT * FROM {table} WHERE id > :last ORDER BY id LIMIT {PAGE}"), {"last": last}
            )
            .mappings()
            .all()
        )
        if not page:
            return
        for row in page:
            last = row["id"]
            system, talkgroup = row.get("system"), row.get("talkgroup")
            tg = talkgroups.get((system, talkgroup), _Talkgroup())
            sources = _json(row.get("sources"))
            if isinstance(sources, list):
                for entry in sources:
                    if isinstance(entry, dict) and "tag" not in entry:
                        label = unit_labels.get((system, entry.get("src")))
                        if label:
                            entry["tag"] = label
            fields = {
                "system": system,
                "systemLabel": systems.get(system),
                "talkgroup": talkgroup,
                "talkgroupLabel": tg.label,
                "talkgroupName": tg.name,
                "talkgroupTag": tg.tag,
                "talkgroupGroup": tg.group,
                "frequency": row.get("frequency"),
                "frequencies": _json(row.get("frequencies")),
                "patches": _json(row.get("patches")) if has_patches else None,
                "source": row.get("source"),
                "sources": sources,
                "talkerAlias": unit_labels.get((system, row.get("source"))),
                "audioName": row.get("audioName"),
                "audioType": row.get("audioType"),
            }
            yield _source_call(
                f"rdioScannerCalls id {last}", fields, row.get("audio"), naive_zone, row.get("dateTime")
            )


# -- v7 -------------------------------------------------------------------------------------------


def _v7(conn: Connection, naive_zone: tzinfo) -> Iterator[SourceCall]:
    q = lambda name: _q(conn, name)  # noqa: E731 - a short local alias for quoted identifiers
    systems = {
        r[0]: (r[1], r[2])
        for r in conn.execute(text(f"SELECT {q('systemId')}, {q('systemRef')}, label FROM {q('systems')}"))
    }
    tags = {r[0]: r[1] for r in conn.execute(text(f"SELECT {q('tagId')}, label FROM {q('tags')}"))}
    groups: dict[int, str] = {}
    for tg_id, label in conn.execute(
        text(
            f"SELECT tg.{q('talkgroupId')}, g.label FROM {q('talkgroupGroups')} tg "
            f"JOIN {q('groups')} g ON g.{q('groupId')} = tg.{q('groupId')} ORDER BY tg.{q('talkgroupGroupId')}"
        )
    ):
        groups.setdefault(tg_id, label)
    talkgroups: dict[int, tuple[int, _Talkgroup]] = {}
    for r in conn.execute(
        text(
            f"SELECT {q('talkgroupId')}, {q('talkgroupRef')}, label, name, {q('tagId')} FROM {q('talkgroups')}"
        )
    ):
        talkgroups[r[0]] = (r[1], _Talkgroup(r[2], r[3], tags.get(r[4]), groups.get(r[0])))
    unit_labels = {
        (r[0], r[1]): r[2]
        for r in conn.execute(text(f"SELECT {q('systemId')}, {q('unitRef')}, label FROM {q('units')}"))
    }
    last = -1
    while True:
        page = (
            conn.execute(
                text(
                    f"SELECT * FROM {q('calls')} WHERE {q('callId')} > :last ORDER BY {q('callId')} LIMIT {PAGE}"
                ),
                {"last": last},
            )
            .mappings()
            .all()
        )
        if not page:
            return
        ids = [r["callId"] for r in page]
        last = ids[-1]
        freqs, units, patches = _v7_children(conn, ids)
        for row in page:
            call_id = row["callId"]
            system_ref, system_label = systems.get(row["systemId"], (None, None))
            tg_ref, tg = talkgroups.get(row["talkgroupId"], (None, _Talkgroup()))
            sources = [
                {
                    "pos": offset,
                    "src": ref,
                    **(
                        {"tag": label}
                        if (label := unit_labels.get((row["systemId"], ref))) and label != str(ref)
                        else {}
                    ),
                }
                for offset, ref in units.get(call_id, [])
            ]
            frequencies = [
                {"freq": f, "pos": offset, "errorCount": errors, "spikeCount": spikes}
                for f, offset, errors, spikes in freqs.get(call_id, [])
            ]
            fields = {
                "system": system_ref,
                "systemLabel": system_label,
                "talkgroup": tg_ref,
                "talkgroupLabel": tg.label,
                "talkgroupName": tg.name,
                "talkgroupTag": tg.tag,
                "talkgroupGroup": tg.group,
                "frequency": frequencies[0]["freq"] if frequencies else None,
                "frequencies": frequencies or None,
                "patches": [talkgroups[p][0] for p in patches.get(call_id, []) if p in talkgroups] or None,
                "sources": sources or None,
                "audioName": row.get("audioFilename"),
                "audioType": row.get("audioMime"),
            }
            yield _source_call(
                f"calls callId {call_id}", fields, row.get("audio"), naive_zone, row.get("timestamp")
            )


def _v7_children(
    conn: Connection, ids: list[int]
) -> tuple[dict[int, list[tuple]], dict[int, list[tuple]], dict[int, list[int]]]:
    q = lambda name: _q(conn, name)  # noqa: E731
    params = {f"i{n}": v for n, v in enumerate(ids)}
    within = ", ".join(f":{k}" for k in params)
    freqs: dict[int, list[tuple]] = defaultdict(list)
    for r in conn.execute(
        text(
            f"SELECT {q('callId')}, frequency, {q('offset')}, errors, spikes FROM {q('callFrequencies')} "
            f"WHERE {q('callId')} IN ({within}) ORDER BY {q('callId')}, {q('offset')}"
        ),
        params,
    ):
        freqs[r[0]].append(tuple(r[1:]))
    units: dict[int, list[tuple]] = defaultdict(list)
    for r in conn.execute(
        text(
            f"SELECT {q('callId')}, {q('offset')}, {q('unitRef')} FROM {q('callUnits')} "
            f"WHERE {q('callId')} IN ({within}) ORDER BY {q('callId')}, {q('offset')}"
        ),
        params,
    ):
        units[r[0]].append((r[1], r[2]))
    patches: dict[int, list[int]] = defaultdict(list)
    for r in conn.execute(
        text(
            f"SELECT {q('callId')}, {q('talkgroupId')} FROM {q('callPatches')} WHERE {q('callId')} IN ({within})"
        ),
        params,
    ):
        patches[r[0]].append(r[1])
    return freqs, units, patches
