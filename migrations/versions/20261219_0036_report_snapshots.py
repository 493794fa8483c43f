"""report snapshots: the scheme report's monthly figures computed ahead by the clock

Schema: `report_months` (a scheme's month whose figures are stored, the day they count and when they were computed)
and `report_cells` (the month's figures by household commune, network and mutuelle, and each funder's subsidies),
read by `/admin/reports` (`models.views.report_snapshots`).

Revision ID: 0036_report_snapshots
Revises: 0037_household_cover_end
Create Date: 2026-12-19 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0036_report_snapshots"
down_revision: str | None = "0037_household_cover_end"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = (
    "enrolled",
    "paid",
    "covered",
    "waiting",
    "grace",
    "lapsed",
    "pending",
    "stopped",
    "due_households",
)
AFTER_DUE = ("not_renewed",)
PAYMENTS = ("payments", "matched_auto", "matched_manual", "unresolved")


def upgrade() -> None:
    op.create_table(
        "report_months",
        sa.Column("scheme_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["scheme_id"], ["schemes.id"], name=op.f("fk_report_months_scheme_id_schemes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("scheme_id", "month", name=op.f("pk_report_months")),
    )
    op.create_table(
        "report_cells",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scheme_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("commune", sa.String(length=120), nullable=True),
        sa.Column("network_id", sa.Integer(), nullable=True),
        sa.Column("mutuelle_id", sa.Integer(), nullable=True),
        sa.Column("funder", sa.String(length=80), nullable=True),
        *[sa.Column(name, sa.Integer(), nullable=False) for name in COUNTS],
        sa.Column("due", sa.BigInteger(), nullable=False),
        *[sa.Column(name, sa.Integer(), nullable=False) for name in AFTER_DUE],
        sa.Column("collected", sa.BigInteger(), nullable=False),
        *[sa.Column(name, sa.Integer(), nullable=False) for name in PAYMENTS],
        sa.Column("subsidy", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["scheme_id"], ["schemes.id"], name=op.f("fk_report_cells_scheme_id_schemes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_cells")),
    )
    op.create_index("ix_report_cells_scheme_month", "report_cells", ["scheme_id", "month"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_report_cells_scheme_month", table_name="report_cells")
    op.drop_table("report_cells")
    op.drop_table("report_months")
