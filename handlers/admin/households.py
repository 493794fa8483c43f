"""Household and member search, a household's page, networks."""

from __future__ import annotations

from flask import abort, render_template
from flask.typing import ResponseReturnValue

from extensions import db
from handlers.admin import bp
from handlers.admin.actions import render_household
from handlers.admin.auth import role_required
from handlers.admin.params import arg_text, page_args, query_without
from models.base import StaffRole
from models.dossiers import network_dossier, search_households
from models.listings import network_households, networks_list


@bp.get("/households")
@role_required(StaffRole.VIEWER)
def households() -> ResponseReturnValue:
    """Search households by household or member number, phone or name."""
    text = arg_text("q") or ""
    hits = search_households(db(), text) if text else []
    return render_template("admin/households.html", q=text, hits=hits)


@bp.get("/households/<int:household_id>")
@role_required(StaffRole.VIEWER)
def household(household_id: int) -> ResponseReturnValue:
    """Show a household: eligibility of each member, coverage periods, ledger, payments, SMS and checks."""
    return render_household(household_id)


@bp.get("/networks")
@role_required(StaffRole.VIEWER)
def networks() -> ResponseReturnValue:
    """List networks."""
    number, per_page = page_args()
    return render_template(
        "admin/networks.html", page=networks_list(db(), number, per_page), args=query_without("page")
    )


@bp.get("/networks/<int:network_id>")
@role_required(StaffRole.VIEWER)
def network(network_id: int) -> ResponseReturnValue:
    """Show a network: its account balance and ledger, and its households page by page."""
    dossier = network_dossier(db(), network_id)
    if dossier is None:
        abort(404)
    number, per_page = page_args()
    page = network_households(db(), network_id, number, per_page)
    return render_template("admin/network.html", d=dossier, page=page, args=query_without("page"))
