"""Full-text search over calls: the database's own index, kept in the transaction that changes a call.

One document per call: its transcript plus its labels (system, talkgroup, alias) and unit id, all
through ``text_normalize.normalize_words``, the same normaliser the WER benchmark uses. It spells
every number digit by digit, so "10-50", "10 50", "ten fifty" all index and query as ``1 0 5 0``
and "1437" / "14-37" as ``1 4 3 7``: a search for one form finds the others with no synonym table.

- SQLite: an FTS5 table ``call_search`` (rowid = call id); a trigger drops a call's row with it.
- PostgreSQL: ``call_search(call_id, body tsvector)`` with a GIN index, ``simple`` configuration
  (no stemming: radio words are not English prose; ``engin*`` covers stems).

Only the normalised text is indexed; highlighted snippets are cut from the original transcript in
Python (``snippet``), so they read the same on both databases.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, column, func, literal_column, select, table, text
from sqlalchemy.orm import Session

from rdio_core import units
from rdio_core.calls import CallFields
from rdio_core.models import Call, CallTransmission, JobStatus, TranscriptionJob
from rdio_core.text_normalize import normalize_words

TABLE = "call_search"
MAX_CLAUSES = 16


class QueryError(ValueError):
    """The search text has nothing to search for, or too much."""


@dataclass(frozen=True)
class Clause:
    tokens: tuple[str, ...]  # one token, or several for a phrase
    prefix: bool = False  # the last token is a prefix (engin*)


@dataclass
class ParsedQuery:
    clauses: list[Clause] = field(default_factory=list)
    units: list[int] = field(default_factory=list)  # unit:1234: calls a radio transmitted on

    def fts5(self) -> str:
        """An FTS5 MATCH expression: every clause must match (tokens are [a-z0-9]+ only)."""
        parts = []
        for c in self.clauses:
            quoted = '"' + " ".join(c.tokens) + '"'
            parts.append(quoted + ("*" if c.prefix else ""))
        return " AND ".join(parts)

    def tsquery(self) -> str:
        """The same query as PostgreSQL tsquery text."""
        parts = []
        for c in self.clauses:
            words = [f"'{t}'" for t in c.tokens]
            if c.prefix:
                words[-1] += ":*"
            parts.append("(" + " <-> ".join(words) + ")")
        return " & ".join(parts)


_QUOTED = re.compile(r'"([^"]*)"')
_UNIT = re.compile(r"(?<!\S)unit:(\S*)", re.IGNORECASE)


def parse_query(q: str) -> ParsedQuery:
    """Words (all must match), "phrases in quotes", prefixes (``engin*``); numbers in any spelling;
    ``unit:1234`` for calls that radio 1234 transmitted on (any system; with words, both must hold).

    A run of number tokens becomes one phrase, so ``ten fifty`` and ``10-50`` both mean ``1 0 5 0``."""
    parsed = ParsedQuery()
    for i, piece in enumerate(_QUOTED.split(q)):
        if i % 2:  # inside quotes: one phrase
            tokens = normalize_words(piece)
            if tokens:
                parsed.clauses.append(Clause(tuple(tokens)))
            continue
        run: list[str] = []
        piece = _UNIT.sub(lambda m: _add_unit(parsed, m.group(1)), piece)
        for word in piece.split():
            if word.endswith("*") and len(word) > 1:
                _add_run(parsed, " ".join(run))
                run = []
                stem = normalize_words(word.rstrip("*"))
                if stem:
                    parsed.clauses.append(Clause((stem[-1],), prefix=True))
                    if len(stem) > 1:
                        _add_run(parsed, " ".join(stem[:-1]))
            else:
                run.append(word)
        _add_run(parsed, " ".join(run))
    if not parsed.clauses and not parsed.units:
        raise QueryError("Search query has no words to search for.")
    if len(parsed.clauses) + len(parsed.units) > MAX_CLAUSES:
        raise QueryError(f"Search query has more than {MAX_CLAUSES} terms.")
    return parsed


_WHOLE_NUMBER = re.compile(r"^\s*\d+\s*$")


def as_unit(session: Session, parsed: ParsedQuery, q: str) -> ParsedQuery:
    """A query that is one whole number some radio transmitted as means that radio: ``unit:N``.

    Numbers are indexed digit by digit ("E12" is ``e 1 2``, radio 4312 is ``4 3 1 2``), so the
    digits of a radio id would otherwise also match inside other words and longer numbers: "12"
    found every "E12" and "4312". A number no radio used stays a text search (a 10-code, an address)."""
    if parsed.units or not _WHOLE_NUMBER.match(q):
        return parsed
    unit = units.radio_id(q.strip())
    if unit is None:
        return parsed
    known = session.execute(select(CallTransmission.call_id).where(CallTransmission.unit == unit).limit(1))
    return ParsedQuery(units=[unit]) if known.first() is not None else parsed


def _add_unit(parsed: ParsedQuery, value: str) -> str:
    unit = units.radio_id(value)
    if unit is None:
        raise QueryError(f"unit: takes a radio id (a whole number), not {value[:40]!r}.")
    if unit not in parsed.units:
        parsed.units.append(unit)
    return " "


def _add_run(parsed: ParsedQuery, words: str) -> None:
    """Clauses for unquoted words. A word that normalises to several tokens ("phone1", "E12",
    "10-50") is a phrase: its parts must stand together. Consecutive words that are all numbers
    ("ten fifty", "10 50", "fourteen thirty seven") normalise together into one digit phrase."""
    numeric: list[str] = []
    for word in [*words.split(), ""]:
        tokens = normalize_words(word) if word else []
        if tokens and all(t.isdigit() for t in tokens):
            numeric.append(word)
            continue
        if numeric:
            parsed.clauses.append(Clause(tuple(normalize_words(" ".join(numeric)))))
            numeric = []
        if tokens:
            parsed.clauses.append(Clause(tuple(tokens)))


def call_document(call: CallFields, transcript: str | None) -> str:
    """The normalised text indexed for a call: transcript, labels, alias, unit id (``SEARCHED`` of
    rdio_core.calls), and the radio ids and tags of its srcList / sources (so a bare ``1234`` or
    ``Engine 7`` finds them too)."""
    return document_text(transcript, *call.search_labels(), *source_words(call.sources))


def source_words(sources: Any) -> list[Any]:
    """Radio ids and tags in a call's sources, each once, in order."""
    if not isinstance(sources, list):
        return []
    words: dict[Any, None] = {}
    for entry in sources[: units.MAX_TRANSMISSIONS]:
        if isinstance(entry, dict):
            words.setdefault(units.radio_id(entry.get("src")), None)
            words.setdefault(units.clean_tag(entry.get("tag")), None)
        else:
            words.setdefault(units.radio_id(entry), None)
    words.pop(None, None)
    return list(words)


def document_text(transcript: str | None, *labels: Any) -> str:
    parts = [transcript or "", *(str(v) for v in labels if v not in (None, ""))]
    return " ".join(normalize_words(" ".join(parts)))


def index_call(session: Session | Connection, call_id: int, doc: str) -> None:
    """Insert or replace one call's document, in the caller's transaction."""
    if _dialect(session) == "sqlite":
        session.execute(text(f"DELETE FROM {TABLE} WHERE rowid = :id"), {"id": call_id})
        session.execute(
            text(f"INSERT INTO {TABLE}(rowid, body) VALUES (:id, :doc)"), {"id": call_id, "doc": doc}
        )
    else:
        session.execute(
            text(
                f"INSERT INTO {TABLE}(call_id, body) VALUES (:id, to_tsvector('simple', :doc)) "
                "ON CONFLICT (call_id) DO UPDATE SET body = excluded.body"
            ),
            {"id": call_id, "doc": doc},
        )


def index_calls(session: Session | Connection, docs: list[tuple[int, str]]) -> None:
    """``index_call`` for many new calls at once (rows that do not exist yet: a plain insert)."""
    if not docs:
        return
    rows = [{"id": call_id, "doc": doc} for call_id, doc in docs]
    if _dialect(session) == "sqlite":
        session.execute(text(f"INSERT INTO {TABLE}(rowid, body) VALUES (:id, :doc)"), rows)
    else:
        session.execute(
            text(f"INSERT INTO {TABLE}(call_id, body) VALUES (:id, to_tsvector('simple', :doc))"), rows
        )


RELEVANCE_WINDOW = 2000
"""Relevance order ranks the newest this-many matches (after filters). Ranking every match cost
315 ms p50 on 1M calls for a word in a third of them (bench/search.py); within the window it is
bounded like a newest-first page, and a scanner archive's best match is rarely its oldest."""


def relevance_ids(session: Session, stmt: Select, query: ParsedQuery) -> list[int]:
    """The ids of the calls ``apply_match(..., "relevance")`` ranks, transcript matches first.

    One index document holds a call's transcript and its labels, so a word in a talkgroup's name
    matched every call of that talkgroup as well as the transcripts that said it; the labels'
    calls came first whenever their documents were shorter. Here the window's calls whose
    completed transcript alone matches (``transcript_matches``) come first, each group in the
    index's order. A full window (2000 calls) adds ~60 ms of matching (30-word transcripts)."""
    window = session.execute(stmt.with_only_columns(Call.id)).scalars().all()
    if not query.clauses:
        return list(window)
    texts = session.execute(
        select(TranscriptionJob.call_id, TranscriptionJob.text).where(
            TranscriptionJob.call_id.in_(window), TranscriptionJob.status == JobStatus.COMPLETED
        )
    ).tuples()
    said = {call_id for call_id, text in texts if text and transcript_matches(text, query)}
    return [i for i in window if i in said] + [i for i in window if i not in said]


def apply_match(stmt: Select, dialect: str, query: ParsedQuery, order: str) -> Select:
    """Narrow a ``select(Call)`` (with its filters) to the calls matching ``query`` and order it.

    Newest first is by call id (arrival order) and is expressed on the index's own key, so FTS5
    walks its rowids backwards and stops after a page instead of sorting every match. A query of
    ``unit:`` terms alone skips the text index: newest first, whatever ``order`` says."""
    for unit in query.units:
        stmt = stmt.where(units.calls_with_unit(unit))
    if not query.clauses:
        return stmt.order_by(Call.id.desc())
    if dialect == "sqlite":
        fts = table(TABLE, column("rowid"))
        stmt = stmt.join(fts, fts.c.rowid == Call.id).where(
            text(f"{TABLE} MATCH :match").bindparams(match=query.fts5())
        )
        key: ColumnElement[Any] = fts.c.rowid
        rank: ColumnElement[Any] = func.bm25(literal_column(TABLE))
    else:
        pg = table(TABLE, column("call_id"), column("body"))
        tsq = func.to_tsquery("simple", query.tsquery())
        stmt = stmt.join(pg, pg.c.call_id == Call.id).where(pg.c.body.op("@@")(tsq))
        key, rank = pg.c.call_id, -func.ts_rank_cd(pg.c.body, tsq)
    if order != "relevance":
        return stmt.order_by(key.desc())
    window = (
        stmt.with_only_columns(Call.id.label("cid"), rank.label("rank"))
        .order_by(key.desc())
        .limit(RELEVANCE_WINDOW)
        .subquery()
    )
    return select(Call).join(window, window.c.cid == Call.id).order_by(window.c.rank, Call.id.desc())


def snippet(source: str, query: ParsedQuery, width: int = 24) -> str:
    """``source`` cut to about ``width`` words around the first hit, HTML-escaped, with every
    word that matched the query inside ``<mark>…</mark>``."""
    words = list(re.finditer(r"\S+", source))
    if not words:
        return ""
    hit = _hit_words(source, query)
    first = min(hit) if hit else 0
    lo = max(0, first - width // 3)
    hi = min(len(words), lo + width)
    out = []
    for index in range(lo, hi):
        escaped = html.escape(words[index].group(), quote=False)
        out.append(f"<mark>{escaped}</mark>" if index in hit else escaped)
    return ("… " if lo else "") + " ".join(out) + (" …" if hi < len(words) else "")


def transcript_matches(text: str, query: ParsedQuery) -> bool:
    """Whether ``text`` alone holds every clause of the query (as the index would match it).
    One normalisation of the whole text and a substring test per clause: 2000 30-word transcripts
    take ~60 ms this way, ~210 ms through ``snippet``'s per-word matcher."""
    tokens = " " + " ".join(normalize_words(text)) + " "
    return all((" " + " ".join(c.tokens) + ("" if c.prefix else " ")) in tokens for c in query.clauses)


def _hit_words(source: str, query: ParsedQuery) -> set[int]:
    """Indexes of the words of ``source`` (split on white space) that a query clause matched."""
    flat: list[tuple[str, int]] = []
    for index, word in enumerate(re.finditer(r"\S+", source)):
        flat.extend((token, index) for token in normalize_words(word.group()))
    hit: set[int] = set()
    for clause in query.clauses:
        n = len(clause.tokens)
        for start in range(len(flat) - n + 1):
            window = [t for t, _ in flat[start : start + n]]
            if window[:-1] != list(clause.tokens[:-1]):
                continue
            last, want = window[-1], clause.tokens[-1]
            if last == want or (clause.prefix and last.startswith(want)):
                hit.update(i for _, i in flat[start : start + n])
    return hit


def _dialect(session: Session | Connection) -> str:
    bind = session.get_bind() if isinstance(session, Session) else session
    return bind.dialect.name
