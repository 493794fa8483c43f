"""Report snapshots: a scheme's monthly report figures computed ahead by the clock, read by `/admin/reports`.

At a million households the report's aggregate statements take minutes (each household's standing on each
month's day); the clock (`workers.clock_jobs.snapshot_reports`) computes them month by month into these tables
and the report sums them. A month's figures are kept at the finest grain the report's lines and filters need —
one cell per household commune, network and mutuelle (a payment's by its payer's: see
`models.views.scheme_reports`) — so every grouping and filter is a sum over cells. The report reads a month's
snapshot only while it answers for the same day counted (`as_of`): a closed month's last day, or today for the
current month; any other month is computed from the records as before.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Money, utcnow


class ReportMonth(Base):
    """A scheme's month whose figures are stored as cells, and the day they were counted on."""

    __tablename__ = "report_months"

    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id", ondelete="CASCADE"), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)  # its first day
    as_of: Mapped[date] = mapped_column(Date)  # the day counted: the month's last, or the day it was computed
    computed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)  # naive UTC
    seconds: Mapped[float] = mapped_column(default=0.0)  # how long the statements took


class ReportCell(Base):
    """One month's figures for the households (and money) of one commune, network and mutuelle of a scheme.

    A cell with a `funder` holds only that funder's `subsidy` booked in the month; the others hold the rest.
    Network and mutuelle ids are not foreign keys: a snapshot keeps what was counted.
    """

    __tablename__ = "report_cells"
    __table_args__ = (Index("ix_report_cells_scheme_month", "scheme_id", "month"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id", ondelete="CASCADE"))
    month: Mapped[date] = mapped_column(Date)
    commune: Mapped[str | None] = mapped_column(String(120))
    network_id: Mapped[int | None] = mapped_column(Integer)
    mutuelle_id: Mapped[int | None] = mapped_column(Integer)
    funder: Mapped[str | None] = mapped_column(String(80))
    enrolled: Mapped[int] = mapped_column(default=0)
    paid: Mapped[int] = mapped_column(default=0)
    covered: Mapped[int] = mapped_column(default=0)
    waiting: Mapped[int] = mapped_column(default=0)
    grace: Mapped[int] = mapped_column(default=0)
    lapsed: Mapped[int] = mapped_column(default=0)
    pending: Mapped[int] = mapped_column(default=0)
    stopped: Mapped[int] = mapped_column(default=0)
    due_households: Mapped[int] = mapped_column(default=0)
    due: Mapped[int] = mapped_column(Money, default=0)
    not_renewed: Mapped[int] = mapped_column(default=0)
    collected: Mapped[int] = mapped_column(Money, default=0)
    payments: Mapped[int] = mapped_column(default=0)
    matched_auto: Mapped[int] = mapped_column(default=0)
    matched_manual: Mapped[int] = mapped_column(default=0)
    unresolved: Mapped[int] = mapped_column(default=0)
    subsidy: Mapped[int] = mapped_column(Money, default=0)


# The figures a cell sums, in `Figures`' names (subsidies apart).
CELL_FIGURES = (
    "enrolled",
    "paid",
    "covered",
    "waiting",
    "grace",
    "lapsed",
    "pending",
    "stopped",
    "due_households",
    "due",
    "not_renewed",
    "collected",
    "payments",
    "matched_auto",
    "matched_manual",
    "unresolved",
)
