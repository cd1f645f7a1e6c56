"""transcription_jobs (status, priority, id): the order deferred jobs are released in

Held backfill jobs are deferred rows: a run of 100,000 calls holds as many. Releasing the next ones
(most urgent, then oldest) walks this index and stops after the few it takes, where
``ix_jobs_status_updated`` left every deferred row to be sorted on each job's end.

Expand only: an index. Code of the release before neither needs nor minds it.

Revision ID: 0009_release_order
Revises: 0008_zeroloss
Create Date: 2026-12-05 21:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_release_order"
down_revision: str | None = "0008_zeroloss"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_status_priority_id", "transcription_jobs", ["status", "priority", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_priority_id", table_name="transcription_jobs")
