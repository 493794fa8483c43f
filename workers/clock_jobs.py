"""Clock jobs (registered in `workers/cron.py`): payment-request expiry, the funder's 100 % periods, network
payouts as households fall due, collectors' evening summaries, and the scheme reports' monthly figures.

Both are idempotent per period, so a second clock, a retry or a late run does no harm: expiry only moves OPEN
requests whose time has passed, and a funder-paid period is booked once per household and start date (the
`subsidy:<household>:<start>` allocation, decided under the account lock).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.coverage.allocation import pay_network_households
from models.coverage.ledger import account_states
from models.coverage.periods import book_subsidised_periods
from models.db import begin_write
from models.enrolment.collector_sms import send_collector_summaries
from models.members.household import Account, Household, Network
from models.payments.references import expire_payment_requests
from models.schemes.scheme import Scheme
from models.views.scheme_reports import SNAPSHOT_MIN_HOUSEHOLDS, refresh_snapshots
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


def pay_networks_due(session: Session, now: datetime) -> dict[str, int]:
    """Pay each network's households from its balance as they fall due, on its scheme's date; return how many.

    A network payment pays what is due at once; money left on the network account pays its households later,
    as their cover comes within the reminder window (`Allocator.pay_network`). One committed transaction per
    network with money; idempotent per network, day and household (`clock:<date>` run references).
    """
    rows = session.execute(
        select(Account.id, Network.code, Scheme.timezone)
        .join(Network, Network.id == Account.network_id)
        .join(Scheme, Scheme.id == Network.scheme_id)
        .order_by(Account.id)
    ).all()
    states = account_states(session, [row[0] for row in rows])
    session.commit()
    paid: dict[str, int] = {}
    for account_id, code, timezone in rows:
        if states[account_id].balance <= 0:
            continue
        begin_write(session)
        account = session.get(Account, account_id)
        assert account is not None
        on = local_date(now, timezone)
        paid[code] = len(pay_network_households(session, account, on, run_ref=f"clock:{on.isoformat()}:{code}"))
        session.commit()
    return paid


def pay_networks() -> dict[str, int]:
    """Pay networks' households from their balances as they fall due (the clock job); return how many each."""
    with runtime.job_session() as session:
        paid = pay_networks_due(session, utcnow())
    log.info("clock: network households paid %s", paid)
    return paid


def send_collector_days() -> int:
    """Queue collectors' evening summaries in the schemes past their hour (the clock job); return how many.

    Idempotent per collector and day (`models.enrolment.collector_sms`): a run more, or a retry, sends nothing twice.
    """
    with runtime.job_session() as session:
        queued = send_collector_summaries(session, utcnow())
    log.info("clock: %s collector summaries queued", queued)
    return queued


def snapshot_reports_due(
    session: Session, now: datetime, min_households: int = SNAPSHOT_MIN_HOUSEHOLDS
) -> dict[str, list[str]]:
    """Count ahead the reports' months that need it in each scheme of `min_households` or more; return them per scheme.

    Idempotent: a month counted again replaces its snapshot, and one recently counted is left alone
    (`models.views.scheme_reports.months_to_snapshot`). A smaller scheme's report is counted live.
    """
    sizes = dict(
        session.execute(select(Household.scheme_id, func.count()).group_by(Household.scheme_id)).tuples().all()
    )
    schemes = session.execute(select(Scheme.id, Scheme.code).order_by(Scheme.id)).all()
    session.commit()
    done: dict[str, list[str]] = {}
    for scheme_id, code in schemes:
        if sizes.get(scheme_id, 0) < min_households:
            continue
        scheme = session.get(Scheme, scheme_id)
        assert scheme is not None
        done[code] = [f"{month.month:%Y-%m}" for month in refresh_snapshots(session, scheme, now)]
    return done


def snapshot_reports(min_households: int = SNAPSHOT_MIN_HOUSEHOLDS) -> dict[str, list[str]]:
    """Count ahead the large schemes' report months that need it (the clock job); return the months done per scheme."""
    with runtime.job_session() as session:
        done = snapshot_reports_due(session, utcnow(), min_households)
    log.info("clock: report months counted %s", done)
    return done
