"""Renewals: households whose cover ends soon, in grace or lapsed lately; their CSV; "send a reminder now"."""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from extensions import db, settings
from handlers.admin import bp
from handlers.admin.auth import role_required
from handlers.admin.exports import csv_download, household_selection
from handlers.admin.params import arg_enum, arg_int, page_args, page_cursor, query_without
from handlers.admin.texts import gettext
from models.base import StaffRole, utcnow
from models.members.household import Household
from models.messaging.reminders import ReminderOutcome, ReminderRun, send_reminders_now
from models.schemes.scheme import schemes_today
from models.views.exports import header
from models.views.renewals import (
    COUNT_LIMIT,
    DEFAULT_DAYS,
    MAX_DAYS,
    RENEWAL_COLUMNS,
    RenewalFilters,
    RenewalKind,
    renewal_csv_rows,
    renewal_household_ids,
    renewals_page,
)
from models.views.selection import selection_choices
from models.views.standing import load_schemes

log = logging.getLogger(__name__)


def outcome_label(outcome: ReminderOutcome) -> str:
    """Return what became of a reminder, in the staff user's language."""
    labels = {
        ReminderOutcome.QUEUED: gettext("queued"),
        ReminderOutcome.ALREADY_SENT: gettext("already sent for this period"),
        ReminderOutcome.OUTSIDE_DAYTIME: gettext("refused outside daytime hours"),
        ReminderOutcome.OPTED_OUT: gettext("opted out (STOP)"),
        ReminderOutcome.NOT_ACTIVE: gettext("suspended or closed"),
        ReminderOutcome.SUBSIDISED: gettext("fully subsidised (nothing to ask)"),
        ReminderOutcome.NEVER_COVERED: gettext("never covered"),
        ReminderOutcome.NO_PHONE: gettext("no phone"),
        ReminderOutcome.NOTHING_DUE: gettext("nothing to pay"),
    }
    return labels[outcome]


def renewal_filters() -> RenewalFilters:
    """Return the renewal list's filters: `kind`, `days` (default 30), scheme, commune, network (code), plan…"""
    return RenewalFilters(
        kind=arg_enum("kind", RenewalKind),
        days=arg_int("days", DEFAULT_DAYS, maximum=MAX_DAYS) or 0,
        households=household_selection(),
    )


@bp.get("/renewals")
@role_required(StaffRole.VIEWER)
def renewals() -> ResponseReturnValue:
    """List the households whose cover ends within N days, in grace, or lapsed in the last N days."""
    number, per_page = page_args()
    filters = renewal_filters()
    session = db()
    schemes = load_schemes(session)
    on = schemes_today(session, filters.households.scheme_id, now=utcnow())
    page, total = renewals_page(
        session, filters, on, number, per_page, schemes=list(schemes.values()), cursor=page_cursor()
    )
    return render_template(
        "admin/renewals.html",
        page=page,
        total=total,
        count_limit=COUNT_LIMIT,
        on=on,
        filters=filters,
        network=request.args.get("network", ""),
        choices=selection_choices(session, schemes.values()),
        kinds=[kind.value for kind in RenewalKind],
        args=query_without("page"),
        rest=query_without("page", "kind"),
    )


@bp.get("/renewals.csv")
@role_required(StaffRole.VIEWER)
def renewals_csv() -> ResponseReturnValue:
    """Download the whole filtered renewal list as CSV (streamed)."""
    filters = renewal_filters()
    on = schemes_today(db(), filters.households.scheme_id, now=utcnow())
    return csv_download("renewals", header(RENEWAL_COLUMNS), lambda session: renewal_csv_rows(session, filters, on))


def _summary(run: ReminderRun, single: str | None) -> str:
    counts = run.counts()
    if not counts:
        return gettext("No household to remind in this list.")
    night = ""
    if run.night:
        hours = "; ".join(
            gettext(
                "%(scheme)s: %(now)s there, daytime %(start)s–%(end)s",
                scheme=name,
                now=f"{local:%H:%M}",
                start=f"{start:%H:%M}",
                end=f"{end:%H:%M}",
            )
            for name, (local, start, end) in sorted(run.night.items())
        )
        night = " " + gettext(
            "Reminders go out in the scheme's daytime hours only (%(hours)s): try again then.", hours=hours
        )
    if single is not None:
        outcome = next(iter(counts))
        if outcome is ReminderOutcome.QUEUED:
            return gettext("Household %(number)s: reminder queued.", number=single) + night
        return gettext("Household %(number)s: not sent: %(why)s.", number=single, why=outcome_label(outcome)) + night
    parts = ", ".join(f"{n} {outcome_label(outcome)}" for outcome, n in counts.items())
    return gettext("Reminders: %(outcomes)s.", outcomes=parts) + night


def _remind(household_ids: list[int], single: str | None) -> ResponseReturnValue:
    session = db()
    session.rollback()  # the reminders open their own write transaction
    run = send_reminders_now(session, household_ids, utcnow(), settings().USSD_SERVICE_CODE, current_user.username)
    session.commit()
    log.info(
        "admin: reminders sent by hand by %s: %s",
        current_user.username,
        {outcome.value: n for outcome, n in run.counts().items()},
    )
    flash(_summary(run, single))
    back: dict[str, Any] = request.args.to_dict()  # the list the reminder was sent from, with its filters
    return redirect(url_for("admin.renewals", **back))


@bp.post("/renewals/remind")
@role_required(StaffRole.OPERATOR)
def remind_all() -> ResponseReturnValue:
    """Send a renewal reminder now to every household of the filtered list (same filters as the page's URL)."""
    filters = renewal_filters()
    on = schemes_today(db(), filters.households.scheme_id, now=utcnow())
    return _remind(renewal_household_ids(db(), filters, on), None)


@bp.post("/renewals/<int:household_id>/remind")
@role_required(StaffRole.OPERATOR)
def remind_household(household_id: int) -> ResponseReturnValue:
    """Send a renewal reminder now to one household."""
    household = db().get(Household, household_id)
    if household is None:
        abort(404)
    return _remind([household_id], household.household_no)
