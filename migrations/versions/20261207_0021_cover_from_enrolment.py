"""fully subsidised households covered from enrolment (issue 19)

Data only. The clock used to start a fully subsidised household's first period on the day it first ran (with a
new waiting period) instead of at enrolment: such periods — every live period of the household funded by the
funder alone, the first one starting after `enrolled_on` — are reversed (their allocations and ledger entries
negated, as `models.coverage.allocation.reverse` does) and the period of the run from enrolment that holds today is
booked instead (`models.coverage.periods.enrolment_period_dates`). The funder also pays the membership fee of every
fully subsidised household whose fee is unpaid. Written with Core tables so later model changes cannot break it.

Revision ID: 0021_cover_from_enrolment
Revises: 0020_callback_credentials
Create Date: 2026-12-07 10:10:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

from models.coverage.periods import enrolment_period_dates

revision: str = "0021_cover_from_enrolment"
down_revision: str | None = "0020_callback_credentials"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FULL_SHARE_BP = 10_000
REASON = "rebooked from enrolment (issue 19): the clock had started the cover on its first run"

schemes = sa.table(
    "schemes",
    sa.column("id", sa.Integer),
    sa.column("timezone", sa.String),
    sa.column("currency", sa.String),
    sa.column("membership_fee", sa.BigInteger),
)
categories = sa.table(
    "subsidy_categories",
    sa.column("scheme_id", sa.Integer),
    sa.column("code", sa.String),
    sa.column("share_bp", sa.Integer),
    sa.column("funder", sa.String),
)
plans = sa.table(
    "plans",
    sa.column("scheme_id", sa.Integer),
    sa.column("code", sa.String),
    sa.column("months", sa.Integer),
    sa.column("waiting_months", sa.Integer),
)
households = sa.table(
    "households",
    sa.column("id", sa.Integer),
    sa.column("scheme_id", sa.Integer),
    sa.column("subsidy_category", sa.String),
    sa.column("plan", sa.String),
    sa.column("status", sa.String),
    sa.column("enrolled_on", sa.Date),
)
accounts = sa.table("accounts", sa.column("id", sa.Integer), sa.column("household_id", sa.Integer))
allocations = sa.table(
    "allocations",
    sa.column("id", sa.Integer),
    sa.column("source_ref", sa.String),
    sa.column("account_id", sa.Integer),
    sa.column("amount", sa.BigInteger),
    sa.column("currency", sa.String),
    sa.column("effective_on", sa.Date),
    sa.column("created_at", sa.DateTime),
    sa.column("reversed_at", sa.DateTime),
    sa.column("reversal_reason", sa.String),
)
periods = sa.table(
    "coverage_periods",
    sa.column("id", sa.Integer),
    sa.column("household_id", sa.Integer),
    sa.column("allocation_id", sa.Integer),
    sa.column("plan", sa.String),
    sa.column("months", sa.Integer),
    sa.column("start_on", sa.Date),
    sa.column("end_on", sa.Date),
    sa.column("waiting_until", sa.Date),
    sa.column("price", sa.BigInteger),
    sa.column("household_share", sa.BigInteger),
    sa.column("subsidy_amount", sa.BigInteger),
    sa.column("funder", sa.String),
    sa.column("created_at", sa.DateTime),
    sa.column("reversed_at", sa.DateTime),
)
entries = sa.table(
    "ledger_entries",
    sa.column("id", sa.Integer),
    sa.column("account_id", sa.Integer),
    sa.column("allocation_id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("amount", sa.BigInteger),
    sa.column("currency", sa.String),
    sa.column("funder", sa.String),
    sa.column("period_id", sa.Integer),
    sa.column("payment_id", sa.Integer),
    sa.column("reverses_entry_id", sa.Integer),
    sa.column("effective_on", sa.Date),
    sa.column("note", sa.String),
    sa.column("created_at", sa.DateTime),
)


def upgrade() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC).replace(tzinfo=None)
    for scheme in bind.execute(sa.select(schemes)).all():
        today = datetime.now(ZoneInfo(scheme.timezone)).date()
        full = {
            row.code: row.funder
            for row in bind.execute(
                sa.select(categories).where(categories.c.scheme_id == scheme.id, categories.c.share_bp >= FULL_SHARE_BP)
            )
        }
        if not full:
            continue
        plan_of = {row.code: row for row in bind.execute(sa.select(plans).where(plans.c.scheme_id == scheme.id))}
        rows = bind.execute(
            sa.select(
                households.c.id,
                households.c.enrolled_on,
                households.c.plan,
                households.c.subsidy_category,
                accounts.c.id.label("account_id"),
            )
            .join(accounts, accounts.c.household_id == households.c.id)
            .where(
                households.c.scheme_id == scheme.id,
                households.c.subsidy_category.in_(list(full)),
                households.c.status == "ACTIVE",
                households.c.enrolled_on <= today,
            )
            .order_by(households.c.id)
        ).all()
        for row in rows:
            _rebook(bind, scheme, today, now, row, plan_of.get(row.plan), full[row.subsidy_category])


def _rebook(bind: Any, scheme: Any, today: date, now: datetime, row: Any, plan: Any, funder: str | None) -> None:
    live = bind.execute(
        sa.select(periods.c.id, periods.c.start_on, periods.c.price, periods.c.household_share, periods.c.allocation_id)
        .where(periods.c.household_id == row.id, periods.c.reversed_at.is_(None))
        .order_by(periods.c.start_on)
    ).all()
    first_period_allocation: int | None = None
    if live and plan is not None and live[0].start_on > row.enrolled_on and all(p.household_share == 0 for p in live):
        allocation_ids = {p.allocation_id for p in live if p.allocation_id is not None}
        for entry in bind.execute(
            sa.select(entries).where(entries.c.allocation_id.in_(allocation_ids), entries.c.reverses_entry_id.is_(None))
        ).all():
            bind.execute(
                sa.insert(entries).values(
                    account_id=entry.account_id,
                    allocation_id=entry.allocation_id,
                    kind="reversal",
                    amount=-entry.amount,
                    currency=entry.currency,
                    funder=entry.funder,
                    period_id=entry.period_id,
                    payment_id=entry.payment_id,
                    reverses_entry_id=entry.id,
                    effective_on=today,
                    note=REASON,
                    created_at=now,
                )
            )
        bind.execute(sa.update(periods).where(periods.c.id.in_([p.id for p in live])).values(reversed_at=now))
        bind.execute(
            sa.update(allocations)
            .where(allocations.c.id.in_(allocation_ids))
            .values(reversed_at=now, reversal_reason=REASON)
        )
        dates = enrolment_period_dates(row.enrolled_on, plan.months, plan.waiting_months, today)
        price = live[-1].price  # the household's size has not changed since the clock's booking
        ref = f"subsidy:{row.id}:{dates.start_on.isoformat()}"
        if bind.scalar(sa.select(allocations.c.id).where(allocations.c.source_ref == ref)) is None:
            first_period_allocation = _allocation(bind, ref, row.account_id, price, scheme.currency, today, now)
            period_id = bind.execute(
                sa.insert(periods)
                .values(
                    household_id=row.id,
                    allocation_id=first_period_allocation,
                    plan=row.plan,
                    months=plan.months,
                    start_on=dates.start_on,
                    end_on=dates.end_on,
                    waiting_until=dates.waiting_until,
                    price=price,
                    household_share=0,
                    subsidy_amount=price,
                    funder=funder,
                    created_at=now,
                )
                .returning(periods.c.id)
            ).scalar_one()
            _entry(
                bind,
                row.account_id,
                first_period_allocation,
                "subsidy",
                price,
                scheme.currency,
                today,
                now,
                funder,
                period_id,
            )
            _entry(
                bind,
                row.account_id,
                first_period_allocation,
                "charge",
                -price,
                scheme.currency,
                today,
                now,
                None,
                period_id,
            )
    if scheme.membership_fee > 0 and live and not _fee_paid(bind, row.account_id):
        allocation_id = first_period_allocation
        if allocation_id is None:
            ref = f"subsidy:{row.id}:fee"
            if bind.scalar(sa.select(allocations.c.id).where(allocations.c.source_ref == ref)) is not None:
                return
            allocation_id = _allocation(bind, ref, row.account_id, scheme.membership_fee, scheme.currency, today, now)
        fee = scheme.membership_fee
        _entry(bind, row.account_id, allocation_id, "subsidy", fee, scheme.currency, today, now, funder, None)
        _entry(bind, row.account_id, allocation_id, "fee", -fee, scheme.currency, today, now, None, None)


def _fee_paid(bind: Any, account_id: int) -> bool:
    reversed_entry = entries.alias("reversed_entry")
    count = sa.case(
        (entries.c.kind == "fee", 1),
        (sa.and_(entries.c.kind == "reversal", reversed_entry.c.kind == "fee"), -1),
        else_=0,
    )
    total = bind.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(count), 0))
        .select_from(entries.outerjoin(reversed_entry, entries.c.reverses_entry_id == reversed_entry.c.id))
        .where(entries.c.account_id == account_id)
    )
    return int(total or 0) > 0


def _allocation(bind: Any, ref: str, account_id: int, amount: int, currency: str, on: date, now: datetime) -> int:
    return int(
        bind.execute(
            sa.insert(allocations)
            .values(
                source_ref=ref, account_id=account_id, amount=amount, currency=currency, effective_on=on, created_at=now
            )
            .returning(allocations.c.id)
        ).scalar_one()
    )


def _entry(
    bind: Any,
    account_id: int,
    allocation_id: int,
    kind: str,
    amount: int,
    currency: str,
    on: date,
    now: datetime,
    funder: str | None,
    period_id: int | None,
) -> None:
    bind.execute(
        sa.insert(entries).values(
            account_id=account_id,
            allocation_id=allocation_id,
            kind=kind,
            amount=amount,
            currency=currency,
            funder=funder,
            period_id=period_id,
            effective_on=on,
            created_at=now,
        )
    )


def downgrade() -> None:
    # The reversed bookings stay reversed: the ledger is append-only, and the rebooked periods are right.
    pass
