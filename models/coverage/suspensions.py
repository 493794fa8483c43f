"""Suspending and reinstating a household by hand, each change audited in `household_events`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import HouseholdStatus
from models.db import begin_write
from models.members.household import Household, HouseholdEvent


class SuspensionError(ValueError):
    """A household's status cannot be changed as asked; the message says why."""


def _change(session: Session, household_id: int, actor: str, reason: str, to: HouseholdStatus, action: str) -> str:
    reason = reason.strip()
    if not reason:
        raise SuspensionError("a reason is required")
    begin_write(session)
    household = session.scalar(select(Household).where(Household.id == household_id).with_for_update())
    if household is None:
        raise LookupError(f"no household {household_id}")
    before = household.status
    if before == to:
        raise SuspensionError(f"household {household.household_no} is already {to.value}")
    if before == HouseholdStatus.CLOSED:
        raise SuspensionError(f"household {household.household_no} is closed")
    household.status = to
    household.status_reason = reason[:500] if to == HouseholdStatus.SUSPENDED else None
    session.add(
        HouseholdEvent(
            household_id=household.id,
            actor=actor[:80],
            action=action,
            before_status=before.value,
            after_status=to.value,
            note=reason[:1000],
        )
    )
    session.flush()
    return to.value.lower()


def suspend_household(session: Session, household_id: int, actor: str, reason: str) -> str:
    """Suspend a household (its members stop being covered) and audit it; the caller commits."""
    return _change(session, household_id, actor, reason, HouseholdStatus.SUSPENDED, "suspend")


def unsuspend_household(session: Session, household_id: int, actor: str, reason: str) -> str:
    """Reinstate a suspended household and audit it; the caller commits."""
    return _change(session, household_id, actor, reason, HouseholdStatus.ACTIVE, "unsuspend")


def household_events(session: Session, household_id: int, limit: int = 50) -> list[HouseholdEvent]:
    """Return a household's status changes, newest first."""
    return list(
        session.scalars(
            select(HouseholdEvent)
            .where(HouseholdEvent.household_id == household_id)
            .order_by(HouseholdEvent.id.desc())
            .limit(limit)
        )
    )
