"""Campaigns (issue 27): created, targeted and planned with the CLI; progress from enrolled to covered per network,
commune and campaign checked against a hand-built case on both databases; the admin pages and CSV as a viewer."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy.orm import Session

from models.access.staff import create_staff_user
from models.base import StaffRole
from models.coverage.eligibility import household_eligibility
from models.enrolment.campaigns import Campaign
from models.schemes.scheme import Scheme
from models.views.campaigns import campaign_progress, elapsed_percent
from tests.admin_helpers import login
from tests.campaign_helpers import case, household_of, ok
from tests.members_helpers import cli

__all__ = ["case", "cli"]

PASSWORD = "campaign-pass-123"


def test_progress_counts_the_funnel_per_network_commune_and_campaign(case: dict[str, Any], session: Session) -> None:
    today, scheme = case["today"], case["scheme"]
    campaign = session.get(Campaign, case["campaign_id"])
    assert campaign is not None
    progress = campaign_progress(session, campaign, today)
    a, b = sorted(progress.networks, key=lambda line: line.key or "")
    assert (a.key, b.key) == ("RES-A", "RES-B")

    def figures(line: Any) -> dict[str, tuple[int, int]]:
        f = line.funnel
        return {
            s: (getattr(f, s).households, getattr(f, s).beneficiaries)
            for s in ("submitted", "validated", "rejected", "paid", "covered")
        }

    def covered(on: date) -> dict[str, bool]:
        return {
            name: household_eligibility(session, household_of(session, case["ids"][name]), on).covered
            for name in ("a-paid", "a-unpaid", "b-bsf")
        }

    assert covered(today) == {"a-paid": False, "a-unpaid": False, "b-bsf": False}  # a month's wait
    assert figures(a) == {
        "submitted": (3, 9),
        "validated": (2, 6),
        "rejected": (1, 3),
        "paid": (1, 3),
        "covered": (0, 0),
    }
    assert figures(b) == {
        "submitted": (2, 6),
        "validated": (1, 3),
        "rejected": (0, 0),
        "paid": (0, 0),
        "covered": (0, 0),
    }
    assert (a.funnel.target, b.funnel.target, progress.total.target) == (10, 250, 260)
    assert progress.total.submitted.beneficiaries == 15 and progress.total.validated.households == 3
    # 11 of 60 days gone by (18 %): A has validated 60 % of its target, B 1.2 %.
    assert progress.elapsed_percent == pytest.approx(100 * 11 / 60)
    assert (a.behind, b.behind) == (False, True)
    assert [line.label for line in progress.behind] == [b.label]
    [commune] = progress.communes
    assert commune.commune == "Thiès Nord" and commune.funnel.submitted.households == 5 and commune.behind  # 9 of 260
    # Never paid: the validated household nothing was allocated to (the PNBSF one's cover the state funds).
    assert [h.household_no for h in progress.never_paid] == [
        household_of(session, case["ids"]["a-unpaid"]).household_no
    ]
    assert [(s.place, s.network, s.collector) for s in progress.sessions] == [("Marché central", "RES-A", "Awa A")]

    # Five weeks on: the waits are over; 46 of 60 days gone by, A's 60 % is behind too.
    later = today + timedelta(days=35)
    assert covered(later) == {"a-paid": True, "a-unpaid": False, "b-bsf": True}
    a, b = sorted(campaign_progress(session, campaign, later).networks, key=lambda line: line.key or "")
    assert (figures(a)["covered"], figures(b)["covered"]) == ((1, 3), (1, 3))
    assert (a.behind, b.behind) == (True, True)

    # The day before anything was submitted: targets, nothing counted.
    before = campaign_progress(session, campaign, today - timedelta(days=1))
    assert before.total.submitted.households == 0 and before.total.target == 260
    assert [line.behind for line in before.networks] == [True, True]
    assert elapsed_percent(date(2026, 1, 1), date(2026, 1, 10), date(2025, 12, 31)) == 0
    assert elapsed_percent(date(2026, 1, 1), date(2026, 1, 10), date(2026, 2, 1)) == 100
    assert scheme.grace_days == 30


def test_a_reader_kept_to_another_mutuelle_sees_none_of_its_lines(
    case: dict[str, Any], app: Flask, session: Session
) -> None:
    create_staff_user(session, "pk-viewer", PASSWORD, StaffRole.VIEWER, language="en", mutuelles=["SN-PK"])
    session.commit()
    client = app.test_client()
    assert login(client, "pk-viewer", PASSWORD).status_code == 302
    campaign_id = case["campaign_id"]
    # A campaign of the whole scheme: listed, with SN-PK's lines only (none here).
    assert "Campagne test" in client.get("/admin/campaigns").get_data(as_text=True)
    body = client.get(f"/admin/campaigns/{campaign_id}").get_data(as_text=True)
    unpaid = household_of(session, case["ids"]["a-unpaid"])
    assert "RES-A" not in body and "Marché central" not in body and unpaid.household_no not in body
    rows = client.get(f"/admin/campaigns/{campaign_id}.csv").get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["campaign"] and ",0,0," in rows[1]


def test_the_cli_lists_and_prints_progress(case: dict[str, Any], cli: Callable[..., Result]) -> None:
    listed = ok(cli("campaigns", "list")).strip().split("\t")
    assert listed[1:4] == ["Campagne test", "cmu-thies", "-"] and listed[-2:] == ["2", "1"]
    lines = ok(cli("campaigns", "progress", str(case["campaign_id"]))).strip().splitlines()
    assert lines[0].split("\t")[:3] == ["commune", "network", "target"]
    by_network = {line.split("\t")[1]: line.split("\t") for line in lines[1:]}
    assert by_network["RES-A"] == ["Thiès Nord", "RES-A", "10", "3/9", "2/6", "1/3", "1/3", "0/0", "-"]
    assert by_network["RES-B"] == ["Thiès Nord", "RES-B", "250", "2/6", "1/3", "0/0", "0/0", "0/0", "behind"]
    assert cli("campaigns", "target", str(case["campaign_id"]), "--network", "NOPE").exit_code != 0
    refused = cli(
        "campaigns", "session", str(case["campaign_id"]), "--date", "2000-01-01", "--place", "x", "--network", "RES-A"
    )
    assert refused.exit_code != 0 and "outside the campaign" in refused.output
    assert (
        cli(
            "campaigns", "create", "X", "--scheme", "cmu-thies", "--start", "2026-02-01", "--end", "2026-01-01"
        ).exit_code
        != 0
    )


def test_the_admin_pages_and_csv_for_a_viewer(case: dict[str, Any], app: Flask, session: Session) -> None:
    create_staff_user(session, "campaign-viewer", PASSWORD, StaffRole.VIEWER, language="en")
    session.commit()
    client = app.test_client()
    assert login(client, "campaign-viewer", PASSWORD).status_code == 302
    campaign_id = case["campaign_id"]
    listing = client.get("/admin/campaigns").get_data(as_text=True)
    assert f'/admin/campaigns/{campaign_id}"' in listing and "Campagne test" in listing
    page = client.get(f"/admin/campaigns/{campaign_id}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    unpaid = household_of(session, case["ids"]["a-unpaid"])
    assert f'href="/admin/households/{unpaid.id}">{unpaid.household_no}</a>' in body
    assert 'class="behind"' in body and "Marché central" in body and "@media print" not in body
    assert client.get(f"/admin/campaigns/{campaign_id + 1000}").status_code == 404
    assert client.get(f"/admin/campaigns/{campaign_id}?on=2026-13-01").status_code == 400

    download = client.get(f"/admin/campaigns/{campaign_id}.csv")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(download.get_data(as_text=True).lstrip("\ufeff"))))
    by = {(r["level"], r["network"] or r["commune"]): r for r in rows}
    assert (
        by["network", "RES-A"]["validated_beneficiaries"] == "6"
        and by["network", "RES-A"]["validated_percent_of_target"] == "60.0"
    )
    assert by["network", "RES-B"]["behind"] == "yes" and by["network", "RES-B"]["covered_households"] == "0"
    assert by["commune", "Thiès Nord"]["submitted_households"] == "5"
    assert by["campaign", ""]["target_beneficiaries"] == "260" and by["campaign", ""]["network_name"] == "Campagne test"
    assert client.get(f"/admin/campaigns/{campaign_id + 1000}.csv").status_code == 404
    assert isinstance(session.get(Scheme, case["scheme"].id), Scheme)
