"""The staff validation queue: enrolments by status, one beside its duplicate candidates, and the three decisions.

The decisions are the CLI's (`models/enrolment/validate.py`): validate (the household number, the household and the
head's welcome SMS in one transaction), reject with a reason, ask for changes saying what to fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from werkzeug.wrappers import Response

from extensions import db, settings
from handlers.admin import bp
from handlers.admin.actions import reason_field
from handlers.admin.auth import role_required
from handlers.admin.params import arg_int, arg_network, page_args, page_cursor, query_without
from handlers.admin.texts import gettext
from models.base import StaffRole, utcnow
from models.enrolment.tables import Enrolment, EnrolmentStatus
from models.enrolment.validate import DecisionError, ask_for_changes, reject_enrolment, validate_enrolment
from models.schemes.mutuelle import Mutuelle
from models.views.enrolments import (
    WAITING,
    EnrolmentFilters,
    enrolment_dossier,
    enrolments_page,
    queue_choices,
    waiting_count,
)

log = logging.getLogger(__name__)
ANY = "any"  # status=any: every status


@bp.context_processor
def enrolment_queue() -> dict[str, Any]:
    """Let the navigation show how many enrolments wait for staff (asked only when the menu is drawn)."""
    return {"waiting_enrolments": lambda: waiting_count(db())}


def arg_statuses() -> tuple[EnrolmentStatus, ...]:
    """Return the statuses asked for (repeatable; none: the waiting ones; `any`: every one); 400 if unknown."""
    raw = [value.strip().upper() for value in request.args.getlist("status") if value.strip()]
    if not raw:
        return WAITING
    if ANY.upper() in raw:
        return ()
    allowed = {s.value: s for s in EnrolmentStatus}
    unknown = [value for value in raw if value not in allowed]
    if unknown:
        abort(400, f"status must be one of {', '.join(allowed)} or {ANY} (not {unknown[0][:40]!r})")
    return tuple(s for s in EnrolmentStatus if s.value in raw)


def arg_mutuelle() -> int | None:
    """Return the mutuelle a query names by id or by code; 400 when none has it."""
    raw = request.args.get("mutuelle", "").strip()
    if not raw or raw.isdigit():
        return arg_int("mutuelle")
    found = db().scalar(select(Mutuelle.id).where(Mutuelle.code == raw.upper()[:40]))
    if found is None:
        abort(400, f"mutuelle: no mutuelle has the code {raw[:40]!r}")
    return found


def enrolment_filters() -> EnrolmentFilters:
    """Return the queue's filters from the query string: status, mutuelle, network, collector."""
    return EnrolmentFilters(
        statuses=arg_statuses(),
        mutuelle_id=arg_mutuelle(),
        network_id=arg_network("network"),
        collector_id=arg_int("collector"),
    )


@bp.get("/enrolments")
@role_required(StaffRole.VIEWER)
def enrolments() -> ResponseReturnValue:
    """List enrolments, oldest first: by default those waiting for staff or for their collector."""
    filters = enrolment_filters()
    number, per_page = page_args()
    session = db()
    page = enrolments_page(session, filters, number, per_page, page_cursor())
    return render_template(
        "admin/enrolments.html",
        page=page,
        filters=filters,
        choices=queue_choices(session),
        statuses=[s.value for s in EnrolmentStatus],
        shown=[s.value for s in filters.statuses],
        args=query_without("page"),
    )


def render_enrolment(
    enrolment_id: int, error: str | None = None, form: str | None = None, status: int = 200
) -> tuple[str, int]:
    """Render an enrolment beside its candidates, with a decision form's error when one was refused."""
    dossier = enrolment_dossier(db(), enrolment_id)
    if dossier is None:
        abort(404)
    html = render_template(
        "admin/enrolment.html",
        d=dossier,
        error=error,
        failed_form=form,
        posted=request.form if error else {},
    )
    return html, status


@bp.get("/enrolments/<int:enrolment_id>")
@role_required(StaffRole.VIEWER)
def enrolment(enrolment_id: int) -> ResponseReturnValue:
    """Show an enrolment beside its duplicate candidates (with why and score), its audit trail and the decisions."""
    return render_enrolment(enrolment_id)


def _decide(enrolment_id: int, form: str, act: Callable[[], Enrolment | Response]) -> ResponseReturnValue:
    session = session_of(enrolment_id)
    try:
        outcome = act()
    except DecisionError as exc:
        session.rollback()
        return render_enrolment(enrolment_id, str(exc), form, 400)
    except (IntegrityError, OperationalError) as exc:
        # Numbering is serialised (validate.lock_numbering): this is a number taken by other means, or a lock
        # given up after the busy timeout. Nothing was written.
        session.rollback()
        log.warning("admin: %s of enrolment %s failed: %s", form, enrolment_id, type(exc).__name__)
        message = gettext("The database refused it (a number taken or a lock held meanwhile): nothing changed.")
        return render_enrolment(enrolment_id, message, form, 409)
    if isinstance(outcome, Response):
        return outcome
    session.commit()
    log.info("admin: enrolment %s %s by %s", enrolment_id, outcome.status.value, current_user.username)
    flash(gettext("Enrolment #%(id)s: %(status)s.", id=enrolment_id, status=outcome.status.value))
    return redirect(url_for("admin.enrolment", enrolment_id=enrolment_id))


def session_of(enrolment_id: int) -> Any:
    """Return the request's session once the enrolment is known to be the reader's (else 404), no transaction open.

    The decision opens its own write transaction (BEGIN IMMEDIATE on SQLite) and locks the enrolment.
    """
    session = db()
    if session.get(Enrolment, enrolment_id) is None:
        abort(404)
    session.rollback()
    return session


@bp.post("/enrolments/<int:enrolment_id>/validate")
@role_required(StaffRole.OPERATOR)
def validate_enrolment_view(enrolment_id: int) -> ResponseReturnValue:
    """Validate an enrolment: number and create its household, queue the head's welcome SMS; go to the household."""
    session = db()
    found = session.get(Enrolment, enrolment_id)
    if found is None:
        abort(404)
    today = found.mutuelle.scheme.local_today(utcnow())

    def act() -> Response:
        done = validate_enrolment(session, enrolment_id, current_user.username, today, settings().USSD_SERVICE_CODE)
        session.commit()
        number = done.household.household_no
        log.info("admin: enrolment %s validated by %s: %s", enrolment_id, current_user.username, number)
        sms = gettext("welcome SMS queued") if done.welcomed else gettext("no welcome SMS (no phone or no SMS wanted)")
        flash(
            gettext(
                "Enrolment #%(id)s validated: household %(number)s; %(sms)s.",
                id=enrolment_id,
                number=number,
                sms=sms,
            )
        )
        return redirect(url_for("admin.household", household_id=done.household.id))

    return _decide(enrolment_id, "validate", act)


@bp.post("/enrolments/<int:enrolment_id>/reject")
@role_required(StaffRole.OPERATOR)
def reject_enrolment_view(enrolment_id: int) -> ResponseReturnValue:
    """Reject an enrolment with a reason the collector reads."""
    reason = reason_field()
    if not reason:
        session_of(enrolment_id)
        return render_enrolment(enrolment_id, gettext("Give a reason: the collector reads it."), "reject", 400)
    return _decide(enrolment_id, "reject", lambda: reject_enrolment(db(), enrolment_id, current_user.username, reason))


@bp.post("/enrolments/<int:enrolment_id>/needs-changes")
@role_required(StaffRole.OPERATOR)
def ask_for_changes_view(enrolment_id: int) -> ResponseReturnValue:
    """Send an enrolment back to its collector saying what to fix."""
    reason = reason_field()
    if not reason:
        session_of(enrolment_id)
        return render_enrolment(enrolment_id, gettext("Say what to fix: the collector reads it."), "needs-changes", 400)
    return _decide(
        enrolment_id, "needs-changes", lambda: ask_for_changes(db(), enrolment_id, current_user.username, reason)
    )
