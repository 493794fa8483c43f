"""matching: network aliases (issue 18)

Schema: `networks.aliases`, the other names payers type for a network (a JSON list of strings, added by staff).

Revision ID: 0022_matching
Revises: 0021_cover_from_enrolment
Create Date: 2026-12-07 10:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_matching"
down_revision: str | None = "0021_cover_from_enrolment"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("networks", sa.Column("aliases", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("networks", "aliases")
