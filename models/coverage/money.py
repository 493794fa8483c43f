"""Ledger tables: allocations (one per source of money), append-only entries, coverage periods."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, LedgerKind, Money, utcnow
from models.members.household import Account, Household


class Allocation(Base):
    """One application of money to an account, unique per source (a payment, a subsidy booking…)."""

    __tablename__ = "allocations"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_ref: Mapped[str] = mapped_column(String(120), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    effective_on: Mapped[date]
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reversed_at: Mapped[datetime | None]
    reversal_reason: Mapped[str | None] = mapped_column(String(500))

    account: Mapped[Account] = relationship()
    entries: Mapped[list[LedgerEntry]] = relationship(
        back_populates="allocation", foreign_keys="LedgerEntry.allocation_id", order_by="LedgerEntry.id"
    )


class LedgerEntry(Base):
    """An append-only movement on an account: positive in the account's favour, negative owed."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_account_id_id", "account_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    allocation_id: Mapped[int | None] = mapped_column(ForeignKey("allocations.id"), index=True)
    kind: Mapped[LedgerKind]
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    funder: Mapped[str | None] = mapped_column(String(80))
    period_id: Mapped[int | None] = mapped_column(ForeignKey("coverage_periods.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    # Unique: an entry is reversed at most once, whatever races between workers.
    reverses_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"), unique=True)
    effective_on: Mapped[date]
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    allocation: Mapped[Allocation | None] = relationship(back_populates="entries", foreign_keys=[allocation_id])


class CoveragePeriod(Base):
    """A funded period of cover for a household, from `start_on` to `end_on` inclusive."""

    __tablename__ = "coverage_periods"
    __table_args__ = (
        Index("ix_coverage_periods_household_id_end_on", "household_id", "end_on"),
        # A live period is funded once: two allocations can never both fund the same start.
        Index(
            "uq_coverage_periods_live_start",
            "household_id",
            "start_on",
            unique=True,
            postgresql_where=text("reversed_at IS NULL"),
            sqlite_where=text("reversed_at IS NULL"),
        ),
        # The renewal lists read the live periods ending within their windows.
        Index(
            "ix_coverage_periods_live_end_on",
            "end_on",
            postgresql_where=text("reversed_at IS NULL"),
            sqlite_where=text("reversed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    allocation_id: Mapped[int | None] = mapped_column(ForeignKey("allocations.id"), index=True)
    plan: Mapped[str] = mapped_column(String(40))
    months: Mapped[int] = mapped_column(Integer)
    start_on: Mapped[date]
    end_on: Mapped[date]
    waiting_until: Mapped[date | None]
    price: Mapped[int] = mapped_column(Money)
    household_share: Mapped[int] = mapped_column(Money)
    subsidy_amount: Mapped[int] = mapped_column(Money)
    funder: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reversed_at: Mapped[datetime | None]

    household: Mapped[Household] = relationship()
