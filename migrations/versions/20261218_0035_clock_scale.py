"""the clock at scale (issue 29)

Schema: `ix_payment_requests_open_expires_at`, a partial index on the open payment requests' expiry, so the clock's
expiry (every 10 minutes, in batches) reads only the open requests past their time.

Revision ID: 0035_clock_scale
Revises: 0034_admin_scale_indexes
Create Date: 2026-12-18 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0035_clock_scale"
down_revision: str | None = "0034_admin_scale_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_payment_requests_open_expires_at",
        "payment_requests",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'OPEN'"),
        sqlite_where=sa.text("status = 'OPEN'"),
    )


def downgrade() -> None:
    op.drop_index("ix_payment_requests_open_expires_at", table_name="payment_requests")
