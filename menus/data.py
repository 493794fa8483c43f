"""What the menus read from and write to the database, as the records of `menus.values` cached in the session.

Loaded once per session and key: on the dial, the phone's households, whether it is an agent's and each
household's eligibility and amount due (what `My coverage` and `Pay` show, so those screens need no
database); the last payments when asked. Effects are applied at most once per session and hop (their key,
see `menus.conversation.effect_key`):
- the language change and the two checks through an `EffectKey` row written in the same transaction, whose
  `result` keeps the check's outcome, so a replayed hop gets the first outcome (a wrong PIN counted once, a
  rate-limit hit counted once);
- the payment request through its own `caller_key` and its SMS through the message's `dedupe_key`.

Cost (USSD speed target, issue 8): the dial is one SQL statement, the households with their members and what
their coverage needs (a second one for a scheme whose grace exceeds `PERIODS_WINDOW_DAYS`), a Core select of
just the columns needed, built once per process and run in autocommit (no `BEGIN`/`ROLLBACK` round trips).
The scheme's configuration (plan months, subsidy share, premium band, grace, fee, currency, languages) is not
cached anywhere: it is joined into those same statements, so it costs no extra round trip and needs neither a
per-process cache (docs/architecture.md: nothing shared lives in process memory) nor a Redis copy to keep in
step with `schemes load`. What a session has read stays in its Redis blob, so later hops need no database.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from redis import Redis
from sqlalchemy import (
    Connection,
    Date,
    Engine,
    Executable,
    Integer,
    Result,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, joinedload

from menus.checks import AGENT_CHECK_EFFECT, DOB_CHECK_EFFECT, LIMITED, NOT_FOUND, NOTHING, OK, parse_dob
from menus.engine import Effect, State
from menus.member import LANGUAGE_EFFECT, OTHER_PAYMENT_EFFECT, PAYMENT_REQUEST_EFFECT, PAYMENTS_SHOWN
from menus.values import (
    AgentInfo,
    CallerInfo,
    CheckOutcome,
    Coverage,
    HouseholdInfo,
    ListedMember,
    OtherPayment,
    PaymentLine,
    PaymentOption,
    PaymentReference,
    SchemeInfo,
    record_list,
)
from models.access.agents import PinOutcome, agent_scope, verify_agent_pin
from models.access.rate_limit import allow_member_check
from models.access.tables import Agent, EffectKey
from models.base import (
    CheckChannel,
    HouseholdStatus,
    Language,
    PremiumKind,
    utcnow,
)
from models.coverage.checks import check_member, find_member_born
from models.coverage.eligibility import (
    eligibility_on,
    household_eligibility,
    member_eligibility,
    offered_choices,
    pay_offer,
    periods_since,
)
from models.coverage.ledger import household_account_columns
from models.coverage.money import CoveragePeriod
from models.coverage.premiums import (
    band_monthly,
    band_monthly_column,
    due_of,
    funder_pays_all,
    funder_share,
    pay_refusal,
    price_of,
)
from models.db import begin_write
from models.members.household import (
    Household,
    Member,
    Network,
    active_member_clause,
    find_household,
    is_active_member,
    phone_household_ids,
)
from models.messaging.outbox import send_sms
from models.payments.payment import Payment, PaymentRequest
from models.payments.references import channel_account, create_payment_request, reference_values
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Plan, PremiumBand, Scheme, SubsidyCategory

log = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]
Dialled = tuple[list[HouseholdInfo], CallerInfo, dict[int, Coverage]]  # households, caller, coverage by household
# The coverage reads the periods ending within this many days before today with the household; a scheme
# whose grace is longer (none so far: CMU 30 days, SKY 15) costs a second statement for them.
PERIODS_WINDOW_DAYS = 400


def scheme_today(timezone: str) -> date:
    """Return today's date in the scheme's time zone."""
    return datetime.now(ZoneInfo(timezone)).date()


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
        self._reader: Connection | None = None
        self.today = today
        self.redis = redis
        self.now = now
        self._dialled: tuple[str, Dialled] | None = None

    @property
    def session(self) -> Session:
        """Return the database session, opening it on first use."""
        if self._session is None:
            self._session = self._sessions()
        return self._session

    def read(self, statement: Executable, params: dict[str, Any] | None = None) -> Result[Any]:
        """Run a read-only statement: on a Core connection in autocommit, or in the session's write transaction.

        A menu read is one statement or two (the dial) that need no transaction: in autocommit they skip the
        `BEGIN` and the `ROLLBACK` round trips a hop would otherwise pay for, and a plain Core connection (these
        statements select columns, not ORM entities) skips the ORM session's bookkeeping. An effect's
        `_fresh_write` returns it to the pool and writes in a transaction of the session's own. A read runs
        once more when its pooled connection turns out dead (the pool pings only connections idle for a second,
        `models.db.PING_AFTER_IDLE_SECONDS`): the pool has dropped it, and a read is safe to repeat.
        """
        session = self.session
        bind = session.get_bind()
        if session.in_transaction() or not isinstance(bind, Engine):  # in a write, or a session on a connection
            return session.connection().execute(statement, params)
        try:
            return self._reading(bind).execute(statement, params)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            log.info("ussd: a pooled database connection was dead; reading again on a new one")
            self._close_reader()
            return self._reading(bind).execute(statement, params)

    def _reading(self, engine: Engine) -> Connection:
        if self._reader is None:
            self._reader = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._reader

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def load(self, key: str, state: State) -> dict[str, Any]:
        """Return the value of a `state.data` key (see `menus.member`), with the other keys read along with it.

        The dial (`households` or `caller`) also gives the other one and each household's `coverage:<id>`.
        """
        kind, _, arg = key.partition(":")
        if kind in {"households", "caller"}:
            households, caller, coverages = self.dial(state.phone)
            loaded: dict[str, Any] = {"households": households, "caller": caller}
            loaded.update((f"coverage:{household_id}", value) for household_id, value in coverages.items())
            return loaded
        if kind == "coverage":
            return {
                key: self.coverage(int(arg), record_list(HouseholdInfo, "households", state.data.get("households")))
            }
        if kind == "payments":
            return {key: self.payments(int(arg))}
        raise KeyError(f"unknown menu data {key!r}")

    def households(self, phone: str) -> list[HouseholdInfo]:
        """Return the households in which the phone is an active member's, with what the menus show."""
        return self.dial(phone)[0]

    def caller(self, phone: str) -> CallerInfo:
        """Return whether the phone is an active agent's, and its country's language (None with a household)."""
        return self.dial(phone)[1]

    def dial(self, phone: str) -> Dialled:
        """Return the phone's households, its caller data and its households' coverage (read once per phone).

        One SQL statement (`_dial_statement`): the households with their members, scheme and network, what
        their coverage needs, the agent and the country's language; so `My coverage` and `Pay` need no
        database later in the session. The statement cannot know each scheme's today (its time zone is in
        the same rows): it reads the periods from a day before today in UTC minus `PERIODS_WINDOW_DAYS`, and
        the active members, premium band and last lapsed period are worked out here, on each scheme's today.
        """
        if self._dialled is not None and self._dialled[0] == phone:
            return self._dialled[1]
        if not phone:
            return [], CallerInfo(None, None), {}
        since = self.today("UTC") - timedelta(days=PERIODS_WINDOW_DAYS + 1)
        params = {"phone": phone, "region": phone_region(phone), "since": since}
        rows = self.read(_dial_statement(), params).all()
        first = rows[0]
        agent = AgentInfo(first.agent_id, first.agent_facility) if first.agent_id is not None else None
        firsts: dict[int, Any] = {}  # each household's first row
        heads: dict[int, Any] = {}  # the head's first row: the per-household columns
        listed: dict[int, list[ListedMember]] = {}
        periods: dict[int, dict[Any, Any]] = {}
        seen_members: dict[int, set[str]] = {}
        today: dict[str, date] = {}
        for row in rows:
            if row.id is None:
                continue
            if row.id not in firsts:
                firsts[row.id], listed[row.id], periods[row.id], seen_members[row.id] = row, [], {}, set()
            if row.start_on is not None:
                periods[row.id][(row.start_on, row.end_on)] = row
            if row.member_no in seen_members[row.id]:
                continue  # the same member on the row of another period
            seen_members[row.id].add(row.member_no)
            if row.member_no == row.head_member_no:
                heads[row.id] = row
            on = today.get(row.timezone) or today.setdefault(row.timezone, self.today(row.timezone))
            if is_active_member(row.status, row.left_on, on):
                listed[row.id].append(ListedMember(row.first_name, row.member_no.rsplit("-", 1)[-1]))
        found = [
            HouseholdInfo(
                id=household_id,
                no=row.household_no,
                lang=Language(row.language).value,
                plan=row.plan,
                network=row.network,
                head=heads[household_id].first_name if household_id in heads else "",
                members=tuple(listed[household_id]),
                scheme=SchemeInfo(
                    row.scheme_name, tuple(row.languages), row.currency, row.currency_exponent, row.timezone
                ),
            )
            for household_id, row in firsts.items()
        ]
        # With a household, the phone speaks its household's language.
        country_language = Language(first.country_language).value if first.country_language is not None else None
        caller = CallerInfo(agent, None if found else country_language)
        coverages = {}
        for household in found:
            head = heads.get(household.id)
            if head is None or head.months is None or head.share_bp is None:
                continue  # no head member, plan or subsidy category: read (and refused) when a screen needs it
            on = today[household.scheme.timezone]
            recent = sorted(periods[household.id].values(), key=lambda period: period.start_on)
            ended = [period.end_on for period in recent if period.end_on < on]
            members = len(household.members)
            coverages[household.id] = self._coverage_of(
                household,
                head,
                recent,
                on,
                members=members,
                band_monthly=band_monthly(_bands(head.bands), members),
                lapsed_on=max(ended) if ended else head.lapsed_before,
            )
        dialled = found, caller, coverages
        self._dialled = (phone, dialled)
        return dialled

    def phone_language(self, phone: str) -> str | None:
        """Return the default language of the scheme in the phone's country, if there is one."""
        region = phone_region(phone)
        if region is None:
            return None
        language = self.session.scalar(
            select(Scheme.default_language).where(Scheme.country == region).order_by(Scheme.id).limit(1)
        )
        return language.value if language is not None else None

    def coverage(self, household_id: int, households: Sequence[HouseholdInfo] | None = None) -> Coverage:
        """Return the household's eligibility today and each active member's, in one SQL statement (rarely two).

        The dial reads it already (`dial`); this is for a household whose coverage the dial could not work out
        (no head member, plan or subsidy category: then it raises). It reads the household with its scheme's
        premium rules, plan, subsidy category, active members, account balance and fee state and last lapsed
        period (as columns), outer-joined to its periods ending within `PERIODS_WINDOW_DAYS` before today: one
        row per period. The periods that matter are those within the scheme's grace, filtered here; a scheme
        whose grace is longer than the window reads them again exactly.
        The rules are `amount_due` and `household_eligibility`'s, on plain values.
        """
        known = next((x for x in households or [] if x.id == household_id), None)
        if known is None:  # the engine only asks for the coverage of a household of the phone's
            raise LookupError(f"household {household_id} is not the phone's")
        on = self.today(known.scheme.timezone)
        window = on - timedelta(days=PERIODS_WINDOW_DAYS)
        params = {"household_id": household_id, "on": on, "since": window}
        rows = self.read(_coverage_statement(), params).all()
        if not rows:
            raise LookupError(f"household {household_id}: no such household, plan or subsidy category")
        row = rows[0]
        recent = [r for r in rows if r.start_on is not None]
        members, band = row.members, int(row.band_monthly or 0)
        return self._coverage_of(known, row, recent, on, members=members, band_monthly=band, lapsed_on=row.lapsed_on)

    def _coverage_of(
        self,
        household: HouseholdInfo,
        row: Any,
        recent: Sequence[Any],
        on: date,
        *,
        members: int,
        band_monthly: int,
        lapsed_on: date | None,
    ) -> Coverage:
        """Return the coverage of a household on a date from its scheme's rules and account (`row`'s columns),
        its periods ending within `PERIODS_WINDOW_DAYS` before the date (`recent`), and the values that depend
        on the date: active members, their premium band and the last end of a period before the date."""
        window = on - timedelta(days=PERIODS_WINDOW_DAYS)
        status = HouseholdStatus(row.household_status)
        periods: list[Any] = []
        if status not in {HouseholdStatus.SUSPENDED, HouseholdStatus.CLOSED}:
            since = periods_since(on, int(row.grace_days or 0))
            if since >= window:
                periods = [r for r in recent if r.end_on >= since]
            else:
                params = {"household_id": household.id, "since": since}
                periods = list(self.read(_periods_statement(), params))
        price = price_of(
            PremiumKind(row.premium_kind),
            int(row.premium_amount or 0),
            int(row.premium_per_months or 1),
            int(row.months),
            int(members or 0),
            band_monthly,
        )
        share_bp = int(row.share_bp)
        due = due_of(
            fee=int(row.membership_fee or 0),
            fee_paid=int(row.fees or 0) > 0,
            share=price - funder_share(price, share_bp),
            subsidised=funder_pays_all(share_bp),
            balance=int(row.balance or 0),
            currency=row.currency,
        )
        overall = eligibility_on(
            on,
            status=status,
            status_reason=row.status_reason,
            periods=periods,
            grace_days=int(row.grace_days or 0),
            grace_covered=bool(row.grace_covered),
            due=due,
            lapsed_on=lapsed_on,
        )
        # Only active members are listed, and an active member's eligibility is the household's
        # (`member_eligibility` differs only for members who left): one computation, not one per member.
        refusal = pay_refusal(status, funder_pays_all(share_bp))
        months, advance = int(row.months), int(row.max_advance_months)
        choices = [] if refusal is not None else offered_choices(overall, due, months, advance, on)
        return Coverage(
            on=on,
            due=overall.amount_due,
            period=due.period,
            choices=tuple(PaymentOption(c.periods, c.months, c.amount) for c in choices),
            covered=overall.covered,
            until=overall.valid_until if overall.covered else None,
            status=overall.status.value,
            ends=overall.cover_ends,
            waiting=overall.waiting_until,
            next_amount=overall.next_payment_amount,
            next_due=overall.next_payment_due,
            credit=overall.credit,
            refusal=refusal.value if refusal is not None else None,
            valid_until=overall.valid_until,
            members=tuple(member.first for member in household.members),
        )

    def payments(self, household_id: int) -> list[PaymentLine]:
        """Return the household's last payments, newest first."""
        rows = self.read(
            select(Payment.paid_at, Payment.amount, Payment.status)
            .where(Payment.household_id == household_id)
            .order_by(Payment.paid_at.desc(), Payment.id.desc())
            .limit(PAYMENTS_SHOWN)
        )
        return [PaymentLine(paid_at.date(), amount, status.value) for paid_at, amount, status in rows]

    def apply(self, effect: Effect, key: str, state: State) -> Any:
        """Apply the effect unless its key was used already; return its outcome (the first one on a replay)."""
        if effect.kind == LANGUAGE_EFFECT:
            return self.change_language(effect, key)
        if effect.kind == PAYMENT_REQUEST_EFFECT:
            return self.request_payment(effect, key, state.phone, state.lang)
        if effect.kind == OTHER_PAYMENT_EFFECT:
            return self.request_other_payment(effect, key, state.phone, state.lang)
        if effect.kind == AGENT_CHECK_EFFECT:
            return self._once(key, lambda: self.agent_check(effect))
        if effect.kind == DOB_CHECK_EFFECT:
            return self._once(key, lambda: self.dob_check(effect, state.phone, key))
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

    def request_payment(self, effect: Effect, key: str, phone: str, language: str) -> PaymentReference:
        """Create the household's payment request for the key (or find it) and queue its SMS once."""
        session = self._fresh_write()
        query = (
            select(Household)
            .where(Household.id == effect.target)
            .options(
                joinedload(Household.scheme).selectinload(Scheme.channels),
                # Joined into the household's statement: the mutuelle's accounts cost no round trip of their own.
                joinedload(Household.mutuelle).joinedload(Mutuelle.accounts),
            )
        )
        household = session.scalars(query).unique().one()
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
        if phone:
            self._send_reference(session, phone, household, request, language)
        session.commit()
        return PaymentReference(request.reference, request.amount, _channels(scheme, household.mutuelle))

    @staticmethod
    def _send_reference(
        session: Session,
        phone: str,
        household: Household,
        request: PaymentRequest,
        language: str,
        values: dict[str, Any] | None = None,
    ) -> None:
        """Queue the SMS that repeats a payment reference (the screen disappears), naming the household once."""
        send_sms(
            session,
            phone,
            "payment_reference_for",
            language=language,
            household=household,
            dedupe_key=f"payment_reference:{request.id}",
            **(values or reference_values(household, request.reference, request.amount, language)),
        )

    def request_other_payment(self, effect: Effect, key: str, phone: str, language: str) -> OtherPayment:
        """Create a payment request for the household a number names (any phone, rate-limited) and SMS it once."""
        number = effect.value
        if self.redis is None:
            raise RuntimeError("paying for another household needs Redis for its rate limit")
        # The same limits as SMS `PAYER <no>`; the effect key makes a replayed hop count once.
        if not allow_member_check(self.redis, phone or "unknown", number, key):
            return OtherPayment(LIMITED, number)
        session = self._fresh_write()
        household = find_household(session, number)
        if household is None:
            session.rollback()
            return OtherPayment(NOT_FOUND, number)
        scheme = household.scheme
        # What SMS `PAYER <no>` offers: what is due now, else the next period; nothing when Pay is refused.
        today = scheme.local_today(self.now())
        offer = pay_offer(session, household, household_eligibility(session, household, today), today)
        if offer.refusal is not None or not offer.choices:
            session.rollback()
            return OtherPayment(NOTHING, household.household_no)
        due = offer.choices[0].amount
        request = create_payment_request(
            session,
            scheme=scheme,
            household=household,
            amount=due,
            payer_phone=phone or None,
            channel="ussd",
            caller_key=key,
            now=self.now(),
        )
        values = reference_values(household, request.reference, request.amount, language)
        if phone:
            self._send_reference(session, phone, household, request, language, values)
        session.commit()
        return OtherPayment(
            OK,
            household.household_no,
            head=values["first_name"],
            reference=request.reference,
            amount=request.amount,
            currency=scheme.currency,
            exponent=scheme.currency_exponent,
            channels=_channels(scheme, household.mutuelle),
        )

    def agent_check(self, effect: Effect) -> CheckOutcome:
        """Verify the agent's PIN (a wrong one counted) and, if right, check the member and log it."""
        member_no, _, pin = effect.value.partition("\n")
        session = self.session
        agent = session.get(Agent, effect.target, with_for_update=True)
        if agent is None:
            return CheckOutcome(PinOutcome.INACTIVE.value)
        now = self.now()
        outcome = verify_agent_pin(session, agent, pin, now)
        if outcome.outcome is PinOutcome.WRONG:
            return CheckOutcome(outcome.outcome.value, left=outcome.attempts_left)
        if outcome.outcome is PinOutcome.LOCKED:
            until = outcome.locked_until or now
            minutes = max(1, math.ceil((until - now).total_seconds() / 60))
            return CheckOutcome(outcome.outcome.value, minutes=minutes)
        if not outcome.ok:
            return CheckOutcome(outcome.outcome.value)
        with agent_scope(session, agent):
            answer = check_member(session, member_no, None, CheckChannel.USSD, agent.facility, agent_id=agent.id)
        if answer is None:
            return CheckOutcome(OK, found=False, member_no=member_no[:44])
        e = answer.eligibility
        return CheckOutcome(
            OK,
            found=True,
            member_no=answer.member_no,
            first=answer.first_name[:40],
            year=answer.birth_year,
            covered=e.covered,
            status=e.status.value,
            until=e.valid_until,
        )

    def dob_check(self, effect: Effect, phone: str, key: str) -> CheckOutcome:
        """Answer an unknown phone's check by member number + date of birth, within the member-check limits."""
        member_no, _, typed = effect.value.partition("\n")
        if self.redis is None:
            raise RuntimeError("the date-of-birth check needs Redis for its rate limit")
        # The same limits as SMS `STATUT <no> <DDMMYYYY>`; the effect key makes a replayed hop count once.
        if not allow_member_check(self.redis, phone or "unknown", member_no, key):
            return CheckOutcome(LIMITED)
        member = find_member_born(self.session, member_no, parse_dob(typed))
        if member is None:
            return CheckOutcome(NOT_FOUND, found=False)
        e = member_eligibility(self.session, member, member.household.scheme.local_today(self.now()))
        return CheckOutcome(
            OK,
            found=True,
            member_no=member.member_no,
            first=member.first_name[:40],
            covered=e.covered,
            status=e.status.value,
            until=e.valid_until,
        )

    def _once(self, key: str, work: Callable[[], CheckOutcome]) -> CheckOutcome:
        """Do the work once per key in one transaction with its `EffectKey`; a replay gets the stored outcome."""
        session = self._fresh_write()
        marker = EffectKey(key=key, result=None)
        try:
            session.add(marker)
            session.flush()
        except IntegrityError:
            session.rollback()
            stored = session.scalar(select(EffectKey.result).where(EffectKey.key == key))
            return CheckOutcome.from_json(json.loads(stored)) if stored else CheckOutcome("")
        outcome = work()
        # Whole and unescaped: a cut outcome (a long Khmer name) could not be read back by the replay.
        marker.result = json.dumps(outcome.to_json(), separators=(",", ":"), ensure_ascii=False)
        session.commit()
        return outcome

    def _fresh_write(self) -> Session:
        self._close_reader()  # one connection at a time: the reads are done
        session = self.session
        session.rollback()  # any ORM read above ran in a transaction of its own; write in a fresh one
        begin_write(session)
        return session

    def close(self) -> None:
        """Return the reading connection and close the database session, if they were opened."""
        self._close_reader()
        if self._session is not None:
            self._session.close()
            self._session = None


@functools.cache
def _dial_statement() -> Select[Any]:
    """Return the dial's statement (built once per process; bind `phone`, `region` and `since`).

    One row per member and recent period of each household the phone belongs to (as an active member): the
    household, its members (one row each), its scheme's and network's columns and what its coverage needs
    but the date (plan months, subsidy share, the scheme's premium bands as `min_size:monthly` pairs, balance,
    fee state, the last end of a period before `since`), and its unreversed periods ending on or after `since`
    (outer-joined: one set of rows per period, or null period columns). The per-household subqueries are
    computed on the head's rows only (`CASE`), not once per member. The agent and the country's default
    language ride along as scalar subqueries, and a constant row outer-joined in front keeps them when the
    phone has no household. Everything that depends on the scheme's today is computed from these rows.
    """
    h, m, s, n = Household.__table__, Member.__table__, Scheme.__table__, Network.__table__
    plan, category, band = Plan.__table__, SubsidyCategory.__table__, PremiumBand.__table__
    period = CoveragePeriod.__table__
    phone = bindparam("phone", type_=String)
    since = bindparam("since", type_=Date)
    agent = select(Agent.id, Agent.facility).where(Agent.phone == phone, Agent.active.is_(True)).limit(1)
    country_language = (
        select(Scheme.default_language)
        .where(Scheme.country == bindparam("region", type_=String))
        .order_by(Scheme.id)
        .limit(1)
    )
    owners = phone_household_ids(phone, m)
    bands = (
        select(func.aggregate_strings(cast(band.c.min_size, String) + ":" + cast(band.c.monthly_amount, String), ","))
        .where(band.c.scheme_id == h.c.scheme_id)
        .scalar_subquery()
    )
    ended = period.alias("ended")
    lapsed_before = (
        select(func.max(ended.c.end_on))
        .where(ended.c.household_id == h.c.id, ended.c.reversed_at.is_(None), ended.c.end_on < since)
        .scalar_subquery()
    )
    balance, fees = household_account_columns(h.c.id)
    head = m.c.member_no == h.c.head_member_no

    def on_head(column: Any, name: str) -> Any:
        return case((head, column), else_=None).label(name)

    family = (
        h.join(m, m.c.household_id == h.c.id)
        .join(s, s.c.id == h.c.scheme_id)
        .outerjoin(n, n.c.id == h.c.network_id)
        .outerjoin(plan, and_(plan.c.scheme_id == h.c.scheme_id, plan.c.code == h.c.plan))
        .outerjoin(category, and_(category.c.scheme_id == h.c.scheme_id, category.c.code == h.c.subsidy_category))
        .outerjoin(
            period, and_(period.c.household_id == h.c.id, period.c.reversed_at.is_(None), period.c.end_on >= since)
        )
    )
    anchor = select(literal(1).label("one")).subquery("anchor")
    return (
        select(
            agent.with_only_columns(Agent.id).scalar_subquery().label("agent_id"),
            agent.with_only_columns(Agent.facility).scalar_subquery().label("agent_facility"),
            country_language.scalar_subquery().label("country_language"),
            h.c.id,
            h.c.household_no,
            h.c.language,
            h.c.plan,
            h.c.head_member_no,
            h.c.status.label("household_status"),
            h.c.status_reason,
            n.c.name.label("network"),
            s.c.name.label("scheme_name"),
            s.c.languages,
            s.c.currency,
            s.c.currency_exponent,
            s.c.timezone,
            s.c.premium_kind,
            s.c.premium_amount,
            s.c.premium_per_months,
            s.c.membership_fee,
            s.c.grace_days,
            s.c.grace_covered,
            s.c.max_advance_months,
            plan.c.months,
            category.c.share_bp,
            m.c.member_no,
            m.c.first_name,
            m.c.status,
            m.c.left_on,
            on_head(bands, "bands"),
            on_head(balance, "balance"),
            on_head(fees, "fees"),
            on_head(lapsed_before, "lapsed_before"),
            period.c.start_on,
            period.c.end_on,
            period.c.waiting_until,
        )
        .select_from(anchor.outerjoin(family, h.c.id.in_(owners)))
        .order_by(h.c.household_no, m.c.member_no, period.c.start_on)
    )


@functools.cache
def _coverage_statement() -> Select[Any]:
    """Return a household's coverage statement (built once per process; bind `household_id`, `on` and `since`).

    For a session that does not have it from the dial. One row per period of the household ending on or after
    `since` (one row with null period columns when there is none): the household, its scheme's premium rules,
    plan and subsidy category, and as scalar subqueries its active members on `on`, the matching premium
    band, its account balance and fee state, and the last end of a period before `on`.
    """
    h, s, m = Household.__table__, Scheme.__table__, Member.__table__
    plan, category = Plan.__table__, SubsidyCategory.__table__
    period = CoveragePeriod.__table__
    on = bindparam("on", type_=Date)
    members = (
        select(func.count())
        .select_from(m)
        .where(m.c.household_id == h.c.id, active_member_clause(on, m))
        .correlate_except(m)  # also inside the band subquery: correlated to the outer households row
        .scalar_subquery()
    )
    band_monthly = band_monthly_column(h.c.scheme_id, members)
    ended = period.alias("ended")
    lapsed = (
        select(func.max(ended.c.end_on))
        .where(ended.c.household_id == h.c.id, ended.c.reversed_at.is_(None), ended.c.end_on < on)
        .scalar_subquery()
    )
    balance, fees = household_account_columns(h.c.id)
    return (
        select(
            h.c.id,
            h.c.status.label("household_status"),
            h.c.status_reason,
            s.c.premium_kind,
            s.c.premium_amount,
            s.c.premium_per_months,
            s.c.membership_fee,
            s.c.grace_days,
            s.c.grace_covered,
            s.c.max_advance_months,
            s.c.currency,
            plan.c.months,
            category.c.share_bp,
            members.label("members"),
            band_monthly.label("band_monthly"),
            balance.label("balance"),
            fees.label("fees"),
            lapsed.label("lapsed_on"),
            period.c.start_on,
            period.c.end_on,
            period.c.waiting_until,
        )
        .select_from(
            h.join(s, s.c.id == h.c.scheme_id)
            .join(plan, and_(plan.c.scheme_id == h.c.scheme_id, plan.c.code == h.c.plan))
            .join(category, and_(category.c.scheme_id == h.c.scheme_id, category.c.code == h.c.subsidy_category))
            .outerjoin(
                period,
                and_(
                    period.c.household_id == h.c.id,
                    period.c.reversed_at.is_(None),
                    period.c.end_on >= bindparam("since", type_=Date),
                ),
            )
        )
        .where(h.c.id == bindparam("household_id", type_=Integer))
        .order_by(period.c.start_on)
    )


@functools.cache
def _periods_statement() -> Select[Any]:
    """Return the statement of a household's unreversed periods ending on or after `since`, by start date."""
    period = CoveragePeriod.__table__
    return (
        select(period.c.start_on, period.c.end_on, period.c.waiting_until)
        .where(
            period.c.household_id == bindparam("household_id", type_=Integer),
            period.c.reversed_at.is_(None),
            period.c.end_on >= bindparam("since", type_=Date),
        )
        .order_by(period.c.start_on)
    )


def _channels(scheme: Scheme, mutuelle: Mutuelle | None) -> tuple[tuple[str, str], ...]:
    """Return the scheme's payment channels as (label, account) pairs, on the household's mutuelle's accounts."""
    return tuple((channel.label, channel_account(channel, mutuelle)) for channel in scheme.channels)


def _bands(bands: str | None) -> list[tuple[int, int]]:
    """Return the scheme's premium bands read as `min_size:monthly,…` as (min_size, monthly) pairs."""
    pairs = (pair.partition(":") for pair in (bands or "").split(",") if pair)
    return [(int(min_size), int(monthly)) for min_size, _, monthly in pairs]


def phone_region(phone: str) -> str | None:
    """Return the region code (e.g. "SN") of an E.164 phone number, or None."""
    try:
        code = phonenumbers.parse(phone, None).country_code
    except phonenumbers.NumberParseException:
        return None
    if code is None:
        return None
    region = phonenumbers.region_code_for_country_code(code)
    return region if region and region != "ZZ" else None
