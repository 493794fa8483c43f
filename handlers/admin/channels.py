"""The SMS log, USSD sessions and the facility checks log."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from flask import render_template
from flask.typing import ResponseReturnValue

from extensions import db
from handlers.admin import bp
from handlers.admin.auth import role_required
from handlers.admin.params import arg_date, arg_enum, arg_text, page_args, page_cursor, query_without
from models.base import MessageDirection, MessageStatus, StaffRole, utcnow
from models.views.listings import eligibility_checks, messages_list, rejected_callbacks, ussd_sessions
from models.views.reports import ussd_funnel

USSD_DEFAULT_DAYS = 7
REJECTED_SOURCES = ("sms_inbound", "sms_delivery", "ussd_events", "wave", "daraja_confirm", "sms_forward")


@bp.get("/sms")
@role_required(StaffRole.VIEWER)
def sms() -> ResponseReturnValue:
    """List SMS in and out with their delivery reports, filtered by direction and status."""
    number, per_page = page_args()
    direction = arg_enum("direction", MessageDirection)
    status = arg_enum("status", MessageStatus)
    page = messages_list(db(), direction, status, number, per_page, page_cursor())
    return render_template(
        "admin/sms.html",
        page=page,
        direction=direction,
        status=status,
        directions=list(MessageDirection),
        statuses=list(MessageStatus),
        args=query_without("page"),
    )


@bp.get("/ussd")
@role_required(StaffRole.VIEWER)
def ussd() -> ResponseReturnValue:
    """Show USSD completion rate and drop-off by last screen over a date range, and the sessions."""
    today = utcnow().date()
    end_day = arg_date("to") or today
    start_day = arg_date("from") or end_day - timedelta(days=USSD_DEFAULT_DAYS - 1)
    start = datetime.combine(start_day, time.min)
    end = datetime.combine(end_day + timedelta(days=1), time.min)
    number, per_page = page_args()
    session = db()
    return render_template(
        "admin/ussd.html",
        funnel=ussd_funnel(session, start, end),
        page=ussd_sessions(session, start, end, number, per_page, page_cursor()),
        start_day=start_day,
        end_day=end_day,
        args=query_without("page"),
    )


@bp.get("/checks")
@role_required(StaffRole.VIEWER)
def checks() -> ResponseReturnValue:
    """List facility coverage checks, newest first, by member number or facility."""
    number, per_page = page_args()
    member_no = arg_text("member")
    facility = arg_text("facility")
    page = eligibility_checks(db(), member_no, facility, number, per_page, page_cursor())
    return render_template(
        "admin/checks.html", page=page, member_no=member_no, facility=facility, args=query_without("page")
    )


@bp.get("/rejected")
@role_required(StaffRole.VIEWER)
def rejected() -> ResponseReturnValue:
    """List callbacks refused for their content (raw body, source, reason, attempts), newest first."""
    number, per_page = page_args()
    source = arg_text("source", 40)
    session = db()
    page = rejected_callbacks(session, source, number, per_page, page_cursor())
    return render_template(
        "admin/rejected.html",
        page=page,
        source=source,
        sources=REJECTED_SOURCES,
        args=query_without("page"),
    )
