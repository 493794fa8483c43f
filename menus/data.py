"""What the menus read from and write to the database, as plain JSON-ready values cached in the session.

Loaded once per session and key: the phone's households on the dial, eligibility when a coverage or pay
screen first needs it, the last payments when asked. Effects (the language change) are written at most
once per session and hop thanks to an `EffectKey` row in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, selectinload

from menus.engine import Effect, State
from menus.member import LANGUAGE_EFFECT, PAYMENTS_SHOWN
from models.access import EffectKey
from models.base import Language, MemberStatus
from models.db import begin_write
from models.eligibility import household_eligibility
from models.household import Household, Member
from models.payment import Payment

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]


def scheme_today(timezone: str) -> date:
    """Return today's date in the scheme's time zone."""
    return datetime.now(ZoneInfo(timezone)).date()


def _active(member: Member, on: date) -> bool:
    return member.status == MemberStatus.ACTIVE and (member.left_on is None or member.left_on > on)


class DatabaseData:
    """Load menu data and apply menu effects with a database session opened on first use."""

    def __init__(self, sessions: SessionFactory, today: Callable[[str], date] = scheme_today) -> None:
        self._sessions = sessions
        self._session: Session | None = None
        self.today = today

    @property
    def session(self) -> Session:
        """Return the database session, opening it on first use."""
        if self._session is None:
            self._session = self._sessions()
        return self._session

    def load(self, key: str, state: State) -> Any:
        """Return the value of a `state.data` key (see `menus.member`)."""
        kind, _, arg = key.partition(":")
        if kind == "households":
            return self.households(state.phone)
        if kind == "coverage":
            return self.coverage(int(arg))
        if kind == "payments":
            return self.payments(int(arg))
        raise KeyError(f"unknown menu data {key!r}")

    def households(self, phone: str) -> list[dict[str, Any]]:
        """Return the households in which the phone is an active member's, with what the menus show."""
        if not phone:
            return []
        owners = select(Member.household_id).where(Member.phone == phone, Member.status == MemberStatus.ACTIVE)
        rows = self.session.scalars(
            select(Household)
            .where(Household.id.in_(owners))
            .options(joinedload(Household.scheme), joinedload(Household.network), selectinload(Household.members))
            .order_by(Household.household_no)
        ).unique()
        result = []
        for household in rows:
            scheme = household.scheme
            on = self.today(scheme.timezone)
            members = [m for m in household.members if _active(m, on)]
            head = household.head
            result.append(
                {
                    "id": household.id,
                    "no": household.household_no,
                    "lang": household.language.value,
                    "plan": household.plan,
                    "network": household.network.name if household.network else None,
                    "head": head.first_name if head is not None else "",
                    "members": [{"first": m.first_name, "no": m.member_no.rsplit("-", 1)[-1]} for m in members],
                    "scheme": {
                        "name": scheme.name,
                        "languages": list(scheme.languages),
                        "currency": scheme.currency,
                        "exponent": scheme.currency_exponent,
                        "timezone": scheme.timezone,
                    },
                }
            )
        return result

    def coverage(self, household_id: int) -> dict[str, Any]:
        """Return the household's eligibility today and each active member's."""
        household = self.session.scalars(
            select(Household)
            .where(Household.id == household_id)
            .options(joinedload(Household.scheme), selectinload(Household.members))
        ).one()
        on = self.today(household.scheme.timezone)
        overall = household_eligibility(self.session, household, on)
        members = []
        # Only active members are listed, and an active member's eligibility is the household's
        # (`member_eligibility` differs only for members who left): one computation, not one per member.
        for member in household.members:
            if not _active(member, on):
                continue
            answer = overall
            members.append(
                {
                    "first": member.first_name,
                    "covered": answer.covered,
                    "status": answer.status.value,
                    "until": answer.valid_until.isoformat() if answer.valid_until else None,
                    "waiting": answer.waiting_until.isoformat() if answer.waiting_until else None,
                }
            )
        return {
            "on": on.isoformat(),
            "due": overall.amount_due,
            "covered": overall.covered,
            "until": overall.valid_until.isoformat() if overall.covered and overall.valid_until else None,
            "members": members,
        }

    def payments(self, household_id: int) -> list[dict[str, Any]]:
        """Return the household's last payments, newest first."""
        rows = self.session.execute(
            select(Payment.paid_at, Payment.amount, Payment.status)
            .where(Payment.household_id == household_id)
            .order_by(Payment.paid_at.desc(), Payment.id.desc())
            .limit(PAYMENTS_SHOWN)
        )
        return [
            {"date": paid_at.date().isoformat(), "amount": amount, "status": status.value}
            for paid_at, amount, status in rows
        ]

    def apply(self, effect: Effect, key: str) -> bool:
        """Apply the effect unless its key was used already; return whether it was applied now."""
        if effect.kind != LANGUAGE_EFFECT:
            raise ValueError(f"unknown menu effect {effect.kind!r}")
        session = self.session
        session.rollback()  # reads above ran in their own transaction; write in a fresh one
        begin_write(session)
        try:
            session.add(EffectKey(key=key, result=f"{effect.kind}={effect.value}"))
            session.flush()
        except IntegrityError:
            session.rollback()
            return False
        session.execute(update(Household).where(Household.id == effect.target).values(language=Language(effect.value)))
        session.commit()
        return True

    def close(self) -> None:
        """Close the database session if one was opened."""
        if self._session is not None:
            self._session.close()
            self._session = None
