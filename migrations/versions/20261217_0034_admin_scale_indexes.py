"""admin at scale: the indexes the admin's pages need at 1M households (issue 29)

- `ix_coverage_periods_live_end_on` (end_on, live periods only): the renewal lists read the periods ending within
  their windows, not every household's periods;
- `ix_messages_created_at`: the SMS log, newest first, unfiltered;
- `ix_members_lower_first_name` (lower(first_name)) and, on PostgreSQL, `ix_members_lower_last_name` rebuilt with
  `text_pattern_ops` (it served equality only; the pattern class serves equality and `LIKE 'prefix%'` whatever the
  database's collation): the households search by name.

Built with a plain CREATE INDEX (a lock on writes to the table while it builds: seconds per million rows).

Revision ID: 0034_admin_scale_indexes
Revises: 0032_collector_sms
Create Date: 2026-12-17 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0034_admin_scale_indexes"
down_revision: str | None = "0032_collector_sms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PATTERN = " text_pattern_ops"


def upgrade() -> None:
    op.create_index(
        "ix_coverage_periods_live_end_on",
        "coverage_periods",
        ["end_on"],
        unique=False,
        postgresql_where=sa.text("reversed_at IS NULL"),
        sqlite_where=sa.text("reversed_at IS NULL"),
    )
    op.create_index("ix_messages_created_at", "messages", ["created_at"], unique=False)
    ops = PATTERN if op.get_bind().dialect.name == "postgresql" else ""
    if ops:
        op.drop_index("ix_members_lower_last_name", table_name="members")
        op.create_index("ix_members_lower_last_name", "members", [sa.text(f"lower(last_name){ops}")], unique=False)
    op.create_index("ix_members_lower_first_name", "members", [sa.text(f"lower(first_name){ops}")], unique=False)


def downgrade() -> None:
    op.drop_index("ix_members_lower_first_name", table_name="members")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_members_lower_last_name", table_name="members")
        op.create_index("ix_members_lower_last_name", "members", [sa.text("lower(last_name)")], unique=False)
    op.drop_index("ix_messages_created_at", table_name="messages")
    op.drop_index("ix_coverage_periods_live_end_on", table_name="coverage_periods")
