"""What the menus read from and write to the database, as plain JSON-ready values cached in the session.

Loaded once per session and key: the phone's households and whether it is an agent's on the dial,
eligibility when a coverage or pay screen first needs it, the last payments when asked. Effects are applied
at most once per session and hop (their key, see `menus.conversation.effect_key`):
- the language change and the two checks through an `EffectKey` row written in the same transaction, whose
  `result` keeps the check's outcome, so a replayed hop gets the first outcome (a wrong PIN counted once, a
  rate-limit hit counted once);
- the payment request through its own `caller_key` and its SMS through the message's `dedupe_key`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from redis import Redis
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, selectinload

from menus.checks import AGENT_CHECK_EFFECT, DOB_CHECK_EFFECT, LIMITED, NOT_FOUND, OK, parse_dob
from menus.engine import Effect, State
from menus.member import LANGUAGE_EFFECT, PAYMENT_REQUEST_EFFECT, PAYMENTS_SHOWN
from menus.render import FALLBACKS, Amount, format_amount
from models.access import Agent, EffectKey
from models.agents import PinOutcome, verify_agent_pin
from models.base import CheckChannel, Language, MemberStatus, utcnow
from models.checks import check_member, find_member
from models.db import begin_write
from models.eligibility import household_eligibility, member_eligibility
from models.household import Household, Member
from models.outbox import send_sms
from models.payment import Payment
from models.premiums import amount_due, payment_choices
from models.rate_limits import DOB_CHECK, hit
from models.references import create_payment_request
from models.scheme import PaymentChannel, Scheme

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]


def scheme_today(timezone: str) -> date:
    """Return today's date in the scheme's time zone."""
    return datetime.now(ZoneInfo(timezone)).date()


def _active(member: Member, on: date) -> bool:
    return member.status == MemberStatus.ACTIVE and (member.left_on is None or member.left_on > on)


class DatabaseData:
    """Load menu data and apply menu effects with a database session opened on first use."""

    def __init__(
        self,
        sessions: SessionFactory,
        today: Callable[[str], date] = scheme_today,
        redis: Redis | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._session: Session | None = None
        self.today = today
        self.redis = redis
        self.now = now

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
        if kind == "caller":
            return self.caller(state.phone, has_household=bool(state.data.get("households")))
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

    def caller(self, phone: str, has_household: bool = False) -> dict[str, Any]:
        """Return whether the phone is an active agent's, and the language of its country's scheme."""
        found = self.session.execute(
            select(Agent.id, Agent.facility).where(Agent.phone == phone, Agent.active.is_(True))
        ).first()
        agent = {"id": found.id, "facility": found.facility} if found is not None else None
        lang = None
        if not has_household:
            lang = self.phone_language(phone)
        return {"agent": agent, "lang": lang}

    def phone_language(self, phone: str) -> str | None:
        """Return the default language of the scheme in the phone's country, if there is one."""
        try:
            code = phonenumbers.parse(phone, None).country_code
        except phonenumbers.NumberParseException:
            return None
        if code is None:
            return None
        region = phonenumbers.region_code_for_country_code(code)
        language = self.session.scalar(
            select(Scheme.default_language).where(Scheme.country == region).order_by(Scheme.id).limit(1)
        )
        return language.value if language is not None else None

    def coverage(self, household_id: int) -> dict[str, Any]:
        """Return the household's eligibility today and each active member's."""
        household = self.session.scalars(
            select(Household)
            .where(Household.id == household_id)
            .options(joinedload(Household.scheme), selectinload(Household.members))
        ).one()
        on = self.today(household.scheme.timezone)
        due = amount_due(self.session, household, on)
        overall = household_eligibility(self.session, household, on, due)
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
        plan = household.scheme.plan(household.plan)
        choices = payment_choices(due, plan.months, household.scheme.max_advance_months)
        return {
            "on": on.isoformat(),
            "due": overall.amount_due,
            "period": due.period,
            "choices": [[c.periods, c.months, c.amount] for c in choices],
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

    def apply(self, effect: Effect, key: str, state: State) -> Any:
        """Apply the effect unless its key was used already; return its outcome (the first one on a replay)."""
        if effect.kind == LANGUAGE_EFFECT:
            return self.change_language(effect, key)
        if effect.kind == PAYMENT_REQUEST_EFFECT:
            return self.request_payment(effect, key, state.phone, state.lang)
        if effect.kind == AGENT_CHECK_EFFECT:
            return self._once(key, lambda: self.agent_check(effect))
        if effect.kind == DOB_CHECK_EFFECT:
            return self._once(key, lambda: self.dob_check(effect, state.phone))
        raise ValueError(f"unknown menu effect {effect.kind!r}")

    def change_language(self, effect: Effect, key: str) -> bool:
        """Store the household's new language once per key; return whether it was stored now."""
        session = self._fresh_write()
        try:
            session.add(EffectKey(key=key, result=f"{effect.kind}={effect.value}"))
            session.flush()
        except IntegrityError:
            session.rollback()
            return False
        session.execute(update(Household).where(Household.id == effect.target).values(language=Language(effect.value)))
        session.commit()
        return True

    def request_payment(self, effect: Effect, key: str, phone: str, language: str) -> dict[str, Any]:
        """Create the household's payment request for the key (or find it) and queue its SMS once."""
        session = self._fresh_write()
        household = session.scalars(
            select(Household)
            .where(Household.id == effect.target)
            .options(joinedload(Household.scheme).selectinload(Scheme.channels))
        ).one()
        scheme = household.scheme
        amount_text, _, periods_text = effect.value.partition(":")
        request = create_payment_request(
            session,
            scheme=scheme,
            household=household,
            amount=int(amount_text),
            periods=int(periods_text or 1),
            payer_phone=phone or None,
            channel="ussd",
            caller_key=key,
            now=self.now(),
        )
        shown = format_amount(Amount(request.amount, scheme.currency, scheme.currency_exponent), language)
        how = [how_to_pay(channel, language, request.reference, shown) for channel in scheme.channels]
        if phone:
            send_sms(
                session,
                phone,
                "payment_reference",
                language=language,
                household=household,
                dedupe_key=f"payment_reference:{request.id}",
                reference=request.reference,
                amount=shown,
                how_to_pay=" / ".join(how),
            )
        session.commit()
        return {
            "reference": request.reference,
            "amount": request.amount,
            "channels": [[channel.label, channel.account] for channel in scheme.channels],
        }

    def agent_check(self, effect: Effect) -> dict[str, Any]:
        """Verify the agent's PIN (a wrong one counted) and, if right, check the member and log it."""
        member_no, _, pin = effect.value.partition("\n")
        session = self.session
        agent = session.get(Agent, effect.target, with_for_update=True)
        if agent is None:
            return {"o": PinOutcome.INACTIVE.value}
        now = self.now()
        outcome = verify_agent_pin(session, agent, pin, now)
        if outcome.outcome is PinOutcome.WRONG:
            return {"o": outcome.outcome.value, "left": outcome.attempts_left}
        if outcome.outcome is PinOutcome.LOCKED:
            until = outcome.locked_until or now
            return {"o": outcome.outcome.value, "minutes": max(1, math.ceil((until - now).total_seconds() / 60))}
        if not outcome.ok:
            return {"o": outcome.outcome.value}
        answer = check_member(session, member_no, None, CheckChannel.USSD, agent.facility, agent_id=agent.id)
        if answer is None:
            return {"o": OK, "found": False, "no": member_no[:44]}
        e = answer.eligibility
        return {
            "o": OK,
            "found": True,
            "no": answer.member_no,
            "first": answer.first_name[:40],
            "year": answer.birth_year,
            "covered": e.covered,
            "status": e.status.value,
            "until": e.valid_until.isoformat() if e.valid_until else None,
        }

    def dob_check(self, effect: Effect, phone: str) -> dict[str, Any]:
        """Answer an unknown phone's check by member number + date of birth, within the phone's rate limit."""
        member_no, _, typed = effect.value.partition("\n")
        if self.redis is None:
            raise RuntimeError("the date-of-birth check needs Redis for its rate limit")
        if not hit(self.redis, DOB_CHECK, phone or "unknown"):
            return {"o": LIMITED}
        born = parse_dob(typed)
        member = find_member(self.session, member_no)
        if member is None or born is None or member.date_of_birth != born:
            return {"o": NOT_FOUND, "found": False}
        e = member_eligibility(self.session, member, member.household.scheme.local_today(self.now()))
        return {
            "o": OK,
            "found": True,
            "no": member.member_no,
            "first": member.first_name[:40],
            "covered": e.covered,
            "status": e.status.value,
            "until": e.valid_until.isoformat() if e.valid_until else None,
        }

    def _once(self, key: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Do the work once per key in one transaction with its `EffectKey`; a replay gets the stored outcome."""
        session = self._fresh_write()
        marker = EffectKey(key=key, result=None)
        try:
            session.add(marker)
            session.flush()
        except IntegrityError:
            session.rollback()
            stored = session.scalar(select(EffectKey.result).where(EffectKey.key == key))
            return dict(json.loads(stored)) if stored else {}
        outcome = work()
        marker.result = json.dumps(outcome, separators=(",", ":"))[:200]
        session.commit()
        return outcome

    def _fresh_write(self) -> Session:
        session = self.session
        session.rollback()  # reads above ran in their own transaction; write in a fresh one
        begin_write(session)
        return session

    def close(self) -> None:
        """Close the database session if one was opened."""
        if self._session is not None:
            self._session.close()
            self._session = None


def how_to_pay(channel: PaymentChannel, language: str, reference: str, amount: str) -> str:
    """Return the channel's instructions in the language (or its fallback), filled in."""
    instructions = channel.instructions or {}
    text = instructions.get(language) or instructions.get(FALLBACKS.get(language, "")) or ""
    if not text:
        text = next(iter(instructions.values()), "") or "{account} ref {reference}"
        text = f"{channel.label}: {text}" if not text.startswith(channel.label) else text
    try:
        return str(text).format(account=channel.account, reference=reference, amount=amount)
    except (KeyError, IndexError, ValueError):
        return f"{channel.label}: {channel.account} ref {reference}"
