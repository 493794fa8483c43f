"""Operator actions on payments (manual match, unmatch, refund) and households (suspend, reinstate)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from extensions import db
from handlers.admin import bp
from handlers.admin.auth import role_required
from handlers.admin.params import arg_date
from handlers.admin.texts import gettext
from models.base import PaymentStatus, StaffRole
from models.coverage.suspensions import household_events, suspend_household, unsuspend_household
from models.reconciliation.matching import suspense_candidates
from models.reconciliation.staff_actions import (
    MATCHABLE,
    UNDOABLE,
    UNMATCHABLE,
    manual_match,
    undo_payment,
    unmatch_payment,
)
from models.views.dossiers import household_dossier, payment_dossier

log = logging.getLogger(__name__)

MAX_REASON = 1000


def reason_field() -> str:
    """Return the trimmed reason of the posted form."""
    return request.form.get("reason", "").strip()[:MAX_REASON]


def render_payment(
    payment_id: int, error: str | None = None, form: str | None = None, status: int = 200
) -> tuple[str, int]:
    """Render a payment's page, with an action form's error when one was refused."""
    dossier = payment_dossier(db(), payment_id)
    if dossier is None:
        abort(404)
    suspended = dossier.payment.status in (PaymentStatus.UNMATCHED, PaymentStatus.CONFLICT)
    candidates = suspense_candidates(db(), dossier.payment) if suspended else []
    return (
        render_template(
            "admin/payment.html",
            d=dossier,
            error=error,
            failed_form=form,
            posted=request.form if error else {},
            matchable=MATCHABLE,
            unmatchable=UNMATCHABLE,
            refundable=UNDOABLE,
            candidates=candidates,
        ),
        status,
    )


def _payment_action(payment_id: int, form: str, act: Callable[[str], str]) -> ResponseReturnValue:
    reason = reason_field()
    if not reason:
        return render_payment(payment_id, gettext("Give a reason: it is kept in the reconciliation log."), form, 400)
    session = db()
    session.rollback()  # the domain function opens its own write transaction and locks the payment
    try:
        outcome = act(reason)
    except (LookupError, ValueError) as exc:
        session.rollback()
        return render_payment(payment_id, str(exc), form, 400)
    session.commit()
    log.info("admin: %s on payment %s by %s: %s", form, payment_id, current_user.username, outcome)
    flash(gettext("Payment #%(id)s: %(outcome)s.", id=payment_id, outcome=outcome))
    return redirect(url_for("admin.payment", payment_id=payment_id))


@bp.post("/payments/<int:payment_id>/match")
@role_required(StaffRole.OPERATOR)
def match_payment(payment_id: int) -> ResponseReturnValue:
    """Match a payment by hand to a household or a network (by number), then allocate it when confirmed."""
    number = request.form.get("number", "").strip()[:44]
    target = request.form.get("target", "household")
    if not number:
        return render_payment(payment_id, gettext("Give the household or network number."), "match", 400)
    return _payment_action(
        payment_id,
        "match",
        lambda reason: manual_match(
            db(),
            payment_id,
            current_user.username,
            reason,
            household_no=number if target != "network" else None,
            network_code=number if target == "network" else None,
        ),
    )


@bp.post("/payments/<int:payment_id>/unmatch")
@role_required(StaffRole.OPERATOR)
def unmatch(payment_id: int) -> ResponseReturnValue:
    """Send a matched, not yet allocated payment back to suspense."""
    return _payment_action(
        payment_id, "unmatch", lambda reason: unmatch_payment(db(), payment_id, current_user.username, reason)
    )


@bp.post("/payments/<int:payment_id>/refund")
@role_required(StaffRole.OPERATOR)
def refund_payment(payment_id: int) -> ResponseReturnValue:
    """Mark a payment refunded to its payer, undoing exactly what it funded."""
    return _payment_action(
        payment_id,
        "refund",
        lambda reason: undo_payment(db(), payment_id, current_user.username, reason, refund_payer=True),
    )


def render_household(household_id: int, error: str | None = None, status: int = 200) -> tuple[str, int]:
    """Render a household's page with its status history, and an error when a change was refused."""
    session = db()
    dossier = household_dossier(session, household_id, arg_date("date"))
    if dossier is None:
        abort(404)
    return (
        render_template(
            "admin/household.html",
            d=dossier,
            events=household_events(session, household_id),
            error=error,
            posted=request.form if error else {},
        ),
        status,
    )


def _household_action(household_id: int, act: Callable[[str], str]) -> ResponseReturnValue:
    reason = reason_field()
    if not reason:
        return render_household(household_id, gettext("Give a reason: it is kept in the household's history."), 400)
    session = db()
    session.rollback()
    try:
        outcome = act(reason)
    except (LookupError, ValueError) as exc:
        session.rollback()
        return render_household(household_id, str(exc), 400)
    session.commit()
    flash(gettext("Household %(outcome)s.", outcome=outcome))
    return redirect(url_for("admin.household", household_id=household_id))


@bp.post("/households/<int:household_id>/suspend")
@role_required(StaffRole.OPERATOR)
def suspend(household_id: int) -> ResponseReturnValue:
    """Suspend a household: its members are answered SUSPENDED until reinstated."""
    return _household_action(
        household_id, lambda reason: suspend_household(db(), household_id, current_user.username, reason)
    )


@bp.post("/households/<int:household_id>/unsuspend")
@role_required(StaffRole.OPERATOR)
def unsuspend(household_id: int) -> ResponseReturnValue:
    """Reinstate a suspended household."""
    return _household_action(
        household_id, lambda reason: unsuspend_household(db(), household_id, current_user.username, reason)
    )
