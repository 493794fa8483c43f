"""household changes (issue 25)

Schema: `household_changes`, one row per enrolment of kind `change`: the existing household it changes and the
changes as checked (JSON: add a member, a member left or deceased, a new phone). The enrolment keeps its status,
audit trail, idempotency by client id and, for an added member, its `enrolment_members` row.

Revision ID: 0029_household_changes
Revises: 0027_enrolments
Create Date: 2026-12-12 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029_household_changes"
down_revision: str | None = "0027_enrolments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "household_changes",
        sa.Column("enrolment_id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["enrolment_id"],
            ["enrolments.id"],
            name=op.f("fk_household_changes_enrolment_id_enrolments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["household_id"], ["households.id"], name=op.f("fk_household_changes_household_id_households")
        ),
        sa.PrimaryKeyConstraint("enrolment_id", name=op.f("pk_household_changes")),
    )
    op.create_index(op.f("ix_household_changes_household_id"), "household_changes", ["household_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_household_changes_household_id"), table_name="household_changes")
    op.drop_table("household_changes")
