"""Editing a campaign from the admin (issue 27): name and days, targets, planned sessions, through the real routes
with CSRF tokens, on both databases; errors re-shown on the form; each change audited; a member kept to one mutuelle
edits only that mutuelle's campaigns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.access.staff import create_staff_user
from models.base import StaffRole
from models.enrolment.campaigns import Campaign, CampaignEvent
from models.enrolment.tables import Collector
from tests.admin_helpers import csrf_token, login
from tests.campaign_helpers import case, ok
from tests.members_helpers import cli

__all__ = ["case", "cli"]

PASSWORD = "campaign-edit-123"


def signed(app: Flask, session: Session, username: str, role: StaffRole, mutuelles: list[str] | None = None) -> Any:
    create_staff_user(session, username, PASSWORD, role, language="en", mutuelles=mutuelles or [])
    session.commit()
    client = app.test_client()
    assert login(client, username, PASSWORD).status_code == 302
    return client


def reread(session: Session, campaign_id: int) -> Campaign:
    session.commit()
    session.expire_all()
    campaign = session.get(Campaign, campaign_id)
    assert campaign is not None
    return campaign


def post(client: FlaskClient, path: str, **form: str) -> Any:
    return client.post(path, data={"csrf_token": csrf_token(client, "/admin/"), **form})


def test_an_operator_edits_names_days_targets_and_sessions(case: dict[str, Any], app: Flask, session: Session) -> None:
    client = signed(app, session, "union-operator", StaffRole.OPERATOR)
    campaign_id, today = case["campaign_id"], case["today"]
    base = f"/admin/campaigns/{campaign_id}"
    assert f'href="{base}/edit"' in client.get(base).get_data(as_text=True)
    page = client.get(f"{base}/edit")
    assert page.status_code == 200 and 'id="campaign-details"' in page.get_data(as_text=True)
    campaign = reread(session, campaign_id)
    start, end = campaign.start_on, campaign.end_on

    # A good edit: renamed, a week longer.
    done = post(client, f"{base}/edit", name="Campagne CMU", start_on=str(start), end_on=str(end + timedelta(days=7)))
    assert done.status_code == 302 and done.headers["Location"].endswith(f"{base}/edit")
    assert "Campaign saved." in client.get(f"{base}/edit").get_data(as_text=True)
    campaign = reread(session, campaign_id)
    assert (campaign.name, campaign.end_on) == ("Campagne CMU", end + timedelta(days=7))

    # Bad days: the form comes back with the error and what was typed.
    bad = post(client, f"{base}/edit", name="Nouveau nom", start_on=str(end), end_on=str(start))
    body = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "The last day is before the first." in body and 'value="Nouveau nom"' in body
    malformed = post(client, f"{base}/edit", name="X", start_on="31/12/2026", end_on=str(end))
    assert malformed.status_code == 400 and "First day: a date YYYY-MM-DD." in malformed.get_data(as_text=True)
    # The planned session (today) would fall outside: refused, nothing changed.
    outside = post(client, f"{base}/edit", name="X", start_on=str(today + timedelta(days=1)), end_on=str(end))
    assert outside.status_code == 400 and "would be outside the campaign" in outside.get_data(as_text=True)
    assert reread(session, campaign_id).name == "Campagne CMU"
    assert post(client, f"{base}/edit", name="", start_on=str(start), end_on=str(end)).status_code == 400

    # Targets: RES-A to 20, RES-B's removed; a word is refused.
    assert post(client, f"{base}/targets", **{"target-RES-A": "20", "target-RES-B": ""}).status_code == 302
    campaign = reread(session, campaign_id)
    assert [(t.network.code, t.beneficiaries) for t in campaign.targets] == [("RES-A", 20)]
    refused = post(client, f"{base}/targets", **{"target-RES-A": "vingt"})
    assert refused.status_code == 400 and "RES-A: a whole number of beneficiaries." in refused.get_data(as_text=True)

    # Sessions: one added with its collector, then the first removed; one outside the days refused.
    collector = session.scalars(select(Collector).where(Collector.name == "Binta B")).one()
    day = str(today + timedelta(days=3))
    added = post(client, f"{base}/sessions", held_on=day, place="Foirail", network="RES-B", collector=str(collector.id))
    assert added.status_code == 302
    late = post(client, f"{base}/sessions", held_on=str(end + timedelta(days=30)), place="Loin", network="RES-B")
    assert late.status_code == 400 and "outside the campaign" in late.get_data(as_text=True)
    campaign = reread(session, campaign_id)
    assert [(s.place, s.network.code) for s in campaign.sessions] == [("Marché central", "RES-A"), ("Foirail", "RES-B")]
    first = campaign.sessions[0].id
    assert post(client, f"{base}/sessions/remove", session_id=str(first)).status_code == 302
    assert post(client, f"{base}/sessions/remove", session_id=str(first)).status_code == 400
    campaign = reread(session, campaign_id)
    assert [s.place for s in campaign.sessions] == ["Foirail"]

    # The same details and targets again: nothing changed, nothing recorded.
    campaign = reread(session, campaign_id)
    same = {"name": campaign.name, "start_on": str(campaign.start_on), "end_on": str(campaign.end_on)}
    assert post(client, f"{base}/edit", **same).status_code == 302
    assert "Nothing changed." in client.get(f"{base}/edit").get_data(as_text=True)
    assert post(client, f"{base}/targets", **{"target-RES-A": "20", "target-RES-B": ""}).status_code == 302
    assert "Nothing changed." in client.get(f"{base}/edit").get_data(as_text=True)

    # Each change is in the audit trail, with who made it; the page lists them.
    events = session.scalars(select(CampaignEvent).where(CampaignEvent.campaign_id == campaign_id)).all()
    assert [(e.actor, e.action) for e in events] == [
        ("union-operator", "edit"),
        ("union-operator", "targets"),
        ("union-operator", "session"),
        ("union-operator", "unsession"),
    ]
    assert "RES-B 250 → -" in events[1].note and "Binta B" in events[2].note
    assert "Foirail" in client.get(f"{base}/edit").get_data(as_text=True)
    # Without the CSRF token nothing is done.
    assert client.post(f"{base}/edit", data={"name": "Sans jeton"}).status_code == 400
    assert reread(session, campaign_id).name == "Campagne CMU"


def test_a_manager_edits_only_their_mutuelles_campaigns(
    case: dict[str, Any], cli: Callable[..., Result], app: Flask, session: Session
) -> None:
    start, end = case["today"], case["today"] + timedelta(days=30)
    args = ["--scheme", "cmu-thies", "--mutuelle", "SN-TN", "--start", str(start), "--end", str(end)]
    out = ok(cli("campaigns", "create", "Campagne TN", *args))
    own = int(out.split()[1])
    tn = signed(app, session, "tn-manager", StaffRole.OPERATOR, ["SN-TN"])
    pk = signed(app, session, "pk-manager", StaffRole.OPERATOR, ["SN-PK"])
    viewer = signed(app, session, "tn-reader", StaffRole.VIEWER, ["SN-TN"])
    assert tn.get(f"/admin/campaigns/{own}/edit").status_code == 200
    assert 'name="target-RES-A"' in tn.get(f"/admin/campaigns/{own}/edit").get_data(as_text=True)
    assert post(tn, f"/admin/campaigns/{own}/targets", **{"target-RES-A": "40"}).status_code == 302
    # Another mutuelle's campaign is not found, nor is a scheme-wide one theirs to edit.
    assert pk.get(f"/admin/campaigns/{own}/edit").status_code == 404
    refused = post(pk, f"/admin/campaigns/{own}/edit", name="Pris", start_on=str(start), end_on=str(end))
    assert refused.status_code == 404
    scheme_wide = case["campaign_id"]
    assert tn.get(f"/admin/campaigns/{scheme_wide}/edit").status_code == 404
    assert 'href="/admin/campaigns/' + str(scheme_wide) + '/edit"' not in tn.get(
        f"/admin/campaigns/{scheme_wide}"
    ).get_data(as_text=True)
    # A viewer edits nothing.
    assert viewer.get(f"/admin/campaigns/{own}/edit").status_code == 403
    campaign = reread(session, own)
    assert campaign.name == "Campagne TN" and [t.beneficiaries for t in campaign.targets] == [40]
