"""Renewal reminders: once per household, kind and period, in daytime only, never after STOP."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import MessageDirection, MessageStatus
from models.coverage.money import CoveragePeriod
from models.coverage.periods import book_subsidised_periods
from models.members.household import Household
from models.messaging.message import Message
from models.messaging.outbox import attach_dispatch
from models.messaging.reminders import send_due_reminders
from models.schemes.scheme import Scheme
from redis_keys import sms_job_id
from tests import factories
from tests.backends import RQ_QUEUE
from tests.sms_helpers import run_jobs, sms
from workers import runtime
from workers.sms_queue import rq_dispatch

PHONE = "+221771234567"
USSD = "*384*123#"


@pytest.fixture
def queue(redis_url: str) -> Iterator[Queue]:
    """Yield the default RQ queue on the test's Redis."""
    connection = Redis.from_url(redis_url)
    yield Queue(RQ_QUEUE, connection=connection)
    connection.close()


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch, db_url: str, redis_url: str) -> Iterator[None]:
    """Configure this process as a job process on the test database and Redis (console outbox)."""
    for name, value in {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "AT_USERNAME": ""}.items():
        monkeypatch.setenv(name, value)
    runtime.settings.cache_clear()
    yield
    runtime.settings.cache_clear()


@pytest.fixture
def outbox(session: Session, redis_url: str) -> Session:
    """Return the test session wired like a job's: queued SMS are enqueued after commit."""
    attach_dispatch(session, rq_dispatch(redis_url, RQ_QUEUE))
    return session


@pytest.fixture
def cmu(session: Session) -> Scheme:
    """Return the CMU Thiès scheme (Africa/Dakar, UTC+0; reminders 14 and 3 days before, 08:00-20:00)."""
    return factories.scheme(session, "cmu-thies")


def covered_household(
    session: Session, scheme: Scheme, phone: str | None = PHONE, category: str = "standard"
) -> Household:
    """Return a household of two that paid its first year on 1 January 2026."""
    household = factories.make_household(session, scheme, size=2, phone=phone, enrolled_on=date(2025, 12, 1))
    factories.pay(session, household, 8000, date(2026, 1, 1))
    return household


def cover_end(session: Session, household: Household) -> date:
    """Return the last day of the household's cover."""
    end = session.scalar(select(func.max(CoveragePeriod.end_on)).where(CoveragePeriod.household_id == household.id))
    assert end is not None
    return end


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """Return the UTC instant of a Dakar wall-clock time (Dakar is UTC all year)."""
    return datetime.combine(day, time(hour, minute))


def run(session: Session, now: datetime) -> int:
    """Run the reminder rule at an instant and commit, as the job does."""
    queued = send_due_reminders(session, now, USSD)
    session.commit()
    return queued


def reminders(session: Session) -> list[Message]:
    """Return every reminder stored, oldest first."""
    session.commit()
    query = select(Message).where(Message.direction == MessageDirection.OUTBOUND, Message.template.like("reminder_%"))
    return list(session.scalars(query.order_by(Message.id).execution_options(populate_existing=True)))


def test_each_reminder_once_per_household_kind_and_period(outbox: Session, cmu: Scheme, queue: Queue) -> None:
    household = covered_household(outbox, cmu)
    end = cover_end(outbox, household)
    assert end == date(2026, 12, 31)

    assert run(outbox, at(end - timedelta(days=15), 10)) == 0  # not yet
    assert run(outbox, at(end - timedelta(days=14), 10)) == 1
    assert run(outbox, at(end - timedelta(days=14), 10)) == 0  # the same run again
    assert run(outbox, at(end - timedelta(days=10), 11)) == 0  # later the same window
    assert run(outbox, at(end - timedelta(days=3), 9)) == 1
    assert run(outbox, at(end + timedelta(days=10), 9)) == 0  # in grace (30 days)
    assert run(outbox, at(end + timedelta(days=31), 9)) == 1  # lapsed
    assert run(outbox, at(end + timedelta(days=32), 9)) == 0

    sent = reminders(outbox)
    assert [m.dedupe_key for m in sent] == [
        f"reminder:{household.id}:before-14:2026-12-31",
        f"reminder:{household.id}:before-3:2026-12-31",
        f"reminder:{household.id}:lapsed:2026-12-31",
    ]
    assert sent[0].body == (
        "Ménage " + household.household_no + " : couvert jusqu'au 31/12/2026. "
        "Prochain paiement : 7 000 F CFA avant le 31/12/2026. Composez *384*123#"
    )
    assert sent[2].template == "reminder_lapsed"
    assert {m.phone for m in sent} == {PHONE}
    assert sorted(queue.job_ids) == sorted(sms_job_id(m.id) for m in sent)


def test_quiet_hours_send_nothing_and_a_later_run_catches_up(outbox: Session, cmu: Scheme) -> None:
    household = covered_household(outbox, cmu)
    end = cover_end(outbox, household)
    assert run(outbox, at(end - timedelta(days=14), 20)) == 0  # 20:00 is already night
    assert run(outbox, at(end - timedelta(days=13), 7, 59)) == 0
    assert run(outbox, at(end - timedelta(days=13), 8)) == 1  # the 14-day reminder, a day late
    assert [m.dedupe_key for m in reminders(outbox)] == [f"reminder:{household.id}:before-14:{end.isoformat()}"]


def test_a_missed_window_sends_only_the_latest_reminder(outbox: Session, cmu: Scheme) -> None:
    household = covered_household(outbox, cmu)
    end = cover_end(outbox, household)
    assert run(outbox, at(end - timedelta(days=2), 12)) == 1
    assert [m.dedupe_key for m in reminders(outbox)] == [f"reminder:{household.id}:before-3:{end.isoformat()}"]


def test_stop_by_sms_is_honoured_and_start_restores_reminders(
    client: FlaskClient, outbox: Session, cmu: Scheme, queue: Queue, job_env: None
) -> None:
    household = covered_household(outbox, cmu)
    end = cover_end(outbox, household)
    assert sms(client, PHONE, "STOP").status_code == 200
    run_jobs(queue)
    outbox.commit()  # end the test session's read snapshot
    outbox.refresh(household)
    assert household.sms_opt_in is False
    assert run(outbox, at(end - timedelta(days=14), 10)) == 0

    assert sms(client, PHONE, "start").status_code == 200
    run_jobs(queue)
    assert run(outbox, at(end - timedelta(days=14), 10)) == 1


def test_who_gets_no_reminder(outbox: Session, cmu: Scheme) -> None:
    phoneless = covered_household(outbox, cmu, phone=None)
    subsidised = factories.make_household(
        outbox, cmu, size=3, category="bsf", phone="+221770000001", enrolled_on=date(2026, 1, 1)
    )
    book_subsidised_periods(outbox, cmu, date(2026, 1, 1))
    outbox.commit()
    # The funder pays a fully subsidised household's periods: no "pay" reminder, before or at lapse.
    assert run(outbox, at(cover_end(outbox, subsidised) - timedelta(days=14), 10)) == 0
    assert run(outbox, at(cover_end(outbox, subsidised) + timedelta(days=31), 10)) == 0
    assert run(outbox, at(cover_end(outbox, phoneless) - timedelta(days=3), 10)) == 0
    assert reminders(outbox) == []


def test_reminder_job_run_twice_across_a_worker_restart_sends_one_sms(
    outbox: Session, cmu: Scheme, queue: Queue, run_worker: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    household = covered_household(outbox, cmu)
    # Cover ending in 14 days (scheme time), and daytime all day so the test passes at any hour.
    shift = cmu.local_today() + timedelta(days=14) - cover_end(outbox, household)
    for period in outbox.scalars(select(CoveragePeriod).where(CoveragePeriod.household_id == household.id)):
        period.start_on, period.end_on, period.waiting_until = period.start_on + shift, period.end_on + shift, None
    cmu.daytime_start, cmu.daytime_end = time(0, 0), time(23, 59, 59)
    outbox.commit()

    for _restart in range(2):
        queue.enqueue("workers.reminders.send_reminders")
        result = run_worker()
        assert result.returncode == 0, result.stderr

    sent = reminders(outbox)
    assert len(sent) == 1
    assert sent[0].dedupe_key == f"reminder:{household.id}:before-14:{cover_end(outbox, household).isoformat()}"
    assert sent[0].status is MessageStatus.NOT_SENT  # handed to the console outbox by the same workers
