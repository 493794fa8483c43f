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

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from logs import mask_phone
from models.base import HouseholdStatus, MemberStatus
from models.bulk import among
from models.coverage.ledger import AccountState, account_states
from models.coverage.money import CoveragePeriod
from models.coverage.premiums import active_member_counts, amount_due, funder_pays_all, is_fully_subsidised
from models.db import begin_write
from models.members.household import Account, Household, HouseholdEvent
from models.messaging.message import Message
from models.messaging.outbox import compose, queue_messages, send_sms
from models.schemes.amounts import Amount
from models.schemes.scheme import Scheme

log = logging.getLogger(__name__)

REMINDER_DEDUPE_KEY = "reminder:{}:{}:{}"
LAPSED = "lapsed"
GRACE = "grace"  # sent by hand only, in a grace that still covers: "covered until <end of grace>"
# A household that lapsed longer ago than this (before the service started, say) gets no late reminder.
LAPSE_REMINDER_WINDOW = timedelta(days=30)
MANUAL_CHUNK = 500  # households read at a time by a reminder sent by hand to a whole list
NO_ACCOUNT = AccountState(balance=0, fee_paid=False)  # a household that never had money: what `account_state` reads


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


def send_due_reminders(session: Session, now: datetime, ussd_code: str, after: int = 0, upto: int | None = None) -> int:
    """Queue every reminder due now in schemes that are in daytime; return how many were queued. The caller commits.

    The households with ids in (`after`, `upto`] (`upto` None: to the last): the clock walks them a window at a time.
    """
    begin_write(session)
    queued = 0
    for scheme in session.scalars(select(Scheme).order_by(Scheme.id)):
        local = scheme.local_now(now)
        if not in_daytime(local.time(), scheme.daytime_start, scheme.daytime_end):
            continue
        queued += _scheme_reminders(session, scheme, local.date(), ussd_code, after, upto)
    return queued


def _scheme_reminders(
    session: Session, scheme: Scheme, today: date, ussd_code: str, after: int, upto: int | None
) -> int:
    """Queue the reminders due today to the scheme's households in the window; each household's last end read by
    the (household, end) index, the members, sent keys, balances and member counts of the window in one read each."""
    days = scheme.reminder_day_list()
    last_end = (
        select(func.max(CoveragePeriod.end_on))
        .where(CoveragePeriod.household_id == Household.id, CoveragePeriod.reversed_at.is_(None))
        .correlate(Household)
        .scalar_subquery()
    )
    window = [Household.scheme_id == scheme.id, Household.id > after]
    if upto is not None:
        window.append(Household.id <= upto)
    ends = (
        select(Household.id.label("household_id"), Household.subsidy_category, last_end.label("last_end"))
        .where(*window, Household.status == HouseholdStatus.ACTIVE, Household.sms_opt_in.is_(True))
        .subquery()
    )
    earliest = today - timedelta(days=scheme.grace_days + 1) - LAPSE_REMINDER_WINDOW
    rows = session.execute(
        select(ends.c.household_id, ends.c.subsidy_category, ends.c.last_end)
        .where(ends.c.last_end >= earliest, ends.c.last_end <= today + timedelta(days=max(days)))
        .order_by(ends.c.household_id)
    ).all()
    # What is due, then what is not sent yet, before loading a household: an hourly run finds most sent already.
    wanted = [
        (household_id, period_end, kind, reminder_key(household_id, kind, period_end))
        for household_id, category, period_end in rows
        if (kind := reminder_kind(today, period_end, days, scheme.grace_days)) is not None
        and not funder_pays_all(scheme.subsidy(category).share_bp)
    ]
    if not wanted:
        return 0
    sent = set(
        session.scalars(select(Message.dedupe_key).where(among(session, Message.dedupe_key, [w[3] for w in wanted])))
    )
    wanted = [entry for entry in wanted if entry[3] not in sent]
    if not wanted:
        return 0
    households = {
        household.id: household
        for household in session.scalars(
            select(Household)
            .where(among(session, Household.id, [w[0] for w in wanted]))
            .options(selectinload(Household.members))
        )
    }
    due = [(households[household_id], period_end, kind) for household_id, period_end, kind, _ in wanted]
    ids = [household.id for household, _, _ in due]
    accounts = {
        household_id: account_id
        for household_id, account_id in session.execute(
            select(Account.household_id, Account.id).where(among(session, Account.household_id, ids))
        )
    }
    states = account_states(session, list(accounts.values()))
    counts = active_member_counts(session, ids, today)
    messages: list[dict[str, Any]] = []
    for household, period_end, kind in due:
        state = states[accounts[household.id]] if household.id in accounts else NO_ACCOUNT
        found = _reminder(
            session, household, kind, period_end, today, ussd_code, state=state, members=counts[household.id]
        )
        if isinstance(found, ReminderOutcome):
            continue
        phone, template, values = found
        key = reminder_key(household.id, kind, period_end)
        messages.append(compose(template, None, household, **values).row(phone, key))
        log.info("reminder %s for household %s to %s", kind, household.id, mask_phone(phone))
    try:
        # All of the window's reminders in one INSERT; the keys were free a moment ago.
        with session.begin_nested():
            queue_messages(session, messages)
    except IntegrityError:
        # Staff sent one of them by hand meanwhile: one at a time then, each settling its own race.
        return sum(
            _queue_reminder(session, household, kind, period_end, today, ussd_code)[0] is ReminderOutcome.QUEUED
            for household, period_end, kind in due
        )
    return len(messages)


def _queue_reminder(
    session: Session,
    household: Household,
    kind: str,
    period_end: date,
    today: date,
    ussd_code: str,
    until: date | None = None,
) -> tuple[ReminderOutcome, Message | None]:
    """Queue the household's reminder of a kind for the period ending on `period_end`, unless one was sent.

    `until`: the last day of cover the SMS names (default `period_end`; the end of grace in a grace that covers).
    The outcome, and the message when one was queued: none when the dedupe key is taken (sent already), without
    a phone, or with nothing to pay.
    """
    key = reminder_key(household.id, kind, period_end)
    if session.scalar(select(Message.id).where(Message.dedupe_key == key)) is not None:
        return ReminderOutcome.ALREADY_SENT, None
    found = _reminder(session, household, kind, period_end, today, ussd_code, until)
    if isinstance(found, ReminderOutcome):
        return found, None
    phone, template, values = found
    message = send_sms(session, phone, template, household=household, dedupe_key=key, **values)
    log.info("reminder %s for household %s to %s", kind, household.id, mask_phone(phone))
    return ReminderOutcome.QUEUED, message


def _reminder(
    session: Session,
    household: Household,
    kind: str,
    period_end: date,
    today: date,
    ussd_code: str,
    until: date | None = None,
    state: AccountState | None = None,
    members: int | None = None,
) -> ReminderOutcome | tuple[str, str, dict[str, Any]]:
    """Return the phone, template and values of the household's reminder, or why it gets none (no phone, nothing due).

    `state`, `members`: its account state and active member count today, when the caller read them for many
    households at once.
    """
    phone = recipient(household)
    if phone is None:
        return ReminderOutcome.NO_PHONE
    scheme = household.scheme
    due = amount_due(session, household, today, state=state, members=members).total
    if due <= 0:
        return ReminderOutcome.NOTHING_DUE
    values = {
        "household_no": household.household_no,
        "until": until or period_end,
        "amount": Amount(due, scheme.currency, scheme.currency_exponent),
        "ussd_code": ussd_code,
    }
    return phone, LAPSED_TEMPLATE if kind == LAPSED else BEFORE_TEMPLATE, values


class ReminderOutcome(enum.StrEnum):
    """What became of one household's reminder asked for now."""

    QUEUED = "queued"
    ALREADY_SENT = "already_sent"  # this kind of reminder for this period went out already (clock or staff)
    OUTSIDE_DAYTIME = "outside_daytime"  # refused: the scheme's daytime hours are over, or not begun
    OPTED_OUT = "opted_out"  # the household sent STOP
    NOT_ACTIVE = "not_active"  # suspended by staff, or closed
    SUBSIDISED = "subsidised"  # the funder pays all of it: nothing to ask
    NEVER_COVERED = "never_covered"  # no period: nothing to renew
    NO_PHONE = "no_phone"
    NOTHING_DUE = "nothing_due"


def manual_reminder_kind(
    today: date, last_end: date, days: list[int], grace_days: int, grace_covered: bool
) -> tuple[str, date]:
    """Return the kind of reminder staff send today for cover ending on `last_end`, and the last day of cover it names.

    The kind is the one the clock sends today when one is due; before the end, else the first the clock would send
    (`before-<largest N>`), so the clock does not send that one again; after the end, `lapsed` — except in a grace
    that still covers (`grace_covered`), where the household hears it is covered until the end of grace (`grace`),
    and the clock's lapse reminder still follows if it does not pay.
    """
    kind = reminder_kind(today, last_end, days, grace_days)
    if kind is not None:
        return kind, last_end
    if today <= last_end:
        return f"before-{max(days, default=0)}", last_end
    grace_end = last_end + timedelta(days=grace_days)
    if grace_covered and today <= grace_end:
        return GRACE, grace_end
    return LAPSED, last_end


@dataclass
class ReminderRun:
    """What "send a reminder now" did: each household's outcome, and the schemes that were outside daytime."""

    outcomes: dict[int, ReminderOutcome] = field(default_factory=dict)
    # Schemes outside daytime hours now: name -> (local time now, daytime start, daytime end).
    night: dict[str, tuple[datetime, time, time]] = field(default_factory=dict)

    def count(self, outcome: ReminderOutcome) -> int:
        """Return how many households had this outcome."""
        return sum(1 for value in self.outcomes.values() if value is outcome)

    def counts(self) -> dict[ReminderOutcome, int]:
        """Return how many households had each outcome that happened, in the order of `ReminderOutcome`."""
        return {outcome: n for outcome in ReminderOutcome if (n := self.count(outcome))}


def send_reminders_now(
    session: Session, household_ids: Iterable[int], now: datetime, ussd_code: str, actor: str
) -> ReminderRun:
    """Queue a renewal reminder now to each of these households, by the clock's rules; audit each one queued.

    Nothing after STOP, to suspended, closed or fully subsidised households, without a phone or with nothing to pay;
    only within the scheme's daytime hours (outside them the request is refused: nothing is queued, and the
    clock's next daytime run sends what is due by then); once per household, kind and period
    (`manual_reminder_kind`): staff do not repeat a reminder the clock sent, nor the clock one they sent.
    Each reminder queued is a household event (action `reminder`, the actor). The caller commits.
    """
    begin_write(session)
    run = ReminderRun()
    ids = sorted(set(household_ids))
    for start in range(0, len(ids), MANUAL_CHUNK):
        chunk = ids[start : start + MANUAL_CHUNK]
        last_end = (
            select(func.max(CoveragePeriod.end_on))
            .where(CoveragePeriod.household_id == Household.id, CoveragePeriod.reversed_at.is_(None))
            .scalar_subquery()
        )
        rows = session.execute(
            select(Household, last_end)
            .where(among(session, Household.id, chunk))
            .options(selectinload(Household.members))
            .order_by(Household.id)
        ).tuples()
        for household, period_end in rows:
            run.outcomes[household.id] = _remind_now(session, run, household, period_end, now, ussd_code, actor)
    return run


def _remind_now(
    session: Session,
    run: ReminderRun,
    household: Household,
    period_end: date | None,
    now: datetime,
    ussd_code: str,
    actor: str,
) -> ReminderOutcome:
    scheme = household.scheme
    local = scheme.local_now(now)
    if not in_daytime(local.time(), scheme.daytime_start, scheme.daytime_end):
        run.night[scheme.name] = (local, scheme.daytime_start, scheme.daytime_end)
        return ReminderOutcome.OUTSIDE_DAYTIME
    if not household.sms_opt_in:
        return ReminderOutcome.OPTED_OUT
    if household.status != HouseholdStatus.ACTIVE:
        return ReminderOutcome.NOT_ACTIVE
    if is_fully_subsidised(household):
        return ReminderOutcome.SUBSIDISED
    if period_end is None:
        return ReminderOutcome.NEVER_COVERED
    today = local.date()
    days = scheme.reminder_day_list()
    kind, until = manual_reminder_kind(today, period_end, days, scheme.grace_days, scheme.grace_covered)
    outcome, message = _queue_reminder(session, household, kind, period_end, today, ussd_code, until)
    if message is not None:
        session.add(
            HouseholdEvent(
                household_id=household.id,
                actor=actor[:80],
                action="reminder",
                before_status=household.status.value,
                after_status=household.status.value,
                note=(
                    f"{kind} reminder for the cover ending {period_end.isoformat()} sent by hand to "
                    f"{mask_phone(message.phone)} (SMS #{message.id})"
                ),
            )
        )
    return outcome


BEFORE_TEMPLATE = "reminder_before"
LAPSED_TEMPLATE = "reminder_lapsed"
