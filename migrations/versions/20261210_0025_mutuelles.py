"""mutuelles (issue 24)

Schema: `mutuelles` (the organisations under a scheme) and their `mutuelle_accounts` (what payers dial, per
provider); `households.mutuelle_id` and `networks.mutuelle_id` (required); `payments.account` (the account the payer
paid, as reported) and `payments.mutuelle_id`; `statement_imports.account` and `.mutuelle_id`; `mutuelle_id` on
agents, API tokens and collection devices (None: every mutuelle); `staff_mutuelles` (the mutuelles a staff user is
kept to; none: every one).

Data: every scheme gets one mutuelle (its code and name, its channels' accounts) holding its households, networks
and payments; loading the scheme file afterwards adds the mutuelles it lists (a re-import with a `mutuelle` column
moves households to them). Existing staff stay unscoped.

Revision ID: 0025_mutuelles
Revises: 0024_staff_language
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025_mutuelles"
down_revision: str | None = "0024_staff_language"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCOPED = ("agents", "api_tokens", "collection_devices")
# Expression indexes SQLite's batch mode cannot reflect (it would drop them when it copies the table): dropped
# before the tables are altered and made again after.
EXPRESSION_INDEXES = (
    ("households", "ix_households_upper_household_no", "upper(household_no)"),
    ("networks", "ix_networks_upper_code", "upper(code)"),
)


def account_key(text: str) -> str:
    """models.schemes.mutuelle.account_key as of this revision: no accents, case, spaces or punctuation."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    return re.sub(r"[^A-Z0-9]", "", plain)[:80]


def upgrade() -> None:
    op.create_table(
        "mutuelles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scheme_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("communes", sa.JSON(), nullable=False),
        sa.Column("sms_sender_id", sa.String(length=11), nullable=True),
        sa.Column("contact", sa.String(length=200), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["scheme_id"], ["schemes.id"], name=op.f("fk_mutuelles_scheme_id_schemes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mutuelles")),
        sa.UniqueConstraint("code", name=op.f("uq_mutuelles_code")),
    )
    op.create_index(op.f("ix_mutuelles_scheme_id"), "mutuelles", ["scheme_id"], unique=False)
    op.create_table(
        "mutuelle_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mutuelle_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("account", sa.String(length=80), nullable=False),
        sa.Column("account_key", sa.String(length=80), nullable=False),
        sa.Column("display_name", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["mutuelle_id"],
            ["mutuelles.id"],
            name=op.f("fk_mutuelle_accounts_mutuelle_id_mutuelles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mutuelle_accounts")),
        sa.UniqueConstraint("mutuelle_id", "provider", name=op.f("uq_mutuelle_accounts_mutuelle_id")),
    )
    op.create_index(op.f("ix_mutuelle_accounts_mutuelle_id"), "mutuelle_accounts", ["mutuelle_id"], unique=False)
    op.create_index(op.f("ix_mutuelle_accounts_account_key"), "mutuelle_accounts", ["account_key"], unique=False)
    op.create_table(
        "staff_mutuelles",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("mutuelle_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mutuelle_id"], ["mutuelles.id"], name=op.f("fk_staff_mutuelles_mutuelle_id_mutuelles")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["staff_users.id"], name=op.f("fk_staff_mutuelles_user_id_staff_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "mutuelle_id", name=op.f("pk_staff_mutuelles")),
    )
    op.create_index(op.f("ix_staff_mutuelles_mutuelle_id"), "staff_mutuelles", ["mutuelle_id"], unique=False)

    for table, index, _expression in EXPRESSION_INDEXES:
        op.drop_index(index, table_name=table)
    for table in ("households", "networks", "payments", "statement_imports", *SCOPED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("mutuelle_id", sa.Integer(), nullable=True))
            batch_op.create_index(batch_op.f(f"ix_{table}_mutuelle_id"), ["mutuelle_id"], unique=False)
            batch_op.create_foreign_key(
                batch_op.f(f"fk_{table}_mutuelle_id_mutuelles"), "mutuelles", ["mutuelle_id"], ["id"]
            )
    for table in ("payments", "statement_imports"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("account", sa.String(length=80), nullable=True))

    _backfill()
    for table in ("households", "networks"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("mutuelle_id", existing_type=sa.Integer(), nullable=False)
    for table, index, expression in EXPRESSION_INDEXES:
        op.create_index(index, table, [sa.text(expression)], unique=False)


def _backfill() -> None:
    """One mutuelle per scheme (its code, name, sender and channels' accounts) holding everything it has."""
    bind = op.get_bind()
    schemes = bind.execute(sa.text("SELECT id, code, name, sms_sender_id FROM schemes ORDER BY id")).all()
    for scheme_id, code, name, sender in schemes:
        bind.execute(
            sa.text(
                "INSERT INTO mutuelles (scheme_id, code, name, communes, sms_sender_id, position, created_at) "
                "VALUES (:scheme, :code, :name, '[]', :sender, 0, CURRENT_TIMESTAMP)"
            ),
            {"scheme": scheme_id, "code": code[:40], "name": name[:120], "sender": sender},
        )
        mutuelle_id = bind.execute(sa.text("SELECT id FROM mutuelles WHERE code = :code"), {"code": code[:40]}).scalar()
        channels = bind.execute(
            sa.text("SELECT provider, account FROM payment_channels WHERE scheme_id = :scheme"), {"scheme": scheme_id}
        ).all()
        for provider, account in channels:
            bind.execute(
                sa.text(
                    "INSERT INTO mutuelle_accounts (mutuelle_id, provider, account, account_key) "
                    "VALUES (:mutuelle, :provider, :account, :key)"
                ),
                {"mutuelle": mutuelle_id, "provider": provider, "account": account[:80], "key": account_key(account)},
            )
        for table in ("households", "networks"):
            bind.execute(
                sa.text(f"UPDATE {table} SET mutuelle_id = :mutuelle WHERE scheme_id = :scheme"),  # noqa: S608
                {"mutuelle": mutuelle_id, "scheme": scheme_id},
            )
    # A payment belongs to the mutuelle of the household or network it was matched to.
    bind.execute(
        sa.text(
            "UPDATE payments SET mutuelle_id = COALESCE("
            "(SELECT h.mutuelle_id FROM households h WHERE h.id = payments.household_id), "
            "(SELECT n.mutuelle_id FROM networks n WHERE n.id = payments.network_id)) "
            "WHERE household_id IS NOT NULL OR network_id IS NOT NULL"
        )
    )


def downgrade() -> None:
    for table, index, _expression in EXPRESSION_INDEXES:
        op.drop_index(index, table_name=table)
    for table in ("payments", "statement_imports"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("account")
    for table in ("households", "networks", "payments", "statement_imports", *SCOPED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f"fk_{table}_mutuelle_id_mutuelles"), type_="foreignkey")
            batch_op.drop_index(batch_op.f(f"ix_{table}_mutuelle_id"))
            batch_op.drop_column("mutuelle_id")
    for table, index, expression in EXPRESSION_INDEXES:
        op.create_index(index, table, [sa.text(expression)], unique=False)
    op.drop_index(op.f("ix_staff_mutuelles_mutuelle_id"), table_name="staff_mutuelles")
    op.drop_table("staff_mutuelles")
    op.drop_index(op.f("ix_mutuelle_accounts_account_key"), table_name="mutuelle_accounts")
    op.drop_index(op.f("ix_mutuelle_accounts_mutuelle_id"), table_name="mutuelle_accounts")
    op.drop_table("mutuelle_accounts")
    op.drop_index(op.f("ix_mutuelles_scheme_id"), table_name="mutuelles")
    op.drop_table("mutuelles")
