"""Facility coverage checks: the answer about one member on one date, logged whatever the channel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from models.access.tables import EligibilityCheck
from models.base import CheckChannel, today_utc
from models.coverage.eligibility import Eligibility, member_eligibility
from models.members.household import Household, Member


@dataclass(frozen=True)
class CheckAnswer:
    """What a health facility learns about a member: identity hints and the eligibility answer."""

    member_no: str
    first_name: str
    sex: str
    birth_year: int | None
    eligibility: Eligibility

    def as_json(self) -> dict[str, Any]:
        """Return the answer with the keys of the eligibility API (dates ISO, amounts integers)."""
        e = self.eligibility
        return {
            "member_no": self.member_no,
            "first_name": self.first_name,
            "sex": self.sex,
            "birth_year": self.birth_year,
            "covered": e.covered,
            "status": e.status.value,
            "valid_until": e.valid_until.isoformat() if e.valid_until else None,
            "waiting_until": e.waiting_until.isoformat() if e.waiting_until else None,
            "amount_due": e.amount_due,
            "next_payment_amount": e.next_payment_amount,
            "next_payment_due": e.next_payment_due.isoformat() if e.next_payment_due else None,
            "currency": e.currency,
            "reason": e.reason,
        }


def find_member(session: Session, member_no: str) -> Member | None:
    """Return the member with this number (case-insensitive input), household and scheme loaded."""
    return session.scalar(
        select(Member)
        .where(Member.member_no == member_no.strip().upper())
        .options(joinedload(Member.household).joinedload(Household.scheme))
    )


def find_member_born(session: Session, member_no: str, born: date | None) -> Member | None:
    """Return the member with this number and date of birth: None for an unknown number or another date alike.

    How a phone that is not the member's proves it may read the member's cover (USSD and SMS `STATUT`).
    """
    member = find_member(session, member_no)
    if member is None or born is None or member.date_of_birth != born:
        return None
    return member


def check_member(
    session: Session,
    member_no: str,
    on: date | None,
    channel: CheckChannel,
    facility: str | None,
    agent_id: int | None = None,
    api_token_id: int | None = None,
) -> CheckAnswer | None:
    """Answer a facility's check on a member (None if unknown) and log it; the caller commits."""
    member = find_member(session, member_no)
    answer = None
    day = on or (member.household.scheme.local_today() if member is not None else today_utc())
    if member is not None:
        answer = CheckAnswer(
            member_no=member.member_no,
            first_name=member.first_name,
            sex=member.sex.value,
            birth_year=member.date_of_birth.year if member.date_of_birth else None,
            eligibility=member_eligibility(session, member, day),
        )
    session.add(
        EligibilityCheck(
            channel=channel,
            facility=facility,
            agent_id=agent_id,
            api_token_id=api_token_id,
            member_no=member_no.strip().upper()[:44],
            member_id=member.id if member is not None else None,
            on_date=day,
            covered=answer.eligibility.covered if answer else None,
            status=answer.eligibility.status.value if answer else "UNKNOWN",
        )
    )
    return answer
