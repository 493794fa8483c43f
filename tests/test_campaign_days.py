"""A campaign day by day (issue 27): the module's case of tests/test_campaigns.py spread over days, its cumulative
funnel each day checked by hand, against `campaign_progress` on every day and against each household's eligibility,
on both databases; the page's chart and table, the filters and the CSV by day through the admin routes."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import update
from sqlalchemy.orm import Session

from models.access.staff import create_staff_user
from models.base import StaffRole
from models.coverage.eligibility import household_eligibility
from models.enrolment.campaigns import Campaign
from models.enrolment.tables import Enrolment
from models.schemes.scheme import utc_start
from models.views.campaign_days import UnknownFilter, campaign_days
from models.views.campaigns import campaign_progress
from tests.admin_helpers import login
from tests.campaign_helpers import case, household_of
from tests.members_helpers import cli

__all__ = ["case", "cli"]

PASSWORD = "campaign-days-123"
# Each enrolment's days, relative to today: submitted, decided (validated or rejected).
SPREAD = {"a-paid": (-8, -6), "a-unpaid": (-5, -3), "a-rejected": (-5, -4), "b-waiting": (-2, None), "b-bsf": (0, 0)}


@pytest.fixture
def spread(case: dict[str, Any], session: Session) -> dict[str, Any]:
    """Move the case's enrolments to their days (10:00 local): submitted and decided on days gone by."""
    today, zone = case["today"], ZoneInfo(case["scheme"].timezone)

    def at(offset: int) -> datetime:
        return utc_start(today + timedelta(days=offset), zone) + timedelta(hours=10)

    for name, (submitted, decided) in SPREAD.items():
        values: dict[str, Any] = {"created_at": at(submitted)}
        if decided is not None:
            values["decided_at"] = at(decided)
        session.execute(update(Enrolment).where(Enrolment.id == case["ids"][name]).values(**values))
    session.commit()
    return case


def _stages(funnel: Any) -> dict[str, tuple[int, int]]:
    return {
        s: (getattr(funnel, s).households, getattr(funnel, s).beneficiaries)
        for s in ("submitted", "validated", "rejected", "paid", "covered")
    }


# (network, commune), then on days relative to today: submitted, validated, rejected, paid (households, people).
SCENARIOS = [
    (
        None,
        None,
        260,
        {
            -10: ((0, 0), (0, 0), (0, 0), (0, 0)),
            -8: ((1, 3), (0, 0), (0, 0), (0, 0)),
            -6: ((1, 3), (1, 3), (0, 0), (0, 0)),
            -5: ((3, 9), (1, 3), (0, 0), (0, 0)),
            -4: ((3, 9), (1, 3), (1, 3), (0, 0)),
            -3: ((3, 9), (2, 6), (1, 3), (0, 0)),
            -2: ((4, 12), (2, 6), (1, 3), (0, 0)),
            -1: ((4, 12), (2, 6), (1, 3), (0, 0)),
            0: ((5, 15), (3, 9), (1, 3), (1, 3)),
        },
    ),
    ("RES-A", None, 10, {-6: ((1, 3), (1, 3), (0, 0), (0, 0)), 0: ((3, 9), (2, 6), (1, 3), (1, 3))}),
    ("res-b", None, 250, {-3: ((0, 0), (0, 0), (0, 0), (0, 0)), -2: ((1, 3), (0, 0), (0, 0), (0, 0))}),
    (None, "Thiès Nord", 260, {0: ((5, 15), (3, 9), (1, 3), (1, 3))}),
    (None, "Ailleurs", 0, {0: ((0, 0), (0, 0), (0, 0), (0, 0))}),
]


@pytest.mark.parametrize(("network", "commune", "target", "expected"), SCENARIOS)
def test_the_funnel_day_by_day(
    spread: dict[str, Any],
    session: Session,
    network: str | None,
    commune: str | None,
    target: int,
    expected: dict[int, tuple[tuple[int, int], ...]],
) -> None:
    today = spread["today"]
    campaign = session.get(Campaign, spread["campaign_id"])
    assert campaign is not None
    days = campaign_days(session, campaign, today, network=network, commune=commune)
    assert [d.day for d in days.days] == [campaign.start_on + timedelta(days=n) for n in range(11)]
    assert days.target == target
    by_day = {(d.day - today).days: d.funnel for d in days.days}
    for offset, (submitted, validated, rejected, paid) in expected.items():
        got = _stages(by_day[offset])
        assert (got["submitted"], got["validated"], got["rejected"], got["paid"]) == (
            submitted,
            validated,
            rejected,
            paid,
        ), offset
        assert got["covered"] == (0, 0)  # a month's wait
        assert by_day[offset].target == target


def test_each_day_is_that_days_progress_and_covered_is_eligibility(spread: dict[str, Any], session: Session) -> None:
    today = spread["today"]
    campaign = session.get(Campaign, spread["campaign_id"])
    assert campaign is not None
    until = today + timedelta(days=35)
    # Five weeks on: the waits end and covered grows; every day is `campaign_progress` of that day.
    days = campaign_days(session, campaign, until)
    assert len(days.days) == 46
    validated = {name: today + timedelta(days=SPREAD[name][1] or 0) for name in ("a-paid", "a-unpaid", "b-bsf")}
    households = {name: household_of(session, spread["ids"][name]) for name in validated}
    covered_days = 0
    for each in days.days:
        progress = campaign_progress(session, campaign, each.day)
        assert _stages(each.funnel) == _stages(progress.total), each.day
        covered = [
            name
            for name, household in households.items()
            if validated[name] <= each.day and household_eligibility(session, household, each.day).covered
        ]
        assert each.funnel.covered == type(each.funnel.covered)(len(covered), 3 * len(covered)), each.day
        covered_days += bool(covered)
    assert 0 < covered_days < 46
    assert _stages(days.days[-1].funnel)["covered"] == (2, 6)  # the paid household and the state-funded one
    a_only = campaign_days(session, campaign, until, network="RES-A")
    assert _stages(a_only.days[-1].funnel)["covered"] == (1, 3)
    # Before the first day nothing; a day past the end counts up to the end.
    assert campaign_days(session, campaign, campaign.start_on - timedelta(days=1)).days == []
    past = campaign_days(session, campaign, campaign.end_on + timedelta(days=30))
    assert past.days[-1].day == campaign.end_on
    with pytest.raises(UnknownFilter):
        campaign_days(session, campaign, today, network="NOPE")


def test_the_page_chart_table_filters_and_csv_by_day(spread: dict[str, Any], app: Flask, session: Session) -> None:
    create_staff_user(session, "days-viewer", PASSWORD, StaffRole.VIEWER, language="en")
    session.commit()
    client = app.test_client()
    assert login(client, "days-viewer", PASSWORD).status_code == 302
    campaign_id, today = spread["campaign_id"], spread["today"]
    body = client.get(f"/admin/campaigns/{campaign_id}").get_data(as_text=True)
    assert 'id="campaign-days-chart"' in body and 'class="bars day-bars"' in body
    assert body.count('<div class="day" title=') == 11 and "--target: 100.0%" in body
    assert f'<tr><td class="lead">{today}</td>' in body
    assert f"/admin/campaigns/{campaign_id}/days.csv?on={today}" in body
    filtered = client.get(f"/admin/campaigns/{campaign_id}?network=RES-A").get_data(as_text=True)
    assert "Day by day <small>RES-A</small>" in filtered and 'value="RES-A" selected' in filtered
    # RES-A's target is 10 and it validated 6: the chart's top is the target, the line at 100 %.
    assert "--target: 100.0%" in filtered and "--h: 60.0%" in filtered
    assert client.get(f"/admin/campaigns/{campaign_id}?network=NOPE").status_code == 400

    download = client.get(f"/admin/campaigns/{campaign_id}/days.csv?network=RES-A")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(download.get_data(as_text=True).lstrip("\ufeff"))))
    assert [r["day"] for r in rows] == [str(date.fromordinal(today.toordinal() - 10 + n)) for n in range(11)]
    last = rows[-1]
    assert (last["target_beneficiaries"], last["submitted_households"], last["validated_beneficiaries"]) == (
        "10",
        "3",
        "6",
    )
    assert last["validated_percent_of_target"] == "60.0" and last["covered_households"] == "0"
    assert rows[2]["submitted_beneficiaries"] == "3" and rows[1]["submitted_beneficiaries"] == "0"
    semicolon = client.get(f"/admin/campaigns/{campaign_id}/days.csv?commune=Thi%C3%A8s+Nord&sep=semicolon")
    assert semicolon.get_data(as_text=True).splitlines()[-1].startswith(f"{today};260;5;15;3;9;1;3;1;3;0;0;")
    assert client.get(f"/admin/campaigns/{campaign_id}/days.csv?network=NOPE").status_code == 400
    assert client.get(f"/admin/campaigns/{campaign_id + 1000}/days.csv").status_code == 404
