"""households.cover_ends_on: the end of each household's last live period, stored (issue 29)

The renewal lists select households by the end of their last live period. Worked out from the periods, a list
read and sorted every household of its windows (80,000 at 1M households) before showing 50 of them. Stored on
the household (`models.coverage.periods.store_cover_ends` keeps it wherever periods are written or reversed) with
an index on (cover_ends_on, household_no), the lists' order, a window is an index range scan in key order and
a page reads only its rows.

Backfilled in one UPDATE from the live periods, the index built first. Built with a plain CREATE INDEX (a lock
on writes to the table while it builds: seconds per million rows).

Revision ID: 0037_household_cover_end
Revises: 0035_clock_scale
Create Date: 2026-12-20 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0037_household_cover_end"
down_revision: str | None = "0035_clock_scale"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("households", sa.Column("cover_ends_on", sa.Date(), nullable=True))
    # The index before the backfill: built after it, in the same transaction, over the rows the UPDATE just
    # rewrote, PostgreSQL would keep it from every transaction older than this one (`indcheckxmin`).
    op.create_index("ix_households_cover_ends_on", "households", ["cover_ends_on", "household_no"], unique=False)
    op.execute(
        """UPDATE households SET cover_ends_on = last.end_on
        FROM (SELECT household_id, max(end_on) AS end_on FROM coverage_periods
              WHERE reversed_at IS NULL GROUP BY household_id) AS last
        WHERE last.household_id = households.id"""
    )


def downgrade() -> None:
    op.drop_index("ix_households_cover_ends_on", table_name="households")
    with op.batch_alter_table("households") as batch:
        batch.drop_column("cover_ends_on")
