"""Staff decisions on an enrolment: validate it into a numbered household (welcomed by SMS), reject it, or send it
back for changes; each one in the audit trail.

Validation creates the household, its members and account with the member import's own writer
(`models.imports.members.create_household`: cover from enrolment for a fully subsidised category) and queues the
head's welcome SMS in the same transaction, so either all of it happens or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.coverage.premiums import amount_due, is_fully_subsidised
from models.db import begin_write
from models.enrolment.changes import ChangeError, apply_change
from models.enrolment.numbering import member_number, next_household_number
from models.enrolment.tables import Enrolment, EnrolmentStatus, record_event
from models.imports.members import NewHousehold, NewMember, create_household
from models.members.household import Household
from models.messaging.outbox import send_sms
from models.schemes.amounts import Amount
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme

REASON_MAX = 1000
# Decisions staff may take on an enrolment in each status.
DECIDABLE = {
    "validate": (EnrolmentStatus.SUBMITTED,),
    "reject": (EnrolmentStatus.SUBMITTED, EnrolmentStatus.NEEDS_CHANGES),
    "needs-changes": (EnrolmentStatus.SUBMITTED,),
}
DONE = {"validate": "validated", "reject": "rejected", "needs-changes": "sent back for changes"}


class DecisionError(ValueError):
    """The enrolment cannot be decided as asked; the message says why."""


@dataclass(frozen=True)
class Validated:
    """A validated enrolment: its household and the welcome SMS queued (None: no phone or no SMS wanted)."""

    enrolment: Enrolment
    household: Household
    welcomed: bool


def get_enrolment(session: Session, enrolment_id: int, *, lock: bool = False) -> Enrolment:
    """Return an enrolment by id (locked for a decision if asked); DecisionError when there is none."""
    query = select(Enrolment).where(Enrolment.id == enrolment_id)
    if lock:
        # Read again once locked: a decision taken meanwhile by someone else is seen, not the copy in memory.
        query = query.with_for_update().execution_options(populate_existing=True)
    enrolment = session.scalar(query)
    if enrolment is None:
        raise DecisionError(f"no enrolment {enrolment_id}")
    return enrolment


def list_enrolments(session: Session, status: EnrolmentStatus | None = None) -> list[Enrolment]:
    """Return enrolments (of a status), oldest first: the order staff work through them."""
    query = select(Enrolment).order_by(Enrolment.created_at, Enrolment.id)
    if status is not None:
        query = query.where(Enrolment.status == status)
    return list(session.scalars(query))


def _decidable(session: Session, enrolment_id: int, action: str) -> Enrolment:
    # The caller starts no transaction before (it rolls back first): on SQLite this one holds the write lock
    # from its start (BEGIN IMMEDIATE), so two decisions run one after the other.
    begin_write(session)
    enrolment = get_enrolment(session, enrolment_id, lock=True)
    if enrolment.status not in DECIDABLE[action]:
        raise DecisionError(f"enrolment {enrolment.id} is {enrolment.status.value}: it cannot be {DONE[action]}")
    return enrolment


def validate_enrolment(session: Session, enrolment_id: int, actor: str, today: date, ussd_code: str) -> Validated:
    """Number the enrolment's household, create it as the import would and queue the head's welcome SMS.

    An enrolment of kind `change` is applied to its household instead (`models.enrolment.changes.apply_change`).

    The caller commits; nothing is written when it raises.
    """
    enrolment = _decidable(session, enrolment_id, "validate")
    if enrolment.change is not None:
        # A household change: applied to its household, whose head is told (`welcomed`: that SMS queued).
        try:
            applied = apply_change(session, enrolment, actor, today, ussd_code)
        except ChangeError as exc:
            raise DecisionError(str(exc)) from exc
        return Validated(enrolment, applied.household, applied.confirmed)
    scheme = session.get(Scheme, enrolment.scheme_id)
    assert scheme is not None
    lock_numbering(session, enrolment.mutuelle_id)
    serial, household_no = next_household_number(session, scheme, enrolment.mutuelle)
    head = enrolment.head
    # The head is -01, the others in the order the collector listed them.
    ordered = [head, *(m for m in enrolment.members if m is not head)]
    for index, person in enumerate(ordered, start=1):
        person.member_no = member_number(household_no, index)
    new = NewHousehold(
        household_no=household_no,
        scheme_code=scheme.code,
        mutuelle_id=enrolment.mutuelle_id,
        network_id=enrolment.network_id,
        commune=enrolment.commune,
        subsidy_category=enrolment.subsidy_category,
        language=enrolment.language.value,
        plan=enrolment.plan,
        head_member_no=member_number(household_no, 1),
        sms_opt_in=enrolment.sms_opt_in,
        members=tuple(
            NewMember(
                member_no=str(m.member_no),
                last_name=m.last_name,
                first_name=m.first_name,
                sex=m.sex,
                date_of_birth=m.date_of_birth,
                relationship=m.relationship_to_head,
                phone=m.phone,
                joined_on=today,
            )
            for m in ordered
        ),
    )
    with session.begin_nested():
        create_household(session, new, today, f"enrolment {enrolment.id}")
    household = session.scalar(select(Household).where(Household.household_no == household_no))
    assert household is not None
    before = enrolment.status
    enrolment.serial = serial
    enrolment.household_id = household.id
    enrolment.status = EnrolmentStatus.VALIDATED
    enrolment.reason = None
    enrolment.decided_by = actor[:80]
    enrolment.decided_at = utcnow()
    record_event(enrolment, actor, "validate", before, household_no)
    welcomed = False
    if head.phone and enrolment.sms_opt_in:
        queue_welcome(session, household, head.phone, today, ussd_code)
        welcomed = True
    session.flush()
    return Validated(enrolment, household, welcomed)


def lock_numbering(session: Session, mutuelle_id: int) -> None:
    """Hold the mutuelle's row until the commit, so two validations never draw the same serial.

    PostgreSQL: `SELECT … FOR UPDATE` on the mutuelle; the second validation waits, then reads the first one's
    serial (each statement reads what is committed). SQLite: the transaction already holds the database's write
    lock (BEGIN IMMEDIATE, `begin_write`), and the lock clause is left out.
    """
    session.execute(select(Mutuelle.id).where(Mutuelle.id == mutuelle_id).with_for_update())


def queue_welcome(session: Session, household: Household, phone: str, today: date, ussd_code: str) -> None:
    """Queue the welcome SMS: the household number, the USSD code, and how to pay (or that the funder pays)."""
    scheme = household.scheme
    key = f"welcome:{household.id}"
    if is_fully_subsidised(household):
        send_sms(
            session,
            phone,
            "welcome_subsidised",
            household=household,
            dedupe_key=key,
            household_no=household.household_no,
            ussd_code=ussd_code,
        )
        return
    due = amount_due(session, household, today)
    amount = Amount(due.total, scheme.currency, scheme.currency_exponent)
    send_sms(
        session,
        phone,
        "welcome",
        household=household,
        dedupe_key=key,
        household_no=household.household_no,
        ussd_code=ussd_code,
        amount=amount,
    )


def reject_enrolment(session: Session, enrolment_id: int, actor: str, reason: str) -> Enrolment:
    """Reject an enrolment with a reason the collector reads; the caller commits."""
    return _refuse(session, enrolment_id, actor, reason, "reject", EnrolmentStatus.REJECTED)


def ask_for_changes(session: Session, enrolment_id: int, actor: str, reason: str) -> Enrolment:
    """Send an enrolment back to its collector saying what to change; the caller commits."""
    return _refuse(session, enrolment_id, actor, reason, "needs-changes", EnrolmentStatus.NEEDS_CHANGES)


def _refuse(
    session: Session, enrolment_id: int, actor: str, reason: str, action: str, status: EnrolmentStatus
) -> Enrolment:
    reason = " ".join(reason.split())
    if not reason:
        raise DecisionError("say why (--reason)")
    if len(reason) > REASON_MAX:
        raise DecisionError(f"the reason is longer than {REASON_MAX} characters")
    enrolment = _decidable(session, enrolment_id, action)
    before = enrolment.status
    enrolment.status = status
    enrolment.reason = reason
    enrolment.decided_by = actor[:80]
    enrolment.decided_at = utcnow()
    record_event(enrolment, actor, action, before, reason)
    session.flush()
    return enrolment
