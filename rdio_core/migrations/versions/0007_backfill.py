"""backfill runs and retention (owned by the retention helper)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 07:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("calls", sa.Column("audio_removed_at", sa.DateTime(), nullable=True))
    op.create_index("ix_calls_audio_kept", "calls", ["audio_removed_at", "date_time"])
    op.create_table(
        "backfill_runs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("params_key", sa.String(length=64), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=True),
        sa.Column("until", sa.DateTime(), nullable=True),
        sa.Column("system_id", sa.BigInteger(), nullable=True),
        sa.Column("talkgroup", sa.BigInteger(), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("only_missing", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("queued_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_backfill_runs_params_key", "backfill_runs", ["params_key"])
    op.create_table(
        "backfill_jobs",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("call_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["backfill_runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["transcription_jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "job_id"),
    )
    op.create_index("ix_backfill_jobs_run_call", "backfill_jobs", ["run_id", "call_id"])
    op.create_index("ix_backfill_jobs_job_id", "backfill_jobs", ["job_id"])
    op.create_index("ix_backfill_jobs_call_id", "backfill_jobs", ["call_id"])


def downgrade() -> None:
    op.drop_table("backfill_jobs")
    op.drop_table("backfill_runs")
    op.drop_index("ix_calls_audio_kept", table_name="calls")
    with op.batch_alter_table("calls") as batch_op:
        batch_op.drop_column("audio_removed_at")
