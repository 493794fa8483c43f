"""Enrolment campaigns: the list, one campaign's funnel from enrolled to covered (printable), and its CSV."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from flask import abort, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from extensions import db
from handlers.admin import bp
from handlers.admin.auth import role_required
from handlers.admin.campaign_edits import can_edit
from handlers.admin.exports import csv_download
from handlers.admin.params import arg_date
from models.base import StaffRole, utcnow
from models.enrolment.campaigns import Campaign, list_campaigns
from models.views.campaign_days import DAY_CSV_COLUMNS, CampaignDays, UnknownFilter, campaign_days, day_rows
from models.views.campaigns import CSV_COLUMNS, STAGES, campaign_progress, progress_rows


@bp.get("/campaigns")
@role_required(StaffRole.VIEWER)
def campaigns() -> ResponseReturnValue:
    """List the enrolment campaigns the reader sees."""
    return render_template("admin/campaigns.html", campaigns=list_campaigns(db()))


def _campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        abort(404)
    return campaign


def _day(campaign: Campaign) -> date:
    return arg_date("on") or campaign.scheme.local_today(utcnow())


@bp.get("/campaigns/<int:campaign_id>")
@role_required(StaffRole.VIEWER)
def campaign(campaign_id: int) -> ResponseReturnValue:
    """Show a campaign's funnel per network and commune against target, its sessions and who never paid."""
    session = db()
    found = _campaign(session, campaign_id)
    day = _day(found)
    progress = campaign_progress(session, found, day)
    return render_template(
        "admin/campaign.html",
        p=progress,
        stages=STAGES,
        today=found.scheme.local_today(utcnow()),
        d=_days(session, found, day),
        networks=sorted({(line.key, line.label) for line in progress.networks if line.key}),
        communes=sorted({line.commune for line in progress.communes if line.commune}),
        editable=can_edit(found),
    )


def _days(session: Session, campaign: Campaign, day: date) -> CampaignDays:
    """Return the campaign's days up to a day, for the network (`?network=CODE`) or commune (`?commune=`) asked."""
    try:
        return campaign_days(
            session,
            campaign,
            day,
            network=request.args.get("network", "").strip()[:40] or None,
            commune=request.args.get("commune", "").strip()[:120] or None,
        )
    except UnknownFilter as exc:
        abort(400, str(exc))


@bp.get("/campaigns/<int:campaign_id>.csv")
@role_required(StaffRole.VIEWER)
def campaign_csv(campaign_id: int) -> ResponseReturnValue:
    """Download a campaign's progress per network, commune and in total, as CSV (streamed)."""
    day = _day(_campaign(db(), campaign_id))

    def rows(session: Session) -> Iterator[list[str]]:
        yield from progress_rows(campaign_progress(session, _campaign(session, campaign_id), day))

    return csv_download(f"campaign-{campaign_id}", CSV_COLUMNS, rows)


@bp.get("/campaigns/<int:campaign_id>/days.csv")
@role_required(StaffRole.VIEWER)
def campaign_days_csv(campaign_id: int) -> ResponseReturnValue:
    """Download a campaign's funnel day by day (maybe one network's or commune's), as CSV (streamed)."""
    session = db()
    found = _campaign(session, campaign_id)
    days = day_rows(_days(session, found, _day(found)))  # at most MAX_DAYS rows; a bad filter is a 400 here

    def rows(session: Session) -> Iterator[list[str]]:
        yield from days

    return csv_download(f"campaign-{campaign_id}-days", DAY_CSV_COLUMNS, rows)
