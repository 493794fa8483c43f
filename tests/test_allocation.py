"""Allocation under a lock, idempotent per source; reversal and refund undo exactly what was funded."""

from __future__ import annotations

import threading
from datetime import date, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import LedgerKind
from models.coverage.allocation import UnknownAllocation, allocate, pay_network_households, refund, reverse
from models.coverage.ledger import account_entries, account_state, get_or_create_account
from models.coverage.money import Allocation, CoveragePeriod, LedgerEntry
from models.coverage.periods import (
    book_enrolment_subsidies,
    book_subsidised_period,
    book_subsidised_periods,
    live_periods,
)
from models.coverage.premiums import amount_due
from models.db import get_engine
from models.members.household import Household
from tests import factories
from tests.factories import make_household, make_network, pay
from workers.clock_jobs import pay_networks_due

d = date
D = d(2026, 11, 20)


def _counts(session: Session) -> tuple[int, int, int]:
    return (
        session.scalar(select(func.count()).select_from(Allocation)) or 0,
        session.scalar(select(func.count()).select_from(LedgerEntry)) or 0,
        session.scalar(select(func.count()).select_from(CoveragePeriod)) or 0,
    )


def test_same_source_twice_is_applied_once(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    household = make_household(session, scheme)
    first = pay(session, household, 15_000, D, ref="wave:T_1")
    before = _counts(session)
    again = pay(session, household, 15_000, D, ref="wave:T_1")
    assert _counts(session) == before
    assert (first.created, again.created) == (True, False)
    assert again.allocation_id == first.allocation_id and again.periods == first.periods and again.fee == 1_000


def test_a_source_cannot_be_applied_to_another_account(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    one, two = make_household(session, scheme), make_household(session, scheme)
    pay(session, one, 15_000, D, ref="wave:T_2")
    with pytest.raises(ValueError, match="another account"):
        pay(session, two, 15_000, D, ref="wave:T_2")
    session.rollback()


@pytest.mark.parametrize("amount", [0, -5, 1.5])
def test_only_positive_integer_amounts(session: Session, amount: int) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    account = get_or_create_account(session, household=make_household(session, scheme))
    session.commit()
    with pytest.raises(ValueError):
        allocate(session, account, amount, "x", D)


def test_reversal_removes_exactly_what_the_payment_funded(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    household = make_household(session, scheme)
    first = pay(session, household, 15_000, D, ref="wave:A")
    second = pay(session, household, 20_000, d(2027, 11, 1), ref="wave:B")
    assert len(second.periods) == 1 and second.credit == 6_000
    session.commit()

    result = reverse(session, "wave:B", "operator reversed the transfer", d(2027, 11, 3))
    session.commit()
    assert result.created and result.amount == 20_000 and result.entries == 3  # payment, charge, subsidy
    assert [(p.start_on, p.end_on) for p in live_periods(session, household.id)] == [
        (first.periods[0].start_on, first.periods[0].end_on)
    ]
    assert account_state(session, household_id=household.id).balance == 0
    reversals = [e for e in account_entries(session, first.account_id) if e.kind == LedgerKind.REVERSAL]
    assert sorted(e.amount for e in reversals) == [-20_000, -14_000, 28_000]
    assert all(e.reverses_entry_id is not None for e in reversals)
    subsidy_back = next(e for e in reversals if e.amount == -14_000)
    assert subsidy_back.funder == "state"  # the receivable from the funder is cancelled too
    allocation = session.scalar(select(Allocation).where(Allocation.source_ref == "wave:B"))
    assert allocation is not None and allocation.reversed_at is not None
    assert allocation.reversal_reason == "operator reversed the transfer"

    before = _counts(session)
    session.commit()
    again = reverse(session, "wave:B", "again", d(2027, 11, 4))
    assert not again.created and _counts(session) == before
    # The allocation itself reports that it was reversed.
    assert pay(session, household, 20_000, d(2027, 11, 1), ref="wave:B").reversed


def test_reversing_the_first_payment_gives_back_the_fee_status(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    household = make_household(session, scheme)
    pay(session, household, 15_000, D, ref="wave:F")
    reverse(session, "wave:F", "chargeback", D)
    session.commit()
    due = amount_due(session, household, D)
    assert (due.fee, due.total) == (1_000, 15_000)
    # Paying again books the fee again, once.
    result = pay(session, household, 15_000, d(2026, 11, 25))
    assert result.fee == 1_000 and result.periods[0].start_on == d(2026, 11, 25)


def test_reversing_credit_that_a_later_payment_spent_leaves_arrears(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    household = make_household(session, scheme)
    pay(session, household, 5_000, D, ref="i1")  # fee + 4,000 credit
    second = pay(session, household, 10_000, d(2026, 12, 1), ref="i2")  # 14,000 → the period
    assert len(second.periods) == 1
    reverse(session, "i1", "chargeback", d(2026, 12, 2))
    session.commit()
    # Only i1's own entries go: its payment and its fee. The period i2 funded stays; 5,000 is now owed.
    assert len(live_periods(session, household.id)) == 1
    state = account_state(session, household_id=household.id)
    assert (state.balance, state.fee_paid) == (-4_000, False)
    due = amount_due(session, household, d(2026, 12, 2))
    assert (due.fee, due.arrears, due.credit, due.total) == (1_000, 4_000, 0, 19_000)


def test_refund_records_the_money_going_back(session: Session) -> None:
    scheme = factories.scheme(session, "sky-cambodia")
    household = make_household(session, scheme, size=1)
    pay(session, household, 2_000, D, ref="wing:R")
    result = refund(session, "wing:R", "paid by mistake", d(2026, 11, 21))
    session.commit()
    assert result.amount == 2_000
    kinds = [(e.kind, e.amount) for e in account_entries(session, result.account_id)]
    assert kinds == [
        (LedgerKind.PAYMENT, 2_000),
        (LedgerKind.CHARGE, -2_000),
        (LedgerKind.REFUND, -2_000),
        (LedgerKind.REVERSAL, 2_000),
    ]
    assert live_periods(session, household.id) == []


def test_reversing_an_unknown_source_raises(session: Session) -> None:
    with pytest.raises(UnknownAllocation):
        reverse(session, "nope", "x", D)
    session.rollback()


def test_network_money_stays_on_the_network_then_pays_households_soonest_expiry_first(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    network = make_network(session, scheme)
    renewing = make_household(session, scheme, size=4, network=network)  # covered until 2027-11-19
    never = make_household(session, scheme, size=2, network=network)
    later = make_household(session, scheme, size=4, network=network)
    pay(session, renewing, 15_000, D)
    pay(session, later, 15_000, d(2027, 3, 1))
    received = pay(session, network, 30_000, d(2027, 11, 10), ref="wave:NET")
    assert (received.periods, received.balance, received.household_id) == ((), 30_000, None)

    account = get_or_create_account(session, network=network)
    session.commit()
    on = d(2027, 11, 10)
    paid = pay_network_households(session, account, on, run_ref="wave:NET")
    session.commit()
    # never (8,000: fee + 7,000) then renewing (14,000); later (14,000) no longer fits in 8,000.
    assert [(r.household_id, r.amount) for r in paid] == [(never.id, 8_000), (renewing.id, 14_000)]
    assert account_state(session, account_id=account.id).balance == 8_000
    assert [p.start_on for p in live_periods(session, renewing.id)] == [D, d(2027, 11, 20)]
    assert amount_due(session, never, on).total == 7_000  # the next period only

    # Run again: idempotent per run and household.
    session.commit()
    assert pay_network_households(session, account, on, run_ref="wave:NET") == []
    session.commit()

    # Reversing one household's payout gives the network its money back.
    session.commit()
    reverse(session, f"wave:NET:household:{never.id}", "network payout cancelled", on)
    session.commit()
    assert account_state(session, account_id=account.id).balance == 16_000
    assert live_periods(session, never.id) == []


def test_concurrent_allocations_to_one_household_end_with_exact_balances(pg_url: str) -> None:
    engine = get_engine(pg_url)
    with Session(engine, expire_on_commit=False) as setup:
        scheme = factories.scheme(setup, "cmu-thies")
        household = make_household(setup, scheme)
        account_id = get_or_create_account(setup, household=household).id
        setup.commit()
        household_id = household.id

    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        try:
            with Session(engine, expire_on_commit=False) as s:
                account = get_or_create_account(s, household=s.get(Household, household_id))
                s.commit()
                assert account.id == account_id
                barrier.wait()
                for i in range(6):
                    allocate(s, account, 5_000, f"{name}:{i}", D)
                    s.commit()
                    # A replay from the other thread's point of view: nothing new.
                    allocate(s, account, 5_000, f"{name}:{i}", D)
                    s.commit()
        except BaseException as exc:  # noqa: BLE001 - surfaced to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors

    with Session(engine) as check:
        # 60,000 = fee 1,000 + three yearly shares (the 24-month cap) 42,000 + 17,000 credit.
        state = account_state(check, account_id=account_id)
        assert (state.balance, state.fee_paid) == (17_000, True)
        periods = live_periods(check, household_id)
        assert [p.start_on for p in periods] == [D, d(2027, 11, 20), d(2028, 11, 20)]
        fees = check.scalar(select(func.count()).where(LedgerEntry.kind == LedgerKind.FEE))
        assert fees == 1
        assert check.scalar(select(func.count()).select_from(Allocation)) == 12


def test_on_sqlite_allocation_refuses_a_transaction_that_began_as_a_reader(sqlite_url: str) -> None:
    with Session(get_engine(sqlite_url), expire_on_commit=False) as session:
        scheme = factories.scheme(session, "sky-cambodia")
        account = get_or_create_account(session, household=make_household(session, scheme, size=1))
        session.commit()
        # A read opens a deferred transaction: deciding on money there would race other writers.
        session.scalar(select(func.count()).select_from(Allocation))
        with pytest.raises(RuntimeError, match="fresh transaction"):
            allocate(session, account, 2_000, "late", D)
        session.rollback()
        assert allocate(session, account, 2_000, "late", D).created
        session.commit()
        assert account_state(session, account_id=account.id).balance == 0


def test_network_pays_what_is_due_and_the_clock_pays_the_rest_as_households_fall_due(session: Session) -> None:
    """A covered household's next period is paid only once its cover ends within the reminder window."""
    scheme = factories.scheme(session, "cmu-thies")
    network = make_network(session, scheme)
    covered = make_household(session, scheme, size=4, network=network)  # covered until 2027-11-19
    never = make_household(session, scheme, size=2, network=network)
    bsf = make_household(session, scheme, size=2, category="bsf", network=network)
    pay(session, covered, 15_000, D)
    on = d(2027, 6, 1)
    pay(session, network, 30_000, on, ref="wave:NET2")
    account = get_or_create_account(session, network=network)
    session.commit()
    paid = pay_network_households(session, account, on, run_ref="wave:NET2")
    session.commit()
    # Only the household that must pay now (never paid: fee + 2 × 3,500); the covered one is not due yet,
    # the fully subsidised one never is.
    assert [(r.household_id, r.amount) for r in paid] == [(never.id, 8_000)]
    assert account_state(session, account_id=account.id).balance == 22_000
    assert live_periods(session, bsf.id) == []

    # The clock, daily: nothing on 2027-11-04 (15 days before the end), the next period on 2027-11-05.
    assert pay_networks_due(session, datetime(2027, 11, 4, 9)) == {network.code: 0}
    assert pay_networks_due(session, datetime(2027, 11, 5, 9)) == {network.code: 1}
    assert pay_networks_due(session, datetime(2027, 11, 5, 10)) == {network.code: 0}  # once per household and day
    assert [p.start_on for p in live_periods(session, covered.id)] == [D, d(2027, 11, 20)]
    assert account_state(session, account_id=account.id).balance == 8_000


def _stored_end(session: Session, household: Household) -> date | None:
    """Return the household's stored last cover end, read from the database (not the session's copy)."""
    return session.scalar(select(Household.cover_ends_on).where(Household.id == household.id))


def _last_live_end(session: Session, household: Household) -> date | None:
    return max((p.end_on for p in live_periods(session, household.id)), default=None)


def test_the_stored_cover_end_follows_allocations_reversals_and_refunds(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    household = make_household(session, scheme, size=4)
    assert _stored_end(session, household) is None  # never covered
    pay(session, household, 15_000, D, ref="wave:END_1")
    assert _stored_end(session, household) == d(2027, 11, 19) == _last_live_end(session, household)
    pay(session, household, 28_000, d(2027, 11, 1), ref="wave:END_2")  # two periods in advance
    assert _stored_end(session, household) == d(2029, 11, 19) == _last_live_end(session, household)
    assert household.cover_ends_on == d(2029, 11, 19)  # the session's copy is refreshed too

    session.commit()
    reverse(session, "wave:END_2", "bounced", d(2027, 11, 2))
    session.commit()
    assert _stored_end(session, household) == d(2027, 11, 19) == _last_live_end(session, household)
    session.commit()
    refund(session, "wave:END_1", "paid twice", d(2027, 11, 2))
    session.commit()
    assert _stored_end(session, household) is None and live_periods(session, household.id) == []


def test_the_stored_cover_end_follows_subsidy_bookings(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    by_clock = make_household(session, scheme, size=2, category="bsf", enrolled_on=d(2026, 1, 10))
    by_import = make_household(session, scheme, size=2, category="bsf", enrolled_on=d(2026, 1, 10))
    get_or_create_account(session, household=by_import)
    session.commit()
    book_subsidised_period(session, by_clock, d(2026, 12, 1))
    session.commit()
    assert book_enrolment_subsidies(session, scheme, [by_import.id], d(2026, 12, 1)) == 1
    session.commit()
    for household in (by_clock, by_import):
        assert _stored_end(session, household) == d(2027, 1, 9) == _last_live_end(session, household)
    # The clock renews from the last day of cover: the stored end moves to the next period's.
    session.commit()
    assert book_subsidised_periods(session, scheme, d(2027, 1, 9)) == 2
    session.commit()
    for household in (by_clock, by_import):
        assert _stored_end(session, household) == d(2028, 1, 9) == _last_live_end(session, household)


def test_the_stored_cover_end_follows_network_payouts_and_their_reversal(session: Session) -> None:
    scheme = factories.scheme(session, "cmu-thies")
    network = make_network(session, scheme)
    renewing = make_household(session, scheme, size=4, network=network)
    never = make_household(session, scheme, size=2, network=network)
    pay(session, renewing, 15_000, D)
    pay(session, network, 30_000, d(2027, 11, 10), ref="wave:NETEND")
    account = get_or_create_account(session, network=network)
    session.commit()
    paid = pay_network_households(session, account, d(2027, 11, 10), run_ref="wave:NETEND")
    session.commit()
    assert {r.household_id for r in paid} == {renewing.id, never.id}
    assert _stored_end(session, renewing) == d(2028, 11, 19) == _last_live_end(session, renewing)
    assert _stored_end(session, never) == d(2028, 11, 9) == _last_live_end(session, never)

    session.commit()
    reverse(session, f"wave:NETEND:household:{renewing.id}", "network payout cancelled", d(2027, 11, 11))
    session.commit()
    assert _stored_end(session, renewing) == d(2027, 11, 19) == _last_live_end(session, renewing)
