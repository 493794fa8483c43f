"""staff language (issue 23)

Schema: `staff_users.language`, the language the admin speaks to each staff user (French or English; French for
existing users, as for CMU staff).

Revision ID: 0024_staff_language
Revises: 0023_effect_outcomes
Create Date: 2026-12-09 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024_staff_language"
down_revision: str | None = "0023_effect_outcomes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "staff_users",
        sa.Column(
            "language",
            sa.Enum("fr", "wo", "en", "km", name="language", native_enum=False, length=24),
            nullable=False,
            server_default="fr",
        ),
    )


def downgrade() -> None:
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.drop_column("language")
