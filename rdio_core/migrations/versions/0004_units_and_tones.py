"""units, call transmissions, dispatch tones

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 07:10:00

``calls.tones`` / ``calls.analyzed_at``: dispatch tones found before transcription (NULL = not
analysed yet). ``units``: every radio heard per system with the alias it last sent.
``call_transmissions``: each key-up of a call (offset, radio, tag, emergency). Existing calls get
their transmissions from the srcList / sources / source they were stored with, and those with a
srcList are indexed again so their radio ids and tags are searchable like a new call's.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from rdio_core import units
from rdio_core.search import document_text, index_call, source_words

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000
# The labels indexed at this revision, frozen: a field added later is not a column yet here.
LABELS = ("system_label", "talkgroup_label", "talkgroup_name", "talkgroup_tag", "talker_alias", "source")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("calls", sa.Column("tones", sa.JSON(), nullable=True))
    op.add_column("calls", sa.Column("analyzed_at", sa.DateTime(), nullable=True))
    op.create_table(
        "units",
        sa.Column("id", BigId, nullable=False),
        sa.Column("system_id", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.BigInteger(), nullable=False),
        sa.Column("alias", sa.String(length=200), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["system_id"], ["systems.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("system_id", "unit", name="uq_units_system_unit"),
    )
    op.create_table(
        "call_transmissions",
        sa.Column("call_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("offset_seconds", sa.Float(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("unit", sa.BigInteger(), nullable=True),
        sa.Column("tag", sa.String(length=200), nullable=True),
        sa.Column("emergency", sa.Boolean(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("call_id", "seq"),
    )
    op.create_index("ix_call_transmissions_unit", "call_transmissions", ["unit", "call_id"])
    _backfill(op.get_bind())


def _backfill(conn: sa.Connection) -> None:
    """Transmissions, units and (for srcList calls) the search document of existing calls."""
    typed: dict[str, Any] = {"date_time": sa.DateTime(), "sources": sa.JSON(), "duration_seconds": sa.Float()}
    names = {"id", "system_id", "client_kind", *typed, *LABELS}
    calls = sa.table("calls", *(sa.column(n, typed.get(n)) for n in names))
    jobs = sa.table(
        "transcription_jobs", sa.column("id"), sa.column("call_id"), sa.column("status"), sa.column("text")
    )
    fields = ("call_id", "seq", "offset_seconds", "duration_seconds", "unit", "tag", "emergency", "origin")
    transmissions = sa.table("call_transmissions", *(sa.column(n) for n in fields))
    last = 0
    while True:
        rows = conn.execute(
            sa.select(calls)
            .where(calls.c.id > last, sa.or_(calls.c.source.is_not(None), calls.c.sources.is_not(None)))
            .order_by(calls.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        last = rows[-1].id
        out: list[dict[str, Any]] = []
        heard: list[units.Sighting] = []
        for r in rows:
            origin: units.Origin = "srcList" if r.client_kind == "trunk-recorder" else "sources"
            parsed = units.parse_transmissions(
                r.source, r.talker_alias, r.sources, r.duration_seconds, origin
            )
            out += units.transmission_rows(r.id, parsed.transmissions)
            heard += units.sightings(r.system_id, r.date_time, parsed.transmissions)
        if out:
            conn.execute(transmissions.insert(), out)
        units.learn_units(conn, heard)
        listed = [r for r in rows if r.sources]
        if listed:
            texts = dict(
                conn.execute(
                    sa.select(jobs.c.call_id, jobs.c.text)
                    .where(jobs.c.call_id.in_([r.id for r in listed]), jobs.c.status == "completed")
                    .order_by(jobs.c.id)
                ).all()
            )
            for r in listed:
                labels = (getattr(r, n) for n in LABELS)
                index_call(conn, r.id, document_text(texts.get(r.id), *labels, *source_words(r.sources)))


def downgrade() -> None:
    op.drop_index("ix_call_transmissions_unit", table_name="call_transmissions")
    op.drop_table("call_transmissions")
    op.drop_table("units")
    op.drop_column("calls", "analyzed_at")
    op.drop_column("calls", "tones")
