"""FHIR identifier systems (issue 28)

Schema: `schemes.fhir_member_system` and `schemes.fhir_coverage_system`, the identifier systems a scheme file's
`[fhir]` table names; empty for existing schemes, which then use the systems derived from their code
(`https://mutuelle.example/fhir/<code>/member`, `…/coverage`) until `schemes load` reads a file that names them.
Facility checks over FHIR are logged with channel `fhir`, a new value of a non-native enum: no schema change.

Revision ID: 0026_fhir_identifier_systems
Revises: 0025_mutuelles
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026_fhir_identifier_systems"
down_revision: str | None = "0025_mutuelles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("schemes", sa.Column("fhir_member_system", sa.String(length=200), nullable=True))
    op.add_column("schemes", sa.Column("fhir_coverage_system", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schemes", schema=None) as batch_op:
        batch_op.drop_column("fhir_coverage_system")
        batch_op.drop_column("fhir_member_system")
