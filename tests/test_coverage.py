"""Coverage dates as docs/rules.md states them: fee first, whole periods, credit, grace, lapse, waiting, subsidies."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import EligibilityStatus, HouseholdStatus, LedgerKind, MemberStatus
from models.coverage.allocation import reverse
from models.coverage.eligibility import household_eligibility
from models.coverage.ledger import account_entries, account_state, add_entry, get_or_create_account
from models.coverage.money import Allocation, CoveragePeriod
from models.coverage.periods import (
    book_enrolment_subsidies,
    book_subsidised_periods,
    enrolment_period_dates,
    live_periods,
    period_end,
    subsidy_source_ref,
)
from models.db import begin_write, make_engine
from models.members.household import Household
from models.migrate import upgrade
from tests import factories
from tests.factories import make_household, pay
from tests.migration_helpers import copy_into_older_schema

d = date

Period = tuple[date, date, date | None]  # start, end (inclusive), waiting until (inclusive)


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (d(2026, 11, 20), 12, d(2027, 11, 19)),
        (d(2026, 11, 20), 6, d(2027, 5, 19)),
        (d(2026, 11, 20), 1, d(2026, 12, 19)),
        (d(2027, 1, 31), 1, d(2027, 2, 27)),  # month-end clamps to 28 February
        (d(2028, 1, 31), 1, d(2028, 2, 28)),  # leap year: 29 February is the clamp
        (d(2026, 12, 1), 1, d(2026, 12, 31)),
        (d(2027, 3, 1), 12, d(2028, 2, 29)),
    ],
)
def test_periods_run_by_calendar_months(start: date, months: int, end: date) -> None:
    assert period_end(start, months) == end


SCENARIOS: list[tuple[str, str, str, int, str, list[tuple[date, int]], list[Period], int]] = [
    # (name, scheme, plan, size, category, payments (date, amount), expected live periods, expected credit)
    (
        "CMU yearly, 4 people: 15,000 F = 1,000 fee + 14,000 (half of 4 x 7,000); 1 month waiting",
        "cmu-thies",
        "yearly",
        4,
        "standard",
        [(d(2026, 11, 20), 15_000)],
        [(d(2026, 11, 20), d(2027, 11, 19), d(2026, 12, 19))],
        0,
    ),
    (
        "CMU half-yearly, 4 people: 7,000 F a period; 2 months waiting",
        "cmu-thies",
        "half-yearly",
        4,
        "standard",
        [(d(2026, 11, 20), 8_000)],
        [(d(2026, 11, 20), d(2027, 5, 19), d(2027, 1, 19))],
        0,
    ),
    (
        "renewal before the end: contiguous, no new waiting",
        "cmu-thies",
        "yearly",
        4,
        "standard",
        [(d(2026, 11, 20), 15_000), (d(2027, 11, 1), 14_000)],
        [(d(2026, 11, 20), d(2027, 11, 19), d(2026, 12, 19)), (d(2027, 11, 20), d(2028, 11, 19), None)],
        0,
    ),
    (
        "renewal within the 30 days of grace: starts the day after the end, no new waiting",
        "cmu-thies",
        "yearly",
        4,
        "standard",
        [(d(2026, 11, 20), 15_000), (d(2027, 12, 19), 14_000)],
        [(d(2026, 11, 20), d(2027, 11, 19), d(2026, 12, 19)), (d(2027, 11, 20), d(2028, 11, 19), None)],
        0,
    ),
    (
        "payment after grace: lapsed months are not bought back, waiting starts again",
        "cmu-thies",
        "yearly",
        4,
        "standard",
        [(d(2026, 11, 20), 15_000), (d(2027, 12, 20), 14_000)],
        [(d(2026, 11, 20), d(2027, 11, 19), d(2026, 12, 19)), (d(2027, 12, 20), d(2028, 12, 19), d(2028, 1, 19))],
        0,
    ),
    (
        "instalments build credit; the fee comes first, the period once the share is reached",
        "cmu-thies",
        "yearly",
        4,
        "standard",
        [(d(2026, 11, 20), 5_000), (d(2026, 12, 5), 5_000), (d(2026, 12, 20), 5_000)],
        [(d(2026, 12, 20), d(2027, 12, 19), d(2027, 1, 19))],
        0,
    ),
    (
        "instalments short of the share fund nothing",
        "cmu-thies",
        "yearly",
        4,
        "standard",
        [(d(2026, 11, 20), 5_000), (d(2026, 12, 5), 9_999)],
        [],
        13_999,
    ),
    (
        "advance cap (24 months): a period may start at most 24 months after the payment",
        "cmu-thies",
        "yearly",
        4,
        "standard",
        [(d(2026, 11, 20), 60_000)],
        [
            (d(2026, 11, 20), d(2027, 11, 19), d(2026, 12, 19)),
            (d(2027, 11, 20), d(2028, 11, 19), None),
            (d(2028, 11, 20), d(2029, 11, 19), None),
        ],
        17_000,
    ),
    (
        "SKY, 2 people: 3,600 riel a month; 1 month waiting is the whole first month",
        "sky-cambodia",
        "monthly",
        2,
        "standard",
        [(d(2026, 11, 20), 7_200)],
        [(d(2026, 11, 20), d(2026, 12, 19), d(2026, 12, 19)), (d(2026, 12, 20), d(2027, 1, 19), None)],
        0,
    ),
    (
        "SKY: 15 days of grace, then lapse",
        "sky-cambodia",
        "monthly",
        1,
        "standard",
        [(d(2026, 11, 20), 2_000), (d(2027, 1, 3), 2_000), (d(2027, 2, 19), 2_500)],
        [
            (d(2026, 11, 20), d(2026, 12, 19), d(2026, 12, 19)),
            (d(2026, 12, 20), d(2027, 1, 19), None),
            (d(2027, 2, 19), d(2027, 3, 18), d(2027, 3, 18)),
        ],
        500,
    ),
]


@pytest.mark.parametrize(
    ("name", "scheme_code", "plan", "size", "category", "payments", "periods", "credit"),
    SCENARIOS,
    ids=[s[0][:40] for s in SCENARIOS],
)
def test_payments_fund_periods(
    session: Session,
    name: str,
    scheme_code: str,
    plan: str,
    size: int,
    category: str,
    payments: list[tuple[date, int]],
    periods: list[Period],
    credit: int,
) -> None:
    scheme = factories.scheme(session, scheme_code)
    household = make_household(session, scheme, size=size, category=category, plan=plan)
    for on, amount in payments:
        pay(session, household, amount, on)
    got = [(p.start_on, p.end_on, p.waiting_until) for p in live_periods(session, household.id)]
    assert got == periods, name
    assert account_state(session, household_id=household.id).credit == credit


def test_first_payment_writes_fee_charge_and_state_subsidy(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    household = make_household(session, scheme, size=4)
    result = pay(session, household, 15_000, d(2026, 11, 20))
    assert result.fee == 1_000
    assert [(p.price, p.household_share, p.subsidy) for p in result.periods] == [(28_000, 14_000, 14_000)]
    entries = account_entries(session, result.account_id)
    assert [(e.kind, e.amount, e.funder) for e in entries] == [
        (LedgerKind.PAYMENT, 15_000, None),
        (LedgerKind.FEE, -1_000, None),
        (LedgerKind.CHARGE, -28_000, None),
        (LedgerKind.SUBSIDY, 14_000, "state"),  # a receivable from the state, booked with the household's share
    ]
    assert result.balance == 0
    # The fee is once per household: the next year costs the share only.
    second = pay(session, household, 14_000, d(2027, 11, 1))
    assert second.fee == 0 and len(second.periods) == 1


def test_member_who_left_lowers_the_next_period(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    household = make_household(session, scheme, size=4)
    first = pay(session, household, 15_000, d(2026, 11, 20))
    assert first.periods[0].household_share == 14_000
    leaver = household.members[3]
    leaver.status, leaver.left_on = MemberStatus.LEFT, d(2027, 5, 2)
    session.commit()
    second = pay(session, household, 10_500, d(2027, 11, 1))
    assert [(p.start_on, p.price, p.household_share) for p in second.periods] == [(d(2027, 11, 20), 21_000, 10_500)]
    assert second.credit == 0


def test_subsidised_household_is_funded_by_the_state_at_enrolment_and_each_renewal(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    bsf = make_household(session, scheme, size=4, category="bsf", enrolled_on=d(2026, 11, 20))
    standard = make_household(session, scheme, size=4, category="standard", enrolled_on=d(2026, 11, 20))
    later = make_household(session, scheme, size=2, category="cec", enrolled_on=d(2026, 12, 5))

    assert book_subsidised_periods(session, scheme, d(2026, 11, 20)) == 1
    session.commit()
    # The clock runs again the same day and the next: nothing more.
    assert book_subsidised_periods(session, scheme, d(2026, 11, 20)) == 0
    assert book_subsidised_periods(session, scheme, d(2026, 11, 21)) == 0
    session.commit()
    assert [
        (p.start_on, p.end_on, p.waiting_until, p.price, p.household_share, p.subsidy_amount)
        for p in live_periods(session, bsf.id)
    ] == [(d(2026, 11, 20), d(2027, 11, 19), d(2026, 12, 19), 28_000, 0, 28_000)]
    assert live_periods(session, standard.id) == []
    entries = account_entries(session, get_or_create_account(session, household=bsf).id)
    # The funder pays the membership fee too, in the same booking.
    assert [(e.kind, e.amount, e.funder) for e in entries] == [
        (LedgerKind.SUBSIDY, 28_000, "state"),
        (LedgerKind.CHARGE, -28_000, None),
        (LedgerKind.SUBSIDY, 1_000, "state"),
        (LedgerKind.FEE, -1_000, None),
    ]
    assert account_state(session, household_id=bsf.id).fee_paid
    assert (
        session.scalar(
            select(Allocation.amount).where(Allocation.source_ref == subsidy_source_ref(bsf.id, d(2026, 11, 20)))
        )
        == 29_000  # the price and the fee the funder pays, as a payment's allocation holds both
    )
    assert account_state(session, household_id=bsf.id).balance == 0

    # A household enrolled later gets its first period from its enrolment day, even when the clock is late.
    session.commit()
    assert book_subsidised_periods(session, scheme, d(2026, 12, 7)) == 1
    session.commit()
    assert [(p.start_on, p.price) for p in live_periods(session, later.id)] == [(d(2026, 12, 5), 14_000)]

    # On the last day of the period the next one is booked, back to back and without waiting.
    session.commit()
    assert book_subsidised_periods(session, scheme, d(2027, 11, 18)) == 0
    assert book_subsidised_periods(session, scheme, d(2027, 11, 19)) == 1
    session.commit()
    assert [(p.start_on, p.waiting_until) for p in live_periods(session, bsf.id)][1] == (d(2027, 11, 20), None)


def test_the_clock_books_the_same_allocation_with_or_without_an_account(session: Session) -> None:
    # One household had an account before (set-based booking), the other none (booked one at a time): both
    # allocations hold the price and the fee the funder pays, and their entries are the same.
    scheme = factories.scheme(session, "cmu-thies")
    with_account = make_household(session, scheme, size=4, category="bsf", enrolled_on=d(2026, 11, 20))
    without = make_household(session, scheme, size=4, category="bsf", enrolled_on=d(2026, 11, 20))
    get_or_create_account(session, household=with_account)
    session.commit()
    assert book_subsidised_periods(session, scheme, d(2026, 11, 20)) == 2
    session.commit()
    booked = []
    for household in (with_account, without):
        ref = subsidy_source_ref(household.id, d(2026, 11, 20))
        amount = session.scalar(select(Allocation.amount).where(Allocation.source_ref == ref))
        entries = account_entries(session, get_or_create_account(session, household=household).id)
        booked.append((amount, [(e.kind, e.amount, e.funder) for e in entries]))
    assert booked[0] == booked[1]
    assert booked[0][0] == 29_000


@pytest.mark.parametrize(
    ("plan", "enrolled_on", "on", "expected"),
    [
        # Enrolled last year: the run of periods from enrolment holds today, its waiting long over.
        ("yearly", d(2025, 3, 15), d(2026, 12, 7), (d(2026, 3, 15), d(2027, 3, 14), None)),
        # Enrolled a week ago: the first period, its waiting running from enrolment.
        ("yearly", d(2026, 11, 30), d(2026, 12, 7), (d(2026, 11, 30), d(2027, 11, 29), d(2026, 12, 29))),
        # Half-yearly, two months' wait from enrolment still reaching into the current period? No: over.
        ("half-yearly", d(2026, 1, 31), d(2026, 12, 7), (d(2026, 7, 31), d(2027, 1, 30), None)),
        ("half-yearly", d(2026, 11, 1), d(2026, 12, 7), (d(2026, 11, 1), d(2027, 4, 30), d(2026, 12, 31))),
    ],
)
@pytest.mark.parametrize("booking", ["clock", "import"])
def test_fully_subsidised_household_is_covered_from_enrolment_however_late_the_booking(
    session: Session, plan: str, enrolled_on: date, on: date, expected: Period, booking: str
) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    bsf = make_household(session, scheme, size=2, category="bsf", plan=plan, enrolled_on=enrolled_on)
    get_or_create_account(session, household=bsf)  # an import creates every household's account
    session.commit()
    begin_write(session)
    if booking == "clock":
        assert book_subsidised_periods(session, scheme, on) == 1
    else:
        assert book_enrolment_subsidies(session, scheme, [bsf.id], on) == 1
        assert book_enrolment_subsidies(session, scheme, [bsf.id], on) == 0  # booked once
    session.commit()
    assert [(p.start_on, p.end_on, p.waiting_until) for p in live_periods(session, bsf.id)] == [expected]
    state = account_state(session, household_id=bsf.id)
    assert (state.balance, state.fee_paid) == (0, True)
    answer = household_eligibility(session, bsf, on)
    assert answer.covered == (expected[2] is None)
    assert answer.amount_due == 0


def test_subsidy_job_skips_suspended_households_and_payments_never_charge_them(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    suspended = make_household(session, scheme, category="bsf", status=HouseholdStatus.SUSPENDED)
    session.commit()
    assert book_subsidised_periods(session, scheme, d(2026, 11, 20)) == 0
    session.commit()
    bsf = make_household(session, scheme, category="bsf")
    # Money a relative sends to a fully subsidised household stays as credit: no fee, no period bought.
    result = pay(session, bsf, 5_000, d(2026, 11, 20))
    assert (result.fee, result.periods, result.credit) == (0, (), 5_000)
    assert live_periods(session, suspended.id) == []


def test_migration_rebooks_from_enrolment_what_the_clock_booked_on_its_first_run(tmp_path: Path) -> None:
    """Existing data: a `bsf` household the old clock covered from its first run is covered from enrolment."""
    # Written with today's models, then copied into a database at revision 0020 (the columns it had).
    written = f"sqlite:///{tmp_path / 'written.db'}"
    upgrade(written)
    source = make_engine(written)
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0020_callback_credentials")
    engine = make_engine(url)
    today = date.today()  # the migration books on the scheme's today (Dakar is UTC)
    enrolled_on = today - timedelta(days=400)
    first_run = today - timedelta(days=10)
    with Session(source, expire_on_commit=False) as session:
        scheme = factories.scheme(session, "cmu-thies")
        bsf = make_household(session, scheme, size=2, category="bsf", enrolled_on=enrolled_on)
        account = get_or_create_account(session, household=bsf)
        session.flush()
        # What the old clock wrote: a first period from its first run, with a new waiting period.
        old_end, old_wait = period_end(first_run, 12), period_end(first_run, 1)
        allocation = Allocation(
            source_ref=subsidy_source_ref(bsf.id, first_run),
            account_id=account.id,
            amount=14_000,
            currency="XOF",
            effective_on=first_run,
        )
        session.add(allocation)
        session.flush()
        period = CoveragePeriod(
            household_id=bsf.id,
            allocation_id=allocation.id,
            plan="yearly",
            months=12,
            start_on=first_run,
            end_on=old_end,
            waiting_until=old_wait,
            price=14_000,
            household_share=0,
            subsidy_amount=14_000,
            funder="state",
        )
        session.add(period)
        session.flush()
        add_entry(session, account, LedgerKind.SUBSIDY, 14_000, first_run, allocation=allocation, period=period)
        add_entry(session, account, LedgerKind.CHARGE, -14_000, first_run, allocation=allocation, period=period)
        session.commit()
        assert household_eligibility(session, bsf, today).status is EligibilityStatus.WAITING
    copy_into_older_schema(source, engine)
    source.dispose()

    upgrade(url)
    with Session(engine) as session:
        rebooked = session.get(Household, bsf.id)
        assert rebooked is not None
        expected = enrolment_period_dates(enrolled_on, 12, 1, today)
        assert [(p.start_on, p.end_on, p.waiting_until) for p in live_periods(session, rebooked.id)] == [
            (expected.start_on, expected.end_on, None)
        ]
        answer = household_eligibility(session, rebooked, today)
        assert (answer.covered, answer.status, answer.amount_due) == (True, EligibilityStatus.ACTIVE, 0)
        state = account_state(session, household_id=rebooked.id)
        assert (state.balance, state.fee_paid) == (0, True)
        reversed_ = session.scalar(select(Allocation).where(Allocation.id == allocation.id))
        assert reversed_ is not None and reversed_.reversed_at is not None
    # Upgrading again is a no-op (Alembic records the revision); the data stays as rebooked.
    upgrade(url)
    engine.dispose()


def test_migration_stores_each_households_last_cover_end(tmp_path: Path) -> None:
    """Existing data: migration 0037 stores the end of each household's last live period, none without one."""
    written = f"sqlite:///{tmp_path / 'written.db'}"
    upgrade(written)
    source = make_engine(written)
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0034_admin_scale_indexes")
    engine = make_engine(url)
    with Session(source, expire_on_commit=False) as session:
        scheme = factories.scheme(session, "cmu-thies")
        renewed, reversed_, never = (make_household(session, scheme) for _ in range(3))
        pay(session, renewed, 15_000, d(2026, 11, 20))
        pay(session, renewed, 14_000, d(2027, 11, 1))  # the next period: ends 2028-11-19
        pay(session, reversed_, 15_000, d(2026, 11, 20), ref="wave:MIG_0037")
        session.commit()
        reverse(session, "wave:MIG_0037", "bounced", d(2026, 11, 21))
        session.commit()
    copy_into_older_schema(source, engine)
    source.dispose()

    upgrade(url)
    with Session(engine) as session:
        ends = dict(list(session.execute(select(Household.id, Household.cover_ends_on)).tuples()))
    assert ends == {renewed.id: d(2028, 11, 19), reversed_.id: None, never.id: None}
    engine.dispose()
