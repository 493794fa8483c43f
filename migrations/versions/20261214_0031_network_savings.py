"""network savings (issue 27)

Schema: `schemes.network_savings_bp`, the share of its grant a network of the scheme is asked to save (basis points:
1000 = 10 %; NULL: the scheme sets no savings target), and `networks.grant_amount` / `networks.grant_on`, the grant
the network received and the day it did (NULL: none recorded).

Revision ID: 0031_network_savings
Revises: 0030_campaigns
Create Date: 2026-12-14 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031_network_savings"
down_revision: str | None = "0030_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("schemes", sa.Column("network_savings_bp", sa.Integer(), nullable=True))
    op.add_column("networks", sa.Column("grant_amount", sa.BigInteger(), nullable=True))
    op.add_column("networks", sa.Column("grant_on", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("networks", schema=None) as batch_op:
        batch_op.drop_column("grant_on")
        batch_op.drop_column("grant_amount")
    with op.batch_alter_table("schemes", schema=None) as batch_op:
        batch_op.drop_column("network_savings_bp")
