"""Imported operator statements, their lines and the breaks found against the system."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, Money, utcnow


class BreakKind(enum.StrEnum):
    """What a statement says that the system does not (or the other way round)."""

    MISSING_IN_SYSTEM = "missing_in_system"  # a credit line no report had brought: created from the statement
    MISSING_IN_STATEMENT = "missing_in_statement"  # a payment of the statement's days that no line confirms
    AMOUNT_MISMATCH = "amount_mismatch"  # same transaction id, another amount or currency → CONFLICT
    FIELD_MISMATCH = "field_mismatch"  # same transaction id, another reference or payer → CONFLICT
    DUPLICATE_LINE = "duplicate_line"  # the same transaction id twice in one statement
    PROVISIONAL_CONFIRMED = "provisional_confirmed"  # a forwarded-text payment the statement confirms (resolved)


class LineKind(enum.StrEnum):
    """How a statement line counts: only credits are payments; the rest is kept as read."""

    CREDIT = "credit"
    DEBIT = "debit"
    FAILED = "failed"


class StatementImport(Base):
    __tablename__ = "statement_imports"
    __table_args__ = (UniqueConstraint("provider", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(40))
    filename: Mapped[str]
    sha256: Mapped[str] = mapped_column(String(64))
    imported_by: Mapped[str] = mapped_column(String(80))
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    period_start: Mapped[date | None]
    period_end: Mapped[date | None]
    # The column mapping (operators/statement_formats.toml) the file was read with.
    format: Mapped[str] = mapped_column(String(40), default="")
    # The account the statement is of (a merchant number, a paybill): its credits were paid to that account.
    account: Mapped[str | None] = mapped_column(String(80))
    # The mutuelle that account serves; None for a shared account (a union's) or none named.
    mutuelle_id: Mapped[int | None] = mapped_column(ForeignKey("mutuelles.id"), index=True)
    credit_count: Mapped[int] = mapped_column(Integer, default=0)
    # Credits per day and currency, statement vs system, as they stood when the statement was imported.
    totals: Mapped[list[Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    lines: Mapped[list[StatementLine]] = relationship(
        back_populates="statement_import", order_by="StatementLine.line_no"
    )
    breaks: Mapped[list[StatementBreak]] = relationship(back_populates="statement_import", order_by="StatementBreak.id")


class StatementLine(Base):
    __tablename__ = "statement_lines"
    __table_args__ = (UniqueConstraint("import_id", "line_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("statement_imports.id"), index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    provider_txn_id: Mapped[str] = mapped_column(String(80), index=True)
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    paid_at: Mapped[datetime]
    payer_phone: Mapped[str | None] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20))
    raw: Mapped[str] = mapped_column(Text)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)

    statement_import: Mapped[StatementImport] = relationship(back_populates="lines")


class StatementBreak(Base):
    """A difference between a statement and the system: missing on either side, mismatch, duplicate."""

    __tablename__ = "statement_breaks"

    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("statement_imports.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    line_id: Mapped[int | None] = mapped_column(ForeignKey("statement_lines.id"))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    detail: Mapped[str | None] = mapped_column(String(500))
    resolved_at: Mapped[datetime | None]

    statement_import: Mapped[StatementImport] = relationship(back_populates="breaks")
