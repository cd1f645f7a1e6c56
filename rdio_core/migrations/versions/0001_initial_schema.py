"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 22:13:40.237847
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "systems",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "calls",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("system_id", sa.BigInteger(), nullable=False),
        sa.Column("talkgroup", sa.BigInteger(), nullable=False),
        sa.Column("date_time", sa.DateTime(), nullable=False),
        sa.Column("source", sa.BigInteger(), nullable=True),
        sa.Column("frequency", sa.BigInteger(), nullable=True),
        sa.Column("frequencies", sa.JSON(), nullable=True),
        sa.Column("sources", sa.JSON(), nullable=True),
        sa.Column("patches", sa.JSON(), nullable=True),
        sa.Column("talkgroup_label", sa.String(length=200), nullable=True),
        sa.Column("talkgroup_group", sa.String(length=200), nullable=True),
        sa.Column("talkgroup_tag", sa.String(length=200), nullable=True),
        sa.Column("talkgroup_name", sa.String(length=200), nullable=True),
        sa.Column("system_label", sa.String(length=200), nullable=True),
        sa.Column("talker_alias", sa.String(length=200), nullable=True),
        sa.Column("site", sa.String(length=100), nullable=True),
        sa.Column("audio_name", sa.String(length=255), nullable=True),
        sa.Column("audio_type", sa.String(length=100), nullable=True),
        sa.Column("audio_path", sa.String(length=500), nullable=False),
        sa.Column("audio_sha256", sa.String(length=64), nullable=False),
        sa.Column("audio_bytes", sa.BigInteger(), nullable=False),
        sa.Column("audio_mime", sa.String(length=100), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("client_kind", sa.String(length=40), nullable=False),
        sa.Column("key_name", sa.String(length=200), nullable=True),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["system_id"],
            ["systems.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_calls_audio_sha256"), ["audio_sha256"], unique=False)
        batch_op.create_index("ix_calls_date_time", ["date_time"], unique=False)
        batch_op.create_index(batch_op.f("ix_calls_received_at"), ["received_at"], unique=False)
        batch_op.create_index(
            "ix_calls_system_tg_time", ["system_id", "talkgroup", "date_time"], unique=False
        )

    op.create_table(
        "talkgroups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("system_id", sa.BigInteger(), nullable=False),
        sa.Column("talkgroup", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("tag", sa.String(length=200), nullable=True),
        sa.Column("group_name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["system_id"], ["systems.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("system_id", "talkgroup", name="uq_talkgroups_system_tg"),
    )
    op.create_table(
        "transcription_jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("call_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("language_probability", sa.Float(), nullable=True),
        sa.Column("compute_type", sa.String(length=32), nullable=True),
        sa.Column("device", sa.String(length=16), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("segments", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("audio_seconds", sa.Float(), nullable=True),
        sa.Column("processing_ms", sa.Float(), nullable=True),
        sa.Column("real_time_factor", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("queued_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("transcription_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_call", ["call_id"], unique=False)
        batch_op.create_index("ix_jobs_status_updated", ["status", "updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("transcription_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_updated")
        batch_op.drop_index("ix_jobs_call")

    op.drop_table("transcription_jobs")
    op.drop_table("talkgroups")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index("ix_calls_system_tg_time")
        batch_op.drop_index(batch_op.f("ix_calls_received_at"))
        batch_op.drop_index("ix_calls_date_time")
        batch_op.drop_index(batch_op.f("ix_calls_audio_sha256"))

    op.drop_table("calls")
    op.drop_table("systems")
