"""effect outcomes stored whole (issue 22)

Schema: `effect_keys.result` becomes TEXT. A USSD check's outcome was stored as ASCII-escaped JSON cut at 200
characters: a Khmer first name (six characters per letter escaped) cut it mid-string, so a replayed hop could
not read it back and answered the apology. Outcomes are now stored whole, unescaped.

Revision ID: 0023_effect_outcomes
Revises: 0022_matching
Create Date: 2026-12-08 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_effect_outcomes"
down_revision: str | None = "0022_matching"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("effect_keys", schema=None) as batch_op:
        batch_op.alter_column("result", existing_type=sa.String(length=200), type_=sa.Text(), existing_nullable=True)


def downgrade() -> None:
    effect_keys = sa.table("effect_keys", sa.column("result", sa.Text))
    op.execute(
        effect_keys.update()
        .where(sa.func.length(effect_keys.c.result) > 200)
        .values(result=sa.null())  # an outcome too long for the old column is dropped, not cut into bad JSON
    )
    with op.batch_alter_table("effect_keys", schema=None) as batch_op:
        batch_op.alter_column("result", existing_type=sa.Text(), type_=sa.String(length=200), existing_nullable=True)
