"""Household and member search, a household's page, networks."""

from __future__ import annotations

import logging
from datetime import date

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from extensions import db
from handlers.admin import bp
from handlers.admin.actions import render_household
from handlers.admin.auth import role_required
from handlers.admin.filters import household_filters
from handlers.admin.params import page_args, page_cursor, query_without
from handlers.admin.texts import gettext
from models.base import StaffRole, utcnow
from models.members.household import Network
from models.members.networks import NetworkEdit, set_grant, update_network
from models.views.dossiers import network_dossier
from models.views.household_lists import all_schemes, household_choices, households_page
from models.views.listings import networks_list

log = logging.getLogger(__name__)


@bp.get("/households")
@role_required(StaffRole.VIEWER)
def households() -> ResponseReturnValue:
    """List households with their eligibility today: searched by number, phone or name, filtered, page by page."""
    schemes = all_schemes(db())
    choices = household_choices(db(), schemes)
    filters = household_filters(choices)
    number, per_page = page_args()
    page = households_page(db(), filters, utcnow(), number, per_page, schemes, page_cursor())
    return render_template(
        "admin/households.html", page=page, filters=filters, choices=choices, args=query_without("page")
    )


@bp.get("/households/<int:household_id>")
@role_required(StaffRole.VIEWER)
def household(household_id: int) -> ResponseReturnValue:
    """Show a household: eligibility of each member, coverage periods, ledger, payments, SMS and checks."""
    return render_household(household_id)


@bp.get("/networks")
@role_required(StaffRole.VIEWER)
def networks() -> ResponseReturnValue:
    """List networks, by scheme and commune."""
    number, per_page = page_args()
    choices = household_choices(db(), all_schemes(db()))
    filters = household_filters(choices)
    page = networks_list(
        db(),
        number,
        per_page,
        scheme_id=filters.scheme_id,
        commune=filters.commune,
        mutuelle=filters.mutuelle,
        cursor=page_cursor(),
    )
    return render_template(
        "admin/networks.html", page=page, filters=filters, choices=choices, args=query_without("page")
    )


@bp.get("/networks/<int:network_id>")
@role_required(StaffRole.VIEWER)
def network(network_id: int) -> ResponseReturnValue:
    """Show a network: its account balance and ledger, and its households with their eligibility, page by page."""
    return _render_network(network_id)


def _render_network(
    network_id: int, error: str | None = None, status: int = 200, form: str = "matching"
) -> ResponseReturnValue:
    schemes = all_schemes(db())  # kept: the dossier then finds the network's scheme in the session
    dossier = network_dossier(db(), network_id, utcnow())
    if dossier is None:
        abort(404)
    number, per_page = page_args()
    choices = household_choices(db(), schemes)
    filters = household_filters(choices, network_id=network_id)
    page = households_page(db(), filters, utcnow(), number, per_page, schemes, page_cursor())
    posted = request.form if error else {}
    html = render_template(
        "admin/network.html",
        d=dossier,
        page=page,
        filters=filters,
        choices=choices,
        args=query_without("page"),
        error=error,
        error_form=form,
        posted=posted,
    )
    return html, status


@bp.post("/networks/<int:network_id>/matching")
@role_required(StaffRole.OPERATOR)
def edit_network(network_id: int) -> ResponseReturnValue:
    """Set the network's contact phone and the other names payers type for it (aliases)."""
    session = db()
    found = session.get(Network, network_id)
    if found is None:
        abort(404)
    edit = NetworkEdit(request.form.get("contact_phone", "")[:40], request.form.get("aliases", "")[:3000])
    try:
        update_network(session, found, edit)
    except ValueError as exc:
        session.rollback()
        return _render_network(network_id, str(exc), 400)
    session.commit()
    log.info("admin: network %s contact and aliases edited by %s", network_id, current_user.username)
    flash(gettext("Network saved."))
    return redirect(url_for("admin.network", network_id=network_id))


@bp.post("/networks/<int:network_id>/grant")
@role_required(StaffRole.OPERATOR)
def edit_network_grant(network_id: int) -> ResponseReturnValue:
    """Record the grant the network received (amount and day; an empty amount clears it): its savings target."""
    session = db()
    found = session.get(Network, network_id)
    if found is None:
        abort(404)
    amount_text = request.form.get("grant_amount", "").strip().replace(" ", "")[:20]
    day_text = request.form.get("grant_on", "").strip()[:10]
    try:
        amount = int(amount_text) if amount_text else None
        day = date.fromisoformat(day_text) if day_text else None
    except ValueError:
        message = gettext("Give the grant as a whole amount and its day as YYYY-MM-DD.")
        return _render_network(network_id, message, 400, "grant")
    try:
        set_grant(found, amount, day, found.scheme.local_today(utcnow()))
    except ValueError as exc:
        session.rollback()
        return _render_network(network_id, str(exc), 400, "grant")
    session.commit()
    log.info("admin: network %s grant set to %s by %s", network_id, found.grant_amount, current_user.username)
    flash(gettext("Grant saved."))
    return redirect(url_for("admin.network", network_id=network_id))
