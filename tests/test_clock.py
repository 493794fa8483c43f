"""The clock's jobs: payment-request expiry and the funder's 100 % periods, each idempotent per period."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import RequestStatus, utcnow
from models.coverage.money import Allocation
from models.coverage.periods import book_subsidised_periods, live_periods
from models.db import begin_write
from models.payments.payment import PaymentRequest
from models.payments.references import create_payment_request
from redis_keys import clock_cursor_key, clock_lease_key
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


# ---------------------------------------------------------------- batched, resumable runs (issue 29)


def due_households(session: Session, count: int) -> list[int]:
    """Create `count` bsf households enrolled a year and a day ago (each due its second funder-paid period today)."""
    cmu = factories.scheme(session, "cmu-thies")
    today = local_date(utcnow(), cmu.timezone)
    enrolled = today.replace(year=today.year - 1) + timedelta(days=1)
    households = [make_household(session, cmu, category="bsf", enrolled_on=enrolled) for _ in range(count)]
    # Their first year, as the import booked it: the clock now renews each one.
    assert book_subsidies_due(session, utcnow() - timedelta(days=2)) == {"cmu-thies": count}
    return [household.id for household in households]


def test_a_run_out_of_time_hands_on_to_its_continuation_on_a_real_worker(
    session: Session, run_worker: Callable[..., Any], redis_url: str
) -> None:
    ids = due_households(session, 3)
    cmu = factories.scheme(session, "cmu-thies")
    payer = make_household(session, cmu)
    stale = [
        create_payment_request(
            session, scheme=cmu, household=payer, amount=3_500, channel="ussd", now=utcnow() - timedelta(days=4)
        )
        for _ in range(3)
    ]
    session.commit()
    redis = Redis.from_url(redis_url)
    queue = Queue(RQ_QUEUE, connection=redis)
    queue.enqueue("workers.clock_jobs.book_subsidies")
    queue.enqueue("workers.clock_jobs.expire_requests")

    # One household (one request) a transaction, and no time at all: each run does one batch and hands on.
    done = run_worker(extra_env={"CLOCK_BATCH_SIZE": "1", "CLOCK_RUN_SECONDS": "0"})

    assert done.returncode == 0, done.stderr
    assert "continuation enqueued" in done.stderr
    for household_id in ids:
        assert len(live_periods(session, household_id)) == 2  # renewed once each
    assert allocation_count(session) == 6
    statuses = set(session.scalars(select(PaymentRequest.status).where(PaymentRequest.id.in_([r.id for r in stale]))))
    assert statuses == {RequestStatus.EXPIRED}
    assert not redis.keys("*clock:cursor:*")  # both passes reached the end
    assert not redis.keys("*clock:lease:*")


def test_a_pass_cut_halfway_resumes_from_its_cursor_and_books_nothing_twice(
    session: Session, redis_url: str, worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import clock_jobs, runtime

    ids = due_households(session, 3)
    redis = Redis.from_url(redis_url)
    for name, value in {
        "REDIS_URL": redis_url,
        "DATABASE_URL": worker_env["DATABASE_URL"],
        "CLOCK_BATCH_SIZE": "1",
        "CLOCK_RUN_SECONDS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    runtime.settings.cache_clear()  # the job process's settings, read from the environment set above
    try:
        first = clock_jobs.book_subsidies()
        assert (first["done"], first["batches"], first["cursor"]) == (1, 1, ids[0])
        cursor_key, lease_key = clock_cursor_key("book_subsidies"), clock_lease_key("book_subsidies")
        assert int(redis.get(cursor_key) or 0) == ids[0]

        # Another part holds the lease (a second clock, a long pass still going): this run does nothing.
        redis.set(lease_key, "someone else", ex=60)
        assert clock_jobs.book_subsidies()["skipped"] is True
        redis.delete(lease_key)

        # A part killed after its commit but before its cursor was written: the batch is done again, harmlessly.
        redis.set(cursor_key, 0)
        reports: list[dict[str, Any]] = []
        while not reports or reports[-1]["cursor"] is not None:
            reports.append(clock_jobs.book_subsidies())
    finally:
        runtime.settings.cache_clear()
    assert reports[0]["done"] == 0  # the first household again: booked already
    assert sum(report["done"] for report in reports) == 2
    assert [len(live_periods(session, household_id)) for household_id in ids] == [2, 2, 2]
    assert allocation_count(session) == 6
    assert redis.get(cursor_key) is None  # the pass is over: the next run starts from the first household


def test_book_subsidised_periods_books_only_its_window_of_households(session: Session) -> None:
    ids = due_households(session, 3)
    cmu = factories.scheme(session, "cmu-thies")
    today = local_date(utcnow(), cmu.timezone)
    session.commit()
    begin_write(session)
    assert book_subsidised_periods(session, cmu, today, after=ids[0], upto=ids[1]) == 1
    session.commit()
    assert [len(live_periods(session, household_id)) for household_id in ids] == [1, 2, 1]
    session.commit()
    begin_write(session)
    assert book_subsidised_periods(session, cmu, today) == 2
    assert book_subsidised_periods(session, cmu, today) == 0
    session.commit()
