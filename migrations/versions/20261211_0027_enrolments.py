"""enrolments (issue 25)

Schema: `collectors` (collection officers of a mutuelle, their key kept as a SHA-256), `enrolments` (a household as
a collector captured it, idempotent per collector and client id, numbered per mutuelle once validated),
`enrolment_members` and `enrolment_events` (the audit trail); on `schemes` the `[enrolment]` table of the scheme
file (`enrolment_required`, `enrolment_card_categories`, `household_pattern`: empty until `schemes load` reads a file
that names them; an empty pattern is the default `{mutuelle}-{serial:06d}-{check}`); indexes on `members` by date of
birth and by lower-case last name, where duplicate detection looks for candidates.

Revision ID: 0027_enrolments
Revises: 0026_fhir_identifier_systems
Create Date: 2026-12-11 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027_enrolments"
down_revision: str | None = "0026_fhir_identifier_systems"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "collectors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("mutuelle_id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=12), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["mutuelle_id"], ["mutuelles.id"], name=op.f("fk_collectors_mutuelle_id_mutuelles")),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], name=op.f("fk_collectors_network_id_networks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collectors")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_collectors_key_hash")),
    )
    op.create_index(op.f("ix_collectors_mutuelle_id"), "collectors", ["mutuelle_id"], unique=False)
    op.create_index(op.f("ix_collectors_network_id"), "collectors", ["network_id"], unique=False)

    op.create_table(
        "enrolments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("collector_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("scheme_id", sa.Integer(), nullable=False),
        sa.Column("mutuelle_id", sa.Integer(), nullable=False),
        sa.Column("network_id", sa.Integer(), nullable=True),
        sa.Column("commune", sa.String(length=120), nullable=False),
        sa.Column("plan", sa.String(length=40), nullable=False),
        sa.Column(
            "language", sa.Enum("fr", "wo", "en", "km", name="language", native_enum=False, length=24), nullable=False
        ),
        sa.Column("subsidy_category", sa.String(length=40), nullable=False),
        sa.Column("sms_opt_in", sa.Boolean(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "SUBMITTED",
                "VALIDATED",
                "REJECTED",
                "NEEDS_CHANGES",
                name="enrolmentstatus",
                native_enum=False,
                length=24,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.Column("duplicates", sa.JSON(), nullable=False),
        sa.Column("serial", sa.Integer(), nullable=True),
        sa.Column("household_id", sa.Integer(), nullable=True),
        sa.Column("decided_by", sa.String(length=80), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["collector_id"], ["collectors.id"], name=op.f("fk_enrolments_collector_id_collectors")
        ),
        sa.ForeignKeyConstraint(
            ["household_id"], ["households.id"], name=op.f("fk_enrolments_household_id_households")
        ),
        sa.ForeignKeyConstraint(["mutuelle_id"], ["mutuelles.id"], name=op.f("fk_enrolments_mutuelle_id_mutuelles")),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"], name=op.f("fk_enrolments_network_id_networks")),
        sa.ForeignKeyConstraint(["scheme_id"], ["schemes.id"], name=op.f("fk_enrolments_scheme_id_schemes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolments")),
        sa.UniqueConstraint("collector_id", "client_id", name=op.f("uq_enrolments_collector_id")),
        sa.UniqueConstraint("household_id", name=op.f("uq_enrolments_household_id")),
        sa.UniqueConstraint("mutuelle_id", "serial", name=op.f("uq_enrolments_mutuelle_id")),
    )
    op.create_index(op.f("ix_enrolments_collector_id"), "enrolments", ["collector_id"], unique=False)
    op.create_index(op.f("ix_enrolments_mutuelle_id"), "enrolments", ["mutuelle_id"], unique=False)
    op.create_index(op.f("ix_enrolments_network_id"), "enrolments", ["network_id"], unique=False)
    op.create_index(op.f("ix_enrolments_scheme_id"), "enrolments", ["scheme_id"], unique=False)
    op.create_index(op.f("ix_enrolments_status"), "enrolments", ["status"], unique=False)

    op.create_table(
        "enrolment_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enrolment_id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("before_status", sa.String(length=24), nullable=True),
        sa.Column("after_status", sa.String(length=24), nullable=False),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["enrolment_id"],
            ["enrolments.id"],
            name=op.f("fk_enrolment_events_enrolment_id_enrolments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolment_events")),
    )
    op.create_index(op.f("ix_enrolment_events_enrolment_id"), "enrolment_events", ["enrolment_id"], unique=False)

    op.create_table(
        "enrolment_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("enrolment_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("first_name", sa.String(length=120), nullable=False),
        sa.Column("last_name", sa.String(length=120), nullable=False),
        sa.Column("sex", sa.Enum("F", "M", name="sex", native_enum=False, length=24), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("relationship_to_head", sa.String(length=40), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("id_number", sa.String(length=40), nullable=True),
        sa.Column("card_number", sa.String(length=40), nullable=True),
        sa.Column("last_name_key", sa.String(length=120), nullable=False),
        sa.Column("member_no", sa.String(length=44), nullable=True),
        sa.ForeignKeyConstraint(
            ["enrolment_id"],
            ["enrolments.id"],
            name=op.f("fk_enrolment_members_enrolment_id_enrolments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolment_members")),
        sa.UniqueConstraint("enrolment_id", "position", name=op.f("uq_enrolment_members_enrolment_id")),
    )
    op.create_index(op.f("ix_enrolment_members_card_number"), "enrolment_members", ["card_number"], unique=False)
    op.create_index(op.f("ix_enrolment_members_date_of_birth"), "enrolment_members", ["date_of_birth"], unique=False)
    op.create_index(op.f("ix_enrolment_members_enrolment_id"), "enrolment_members", ["enrolment_id"], unique=False)
    op.create_index(op.f("ix_enrolment_members_id_number"), "enrolment_members", ["id_number"], unique=False)
    op.create_index(op.f("ix_enrolment_members_last_name_key"), "enrolment_members", ["last_name_key"], unique=False)
    op.create_index(op.f("ix_enrolment_members_phone"), "enrolment_members", ["phone"], unique=False)

    op.create_index("ix_members_date_of_birth", "members", ["date_of_birth"], unique=False)
    op.create_index("ix_members_lower_last_name", "members", [sa.text("lower(last_name)")], unique=False)

    op.add_column("schemes", sa.Column("enrolment_required", sa.JSON(), nullable=True))
    op.add_column("schemes", sa.Column("enrolment_card_categories", sa.JSON(), nullable=True))
    op.add_column("schemes", sa.Column("household_pattern", sa.String(length=80), nullable=True))


def downgrade() -> None:
    op.drop_index("ix_members_lower_last_name", table_name="members")
    op.drop_index("ix_members_date_of_birth", table_name="members")
    op.drop_table("enrolment_members")
    op.drop_table("enrolment_events")
    op.drop_table("enrolments")
    op.drop_table("collectors")
    with op.batch_alter_table("schemes", schema=None) as batch_op:
        batch_op.drop_column("household_pattern")
        batch_op.drop_column("enrolment_card_categories")
        batch_op.drop_column("enrolment_required")
