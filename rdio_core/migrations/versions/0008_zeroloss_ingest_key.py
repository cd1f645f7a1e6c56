"""calls.ingest_key: the idempotency key each upload carries into its row (spool drain exactly once)

Expand only: a nullable column and a unique index. Code of the release before ignores the column
(its inserts leave it NULL, which a unique index allows any number of times), so an API still
draining on the old code keeps working while the new one starts.

Revision ID: 0008_zeroloss
Revises: 0007
Create Date: 2026-12-05 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_zeroloss"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("ingest_key", sa.String(length=32), nullable=True))
    op.create_index("ux_calls_ingest_key", "calls", ["ingest_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_calls_ingest_key", table_name="calls")
    op.drop_column("calls", "ingest_key")
