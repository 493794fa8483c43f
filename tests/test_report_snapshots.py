"""Report snapshots: the scheme report's months counted ahead give the figures the records give, however grouped.

On the constructed history of `tests/test_admin_reports.py` (every kind of money event, two schemes, a network), on
SQLite and PostgreSQL: each month counted ahead cell by cell and summed back by the report equals the report counted
from the records, for every grouping and filter; the clock counts again only the months that need it; a snapshot is
what the page shows until the month is counted again; the command and the page do it through their real routes.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from datetime import date, datetime, timedelta

from dateutil.relativedelta import relativedelta
from flask import Flask
from redis import Redis
from rq import Queue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.access.staff import create_staff_user
from models.base import PaymentStatus, StaffRole, utcnow
from models.db import get_engine
from models.members.household import Household, Network
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme
from models.views.report_snapshots import ReportCell, ReportMonth
from models.views.scheme_reports import (
    MAX_MONTHS,
    Grouping,
    ReportFilters,
    SchemeReport,
    months_to_snapshot,
    refresh_snapshots,
    scheme_report,
    snapshot_month,
)
from models.views.scope import scope_session
from tests.admin_helpers import PASSWORDS, QueryCounter, signed_in, text_of
from tests.backends import RQ_QUEUE
from tests.report_helpers import HISTORY_MONTHS, HISTORY_NOW, add_payment, history

__all__ = ["history"]  # the constructed history (tests/report_helpers.py)

CASES = [(grouping, ReportFilters()) for grouping in Grouping] + [
    (Grouping.NETWORK, ReportFilters(commune="Pekesse")),
    (Grouping.COMMUNE, ReportFilters(network="RES-A")),
    (Grouping.SCHEME, ReportFilters(commune="Thies Nord", network="RES-A")),
]


def _scheme(session: Session, code: str) -> Scheme:
    return session.scalars(select(Scheme).where(Scheme.code == code)).one()


def _shown(report: SchemeReport) -> tuple[object, ...]:
    """Return what a report shows: every month's total, every line (with empty ones) and the funders."""
    return report.months, [(line.key, line.label, line.figures) for line in report.lines], report.funders


def _reports(session: Session, scheme: Scheme, now: datetime) -> list[tuple[object, ...]]:
    today = scheme.local_today(now)
    return [
        _shown(scheme_report(session, scheme, today, grouping=g, filters=f, history=len(HISTORY_MONTHS), now=now))
        for g, f in CASES
    ]


def test_months_counted_ahead_sum_back_to_the_figures_of_the_records(history: Session) -> None:
    for code in ("cmu-thies", "sky-cambodia"):
        scheme = _scheme(history, code)
        live = _reports(history, scheme, HISTORY_NOW)
        done = refresh_snapshots(history, scheme, HISTORY_NOW, every=True)
        assert [m.month for m in done] == [HISTORY_MONTHS[-1] - relativedelta(months=n) for n in range(MAX_MONTHS)]
        assert (history.scalar(select(func.count()).select_from(ReportCell)) or 0) > 0
        # Summed from the cells: no statement reads a household, a payment or a ledger entry any more.
        with QueryCounter(get_engine(str(history.get_bind().engine.url))) as counter:
            stored = _reports(history, _scheme(history, code), HISTORY_NOW)
        assert stored == live, code
        assert counter.count <= 4 * len(CASES), counter.count  # the snapshot sums, labels and the filters' ids


def test_a_snapshot_stands_until_its_month_is_counted_again(history: Session) -> None:
    cmu = _scheme(history, "cmu-thies")
    march = date(2026, 3, 1)
    snapshot_month(history, cmu, march, HISTORY_NOW)
    before = scheme_report(history, cmu, march, history=1, now=HISTORY_NOW)
    # A payment of March reported late, not yet matched.
    add_payment(history, cmu, 4_000, datetime(2026, 3, 9, 10, 0), status=PaymentStatus.UNMATCHED, rule=None)
    assert scheme_report(history, cmu, march, history=1, now=HISTORY_NOW).total == before.total
    snapshot_month(history, cmu, march, HISTORY_NOW)
    after = scheme_report(history, _scheme(history, "cmu-thies"), march, history=1, now=HISTORY_NOW)
    assert after.total.unresolved == before.total.unresolved + 1
    history.query(ReportMonth).delete()
    history.commit()
    assert scheme_report(history, cmu, march, history=1, now=HISTORY_NOW).total == after.total  # from the records
    # The current month counted ahead yesterday is read as counted then until the clock counts it again.
    june = snapshot_month(history, cmu, date(2026, 6, 1), HISTORY_NOW)
    cmu = _scheme(history, "cmu-thies")
    counted = scheme_report(history, cmu, june.month, history=1, now=HISTORY_NOW)
    next_day = scheme_report(history, cmu, june.month, history=1, now=HISTORY_NOW + timedelta(days=1))
    assert next_day.month.as_of == date(2026, 6, 15) and next_day.today == date(2026, 6, 16)
    assert next_day.total == counted.total and next_day.counted_at == HISTORY_NOW


def test_the_clock_counts_again_only_the_months_that_need_it(history: Session) -> None:
    from workers.clock_jobs import snapshot_reports_due

    cmu = _scheme(history, "cmu-thies")
    first_enrolled = history.scalar(select(func.min(Household.enrolled_on)).where(Household.scheme_id == cmu.id))
    assert first_enrolled == date(2025, 1, 5)
    assert snapshot_reports_due(history, HISTORY_NOW) == {}  # small schemes: their reports are counted live
    done = snapshot_reports_due(history, HISTORY_NOW, min_households=0)
    # The last two years of each scheme with households, newest first, the months before its first enrolment too.
    two_years = [f"{HISTORY_MONTHS[-1] - relativedelta(months=n):%Y-%m}" for n in range(MAX_MONTHS)]
    assert done["cmu-thies"] == two_years
    assert done["sky-cambodia"] == two_years
    assert snapshot_reports_due(history, HISTORY_NOW + timedelta(minutes=30), min_households=0) == {
        "cmu-thies": [],
        "sky-cambodia": [],
    }
    # An hour on: the current month, and those money paid late within grace (30 days in the CMU) can change.
    assert months_to_snapshot(history, _scheme(history, "cmu-thies"), HISTORY_NOW + timedelta(hours=2)) == [
        date(2026, 6, 1),
        date(2026, 5, 1),
    ]
    # The next day the current month counts another day; a new month has no snapshot yet.
    assert months_to_snapshot(history, _scheme(history, "cmu-thies"), datetime(2026, 7, 2, 12, 0)) == [
        date(2026, 7, 1),
        date(2026, 6, 1),
    ]
    network = history.scalars(select(Network).where(Network.code == "RES-A")).one()
    assert network.scheme_id == cmu.id


def test_the_command_counts_ahead_what_the_page_then_shows(history: Session, app: Flask) -> None:
    for role, password in PASSWORDS.items():
        create_staff_user(history, role, password, StaffRole(role), language="en")
    history.commit()
    cmu = _scheme(history, "cmu-thies")
    client = signed_in(app)
    pages = {}
    for query in ({}, {"by": "commune", "months": "24"}, {"by": "network", "commune": "Thies Nord"}):
        response = client.get("/admin/reports", query_string={"scheme": cmu.id, **query})
        assert response.status_code == 200
        pages[tuple(query.items())] = text_of(response)
        assert "counted ahead" not in pages[tuple(query.items())]
    result = app.test_cli_runner().invoke(args=["reports", "snapshot", "--scheme", "cmu-thies"])
    assert result.exit_code == 0, result.output
    today = cmu.local_today(utcnow())
    lines = [line.split("\t") for line in result.output.splitlines()]
    # The last two years, newest first: the months before the first enrolment (January 2025) too, so that a page of
    # 24 months reads them counted ahead (live, they cost as much as any month to count at national scale).
    firsts = [today.replace(day=1) - relativedelta(months=n) for n in range(MAX_MONTHS)]
    assert [line[:2] for line in lines] == [["cmu-thies", f"{first:%Y-%m}"] for first in firsts]
    assert lines[0][2] == today.isoformat()  # the current month counted today
    history.commit()  # end the test session's read: SQLite keeps a reader's snapshot
    stored = {row.month for row in history.scalars(select(ReportMonth).where(ReportMonth.scheme_id == cmu.id))}
    assert len(stored) == len(lines)
    for shown, before in pages.items():
        response = client.get("/admin/reports", query_string={"scheme": cmu.id, **dict(shown)})
        assert response.status_code == 200
        text = text_of(response)
        note = re.search(r"Figures counted ahead by the clock \(hourly\), the oldest at ([-\d: ]+) UTC;[^.]*\. ", text)
        assert note is not None and note.group(1).startswith(f"{utcnow():%Y-%m-%d}"), shown
        assert text.replace(note.group(0), "") == before, shown
    again = app.test_cli_runner().invoke(args=["reports", "snapshot", "--scheme", "cmu-thies"])
    assert again.exit_code == 0 and again.output == "", again.output  # nothing needs counting again yet
    unknown = app.test_cli_runner().invoke(args=["reports", "snapshot", "--scheme", "nope"])
    assert unknown.exit_code != 0 and "no scheme 'nope'" in unknown.output


def test_a_reader_kept_to_a_mutuelle_sees_only_its_cells_as_live(history: Session, app: Flask) -> None:
    cmu = _scheme(history, "cmu-thies")
    home = history.scalars(
        select(Mutuelle).join(Household, Household.mutuelle_id == Mutuelle.id).where(Household.commune == "Thies Nord")
    ).first()
    assert home is not None
    other = Mutuelle(scheme_id=cmu.id, code="MUT-PEKESSE", name="Mutuelle de Pekesse", communes=["Pekesse"])
    history.add(other)
    history.flush()
    for household in history.scalars(select(Household).where(Household.commune == "Pekesse")):
        household.mutuelle_id = other.id
    kept_to: list[tuple[int, ...]] = [(home.id,), (other.id,)]
    history.commit()

    def scoped_reports() -> dict[tuple[int, ...], list[tuple[object, ...]]]:
        shown: dict[tuple[int, ...], list[tuple[object, ...]]] = {}
        for ids in kept_to:
            with app.extensions["sessions"]() as kept:  # the app's factory: its sessions can be scoped
                scope_session(kept, ids)
                shown[ids] = _reports(kept, _scheme(kept, "cmu-thies"), HISTORY_NOW)
        return shown

    live = scoped_reports()
    assert live[kept_to[0]] != live[kept_to[1]]
    refresh_snapshots(history, cmu, HISTORY_NOW, every=True)  # the clock sees every mutuelle
    assert scoped_reports() == live


def test_the_clock_job_counts_ahead_through_a_real_worker_and_the_page_reads_it(
    history: Session, app: Flask, run_worker: Callable[..., subprocess.CompletedProcess[str]], redis_url: str
) -> None:
    for role, password in PASSWORDS.items():
        create_staff_user(history, role, password, StaffRole(role), language="en")
    history.commit()
    cmu = _scheme(history, "cmu-thies")
    client = signed_in(app)
    before = text_of(client.get("/admin/reports", query_string={"scheme": cmu.id, "by": "network"}))
    queue = Queue(RQ_QUEUE, connection=Redis.from_url(redis_url))
    for _clock in range(2):  # two clocks firing at once
        queue.enqueue("workers.clock_jobs.snapshot_reports", min_households=0)
    done = run_worker()
    assert done.returncode == 0, done.stderr
    history.commit()  # end the test session's read
    months = list(history.scalars(select(ReportMonth).where(ReportMonth.scheme_id == cmu.id)))
    assert len(months) == MAX_MONTHS  # January 2025 to this month, once each
    page = client.get("/admin/reports", query_string={"scheme": cmu.id, "by": "network"})
    assert page.status_code == 200
    after = text_of(page)
    assert "Figures counted ahead by the clock" in after
    assert re.sub(r"Figures counted ahead by the clock[^.]*\. ", "", after) == before
