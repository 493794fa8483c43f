"""The clock's jobs: payment-request expiry and the funder's 100 % periods, each idempotent per period."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from redis import Redis
from rq import Queue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import RequestStatus, utcnow
from models.coverage.money import Allocation
from models.coverage.periods import live_periods
from models.payments.payment import PaymentRequest
from models.payments.references import create_payment_request
from tests import factories
from tests.backends import RQ_QUEUE
from tests.factories import make_household
from workers.clock_jobs import book_subsidies_due, local_date

# 23:30 UTC on 31 October: still the 31st in Dakar, already 1 November in Phnom Penh.
LATE_EVENING = datetime(2026, 10, 31, 23, 30)


def allocation_count(session: Session) -> int:
    """Return how many allocations are stored."""
    session.commit()
    return int(session.scalar(select(func.count(Allocation.id))) or 0)


def test_subsidised_periods_are_booked_on_each_schemes_local_date_once(session: Session) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    sky = factories.scheme(session, "sky-cambodia")
    first_of_november = date(2026, 11, 1)
    bsf = make_household(session, cmu, category="bsf", enrolled_on=first_of_november)
    idpoor = make_household(session, sky, category="idpoor", enrolled_on=first_of_november)
    paying = make_household(session, cmu, category="standard", enrolled_on=first_of_november)
    assert local_date(LATE_EVENING, sky.timezone) == first_of_november
    assert local_date(LATE_EVENING, cmu.timezone) == date(2026, 10, 31)

    assert book_subsidies_due(session, LATE_EVENING) == {"cmu-thies": 0, "sky-cambodia": 1}
    [period] = live_periods(session, idpoor.id)
    assert (period.start_on, period.household_share, period.funder) == (first_of_november, 0, "HEF")

    next_morning = LATE_EVENING + timedelta(hours=9)
    assert book_subsidies_due(session, next_morning) == {"cmu-thies": 1, "sky-cambodia": 0}
    # A second clock, or the same one an hour later, books nothing more.
    assert book_subsidies_due(session, next_morning) == {"cmu-thies": 0, "sky-cambodia": 0}
    assert book_subsidies_due(session, next_morning + timedelta(hours=1)) == {"cmu-thies": 0, "sky-cambodia": 0}
    assert allocation_count(session) == 2
    assert [p.start_on for p in live_periods(session, bsf.id)] == [first_of_november]
    assert live_periods(session, paying.id) == []


def test_the_clock_jobs_through_a_real_worker(session: Session, run_worker: Callable[..., Any], redis_url: str) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    today = local_date(utcnow(), cmu.timezone)
    bsf = make_household(session, cmu, category="bsf", enrolled_on=today - timedelta(days=2))
    payer = make_household(session, cmu)
    old = create_payment_request(
        session, scheme=cmu, household=payer, amount=3_500, channel="ussd", now=utcnow() - timedelta(days=4)
    )
    fresh = create_payment_request(session, scheme=cmu, household=payer, amount=3_500, channel="ussd", now=utcnow())
    session.commit()
    queue = Queue(RQ_QUEUE, connection=Redis.from_url(redis_url))
    for _run in range(2):  # two clocks firing at once
        queue.enqueue("workers.clock_jobs.expire_requests")
        queue.enqueue("workers.clock_jobs.book_subsidies")

    done = run_worker()

    assert done.returncode == 0, done.stderr
    statuses = dict(session.execute(select(PaymentRequest.id, PaymentRequest.status)).tuples().all())
    assert statuses == {old.id: RequestStatus.EXPIRED, fresh.id: RequestStatus.OPEN}
    [period] = live_periods(session, bsf.id)
    assert period.start_on == today - timedelta(days=2)  # the first period starts at enrolment
    assert allocation_count(session) == 1
