"""Renewal reminders: N days before a household's cover ends and when it lapses, once each, in daytime.

Once per household, kind and period: each reminder is a `Message` whose unique `dedupe_key` is
`reminder:<household>:<kind>:<period end>`, so a second run, a second clock or a restarted worker sends
nothing new. Outside the scheme's daytime hours (in its time zone) a run sends nothing, and the next run in
daytime catches up: the most recent reminder whose day has come is sent, never a burst of stale ones.

Who gets none: households that sent STOP (`sms_opt_in` false), suspended or closed households, households
with nothing to pay, and fully subsidised households — the funder pays their periods (the subsidy job books
them), and both reminders ask the household to pay.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from logs import mask_phone
from models.base import HouseholdStatus, MemberStatus
from models.coverage.money import CoveragePeriod
from models.coverage.premiums import amount_due, is_fully_subsidised
from models.db import begin_write
from models.members.household import Household
from models.messaging.message import Message
from models.messaging.outbox import send_sms
from models.schemes.amounts import Amount
from models.schemes.scheme import Scheme

log = logging.getLogger(__name__)

REMINDER_DEDUPE_KEY = "reminder:{}:{}:{}"
LAPSED = "lapsed"
# A household that lapsed longer ago than this (before the service started, say) gets no late reminder.
LAPSE_REMINDER_WINDOW = timedelta(days=30)


def reminder_key(household_id: int, kind: str, period_end: date) -> str:
    """Return the dedupe key of one household's reminder of a kind for the period ending on a date."""
    return REMINDER_DEDUPE_KEY.format(household_id, kind, period_end.isoformat())


def in_daytime(local: time, start: time, end: time) -> bool:
    """Return whether a local wall-clock time is within the daytime hours [start, end)."""
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # hours that wrap past midnight


def reminder_kind(today: date, last_end: date, days: list[int], grace_days: int) -> str | None:
    """Return the reminder due today for cover ending on `last_end` (`before-<N>` or `lapsed`), or None."""
    if today <= last_end:
        due = [n for n in days if last_end - timedelta(days=n) <= today]
        return f"before-{min(due)}" if due else None
    lapse_day = last_end + timedelta(days=grace_days + 1)
    if lapse_day <= today < lapse_day + LAPSE_REMINDER_WINDOW:
        return LAPSED
    return None


def recipient(household: Household) -> str | None:
    """Return the phone reminders go to: the head's, else the first active member's with a phone."""
    head = household.head
    if head is not None and head.phone and head.status == MemberStatus.ACTIVE:
        return head.phone
    for member in household.members:
        if member.phone and member.status == MemberStatus.ACTIVE:
            return member.phone
    return None


def send_due_reminders(session: Session, now: datetime, ussd_code: str) -> int:
    """Queue every reminder due now in schemes that are in daytime; return how many were queued. The caller commits."""
    begin_write(session)
    queued = 0
    for scheme in session.scalars(select(Scheme).order_by(Scheme.id)):
        local = scheme.local_now(now)
        if not in_daytime(local.time(), scheme.daytime_start, scheme.daytime_end):
            continue
        queued += _scheme_reminders(session, scheme, local.date(), ussd_code)
    return queued


def _scheme_reminders(session: Session, scheme: Scheme, today: date, ussd_code: str) -> int:
    days = scheme.reminder_day_list()
    last_end = (
        select(CoveragePeriod.household_id, func.max(CoveragePeriod.end_on).label("last_end"))
        .where(CoveragePeriod.reversed_at.is_(None))
        .group_by(CoveragePeriod.household_id)
        .subquery()
    )
    earliest = today - timedelta(days=scheme.grace_days + 1) - LAPSE_REMINDER_WINDOW
    rows = session.execute(
        select(Household, last_end.c.last_end)
        .join(last_end, last_end.c.household_id == Household.id)
        .where(
            Household.scheme_id == scheme.id,
            Household.status == HouseholdStatus.ACTIVE,
            Household.sms_opt_in.is_(True),
            last_end.c.last_end >= earliest,
            last_end.c.last_end <= today + timedelta(days=max(days)),
        )
        .order_by(Household.id)
    ).all()
    queued = 0
    for household, period_end in rows:
        kind = reminder_kind(today, period_end, days, scheme.grace_days)
        if kind is None or is_fully_subsidised(household):
            continue
        key = reminder_key(household.id, kind, period_end)
        if session.scalar(select(Message.id).where(Message.dedupe_key == key)) is not None:
            continue
        phone = recipient(household)
        due = amount_due(session, household, today).total
        if phone is None or due <= 0:
            continue
        send_sms(
            session,
            phone,
            LAPSED_TEMPLATE if kind == LAPSED else BEFORE_TEMPLATE,
            household=household,
            dedupe_key=key,
            household_no=household.household_no,
            until=period_end,
            amount=Amount(due, scheme.currency, scheme.currency_exponent),
            ussd_code=ussd_code,
        )
        queued += 1
        log.info("reminder %s for household %s to %s", kind, household.id, mask_phone(phone))
    return queued


BEFORE_TEMPLATE = "reminder_before"
LAPSED_TEMPLATE = "reminder_lapsed"
