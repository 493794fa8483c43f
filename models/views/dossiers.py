"""Everything the admin shows about one payment, one household or one network, and what the household search finds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, union
from sqlalchemy.orm import Session, joinedload, selectinload

from models.access.tables import EligibilityCheck
from models.coverage.eligibility import Eligibility, cover_sentences, household_eligibility, member_eligibility
from models.coverage.ledger import account_state
from models.coverage.money import Allocation, CoveragePeriod, LedgerEntry
from models.coverage.periods import live_periods
from models.members.household import Account, Household, Member, Network, is_active_member
from models.members.phones import normalise_phone
from models.messaging.message import Message
from models.payments.payment import Payment, PaymentEvidence, ReconciliationEvent
from models.payments.statement import StatementLine
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme
from models.views.network_money import NetworkMoney, network_money

LEDGER_SHOWN = 200
PAYMENTS_SHOWN = 50
MESSAGES_SHOWN = 30
CHECKS_SHOWN = 20
# Receipt dedupe keys are "receipt:<payment id>:<outcome>[:<recipient index>]" (models.reconciliation.batch._receipt):
# listing the possible keys finds a payment's receipts through the unique index, never with a LIKE scan.
RECEIPT_OUTCOMES = ("allocated", "review", "refunded", "reversed")
RECEIPT_RECIPIENTS = 3
_PHONE_LIKE = re.compile(r"^\+?[\d\s().\-]{7,20}$")


def receipt_keys(payment_id: int) -> list[str]:
    """Return every dedupe key a receipt of this payment may carry."""
    keys = []
    for outcome in RECEIPT_OUTCOMES:
        for index in range(RECEIPT_RECIPIENTS):
            keys.append(f"receipt:{payment_id}:{outcome}" + ("" if index == 0 else f":{index}"))
    return keys


@dataclass(frozen=True)
class LedgerLine:
    """A ledger entry with the account's balance just after it and the account's owner."""

    entry: LedgerEntry
    owner: str
    balance_after: int | None = None


@dataclass(frozen=True)
class PaymentDossier:
    """A payment from the operator's report to the ledger: evidence, events, allocations, entries, receipts."""

    payment: Payment
    scheme: Scheme | None
    household: Household | None
    network: Network | None
    evidence: list[PaymentEvidence]
    events: list[ReconciliationEvent]
    allocations: list[Allocation]
    entries: list[LedgerLine]
    periods: list[CoveragePeriod]
    receipts: list[Message]
    statement_lines: list[StatementLine]
    mutuelle: Mutuelle | None = None  # the mutuelle it was paid to (None: a shared or unnamed account, unmatched)


def _owner_label(household_no: str | None, network_name: str | None) -> str:
    if household_no:
        return f"household {household_no}"
    return f"network {network_name}" if network_name else "?"


def payment_dossier(session: Session, payment_id: int) -> PaymentDossier | None:
    """Return everything known about one payment, or None when there is no such payment."""
    payment = session.get(Payment, payment_id)
    if payment is None:
        return None
    evidence = list(
        session.scalars(
            select(PaymentEvidence).where(PaymentEvidence.payment_id == payment_id).order_by(PaymentEvidence.id)
        )
    )
    events = list(
        session.scalars(
            select(ReconciliationEvent)
            .where(ReconciliationEvent.payment_id == payment_id)
            .order_by(ReconciliationEvent.id)
        )
    )
    allocations = list(
        session.scalars(select(Allocation).where(Allocation.payment_id == payment_id).order_by(Allocation.id))
    )
    allocation_ids = [a.id for a in allocations]
    entry_filter = LedgerEntry.payment_id == payment_id
    if allocation_ids:
        entry_filter = or_(entry_filter, LedgerEntry.allocation_id.in_(allocation_ids))
    entries = [
        LedgerLine(entry, _owner_label(household_no, network_name))
        for entry, household_no, network_name in session.execute(
            select(LedgerEntry, Household.household_no, Network.name)
            .join(Account, Account.id == LedgerEntry.account_id)
            .outerjoin(Household, Household.id == Account.household_id)
            .outerjoin(Network, Network.id == Account.network_id)
            .where(entry_filter)
            .order_by(LedgerEntry.id)
        ).tuples()
    ]
    period_ids = {line.entry.period_id for line in entries if line.entry.period_id is not None}
    period_filter = [CoveragePeriod.id.in_(period_ids)] if period_ids else []
    if allocation_ids:
        period_filter.append(CoveragePeriod.allocation_id.in_(allocation_ids))
    periods = (
        list(session.scalars(select(CoveragePeriod).where(or_(*period_filter)).order_by(CoveragePeriod.start_on)))
        if period_filter
        else []
    )
    receipts = list(
        session.scalars(select(Message).where(Message.dedupe_key.in_(receipt_keys(payment_id))).order_by(Message.id))
    )
    lines = list(
        session.scalars(select(StatementLine).where(StatementLine.payment_id == payment_id).order_by(StatementLine.id))
    )
    return PaymentDossier(
        payment=payment,
        scheme=session.get(Scheme, payment.scheme_id) if payment.scheme_id else None,
        household=payment.household,
        network=payment.network,
        evidence=evidence,
        events=events,
        allocations=allocations,
        entries=entries,
        periods=periods,
        receipts=receipts,
        statement_lines=lines,
        mutuelle=session.get(Mutuelle, payment.mutuelle_id) if payment.mutuelle_id else None,
    )


def phone_candidates(session: Session, text: str) -> set[str]:
    """Return the E.164 numbers typed text may be, read in each scheme's country."""
    if not _PHONE_LIKE.match(text.strip()):
        return set()
    countries = sorted(set(session.scalars(select(Scheme.country).distinct())))
    numbers = set()
    for country in [*countries, None]:
        try:
            numbers.add(normalise_phone(text, country, allow_foreign=True))
        except ValueError:
            continue
    return numbers


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def member_search_condition(session: Session, text: str) -> ColumnElement[bool]:
    """Return the condition on `Member` (joined to its `Household`) that the search text finds.

    A phone in any usual form, a household number (its head), a member number, or name prefixes. Each kind is
    a lookup of its own index (phone; household and member numbers; lower(first and last name) prefixes), joined
    as `Member.id IN (…)`: no branch needs the other table's row, so no search walks every member.
    """
    text = " ".join(text.split())
    numbers = phone_candidates(session, text)
    if numbers:
        return Member.phone.in_(numbers)
    # Every word must start the first or the last name: "fatou diop", "Diop F".
    words = [
        or_(
            func.lower(Member.last_name).like(_escape_like(word.lower()) + "%", escape="\\"),
            func.lower(Member.first_name).like(_escape_like(word.lower()) + "%", escape="\\"),
        )
        for word in text.split()[:4]
    ]
    if not any(character.isdigit() for character in text):
        # Names only: a plain condition on the member, so the planner may walk the households in order and stop
        # at the page's end (a common name) or look the names up in their indexes (a rare one).
        return and_(*words)
    upper = text.upper()
    head = (
        select(Member.id)
        .join(Household, Household.id == Member.household_id)
        .where(Household.household_no == upper, Member.member_no == Household.head_member_no)
    )
    found = union(head, select(Member.id).where(Member.member_no == upper), select(Member.id).where(*words))
    return Member.id.in_(select(found.subquery().c[0]))


@dataclass(frozen=True)
class HouseholdDossier:
    """A household's coverage answer, members, periods, ledger, payments, SMS and facility checks."""

    household: Household
    scheme: Scheme
    network: Network | None
    on: date
    answer: Eligibility
    members: list[tuple[Member, Eligibility]]
    periods: list[CoveragePeriod]
    balance: int
    fee_paid: bool
    ledger: list[LedgerLine]  # newest first, at most LEDGER_SHOWN
    ledger_truncated: bool
    payments: list[Payment]
    messages: list[Message]
    checks: list[EligibilityCheck]

    @property
    def cover(self) -> list[str]:
        """Return the cover and payments in the words members read (`models.coverage.eligibility.cover_sentences`)."""
        return cover_sentences(self.answer, self.scheme.currency_exponent)


def household_dossier(session: Session, household_id: int, on: date | None = None) -> HouseholdDossier | None:
    """Return everything the admin shows about one household on a date (default: the scheme's today)."""
    household = session.scalar(
        select(Household).where(Household.id == household_id).options(selectinload(Household.members))
    )
    if household is None:
        return None
    scheme = household.scheme
    day = on or scheme.local_today()
    answer = household_eligibility(session, household, day)
    # An active member's eligibility is the household's; `member_eligibility` answers for the others.
    members = [
        (
            member,
            answer
            if is_active_member(member.status, member.left_on, day)
            else member_eligibility(session, member, day),
        )
        for member in household.members
    ]
    state = account_state(session, household_id=household.id)
    account_id = session.scalar(select(Account.id).where(Account.household_id == household.id))
    ledger: list[LedgerLine] = []
    truncated = False
    if account_id is not None:
        entries = list(
            session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.account_id == account_id)
                .order_by(LedgerEntry.id.desc())
                .limit(LEDGER_SHOWN + 1)
            )
        )
        truncated = len(entries) > LEDGER_SHOWN
        balance = state.balance
        for entry in entries[:LEDGER_SHOWN]:
            ledger.append(LedgerLine(entry, f"household {household.household_no}", balance))
            balance -= entry.amount
    payments = list(
        session.scalars(
            select(Payment)
            .where(Payment.household_id == household.id)
            .order_by(Payment.paid_at.desc(), Payment.id.desc())
            .limit(PAYMENTS_SHOWN)
        )
    )
    messages = list(
        session.scalars(
            select(Message)
            .where(Message.household_id == household.id)
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(MESSAGES_SHOWN)
        )
    )
    member_ids = [member.id for member in household.members]
    checks = (
        list(
            session.scalars(
                select(EligibilityCheck)
                .where(EligibilityCheck.member_id.in_(member_ids))
                .order_by(EligibilityCheck.created_at.desc())
                .limit(CHECKS_SHOWN)
            )
        )
        if member_ids
        else []
    )
    return HouseholdDossier(
        household=household,
        scheme=scheme,
        network=household.network,
        on=day,
        answer=answer,
        members=members,
        periods=live_periods(session, household.id),
        balance=state.balance,
        fee_paid=state.fee_paid,
        ledger=ledger,
        ledger_truncated=truncated,
        payments=payments,
        messages=messages,
        checks=checks,
    )


@dataclass(frozen=True)
class NetworkDossier:
    """A network, its scheme, its account balance, how many households it has and its own money (all time)."""

    network: Network
    scheme: Scheme
    balance: int | None  # None: no account yet
    households: int
    ledger: list[LedgerLine]
    money: NetworkMoney


def network_dossier(session: Session, network_id: int, now: datetime) -> NetworkDossier | None:
    """Return a network with its account balance, household count, money up to today and latest ledger entries."""
    network = session.get(Network, network_id, options=[joinedload(Network.mutuelle)])
    if network is None:
        return None
    money = network_money(session, network, network.scheme.local_today(now))
    account_id = session.scalar(select(Account.id).where(Account.network_id == network.id))
    balance = money.balance_now if account_id is not None else None
    count = session.scalar(select(func.count()).select_from(Household).where(Household.network_id == network.id))
    ledger: list[LedgerLine] = []
    if account_id is not None and balance is not None:
        running = balance
        for entry in session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.account_id == account_id)
            .order_by(LedgerEntry.id.desc())
            .limit(LEDGER_SHOWN)
        ):
            ledger.append(LedgerLine(entry, f"network {network.name}", running))
            running -= entry.amount
    return NetworkDossier(network, network.scheme, balance, int(count or 0), ledger, money)
