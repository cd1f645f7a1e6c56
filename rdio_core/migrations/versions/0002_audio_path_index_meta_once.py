"""audio_path index (orphan sweep) and trunk-recorder meta stored once

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 04:40:00

The orphan sweep asks, for each old file in the audio directory, whether a call refers to it:
without an index that is a full scan of calls per batch. trunk-recorder's srcList and freqList were
kept both in their own columns (sources, frequencies) and inside meta; existing rows lose the copy.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COPIED = ("srcList", "freqList")
BATCH = 500


def upgrade() -> None:
    op.create_index("ix_calls_audio_path", "calls", ["audio_path"])
    calls = sa.table("calls", sa.column("id", sa.BigInteger()), sa.column("meta", sa.JSON()))
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(
            sa.select(calls.c.id, calls.c.meta)
            .where(calls.c.id > last, calls.c.meta.is_not(None))
            .order_by(calls.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        for call_id, meta in rows:
            last = call_id
            inner = meta.get("trunk_recorder") if isinstance(meta, dict) else None
            if isinstance(inner, dict) and any(k in inner for k in COPIED):
                slim = {k: v for k, v in inner.items() if k not in COPIED}
                conn.execute(
                    calls.update().where(calls.c.id == call_id).values(meta={**meta, "trunk_recorder": slim})
                )


def downgrade() -> None:
    op.drop_index("ix_calls_audio_path", table_name="calls")
