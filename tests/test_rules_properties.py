"""Properties: any sequence of payments, reversals, subsidy runs and date moves keeps the ledger invariants."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from models.allocation import reverse
from models.coverage import add_months, book_subsidised_period, live_periods
from models.ledger import account_state
from models.premiums import is_fully_subsidised, period_price
from tests import factories
from tests.factories import make_household, pay
from tests.ledger_invariants import check_invariants

START = date(2026, 11, 20)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("pay"), st.integers(1, 40_000)),
        st.tuples(st.just("reverse"), st.integers(0, 30)),
        st.tuples(st.just("wait"), st.integers(0, 450)),
        st.tuples(st.just("subsidy"), st.just(0)),
    ),
    min_size=1,
    max_size=10,
)
households = st.sampled_from(
    [
        ("cmu-thies", "yearly", "standard"),
        ("cmu-thies", "half-yearly", "standard"),
        ("cmu-thies", "yearly", "bsf"),
        ("sky-cambodia", "monthly", "standard"),
        ("sky-cambodia", "monthly", "idpoor"),
    ]
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=households, ops=operations)
def test_any_history_keeps_the_invariants(
    session: Session, kind: tuple[str, str, str], ops: list[tuple[str, int]]
) -> None:
    scheme_code, plan, category = kind
    scheme = factories.scheme(session, scheme_code)
    household = make_household(session, scheme, size=3, plan=plan, category=category)
    on = START
    refs: list[str] = []
    reversed_any = False
    for op, value in ops:
        if op == "pay":
            result = pay(session, household, value, on)
            refs.append(result.source_ref)
            if not reversed_any and not is_fully_subsidised(household):
                # Credit never sits on a fundable period: it is short of the share, or the cap stops it.
                share = period_price(session, household, on).household_share
                last = live_periods(session, household.id)[-1:] or None
                cap_reached = last is not None and last[0].end_on + timedelta(days=1) > add_months(
                    on, scheme.max_advance_months
                )
                fee_missing = not account_state(session, household_id=household.id).fee_paid
                assert result.credit < share or cap_reached or fee_missing
                session.commit()
        elif op == "reverse" and refs:
            reverse(session, refs[value % len(refs)], "property test", on)
            session.commit()
            reversed_any = True
        elif op == "wait":
            on += timedelta(days=value)
        elif op == "subsidy":
            book_subsidised_period(session, household, on)
            session.commit()
        check_invariants(session, household.id, reversed_any)
        session.commit()  # end the reads: the money functions start their own write transaction
