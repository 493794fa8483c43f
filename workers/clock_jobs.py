"""Clock jobs (registered in `workers/cron.py`): payment-request expiry, the funder's 100 % periods, network
payouts as households fall due, collectors' evening summaries, and the scheme reports' monthly figures.

Each is idempotent per period, so a second clock, a retry or a late run does no harm: expiry only moves OPEN
requests whose time has passed, a funder-paid period is booked once per household and start date (the
`subsidy:<household>:<start>` allocation, decided under the account lock), a network pays a household once a day.
Each walks its rows in batches of `CLOCK_BATCH_SIZE`, one short transaction each, for at most `CLOCK_RUN_SECONDS`
a run, then hands on to its continuation (`workers.clock_runs`).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.bulk import id_window_end
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
from workers.clock_runs import run_batched

log = logging.getLogger(__name__)


def local_date(now: datetime, timezone: str) -> date:
    """Return the calendar date in the timezone at a naive-UTC instant."""
    return now.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone)).date()


def book_subsidies_due(session: Session, now: datetime, after: int = 0, upto: int | None = None) -> dict[str, int]:
    """Book every scheme's due funder-paid periods on the scheme's local date; return how many per scheme.

    The households with ids in (`after`, `upto`] (`upto` None: to the last). One committed transaction per
    scheme, each started as a writer (booking refuses a reader's on SQLite).
    """
    schemes = session.execute(select(Scheme.id, Scheme.code, Scheme.timezone).order_by(Scheme.id)).all()
    session.commit()
    booked: dict[str, int] = {}
    for scheme_id, code, timezone in schemes:
        begin_write(session)
        scheme = session.get(Scheme, scheme_id)
        assert scheme is not None
        booked[code] = book_subsidised_periods(session, scheme, local_date(now, timezone), after, upto)
        session.commit()
    return booked


def household_window(session: Session, after: int) -> int | None:
    """Return the last household id of the batch after `after` (`CLOCK_BATCH_SIZE` households), None: to the end.

    The read is committed at once: each batch then starts its transaction as a writer.
    """
    upto = id_window_end(session, Household.id, after, runtime.settings().CLOCK_BATCH_SIZE)
    session.commit()
    return upto


def expire_requests() -> dict[str, Any]:
    """Mark payment requests past their expiry EXPIRED (the clock job), `CLOCK_BATCH_SIZE` a transaction."""

    def batch(session: Session, _after: int) -> tuple[int, int | None]:
        size = runtime.settings().CLOCK_BATCH_SIZE
        expired = expire_payment_requests(session, utcnow(), limit=size)
        return expired, (0 if expired == size else None)  # the expired leave the open set: no cursor to keep

    report = run_batched("expire_requests", batch, expire_requests)
    log.info("clock: %s payment request(s) expired", report.done)
    return report.as_dict()


def book_subsidies() -> dict[str, Any]:
    """Book the funder-paid periods due today in each scheme (the clock job), a window of households a batch."""

    def batch(session: Session, after: int) -> tuple[int, int | None]:
        upto = household_window(session, after)
        return sum(book_subsidies_due(session, utcnow(), after, upto).values()), upto

    report = run_batched("book_subsidies", batch, book_subsidies)
    log.info("clock: %s subsidised period(s) booked", report.done)
    return report.as_dict()


def pay_networks_due(session: Session, now: datetime, after: int = 0, upto: int | None = None) -> dict[str, int]:
    """Pay each network's households from its balance as they fall due, on its scheme's date; return how many.

    The networks whose accounts have ids in (`after`, `upto`] (`upto` None: to the last). A network payment pays
    what is due at once; money left on the network account pays its households later, as their cover comes within
    the reminder window (`Allocator.pay_network`). One committed transaction per network with money; idempotent
    per network, day and household (`clock:<date>` run references).
    """
    query = (
        select(Account.id, Network.code, Scheme.timezone)
        .join(Network, Network.id == Account.network_id)
        .join(Scheme, Scheme.id == Network.scheme_id)
        .where(Account.id > after)
        .order_by(Account.id)
    )
    if upto is not None:
        query = query.where(Account.id <= upto)
    rows = session.execute(query).all()
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


NETWORKS_PER_BATCH = 20  # each its own transaction; a network pays at most its few dozen households


def pay_networks() -> dict[str, Any]:
    """Pay networks' households from their balances as they fall due (the clock job), a few networks a batch."""

    def batch(session: Session, after: int) -> tuple[int, int | None]:
        upto = id_window_end(session, Account.id, after, NETWORKS_PER_BATCH, Account.network_id.is_not(None))
        session.commit()
        return sum(pay_networks_due(session, utcnow(), after, upto).values()), upto

    report = run_batched("pay_networks", batch, pay_networks)
    log.info("clock: %s network household(s) paid", report.done)
    return report.as_dict()


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
