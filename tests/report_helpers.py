"""The constructed history the report tests share: a year and a half of money events of every kind, two schemes."""

from __future__ import annotations

import itertools
from datetime import date, datetime, time

import pytest
from dateutil.relativedelta import relativedelta
from sqlalchemy.orm import Session

from models.base import EligibilityStatus, HouseholdStatus, PaymentStatus
from models.coverage.allocation import pay_network_households, reverse
from models.coverage.eligibility import household_eligibility
from models.coverage.ledger import get_or_create_account
from models.coverage.periods import book_subsidised_period, subsidy_source_ref
from models.coverage.premiums import amount_due
from models.members.household import Household, Network
from models.payments.payment import Payment
from models.schemes.scheme import Scheme
from tests import factories

HISTORY_NOW = datetime(2026, 6, 15, 12, 0)  # naive UTC
_txn = itertools.count(1)


def add_payment(
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


def add_paid(
    session: Session, household: Household, on: date, *, rule: str = "reference", amount: int | None = None
) -> str:
    """Pay what the household owes on a date (or `amount`), with its payment row; return the allocation's reference."""
    amount = amount if amount is not None else amount_due(session, household, on).total
    ref = f"hist:{household.household_no}:{on.isoformat()}"
    factories.pay(session, household, amount, on, ref=ref)
    add_payment(session, household.scheme, amount, datetime.combine(on, time(9, 0)), household=household, rule=rule)
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
    add_paid(session, renews, date(2025, 2, 1))
    add_paid(session, renews, date(2026, 2, 20), rule="manual")
    # Partly paid, completed a long time later.
    partly = household(2, date(2025, 6, 1), commune="Pekesse")
    add_paid(session, partly, date(2025, 7, 10), amount=3_000)
    add_paid(session, partly, date(2026, 3, 5))
    # Half-yearly, paid once, then in grace and lapsed.
    lapses = household(3, date(2025, 9, 1), commune="Pekesse", plan="half-yearly")
    add_paid(session, lapses, date(2025, 9, 10))
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
    add_paid(session, stopped, date(2025, 4, 2))
    stopped.status = HouseholdStatus.SUSPENDED
    session.commit()
    # Never paid itself: the network pays for it.
    newcomer = household(2, date(2026, 4, 1), network=network)
    factories.pay(session, network, 20_000, date(2026, 5, 2), ref="hist:network:1")
    account = get_or_create_account(session, network=network)
    session.commit()
    pay_network_households(session, account, date(2026, 5, 2), "hist:network-run:1")
    session.commit()
    add_payment(session, cmu, 20_000, datetime(2026, 5, 2, 8, 0), network=network)
    assert household_eligibility(session, newcomer, date(2026, 5, 3)).status is EligibilityStatus.WAITING
    # Money that is not (yet) anybody's, or not kept.
    add_payment(session, None, 5_000, datetime(2026, 5, 20, 10, 0), status=PaymentStatus.UNMATCHED, rule=None)
    add_payment(session, cmu, 6_000, datetime(2026, 3, 3, 10, 0), status=PaymentStatus.CONFLICT, rule=None)
    add_payment(session, cmu, 7_000, datetime(2026, 3, 4, 10, 0), household=partly, status=PaymentStatus.REVERSED)
    add_payment(session, cmu, 8_000, datetime(2026, 3, 6, 10, 0), household=renews, confirmed=False)
    add_payment(
        session, None, 9_000, datetime(2026, 5, 21, 10, 0), status=PaymentStatus.UNMATCHED, currency="KHR", rule=None
    )
    # SKY: a payment at 20:00 UTC on 31 March is 1 April in Phnom Penh.
    khmer = factories.make_household(session, sky, size=3, enrolled_on=date(2026, 3, 1))
    factories.pay(session, khmer, 5_000, date(2026, 4, 1), ref="hist:sky:1")
    add_payment(session, sky, 5_000, datetime(2026, 3, 31, 20, 0), household=khmer, currency="KHR")
    return session


HISTORY_MONTHS = [date(2025, 1, 1) + relativedelta(months=n) for n in range(18)]
