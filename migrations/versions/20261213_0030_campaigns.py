"""campaigns (issue 27)

Schema: `campaigns` (an enrolment campaign of a scheme, maybe kept to one mutuelle, from a start to an end day),
`campaign_targets` (beneficiaries a network should enrol in a campaign, one row per network) and
`campaign_sessions` (planned collection sessions: day, place, network, maybe a collector).

Revision ID: 0030_campaigns
Revises: 0029_household_changes
Create Date: 2026-12-13 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030_campaigns"
down_revision: str | None = "0029_household_changes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scheme_id", sa.Integer(), nullable=False),
        sa.Column("mutuelle_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("start_on", sa.Date(), nullable=False),
        sa.Column("end_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["mutuelle_id"], ["mutuelles.id"], name=op.f("fk_campaigns_mutuelle_id_mutuelles")),
        sa.ForeignKeyConstraint(["scheme_id"], ["schemes.id"], name=op.f("fk_campaigns_scheme_id_schemes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_index(op.f("ix_campaigns_mutuelle_id"), "campaigns", ["mutuelle_id"], unique=False)
    op.create_index(op.f("ix_campaigns_scheme_id"), "campaigns", ["scheme_id"], unique=False)
    op.create_table(
        "campaign_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("beneficiaries", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_targets_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], name=op.f("fk_campaign_targets_network_id_networks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_targets")),
        sa.UniqueConstraint("campaign_id", "network_id", name=op.f("uq_campaign_targets_campaign_id")),
    )
    op.create_index(op.f("ix_campaign_targets_campaign_id"), "campaign_targets", ["campaign_id"], unique=False)
    op.create_index(op.f("ix_campaign_targets_network_id"), "campaign_targets", ["network_id"], unique=False)
    op.create_table(
        "campaign_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("held_on", sa.Date(), nullable=False),
        sa.Column("place", sa.String(length=200), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=False),
        sa.Column("collector_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_sessions_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["collector_id"], ["collectors.id"], name=op.f("fk_campaign_sessions_collector_id_collectors")
        ),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], name=op.f("fk_campaign_sessions_network_id_networks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_sessions")),
    )
    op.create_index(op.f("ix_campaign_sessions_campaign_id"), "campaign_sessions", ["campaign_id"], unique=False)
    op.create_index(op.f("ix_campaign_sessions_collector_id"), "campaign_sessions", ["collector_id"], unique=False)
    op.create_index(op.f("ix_campaign_sessions_network_id"), "campaign_sessions", ["network_id"], unique=False)


def downgrade() -> None:
    op.drop_table("campaign_sessions")
    op.drop_table("campaign_targets")
    op.drop_table("campaigns")
