"""Editing a campaign (operators and admins): its name and days, each network's target, the planned sessions.

Each change is audited in `campaign_events`. A member kept to some mutuelles edits only their mutuelles' campaigns:
a scheme-wide campaign, or another mutuelle's, is not found (404) on these routes.
"""

from __future__ import annotations

import logging
from datetime import date

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session

from extensions import db
from handlers.admin import bp
from handlers.admin.auth import role_required
from handlers.admin.texts import gettext
from models.base import StaffRole
from models.enrolment.campaigns import (
    Campaign,
    CampaignError,
    add_session,
    describe_session,
    record_campaign_event,
    remove_session,
    remove_target,
    set_target,
    update_campaign,
)
from models.enrolment.tables import Collector
from models.inputs import InputError, parse_query_date
from models.members.household import Network

log = logging.getLogger(__name__)

MAX_TARGET = 1_000_000


class FormError(ValueError):
    """A field of the form is wrong; the message (translated) says why."""


def editable(session: Session, campaign_id: int) -> Campaign:
    """Return a campaign the signed-in member may edit, else 404: theirs, or any for staff of every mutuelle."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        abort(404)
    if not can_edit(campaign):
        abort(404)
    return campaign


def can_edit(campaign: Campaign) -> bool:
    """Return whether the signed-in member may edit the campaign (an operator of its mutuelle, or of every one)."""
    if not current_user.can(StaffRole.OPERATOR):
        return False
    return bool(current_user.sees_every_mutuelle or campaign.mutuelle_id in (current_user.mutuelle_ids or ()))


def _networks(session: Session, campaign: Campaign) -> list[Network]:
    """Return the networks a campaign may target: its scheme's (its mutuelle's), those the reader sees."""
    query = select(Network).where(Network.scheme_id == campaign.scheme_id)
    if campaign.mutuelle_id is not None:
        query = query.where(Network.mutuelle_id == campaign.mutuelle_id)
    return list(session.scalars(query.order_by(Network.commune, Network.code)))


def render_edit(
    campaign: Campaign, error: str | None = None, failed: str | None = None, status: int = 200
) -> tuple[str, int]:
    """Return the edit page, with a form's error shown beside it and what was posted kept."""
    session = db()
    networks = _networks(session, campaign)
    collectors = session.scalars(
        select(Collector)
        .where(Collector.mutuelle_id.in_({n.mutuelle_id for n in networks}), Collector.active.is_(True))
        .order_by(Collector.name)
    ).all()
    page = render_template(
        "admin/campaign_edit.html",
        c=campaign,
        networks=networks,
        targets={t.network_id: t.beneficiaries for t in campaign.targets},
        collectors=collectors,
        events=list(reversed(campaign.events))[:20],
        error=error,
        failed=failed,
        posted=request.form if request.method == "POST" else {},
    )
    return page, status


def _date(name: str, label: str) -> date:
    try:
        return parse_query_date(request.form.get(name, ""), name)
    except InputError as exc:
        raise FormError(gettext("%(field)s: a date YYYY-MM-DD.", field=label)) from exc


def _done(campaign: Campaign, action: str, note: str, message: str) -> ResponseReturnValue:
    """Record and commit a change (an empty note: nothing changed, nothing recorded), then back to the edit page."""
    if not note:
        flash(gettext("Nothing changed."))
        return redirect(url_for("admin.edit_campaign", campaign_id=campaign.id))
    record_campaign_event(campaign, current_user.username, action, note)
    db().commit()
    log.info("admin: campaign %s %s by %s", campaign.id, action, current_user.username)
    flash(message)
    return redirect(url_for("admin.edit_campaign", campaign_id=campaign.id))


@bp.get("/campaigns/<int:campaign_id>/edit")
@role_required(StaffRole.OPERATOR)
def edit_campaign(campaign_id: int) -> ResponseReturnValue:
    """Show the forms that change a campaign, and its audit trail."""
    return render_edit(editable(db(), campaign_id))


@bp.post("/campaigns/<int:campaign_id>/edit")
@role_required(StaffRole.OPERATOR)
def update_campaign_view(campaign_id: int) -> ResponseReturnValue:
    """Rename a campaign or move its first and last days."""
    session = db()
    campaign = editable(session, campaign_id)
    try:
        name = request.form.get("name", "").strip()
        if not name:
            raise FormError(gettext("Give the campaign a name."))
        start_on, end_on = _date("start_on", gettext("First day")), _date("end_on", gettext("Last day"))
        if end_on < start_on:
            raise FormError(gettext("The last day is before the first."))
        changed = update_campaign(session, campaign, name=name, start_on=start_on, end_on=end_on)
    except (FormError, CampaignError) as exc:
        session.rollback()
        return render_edit(editable(session, campaign_id), str(exc), "details", 400)
    return _done(campaign, "edit", "; ".join(changed), gettext("Campaign saved."))


@bp.post("/campaigns/<int:campaign_id>/targets")
@role_required(StaffRole.OPERATOR)
def campaign_targets_view(campaign_id: int) -> ResponseReturnValue:
    """Set each network's target of beneficiaries (empty or 0: no target)."""
    session = db()
    campaign = editable(session, campaign_id)
    current = {t.network_id: t.beneficiaries for t in campaign.targets}
    changes: list[str] = []
    try:
        for network in _networks(session, campaign):
            raw = request.form.get(f"target-{network.code}")
            if raw is None:
                continue  # not on the form: left as it is
            raw = raw.strip()
            if raw and not (raw.isascii() and raw.isdigit() and int(raw) <= MAX_TARGET):
                raise FormError(gettext("%(network)s: a whole number of beneficiaries.", network=network.code))
            wanted = int(raw) if raw else 0
            before = current.get(network.id, 0)
            if wanted == before:
                continue
            if wanted == 0:
                remove_target(session, campaign, network.code)
            else:
                set_target(session, campaign, network.code, wanted)
            changes.append(f"{network.code} {before or '-'} → {wanted or '-'}")
    except (FormError, CampaignError) as exc:
        session.rollback()
        return render_edit(editable(session, campaign_id), str(exc), "targets", 400)
    return _done(campaign, "targets", "; ".join(changes), gettext("Targets saved."))


@bp.post("/campaigns/<int:campaign_id>/sessions")
@role_required(StaffRole.OPERATOR)
def add_campaign_session_view(campaign_id: int) -> ResponseReturnValue:
    """Plan a collection session: a day within the campaign, a place, a network and maybe its collector."""
    session = db()
    campaign = editable(session, campaign_id)
    try:
        held_on = _date("held_on", gettext("Day"))
        place = request.form.get("place", "").strip()
        if not place:
            raise FormError(gettext("Say where the session is held."))
        raw_collector = request.form.get("collector", "").strip()
        if raw_collector and not (raw_collector.isascii() and raw_collector.isdigit()):
            raise FormError(gettext("Choose a collector from the list."))
        planned = add_session(
            session,
            campaign,
            held_on=held_on,
            place=place,
            network_code=request.form.get("network", ""),
            collector_id=int(raw_collector) if raw_collector else None,
        )
    except (FormError, CampaignError) as exc:
        session.rollback()
        return render_edit(editable(session, campaign_id), str(exc), "session", 400)
    return _done(campaign, "session", describe_session(planned), gettext("Session planned."))


@bp.post("/campaigns/<int:campaign_id>/sessions/remove")
@role_required(StaffRole.OPERATOR)
def remove_campaign_session_view(campaign_id: int) -> ResponseReturnValue:
    """Remove a planned session from the campaign."""
    session = db()
    campaign = editable(session, campaign_id)
    raw = request.form.get("session_id", "").strip()
    try:
        if not (raw.isascii() and raw.isdigit()):
            raise FormError(gettext("Choose a session to remove."))
        removed = remove_session(session, campaign, int(raw))
    except (FormError, CampaignError) as exc:
        session.rollback()
        return render_edit(editable(session, campaign_id), str(exc), "sessions", 400)
    return _done(campaign, "unsession", removed, gettext("Session removed."))
