"""Scheme reports, list filters and the reconciliation export's columns, against the rules household by household.

On the demo seed (every eligibility status, both schemes, a network), on SQLite and PostgreSQL: each figure of a
report, and each household's eligibility in the lists, is compared with what `models.coverage.eligibility`
answers for every household one at a time.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import EligibilityStatus, HouseholdStatus, LedgerKind, PaymentStatus, utcnow
from models.coverage.allocation import pay_network_households, reverse
from models.coverage.eligibility import Eligibility, eligibility_on, household_eligibility, periods_since
from models.coverage.ledger import AccountState, account_entries, get_or_create_account
from models.coverage.money import Allocation, CoveragePeriod
from models.coverage.periods import book_subsidised_period, subsidy_source_ref
from models.coverage.premiums import AmountDue, amount_due
from models.coverage.standing import PAID, PAYING
from models.members.household import Account, Household, Network
from models.payments.payment import Payment
from models.schemes.scheme import Scheme
from models.views.household_lists import HouseholdFilters, households_page
from models.views.reports import COLLECTED
from models.views.scheme_reports import (
    STOPPED,
    Figures,
    Grouping,
    Month,
    ReportFilters,
    SchemeReport,
    month_of,
    scheme_report,
)
from tests import factories
from tests.admin_helpers import admin_app, db_session, seeded_url

__all__ = ["admin_app", "db_session", "seeded_url"]  # the shared seeded database fixtures

# Days from today: now, inside and past the CMU and SKY grace periods, a year back, before the seed's history.
DAY_SHIFTS = [0, -5, -20, -40, -95, -200, -390, -420, -500, 45]


def _noon(day: date) -> datetime:
    return datetime.combine(day, time(12, 0))


# ---------------------------------------------------------------- eligibility in SQL: the rules, for every household


@pytest.mark.parametrize("shift", DAY_SHIFTS)
def test_listed_eligibility_is_the_rules_answer_for_every_household(db_session: Session, shift: int) -> None:
    now = _noon(utcnow().date() + timedelta(days=shift))
    rows = households_page(db_session, HouseholdFilters(), now, per_page=200).items
    households = {h.id: h for h in db_session.scalars(select(Household))}
    assert len(rows) == len(households) <= 200
    for row in rows:
        household = households[row.household.id]
        on = household.scheme.local_today(now)
        answer = household_eligibility(db_session, household, on)
        listed = (row.on, row.status, row.covered, row.valid_until, row.waiting_until)
        expected = (on, answer.status, answer.covered, answer.valid_until, answer.waiting_until)
        assert listed == expected, household.household_no


# ---------------------------------------------------------------- the scheme report, figure by figure


def _state_until(session: Session, household: Household, on: date) -> AccountState:
    """Return the household's balance and fee state from its entries effective by a date (the ledger's rules)."""
    account = session.scalar(select(Account).where(Account.household_id == household.id))
    entries = account_entries(session, account.id) if account is not None else []
    by_id = {entry.id: entry for entry in entries}
    kept = [entry for entry in entries if entry.effective_on <= on]
    fees = sum(1 for e in kept if e.kind is LedgerKind.FEE) - sum(
        1
        for e in kept
        if e.kind is LedgerKind.REVERSAL
        and e.reverses_entry_id is not None
        and by_id[e.reverses_entry_id].kind is LedgerKind.FEE
    )
    return AccountState(balance=sum(e.amount for e in kept), fee_paid=fees > 0)


def _eligibility_known_by(session: Session, household: Household, on: date, due: AmountDue) -> Eligibility:
    """Return `household_eligibility` on a date from the periods funded by money effective by then (the rules'
    `eligibility_on`, given the periods `household_eligibility` would read of the books as they stood)."""
    scheme = household.scheme
    rows = session.execute(
        select(CoveragePeriod, Allocation.effective_on)
        .outerjoin(Allocation, Allocation.id == CoveragePeriod.allocation_id)
        .where(CoveragePeriod.household_id == household.id)
    ).tuples()
    known = [p for p, funded_on in rows if p.reversed_at is None and (funded_on is None or funded_on <= on)]
    periods: list[CoveragePeriod] = []
    lapsed_on = None
    if household.status not in {HouseholdStatus.SUSPENDED, HouseholdStatus.CLOSED}:
        since = periods_since(on, scheme.grace_days)
        periods = sorted((p for p in known if p.end_on >= since), key=lambda p: p.start_on)
        if all(p.start_on > on for p in periods):
            lapsed_on = max((p.end_on for p in known if p.end_on < on), default=None)
    return eligibility_on(
        on,
        status=household.status,
        status_reason=household.status_reason,
        periods=periods,
        grace_days=scheme.grace_days,
        grace_covered=scheme.grace_covered,
        due=due,
        lapsed_on=lapsed_on,
    )


@dataclass(frozen=True)
class Fact:
    """One household's, payment's or ledger entry's part of a month's figures, with where it belongs."""

    commune: str | None
    network: str | None  # code
    figures: Figures


def month_facts(session: Session, scheme: Scheme, month: Month) -> list[Fact]:
    """Return each household's, payment's and subsidy entry's part of the month, worked out one at a time."""
    facts = []
    households = list(session.scalars(select(Household).where(Household.scheme_id == scheme.id)))
    for household in households:
        if household.enrolled_on > month.as_of:
            continue
        figures = Figures()
        answer = household_eligibility(session, household, month.as_of)
        figures.enrolled = 1
        figures.paid = answer.status in PAID
        figures.covered = answer.covered
        figures.waiting = answer.status is EligibilityStatus.WAITING
        figures.grace = answer.status is EligibilityStatus.GRACE
        figures.lapsed = answer.status is EligibilityStatus.LAPSED
        figures.pending = answer.status is EligibilityStatus.PENDING
        figures.stopped = answer.status in STOPPED
        due = amount_due(session, household, month.eve, state=_state_until(session, household, month.eve))
        before = _eligibility_known_by(session, household, month.eve, due)
        falls_due = before.next_payment_due is not None and before.next_payment_due <= month.last
        if before.status not in STOPPED and falls_due and before.next_payment_amount > 0:
            figures.due_households = 1
            figures.due = before.next_payment_amount
            figures.not_renewed = answer.status in PAYING
        network = household.network.code if household.network is not None else None
        facts.append(Fact(household.commune, network, figures))

    zone = ZoneInfo(scheme.timezone)
    for payment in session.scalars(select(Payment)):
        ours = payment.scheme_id == scheme.id or (payment.scheme_id is None and payment.currency == scheme.currency)
        day = payment.paid_at.replace(tzinfo=UTC).astimezone(zone).date()
        if not ours or not month.first <= day <= month.last:
            continue
        owner = payment.household
        paid_to = owner.network if owner is not None else payment.network
        commune = owner.commune if owner is not None else (paid_to.commune if paid_to is not None else None)
        figures = Figures()
        if payment.scheme_id == scheme.id and payment.status in COLLECTED and payment.confirmed:
            figures.collected, figures.payments = payment.amount, 1
        figures.matched_auto = payment.match_rule is not None and payment.match_rule != "manual"
        figures.matched_manual = payment.match_rule == "manual"
        figures.unresolved = payment.status in (PaymentStatus.UNMATCHED, PaymentStatus.CONFLICT)
        facts.append(Fact(commune, paid_to.code if paid_to is not None else None, figures))

    for household in households:
        account = session.scalar(select(Account).where(Account.household_id == household.id))
        network = household.network.code if household.network is not None else None
        for entry in account_entries(session, account.id) if account is not None else []:
            if entry.funder is not None and month.first <= entry.effective_on <= month.last:
                facts.append(Fact(household.commune, network, Figures(subsidies={entry.funder: entry.amount})))
    return facts


def expected_lines(facts: list[Fact], grouping: Grouping, filters: ReportFilters) -> dict[str | None, Figures]:
    """Return the report's lines: the facts the filters choose, added up by commune, network or all together."""
    lines: dict[str | None, Figures] = defaultdict(Figures)
    for fact in facts:
        if filters.commune is not None and fact.commune != filters.commune:
            continue
        if filters.network is not None and fact.network != filters.network:
            continue
        key = {Grouping.COMMUNE: fact.commune, Grouping.NETWORK: fact.network}.get(grouping)
        lines[key].add(fact.figures)
    return {key: figures for key, figures in lines.items() if figures != Figures()}


def _lines(report: SchemeReport) -> dict[str | None, Figures]:
    return {line.key: line.figures for line in report.lines if line.figures != Figures()}


MONTHS_BACK = [0, 1, 3, 12, 15]


@pytest.mark.parametrize("scheme_code", ["cmu-thies", "sky-cambodia"])
@pytest.mark.parametrize("months_back", MONTHS_BACK)
def test_report_figures_are_the_rules_household_by_household(
    db_session: Session, scheme_code: str, months_back: int
) -> None:
    scheme = db_session.scalars(select(Scheme).where(Scheme.code == scheme_code)).one()
    today = scheme.local_today()
    first = today.replace(day=1) - relativedelta(months=months_back)
    month = month_of(first, today)
    facts = month_facts(db_session, scheme, month)
    network = db_session.scalars(select(Network.code).where(Network.scheme_id == scheme.id)).first()
    cases = [(grouping, ReportFilters()) for grouping in Grouping]
    cases += [
        (Grouping.NETWORK, ReportFilters(commune="Thies Nord")),
        (Grouping.COMMUNE, ReportFilters(network=network)),
    ]
    for grouping, filters in cases:
        report = scheme_report(db_session, scheme, first, grouping=grouping, filters=filters, history=1)
        assert report.month == month
        expected = expected_lines(facts, grouping, filters)
        assert _lines(report) == expected, (grouping, filters)
        total = Figures()
        for figures in expected.values():
            total.add(figures)
        assert report.total == total


HISTORY_NOW = datetime(2026, 6, 15, 12, 0)  # naive UTC
_txn = itertools.count(1)


def _payment(
    session: Session,
    scheme: Scheme | None,
    amount: int,
    paid_at: datetime,
    *,
    household: Household | None = None,
    network: Network | None = None,
    status: PaymentStatus = PaymentStatus.ALLOCATED,
    rule: str | None = "reference",
    confirmed: bool = True,
    currency: str = "XOF",
) -> None:
    session.add(
        Payment(
            provider="sandbox",
            provider_txn_id=f"HIST{next(_txn)}",
            amount=amount,
            currency=currency,
            paid_at=paid_at,
            fields_hash="h" * 64,
            status=status,
            confirmed=confirmed,
            match_rule=rule,
            scheme_id=scheme.id if scheme is not None else None,
            household_id=household.id if household is not None else None,
            network_id=network.id if network is not None else None,
        )
    )
    session.commit()


def _paid(
    session: Session, household: Household, on: date, *, rule: str = "reference", amount: int | None = None
) -> str:
    """Pay what the household owes on a date (or `amount`), with its payment row; return the allocation's reference."""
    amount = amount if amount is not None else amount_due(session, household, on).total
    ref = f"hist:{household.household_no}:{on.isoformat()}"
    factories.pay(session, household, amount, on, ref=ref)
    _payment(session, household.scheme, amount, datetime.combine(on, time(9, 0)), household=household, rule=rule)
    return ref


@pytest.fixture
def history(session: Session) -> Session:
    """A year and a half of one CMU network and its neighbours, with every kind of money event, and a SKY household."""
    cmu, sky = factories.scheme(session, "cmu-thies"), factories.scheme(session, "sky-cambodia")
    network = factories.make_network(session, cmu, code="RES-A")

    def household(size: int, enrolled_on: date, commune: str = "Thies Nord", **kw: object) -> Household:
        made = factories.make_household(session, cmu, size=size, enrolled_on=enrolled_on, **kw)  # type: ignore[arg-type]
        made.commune = commune
        session.commit()
        return made

    # Paid on time in the network, renewed late within grace.
    renews = household(4, date(2025, 1, 5), network=network)
    _paid(session, renews, date(2025, 2, 1))
    _paid(session, renews, date(2026, 2, 20), rule="manual")
    # Partly paid, completed a long time later.
    partly = household(2, date(2025, 6, 1), commune="Pekesse")
    _paid(session, partly, date(2025, 7, 10), amount=3_000)
    _paid(session, partly, date(2026, 3, 5))
    # Half-yearly, paid once, then in grace and lapsed.
    lapses = household(3, date(2025, 9, 1), commune="Pekesse", plan="half-yearly")
    _paid(session, lapses, date(2025, 9, 10))
    # The state pays all of it; one booking later taken back (wrong category).
    funded = household(5, date(2025, 3, 1), category="bsf", network=network)
    for day in (date(2025, 3, 1), date(2026, 2, 28)):
        session.commit()
        book_subsidised_period(session, funded, day)
        session.commit()
    reverse(session, subsidy_source_ref(funded.id, date(2026, 3, 1)), "wrong category", date(2026, 4, 2))
    session.commit()
    # Paid, then suspended by staff.
    stopped = household(2, date(2025, 4, 1), status=HouseholdStatus.ACTIVE)
    _paid(session, stopped, date(2025, 4, 2))
    stopped.status = HouseholdStatus.SUSPENDED
    session.commit()
    # Never paid itself: the network pays for it.
    newcomer = household(2, date(2026, 4, 1), network=network)
    factories.pay(session, network, 20_000, date(2026, 5, 2), ref="hist:network:1")
    account = get_or_create_account(session, network=network)
    session.commit()
    pay_network_households(session, account, date(2026, 5, 2), "hist:network-run:1")
    session.commit()
    _payment(session, cmu, 20_000, datetime(2026, 5, 2, 8, 0), network=network)
    assert household_eligibility(session, newcomer, date(2026, 5, 3)).status is EligibilityStatus.WAITING
    # Money that is not (yet) anybody's, or not kept.
    _payment(session, None, 5_000, datetime(2026, 5, 20, 10, 0), status=PaymentStatus.UNMATCHED, rule=None)
    _payment(session, cmu, 6_000, datetime(2026, 3, 3, 10, 0), status=PaymentStatus.CONFLICT, rule=None)
    _payment(session, cmu, 7_000, datetime(2026, 3, 4, 10, 0), household=partly, status=PaymentStatus.REVERSED)
    _payment(session, cmu, 8_000, datetime(2026, 3, 6, 10, 0), household=renews, confirmed=False)
    _payment(
        session, None, 9_000, datetime(2026, 5, 21, 10, 0), status=PaymentStatus.UNMATCHED, currency="KHR", rule=None
    )
    # SKY: a payment at 20:00 UTC on 31 March is 1 April in Phnom Penh.
    khmer = factories.make_household(session, sky, size=3, enrolled_on=date(2026, 3, 1))
    factories.pay(session, khmer, 5_000, date(2026, 4, 1), ref="hist:sky:1")
    _payment(session, sky, 5_000, datetime(2026, 3, 31, 20, 0), household=khmer, currency="KHR")
    return session


HISTORY_MONTHS = [date(2025, 1, 1) + relativedelta(months=n) for n in range(18)]


def test_report_follows_every_kind_of_money_event_month_by_month(history: Session) -> None:
    for code in ("cmu-thies", "sky-cambodia"):
        scheme = history.scalars(select(Scheme).where(Scheme.code == code)).one()
        today = scheme.local_today(HISTORY_NOW)
        for grouping in Grouping:
            whole = scheme_report(
                history, scheme, today, grouping=grouping, history=len(HISTORY_MONTHS), now=HISTORY_NOW
            )
            assert [m.first for m, _ in whole.months] == HISTORY_MONTHS
            assert _lines(whole) == expected_lines(month_facts(history, scheme, whole.month), grouping, ReportFilters())
        for month, total in whole.months:
            report = scheme_report(history, scheme, month.first, grouping=Grouping.NETWORK, history=1, now=HISTORY_NOW)
            expected = expected_lines(month_facts(history, scheme, month), Grouping.NETWORK, ReportFilters())
            assert _lines(report) == expected, (code, month)
            assert report.total == total, (code, month)
