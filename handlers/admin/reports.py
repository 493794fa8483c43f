"""The scheme manager's report: households, collections, matching and subsidies by month, commune and network."""

from __future__ import annotations

from flask import abort, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from extensions import db
from handlers.admin import bp
from handlers.admin.auth import role_required
from handlers.admin.filters import arg_month
from handlers.admin.params import arg_enum, arg_int, arg_text, query_without
from handlers.admin.texts import gettext
from models.base import StaffRole, utcnow
from models.schemes.scheme import Scheme
from models.views.scheme_reports import MAX_MONTHS, Grouping, ReportFilters, report_choices, scheme_report

DEFAULT_MONTHS = 12


@bp.get("/reports")
@role_required(StaffRole.VIEWER)
def reports() -> ResponseReturnValue:
    """Show a scheme's figures month by month, and the chosen month by network (or commune), with charts."""
    session = db()
    schemes = list(session.scalars(select(Scheme).order_by(Scheme.name, Scheme.id)))
    scheme_id = arg_int("scheme")
    if not schemes:
        return render_template("admin/reports.html", report=None, schemes=[], scheme=None)
    scheme = schemes[0] if scheme_id is None else next((s for s in schemes if s.id == scheme_id), None)
    if scheme is None:
        abort(400, gettext("scheme: there is no scheme #%(id)s", id=scheme_id))
    history = max(1, arg_int("months", DEFAULT_MONTHS, maximum=MAX_MONTHS) or DEFAULT_MONTHS)
    choices = report_choices(session, scheme)
    # A reader who sees several of the scheme's mutuelles (a union) gets them side by side, with the totals.
    grouping = arg_enum("by", Grouping) or (Grouping.MUTUELLE if len(choices.mutuelles) > 1 else Grouping.NETWORK)
    filters = ReportFilters(
        commune=arg_text("commune"), network=arg_text("network", limit=60), mutuelle=arg_text("mutuelle", limit=40)
    )
    if filters.mutuelle and filters.mutuelle not in {code for code, _ in choices.mutuelles}:
        abort(
            400,
            gettext("mutuelle: %(scheme)s has no mutuelle %(code)s", scheme=scheme.name, code=repr(filters.mutuelle)),
        )
    if filters.network and filters.network not in {code for code, _ in choices.networks}:
        abort(
            400,
            gettext(
                "network: %(scheme)s has no network with the code %(code)s",
                scheme=scheme.name,
                code=repr(filters.network),
            ),
        )
    now = utcnow()
    month = arg_month() or scheme.local_today(now)
    try:
        report = scheme_report(
            session, scheme, month, grouping=grouping, filters=filters, history=history, now=now, choices=choices
        )
    except ValueError as exc:
        abort(400, gettext("month: %(error)s", error=str(exc)))
    return render_template(
        "admin/reports.html",
        report=report,
        schemes=schemes,
        scheme=scheme,
        choices=choices,
        groupings=list(Grouping),
        history=history,
        args=query_without(),
    )
