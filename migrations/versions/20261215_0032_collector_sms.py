"""collectors' evening SMS and campaign edits (issue 27)

Schema: `collectors.sms_opt_in` (false once the collector sent STOP or staff turned the summary off; true for existing
collectors) and `collectors.language` (the language of their texts; none: the scheme's); `schemes.collector_sms_at`
(the local time the evening summaries go out from, 19:00 unless the scheme file says); `messages.mutuelle_id` (the
mutuelle a text with no household is sent for: its sender id); `campaign_events` (the audit trail of staff's changes to
a campaign from the admin).

Revision ID: 0032_collector_sms
Revises: 0031_network_savings
Create Date: 2026-12-15 09:00:00
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import SAWarning

revision: str = "0032_collector_sms"
down_revision: str | None = "0031_network_savings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite's batch mode reflects the networks' expression index (upper(code)) through the foreign keys and warns.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
        _upgrade()


def downgrade() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
        _downgrade()


def _upgrade() -> None:
    op.create_table(
        "campaign_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("note", sa.String(length=1000), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_events_campaign_id_campaigns"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_events")),
    )
    op.create_index(op.f("ix_campaign_events_campaign_id"), "campaign_events", ["campaign_id"], unique=False)
    with op.batch_alter_table("collectors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sms_opt_in", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(
            sa.Column(
                "language",
                sa.Enum("fr", "wo", "en", "km", name="language", native_enum=False, length=24),
                nullable=True,
            )
        )
    with op.batch_alter_table("schemes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("collector_sms_at", sa.Time(), nullable=False, server_default="19:00:00"))
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mutuelle_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_messages_mutuelle_id_mutuelles"), "mutuelles", ["mutuelle_id"], ["id"]
        )


def _downgrade() -> None:
    op.drop_index(op.f("ix_campaign_events_campaign_id"), table_name="campaign_events")
    op.drop_table("campaign_events")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_messages_mutuelle_id_mutuelles"), type_="foreignkey")
        batch_op.drop_column("mutuelle_id")
    with op.batch_alter_table("schemes", schema=None) as batch_op:
        batch_op.drop_column("collector_sms_at")
    with op.batch_alter_table("collectors", schema=None) as batch_op:
        batch_op.drop_column("language")
        batch_op.drop_column("sms_opt_in")
