"""Eligibility: is a member covered on a date, with which status, until when, and what is due.

Two amounts, read in the same words by members, facilities and staff:
- the amount due: what the household must pay now to be covered — 0 while it is covered or waiting on a
  funded period (and for a household suspended by staff or closed: paying would not cover it); the fee if never
  paid + the next period − credit when never or partly paid; the next period (+ arrears) − credit in grace or
  lapsed;
- the next payment: the amount of the next period (+ the fee if unpaid, + arrears) − credit, due on the last
  day of cover (`valid_until`), or today when nothing is covered.

Cheap enough for a USSD hop: the member's household and scheme (usually already in the session),
one query for the periods near the date, one for the account balance and fee, one to count members.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import EligibilityStatus, HouseholdStatus, MemberStatus
from models.coverage.money import CoveragePeriod
from models.coverage.premiums import (
    AmountDue,
    PaymentChoice,
    PayRefusal,
    amount_due,
    is_fully_subsidised,
    pay_refusal,
    payment_choices,
)
from models.members.household import Household, Member, is_active_member
from models.schemes.amounts import format_amount
from models.schemes.scheme_file import CURRENCY_EXPONENTS


class PeriodSpan(Protocol):
    """The dates of a coverage period that eligibility reads (a `CoveragePeriod`, a planned one or a plain row)."""

    @property
    def start_on(self) -> date: ...

    @property
    def end_on(self) -> date: ...

    @property
    def waiting_until(self) -> date | None: ...


@dataclass(frozen=True)
class Eligibility:
    """A coverage answer for one member or household on one date."""

    covered: bool
    status: EligibilityStatus
    valid_until: date | None  # last covered (or waiting) day of the current run of periods
    waiting_until: date | None  # last day of the waiting period, when one applies
    amount_due: int  # to pay now to be covered (0 while covered or waiting on a funded period)
    currency: str
    reason: str | None  # a short English sentence when not covered, None when covered
    next_payment_amount: int = 0  # the next period (+ fee if unpaid, + arrears) - credit, never below 0
    next_payment_due: date | None = None  # the last day of cover, or the date asked when nothing is covered
    credit: int = 0  # money on the account towards the next period (a partly paid household's part)

    @property
    def cover_ends(self) -> date | None:
        """Return the last day of the cover the household holds (covered or waiting), None without one."""
        if self.status in {EligibilityStatus.ACTIVE, EligibilityStatus.WAITING}:
            return self.valid_until
        return None

    @property
    def partly_paid(self) -> bool:
        """Return whether a household never covered holds part of its first payment (credit below the price)."""
        return self.status is EligibilityStatus.PENDING and self.credit > 0 and self.amount_due > 0


def _covered_run_end(periods: Sequence[PeriodSpan], index: int) -> date:
    """Return the end of the chain of back-to-back periods that starts at periods[index]."""
    end = periods[index].end_on
    for period in periods[index + 1 :]:
        if period.start_on > end + timedelta(days=1):
            break
        end = max(end, period.end_on)
    return end


def periods_since(on: date, grace_days: int) -> date:
    """Return the first end date of a period that still matters on a date: current, later, or ended in grace."""
    return on - timedelta(days=grace_days)


def household_eligibility(
    session: Session, household: Household, on: date, due: AmountDue | None = None
) -> Eligibility:
    """Return whether the household is covered on a date, its status, dates and amount due (`due` if known)."""
    scheme = household.scheme
    due = due or amount_due(session, household, on)

    periods: list[CoveragePeriod] = []
    lapsed_on: date | None = None
    if household.status not in {HouseholdStatus.SUSPENDED, HouseholdStatus.CLOSED}:
        # Only periods that still matter on this date: the current one, later ones, one still in grace.
        periods = list(
            session.scalars(
                select(CoveragePeriod)
                .where(
                    CoveragePeriod.household_id == household.id,
                    CoveragePeriod.reversed_at.is_(None),
                    CoveragePeriod.end_on >= periods_since(on, scheme.grace_days),
                )
                .order_by(CoveragePeriod.start_on)
            )
        )
        if all(period.start_on > on for period in periods):  # none current, none in grace
            lapsed_on = session.scalar(
                select(func.max(CoveragePeriod.end_on)).where(
                    CoveragePeriod.household_id == household.id,
                    CoveragePeriod.reversed_at.is_(None),
                    CoveragePeriod.end_on < on,
                )
            )
    return eligibility_on(
        on,
        status=household.status,
        status_reason=household.status_reason,
        periods=periods,
        grace_days=scheme.grace_days,
        grace_covered=scheme.grace_covered,
        due=due,
        lapsed_on=lapsed_on,
    )


def eligibility_on(
    on: date,
    *,
    status: HouseholdStatus,
    status_reason: str | None,
    periods: Sequence[PeriodSpan],
    grace_days: int,
    grace_covered: bool,
    due: AmountDue,
    lapsed_on: date | None,
) -> Eligibility:
    """Return a household's eligibility from plain values, without I/O (the rules of `household_eligibility`).

    `periods` are the household's unreversed periods ending on or after `periods_since(on, grace_days)`, by start;
    `lapsed_on` is the last end of an unreversed period before `on` (only read when no period is given);
    `due` the pieces of the next payment (`models.coverage.premiums.amount_due`): what is due now follows the status.
    """
    paying = {EligibilityStatus.PENDING, EligibilityStatus.GRACE, EligibilityStatus.LAPSED}

    def answer(
        status: EligibilityStatus,
        reason: str | None,
        valid_until: date | None = None,
        waiting_until: date | None = None,
        covered: bool = False,
    ) -> Eligibility:
        now_due = due.total if status in paying else 0
        if status is EligibilityStatus.PENDING and due.credit > 0 and now_due > 0:
            missing = format_amount(now_due, due.currency, CURRENCY_EXPONENTS.get(due.currency, 0), "en")
            reason = f"partly paid: {missing} still missing"
        next_due = valid_until if valid_until is not None and valid_until >= on else on
        return Eligibility(
            covered,
            status,
            valid_until,
            waiting_until,
            now_due,
            due.currency,
            None if covered else reason,
            next_payment_amount=due.total,
            next_payment_due=next_due,
            credit=due.credit,
        )

    if status == HouseholdStatus.SUSPENDED:
        return answer(EligibilityStatus.SUSPENDED, status_reason or "household suspended by the scheme")
    if status == HouseholdStatus.CLOSED:
        return answer(EligibilityStatus.INACTIVE, status_reason or "household closed")

    grace = timedelta(days=grace_days)
    for index, period in enumerate(periods):
        if period.start_on <= on <= period.end_on:
            valid_until = _covered_run_end(periods, index)
            if period.waiting_until is not None and on <= period.waiting_until:
                return answer(
                    EligibilityStatus.WAITING,
                    f"waiting period until {period.waiting_until.isoformat()}",
                    valid_until,
                    period.waiting_until,
                )
            return answer(EligibilityStatus.ACTIVE, None, valid_until, covered=True)
    ended = [p for p in periods if p.end_on < on]
    if ended:
        last_end = max(p.end_on for p in ended)
        return answer(
            EligibilityStatus.GRACE,
            f"premium unpaid since {last_end.isoformat()}, grace until {(last_end + grace).isoformat()}",
            last_end,
            covered=grace_covered,
        )
    if lapsed_on is not None:
        return answer(EligibilityStatus.LAPSED, f"premium unpaid since {lapsed_on.isoformat()}", lapsed_on)
    return answer(EligibilityStatus.PENDING, "no premium paid yet")


def member_eligibility(session: Session, member: Member, on: date) -> Eligibility:
    """Return whether the member is covered on a date, with status, dates, amount due and reason."""
    return member_answer(member.status, member.left_on, household_eligibility(session, member.household, on), on)


def member_answer(status: MemberStatus, left_on: date | None, household: Eligibility, on: date) -> Eligibility:
    """Return a member's eligibility from their household's: the household's, unless the member is not active.

    An inactive member is not covered, but still reads the household's own amounts.
    """
    if is_active_member(status, left_on, on):
        return household
    reason = "member deceased" if status == MemberStatus.DECEASED else "member left the household"
    return Eligibility(
        False,
        EligibilityStatus.INACTIVE,
        None,
        None,
        household.amount_due,
        household.currency,
        reason,
        next_payment_amount=household.next_payment_amount,
        next_payment_due=household.next_payment_due,
        credit=household.credit,
    )


def cover_sentences(answer: Eligibility, exponent: int) -> list[str]:
    """Return the cover and the payments in the words members read (USSD, SMS), in English for staff.

    "Covered until …" / "Waiting until …, then covered until …" / "Amount due: …" / "Next payment: … before …".
    """
    day = "%d/%m/%Y"
    lines = []
    if answer.status is EligibilityStatus.WAITING and answer.waiting_until and answer.valid_until:
        waiting, until = answer.waiting_until.strftime(day), answer.valid_until.strftime(day)
        lines.append(f"Waiting until {waiting}, then covered until {until}.")
    elif answer.status is EligibilityStatus.ACTIVE and answer.valid_until:
        lines.append(f"Covered until {answer.valid_until.strftime(day)}.")
    elif answer.partly_paid:
        lines.append("Partly paid, not covered yet.")
    if answer.amount_due > 0:
        lines.append(f"Amount due: {format_amount(answer.amount_due, answer.currency, exponent, 'en')}")
    if answer.next_payment_due is not None and answer.next_payment_amount > 0:
        amount = format_amount(answer.next_payment_amount, answer.currency, exponent, "en")
        lines.append(f"Next payment: {amount} before {answer.next_payment_due.strftime(day)}.")
    return lines


@dataclass(frozen=True)
class PayOffer:
    """What Pay offers a household: why not (suspended, closed, fully subsidised), or the amounts to choose."""

    refusal: PayRefusal | None
    choices: list[PaymentChoice]


def pay_offer(
    session: Session, household: Household, answer: Eligibility, on: date, due: AmountDue | None = None
) -> PayOffer:
    """Return what Pay offers on a date: what is due now, else the next period(s) ahead, up to the advance cap.

    The rules `menus.data` applies to its one-statement read (`pay_refusal`, `offered_choices`); a lapsed
    household may always pay.
    """
    refusal = pay_refusal(household.status, is_fully_subsidised(household))
    if refusal is not None:
        return PayOffer(refusal, [])
    scheme = household.scheme
    due = due or amount_due(session, household, on)
    plan = scheme.plan(household.plan)
    return PayOffer(None, offered_choices(answer, due, plan.months, scheme.max_advance_months, on))


def offered_choices(
    answer: Eligibility, due: AmountDue, plan_months: int, max_advance_months: int, on: date
) -> list[PaymentChoice]:
    """Return the amounts Pay offers a household that may pay, from plain values (see `pay_offer`)."""
    return payment_choices(due, plan_months, max_advance_months, on=on, cover_ends=answer.cover_ends)
