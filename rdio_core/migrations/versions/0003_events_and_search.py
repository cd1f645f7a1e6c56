"""events log for the live feed, full-text search index

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 05:00:00

The search index is the database's own: an FTS5 table on SQLite (with a trigger that drops a call's
entry with the call), a tsvector column with a GIN index on PostgreSQL. Existing calls are indexed
here, with the text of their completed transcription.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from rdio_core.search import document_text, index_calls

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000
# The labels indexed at this revision, frozen: a field added later is not a column yet here.
LABELS = ("system_label", "talkgroup_label", "talkgroup_name", "talkgroup_tag", "talker_alias", "source")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("call_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_call_id", "events", ["call_id"])
    op.create_index("ix_events_created_at", "events", ["created_at"])
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE call_search USING fts5(body, tokenize='unicode61')")
        op.execute(
            "CREATE TRIGGER call_search_delete AFTER DELETE ON calls BEGIN "
            "DELETE FROM call_search WHERE rowid = old.id; END"
        )
    else:
        op.execute(
            "CREATE TABLE call_search (call_id BIGINT PRIMARY KEY REFERENCES calls(id) ON DELETE CASCADE, "
            "body tsvector NOT NULL)"
        )
        op.execute("CREATE INDEX ix_call_search_body ON call_search USING GIN (body)")
    _backfill(conn)


def _backfill(conn: sa.Connection) -> None:
    calls = sa.table("calls", *(sa.column(n) for n in ("id", *LABELS)))
    jobs = sa.table(
        "transcription_jobs", sa.column("id"), sa.column("call_id"), sa.column("status"), sa.column("text")
    )
    last = 0
    while True:
        rows = conn.execute(sa.select(calls).where(calls.c.id > last).order_by(calls.c.id).limit(BATCH)).all()
        if not rows:
            return
        ids = [r.id for r in rows]
        texts = dict(
            conn.execute(
                sa.select(jobs.c.call_id, jobs.c.text)
                .where(jobs.c.call_id.in_(ids), jobs.c.status == "completed")
                .order_by(jobs.c.id)
            ).all()
        )
        index_calls(
            conn, [(r.id, document_text(texts.get(r.id), *(getattr(r, n) for n in LABELS))) for r in rows]
        )
        last = ids[-1]


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS call_search_delete")
    op.execute("DROP TABLE IF EXISTS call_search")
    op.drop_table("events")
