"""Clock jobs (registered in `workers/cron.py`): payment-request expiry and the funder's 100 % periods.

Both are idempotent per period, so a second clock, a retry or a late run does no harm: expiry only moves OPEN
requests whose time has passed, and a funder-paid period is booked once per household and start date (the
`subsidy:<household>:<start>` allocation, decided under the account lock).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.coverage import book_subsidised_periods
from models.db import begin_write
from models.references import expire_payment_requests
from models.scheme import Scheme
from workers import runtime

log = logging.getLogger(__name__)


def local_date(now: datetime, timezone: str) -> date:
    """Return the calendar date in the timezone at a naive-UTC instant."""
    return now.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone)).date()


def book_subsidies_due(session: Session, now: datetime) -> dict[str, int]:
    """Book every scheme's due funder-paid periods on the scheme's local date; return how many per scheme.

    One committed transaction per scheme, each started as a writer (booking refuses a reader's on SQLite).
    """
    schemes = session.execute(select(Scheme.id, Scheme.code, Scheme.timezone).order_by(Scheme.id)).all()
    session.commit()
    booked: dict[str, int] = {}
    for scheme_id, code, timezone in schemes:
        begin_write(session)
        scheme = session.get(Scheme, scheme_id)
        assert scheme is not None
        booked[code] = book_subsidised_periods(session, scheme, local_date(now, timezone))
        session.commit()
    return booked


def expire_requests() -> int:
    """Mark payment requests past their expiry EXPIRED (the clock job); return how many."""
    with runtime.job_session() as session:
        expired = expire_payment_requests(session, utcnow())
    log.info("clock: %s payment request(s) expired", expired)
    return expired


def book_subsidies() -> dict[str, int]:
    """Book the funder-paid periods due today in each scheme (the clock job); return how many per scheme."""
    with runtime.job_session() as session:
        booked = book_subsidies_due(session, utcnow())
    log.info("clock: subsidised periods booked %s", booked)
    return booked
