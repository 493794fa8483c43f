"""Scheme reports, list filters and the reconciliation export's columns, against the rules household by household.

On the demo seed (every eligibility status, both schemes, a network), on SQLite and PostgreSQL: each figure of a
report, and each household's eligibility in the lists, is compared with what `models.coverage.eligibility`
answers for every household one at a time.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote_plus
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import EligibilityStatus, HouseholdStatus, LedgerKind, PaymentStatus, utcnow
from models.coverage.eligibility import Eligibility, eligibility_on, household_eligibility, periods_since
from models.coverage.ledger import AccountState, account_entries
from models.coverage.money import Allocation, CoveragePeriod
from models.coverage.premiums import AmountDue, amount_due
from models.coverage.standing import PAID, PAYING
from models.db import get_engine
from models.members.household import Account, Household, Network
from models.payments.payment import Payment
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme
from models.views.household_lists import HouseholdFilters, households_page
from models.views.listings import RECONCILIATION_CSV_HEADER
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
from tests.admin_helpers import (
    MAX_QUERIES_PER_PAGE,
    QueryCounter,
    admin_app,
    db_session,
    seeded_url,
    signed_in,
    text_of,
)
from tests.report_helpers import HISTORY_MONTHS, HISTORY_NOW, history

__all__ = ["admin_app", "db_session", "history", "seeded_url"]  # the shared seeded database fixtures

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
    mutuelle: str | None = None  # code


def month_facts(session: Session, scheme: Scheme, month: Month) -> list[Fact]:
    """Return each household's, payment's and subsidy entry's part of the month, worked out one at a time."""
    facts = []
    codes: dict[int | None, str] = {m.id: m.code for m in session.scalars(select(Mutuelle))}
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
        facts.append(Fact(household.commune, network, figures, codes.get(household.mutuelle_id)))

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
        paid_to_code = paid_to.code if paid_to is not None else None
        facts.append(Fact(commune, paid_to_code, figures, codes.get(payment.mutuelle_id)))

    for household in households:
        account = session.scalar(select(Account).where(Account.household_id == household.id))
        network = household.network.code if household.network is not None else None
        for entry in account_entries(session, account.id) if account is not None else []:
            if entry.funder is not None and month.first <= entry.effective_on <= month.last:
                paid = Figures(subsidies={entry.funder: entry.amount})
                facts.append(Fact(household.commune, network, paid, codes.get(household.mutuelle_id)))
    return facts


def expected_lines(facts: list[Fact], grouping: Grouping, filters: ReportFilters) -> dict[str | None, Figures]:
    """Return the report's lines: the facts the filters choose, added up by commune, network or all together."""
    lines: dict[str | None, Figures] = defaultdict(Figures)
    for fact in facts:
        if filters.commune is not None and fact.commune != filters.commune:
            continue
        if filters.network is not None and fact.network != filters.network:
            continue
        key = {Grouping.COMMUNE: fact.commune, Grouping.NETWORK: fact.network, Grouping.MUTUELLE: fact.mutuelle}.get(
            grouping
        )
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


def test_listed_eligibility_follows_every_kind_of_money_event_week_by_week(history: Session) -> None:
    households = list(history.scalars(select(Household)))
    day = date(2025, 1, 1)
    while day <= date(2026, 7, 31):
        rows = {row.household.id: row for row in households_page(history, HouseholdFilters(), _noon(day)).items}
        for household in households:
            answer = household_eligibility(history, household, household.scheme.local_today(_noon(day)))
            row = rows[household.id]
            listed = (row.status, row.covered, row.valid_until, row.waiting_until)
            assert listed == (answer.status, answer.covered, answer.valid_until, answer.waiting_until), (
                household.household_no,
                day,
            )
        day += timedelta(days=6)


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


# ---------------------------------------------------------------- the pages, signed in


# The demo's numbers, and those validated enrolments issue (with their check digit: SN-MR-000001-3).
HOUSEHOLD_LINK = re.compile(r'href="/admin/households/(\d+)">([A-Z]{2}-[A-Z]{2}-\d{6}(?:-\d)?)</a>')
NETWORK = "reseau-thies-nord-1"  # commands.demo_data: every tenth CMU household


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} %"


@pytest.mark.parametrize(
    ("query", "grouping"),
    [
        ({}, Grouping.MUTUELLE),  # the CMU's three mutuelles side by side
        ({"by": "commune"}, Grouping.COMMUNE),
        ({"by": "scheme", "months": "3"}, Grouping.SCHEME),
        ({"by": "network", "commune": "Pekesse"}, Grouping.NETWORK),
        ({"by": "commune", "network": NETWORK, "months": "24"}, Grouping.COMMUNE),
        ({"scheme": "sky", "by": "commune"}, Grouping.COMMUNE),
    ],
)
def test_report_page_shows_the_report_figures_with_links_to_who_has_not_renewed(
    admin_app: Flask, db_session: Session, query: dict[str, str], grouping: Grouping
) -> None:
    code = "sky-cambodia" if query.get("scheme") == "sky" else "cmu-thies"
    scheme = db_session.scalars(select(Scheme).where(Scheme.code == code)).one()
    if "scheme" in query:
        query = {**query, "scheme": str(scheme.id)}
    page = signed_in(admin_app).get("/admin/reports", query_string=query)
    assert page.status_code == 200
    html, body = page.get_data(as_text=True), text_of(page)
    filters = ReportFilters(commune=query.get("commune"), network=query.get("network"))
    months = int(query.get("months", "12"))
    report = scheme_report(db_session, scheme, scheme.local_today(), grouping=grouping, filters=filters, history=months)
    total = report.total
    assert f"Reports {scheme.name}, {report.month.label}" in body
    assert f"{_percent(total.collection_percent)} collection rate" in body
    assert f"{total.not_renewed} not renewed of {total.due_households} due this month" in body
    assert f"{total.paid} paid of {total.enrolled} enrolled" in body
    assert html.count('class="bar"') == len(report.lines) + months  # the two charts
    for line in report.lines:
        assert line.label in body
        if grouping is Grouping.NETWORK and line.key is not None:
            # From "collection rate by network" to the network's households that have not renewed.
            assert f'href="/admin/renewals?network={line.key}">{line.figures.not_renewed}<' in html
            assert f'href="/admin/households?network={line.key}"' in html
        if grouping is Grouping.COMMUNE and line.key is not None:
            commune = quote_plus(line.key)
            unpaid = f"/admin/households?scheme={scheme.id}&amp;commune={commune}&amp;status=GRACE,LAPSED,PENDING"
            assert f'href="{unpaid}">{line.figures.not_renewed}<' in html.replace("%2C", ",")
    for month, _ in report.months:
        assert f">{month.label}</a>" in html


def _listed(response: Any) -> list[str]:
    """Return the household numbers a list page links to, in order (a search lists a household once per member)."""
    return [number for _, number in HOUSEHOLD_LINK.findall(response.get_data(as_text=True))]


def _wanted(session: Session, query: dict[str, Any]) -> list[str]:
    """Return the numbers of the households the filters choose, by the rules one household at a time."""
    statuses = set()
    for value in query.get("status", []) if isinstance(query.get("status"), list) else [query.get("status", "")]:
        statuses |= {EligibilityStatus(v.upper()) for v in value.split(",") if v}
    wanted = []
    for household in session.scalars(select(Household).order_by(Household.household_no)):
        answer = household_eligibility(session, household, household.scheme.local_today())
        network = household.network.code if household.network is not None else None
        checks = [
            not statuses or answer.status in statuses,
            query.get("commune") in (None, household.commune),
            query.get("network") in (None, network),
            query.get("plan") in (None, household.plan),
            query.get("category") in (None, household.subsidy_category),
            query.get("scheme") in (None, str(household.scheme_id)),
        ]
        if all(checks):
            wanted.append(household.household_no)
    return wanted


HOUSEHOLD_FILTERS: list[dict[str, Any]] = [
    {},
    {"status": "GRACE"},
    {"status": "GRACE,LAPSED,PENDING", "commune": "Pekesse"},
    {"status": ["ACTIVE", "waiting"]},
    {"network": NETWORK},
    {"network": NETWORK, "status": "GRACE,LAPSED,PENDING"},
    {"plan": "half-yearly", "status": "ACTIVE"},
    {"category": "bsf"},
    {"category": "idpoor", "status": "ACTIVE"},
    {"scheme": "sky", "status": "LAPSED"},
    {"commune": "Thies Nord", "status": "SUSPENDED"},
]


@pytest.mark.parametrize("query", HOUSEHOLD_FILTERS)
def test_households_list_filters_on_eligibility_commune_network_plan_and_category(
    admin_app: Flask, db_session: Session, query: dict[str, Any]
) -> None:
    if query.get("scheme") == "sky":
        sky = db_session.scalars(select(Scheme.id).where(Scheme.code == "sky-cambodia")).one()
        query = {**query, "scheme": str(sky)}
    wanted = _wanted(db_session, query)
    assert wanted, "a filter that chooses nothing tests nothing"
    client = signed_in(admin_app)
    page = client.get("/admin/households", query_string={**query, "per": "200"})
    assert page.status_code == 200
    assert _listed(page) == wanted
    # Page by page, the same households in the same order, none twice.
    seen: list[str] = []
    for number in range(1, 100):
        page = client.get("/admin/households", query_string={**query, "per": "7", "page": str(number)})
        seen += _listed(page)
        if 'rel="next"' not in page.get_data(as_text=True):
            break
    assert seen == wanted


def test_households_search_keeps_its_filters(admin_app: Flask, db_session: Session) -> None:
    client = signed_in(admin_app)
    everyone = _listed(client.get("/admin/households", query_string={"q": "diop", "per": "200"}))
    lapsed = _listed(client.get("/admin/households", query_string={"q": "diop", "status": "LAPSED", "per": "200"}))
    assert lapsed and set(lapsed) < set(everyone)
    assert set(lapsed) == set(everyone) & set(_wanted(db_session, {"status": "LAPSED"}))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/admin/households?status=PAID", "status must be one of ACTIVE, WAITING, GRACE, LAPSED, PENDING"),
        ("/admin/households?status=GRACE,nope", "status must be one of"),
        ("/admin/households?plan=weekly", "plan must be one of half-yearly, monthly, yearly"),
        ("/admin/households?category=vip", "category must be one of bsf, cec, idpoor, standard"),
        ("/admin/households?network=nowhere", "network: no network has the code 'nowhere'"),
        ("/admin/households?scheme=999", "scheme: there is no scheme #999"),
        ("/admin/households?scheme=cmu", "scheme must be a whole number"),
        ("/admin/households?page=0x10", "page must be a whole number"),
        ("/admin/households?per=-5", "per must be a whole number"),
        ("/admin/networks/1?status=covered", "status must be one of"),
        ("/admin/networks?scheme=x", "scheme must be a whole number"),
        ("/admin/reports?month=2026-13", "month must be a month YYYY-MM"),
        ("/admin/reports?month=2150-01", "month: 2150-01 has not started yet"),
        ("/admin/reports?by=district", "by must be one of scheme, commune, network, mutuelle"),
        ("/admin/reports?scheme=999", "scheme: there is no scheme #999"),
        ("/admin/reports?network=nowhere", "network: Mutuelle CMU Thies has no network with the code 'nowhere'"),
        ("/admin/reports?months=100", "months must be between 0 and 24"),
    ],
)
def test_a_bad_filter_value_is_named_in_a_400(admin_app: Flask, path: str, message: str) -> None:
    response = signed_in(admin_app).get(path)
    assert response.status_code == 400
    assert message in text_of(response)


def test_network_page_lists_its_households_by_eligibility_not_administrative_status(
    admin_app: Flask, db_session: Session
) -> None:
    network = db_session.scalars(select(Network).where(Network.code == NETWORK)).one()
    client = signed_in(admin_app)
    html = client.get(f"/admin/networks/{network.id}", query_string={"per": "200"}).get_data(as_text=True)
    row = r'>([A-Z]{2}-[A-Z]{2}-\d{6}(?:-\d)?)</a></td>\s*<td[^>]*><span class="status s-\w+">(\w+)</span>'
    shown = dict(re.findall(row, html))
    expected = {
        h.household_no: household_eligibility(db_session, h, h.scheme.local_today()).status.value
        for h in db_session.scalars(select(Household).where(Household.network_id == network.id))
    }
    assert shown == expected
    assert {"ACTIVE", "GRACE", "LAPSED", "PENDING"} <= set(expected.values())  # not all "ACTIVE"
    assert f'href="/admin/renewals?network={NETWORK}"' in html
    unpaid = client.get(f"/admin/networks/{network.id}", query_string={"status": "GRACE,LAPSED,PENDING"})
    assert set(_listed(unpaid)) == {no for no, status in expected.items() if status in {"GRACE", "LAPSED", "PENDING"}}


def test_networks_list_filters_on_scheme_and_commune(admin_app: Flask, db_session: Session) -> None:
    client = signed_in(admin_app)
    cmu, sky = (
        db_session.scalars(select(Scheme.id).where(Scheme.code == c)).one() for c in ("cmu-thies", "sky-cambodia")
    )
    assert NETWORK in text_of(client.get("/admin/networks", query_string={"scheme": cmu, "commune": "Thies Nord"}))
    assert "No network matches these filters." in text_of(client.get("/admin/networks", query_string={"scheme": sky}))
    assert "No network matches" in text_of(client.get("/admin/networks", query_string={"commune": "Tivaouane"}))


@pytest.mark.parametrize("path", ["/admin/payments", "/admin/reconciliation", "/admin/reconciliation.csv"])
def test_payment_lists_take_a_network_by_code_as_the_households_lists_do(
    admin_app: Flask, db_session: Session, path: str
) -> None:
    network = db_session.scalars(select(Network).where(Network.code == NETWORK)).one()
    client = signed_in(admin_app)
    payments = re.compile(r'href="/admin/payments/(\d+)"|^\d+,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*,(\d+),', re.M)
    shown = []
    for value in (NETWORK, str(network.id)):
        response = client.get(path, query_string={"network": value, "per": "200"})
        assert response.status_code == 200
        shown.append(payments.findall(response.get_data(as_text=True)))
    assert shown[0] == shown[1] and shown[0]
    refused = client.get(path, query_string={"network": "nowhere"})
    assert refused.status_code == 400 and "network: no network has the code 'nowhere'" in text_of(refused)


# ---------------------------------------------------------------- reconciliation.csv: where each payment belongs


def test_reconciliation_csv_names_the_commune_network_and_members(admin_app: Flask, db_session: Session) -> None:
    exported = signed_in(admin_app).get("/admin/reconciliation.csv")
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert rows and list(rows[0]) == RECONCILIATION_CSV_HEADER
    households = {h.household_no: h for h in db_session.scalars(select(Household))}
    in_network = 0
    for row in rows:
        household = households.get(row["household_no"])
        if household is None:
            assert row["head_member_no"] == row["payer_member_no"] == ""
            paid = db_session.get(Payment, int(row["payment_id"]))
            assert paid is not None
            # A network payment (the demo's networks pay members' dues) is named by its network and its commune.
            named = (paid.network.commune, paid.network.code) if paid.network is not None else ("", "")
            assert (row["commune"], row["network_code"]) == named
            continue
        head = household.head
        assert head is not None
        payment = db_session.get(Payment, int(row["payment_id"]))
        assert payment is not None
        payer = next((m.member_no for m in household.members if m.phone and m.phone == payment.payer_phone), "")
        network = household.network
        in_network += network is not None
        assert (row["commune"], row["network_code"], row["network_name"]) == (
            household.commune,
            network.code if network else "",
            network.name if network else "",
        )
        assert (row["head_member_no"], row["head_name"], row["payer_member_no"]) == (
            head.member_no,
            f"{head.first_name} {head.last_name}",
            payer,
        )
    assert in_network and any(row["payer_member_no"] for row in rows)
    # Filtered like the log.
    filtered = signed_in(admin_app).get("/admin/reconciliation.csv", query_string={"commune": "Pekesse"})
    assert {row["commune"] for row in csv.DictReader(io.StringIO(filtered.get_data(as_text=True)))} == {"Pekesse"}


@pytest.mark.parametrize(
    "path",
    [
        "/admin/reports",
        "/admin/reports?by=commune&months=24",
        "/admin/households?status=GRACE,LAPSED&commune=Pekesse",
        "/admin/households?q=diop&plan=yearly",
        "/admin/networks/1?status=ACTIVE",
        "/admin/networks?commune=Thies+Nord",
    ],
)
def test_new_pages_run_a_small_constant_number_of_queries(admin_app: Flask, seeded_url: str, path: str) -> None:
    client = signed_in(admin_app)
    counts = []
    for per in (5, 100):
        with QueryCounter(get_engine(seeded_url)) as counter:
            response = client.get(f"{path}{'&' if '?' in path else '?'}per={per}")
        assert response.status_code == 200
        counts.append(counter.count)
    assert counts[0] == counts[1] <= MAX_QUERIES_PER_PAGE, counts
