"""alert deliveries, their attempts, and rule cooldowns

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 07:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_deliveries",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("call_id", sa.BigInteger(), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("action_index", sa.Integer(), nullable=False),
        sa.Column("action_kind", sa.String(length=20), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("matched_text", sa.Text(), nullable=True),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["call_id"], ["calls.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("call_id", "rule", "action_index", name="uq_alert_deliveries_call_rule_action"),
    )
    op.create_index("ix_alert_deliveries_call_id", "alert_deliveries", ["call_id"])
    op.create_index("ix_alert_deliveries_status_updated", "alert_deliveries", ["status", "updated_at"])
    op.create_index("ix_alert_deliveries_rule", "alert_deliveries", ["rule", "id"])
    op.create_table(
        "alert_attempts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["alert_deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alert_attempts_delivery_id", "alert_attempts", ["delivery_id"])
    op.create_table(
        "alert_cooldowns",
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("system_id", sa.BigInteger(), nullable=False),
        sa.Column("talkgroup", sa.BigInteger(), nullable=False),
        sa.Column("fired_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("rule", "system_id", "talkgroup"),
    )


def downgrade() -> None:
    op.drop_table("alert_cooldowns")
    op.drop_index("ix_alert_attempts_delivery_id", table_name="alert_attempts")
    op.drop_table("alert_attempts")
    op.drop_index("ix_alert_deliveries_rule", table_name="alert_deliveries")
    op.drop_index("ix_alert_deliveries_status_updated", table_name="alert_deliveries")
    op.drop_index("ix_alert_deliveries_call_id", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
