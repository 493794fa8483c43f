"""Applying money to an account, and taking it back: allocation, reversal, refund, network payouts.

Transactions: every function here starts the session's write transaction itself
(`models.db.begin_write`: BEGIN IMMEDIATE on SQLite) and locks the account row (`SELECT … FOR UPDATE`
on PostgreSQL) before reading anything it decides on. Call them on a session with no transaction in
progress (or one started with `begin_write`); on SQLite a transaction that already began as a reader is
refused with RuntimeError (`models.ledger.start_write`). They flush but never commit: the caller (the
worker job) commits, so the allocation and the payment's status change land together.

Reversal semantics: a reversal (or refund) undoes exactly what that one allocation wrote — a REVERSAL
entry negates each of its entries and its periods are marked `reversed_at`. Periods funded by other
allocations stay, even when they were contiguous with a reversed one (the gap is simply uncovered), and
credit an earlier payment left that a later allocation consumed is not clawed back from that later
period: the account goes negative instead, which `amount_due` reports as arrears and the next payment
settles first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import LedgerKind, utcnow
from models.coverage import fund_from_credit
from models.household import Account, Household, Network
from models.ledger import (
    AccountState,
    account_state,
    account_states,
    add_entry,
    get_or_create_account,
    lock_account,
    start_write,
)
from models.money import Allocation, CoveragePeriod, LedgerEntry
from models.premiums import active_member_counts, amount_due


class UnknownAllocation(LookupError):
    """No allocation has this source reference."""


@dataclass(frozen=True)
class FundedPeriod:
    """One coverage period an allocation funded."""

    period_id: int
    start_on: date
    end_on: date
    waiting_until: date | None
    price: int
    household_share: int
    subsidy: int


@dataclass(frozen=True)
class AllocationResult:
    """What an allocation did: the fee and periods it funded and the account's balance afterwards."""

    allocation_id: int
    source_ref: str
    account_id: int
    household_id: int | None
    network_id: int | None
    amount: int
    currency: str
    fee: int
    periods: tuple[FundedPeriod, ...]
    balance: int
    credit: int
    created: bool  # False when the source was already allocated: nothing was written
    reversed: bool

    @property
    def covered_until(self) -> date | None:
        """Return the end of the last period this allocation funded."""
        return self.periods[-1].end_on if self.periods else None


@dataclass(frozen=True)
class ReversalResult:
    """What a reversal undid."""

    allocation_id: int
    source_ref: str
    account_id: int
    amount: int  # the money taken back off the account
    entries: int  # how many entries were negated
    periods: tuple[FundedPeriod, ...]
    balance: int
    created: bool  # False when it had already been reversed: nothing was written


def _funded(period: CoveragePeriod) -> FundedPeriod:
    return FundedPeriod(
        period_id=period.id,
        start_on=period.start_on,
        end_on=period.end_on,
        waiting_until=period.waiting_until,
        price=period.price,
        household_share=period.household_share,
        subsidy=period.subsidy_amount,
    )


def _periods_of(session: Session, allocation_id: int) -> list[CoveragePeriod]:
    return list(
        session.scalars(
            select(CoveragePeriod)
            .where(CoveragePeriod.allocation_id == allocation_id)
            .order_by(CoveragePeriod.start_on)
        )
    )


def _result(session: Session, allocation: Allocation, account: Account, created: bool) -> AllocationResult:
    entries = session.scalars(select(LedgerEntry).where(LedgerEntry.allocation_id == allocation.id)).all()
    fee = -sum(e.amount for e in entries if e.kind == LedgerKind.FEE and e.account_id == account.id)
    state = account_state(session, account_id=account.id)
    return AllocationResult(
        allocation_id=allocation.id,
        source_ref=allocation.source_ref,
        account_id=account.id,
        household_id=account.household_id,
        network_id=account.network_id,
        amount=allocation.amount,
        currency=allocation.currency,
        fee=fee,
        periods=tuple(_funded(p) for p in _periods_of(session, allocation.id)),
        balance=state.balance,
        credit=state.credit,
        created=created,
        reversed=allocation.reversed_at is not None,
    )


def _find(session: Session, source_ref: str) -> Allocation | None:
    return session.scalar(
        select(Allocation).where(Allocation.source_ref == source_ref).execution_options(populate_existing=True)
    )


def _allocate_locked(
    session: Session, account: Account, amount: int, source_ref: str, on: date, payment_id: int | None
) -> tuple[Allocation, bool]:
    existing = _find(session, source_ref)
    if existing is not None:
        if existing.account_id != account.id:
            raise ValueError(f"{source_ref} was already allocated to another account")
        return existing, False
    allocation = Allocation(
        source_ref=source_ref,
        account_id=account.id,
        amount=amount,
        currency=account.currency,
        effective_on=on,
        payment_id=payment_id,
    )
    session.add(allocation)
    session.flush()
    add_entry(session, account, LedgerKind.PAYMENT, amount, on, allocation=allocation, payment_id=payment_id)
    if account.household_id is not None:
        household = session.get(Household, account.household_id)
        assert household is not None
        fund_from_credit(session, account, household, allocation, on)
    # A network's money stays on its account until `pay_network_households` pays its households.
    return allocation, True


def allocate(
    session: Session, account: Account, amount: int, source_ref: str, on: date, payment_id: int | None = None
) -> AllocationResult:
    """Apply money received on `on` to an account once per `source_ref`: fee, whole periods, then credit."""
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError("an allocation is a positive integer amount")
    start_write(session)
    locked = lock_account(session, account.id)
    allocation, created = _allocate_locked(session, locked, amount, source_ref, on, payment_id)
    return _result(session, allocation, locked, created)


def _undo(session: Session, source_ref: str, reason: str, on: date, payment_kind: LedgerKind) -> ReversalResult:
    start_write(session)
    allocation = _find(session, source_ref)
    if allocation is None:
        raise UnknownAllocation(source_ref)
    account = lock_account(session, allocation.account_id)
    # Read again under the lock: another worker may have reversed it while we waited.
    allocation = _find(session, source_ref)
    assert allocation is not None
    periods = _periods_of(session, allocation.id)
    if allocation.reversed_at is not None:
        return ReversalResult(
            allocation_id=allocation.id,
            source_ref=source_ref,
            account_id=account.id,
            amount=0,
            entries=0,
            periods=tuple(_funded(p) for p in periods),
            balance=account_state(session, account_id=account.id).balance,
            created=False,
        )
    entries = session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.allocation_id == allocation.id, LedgerEntry.reverses_entry_id.is_(None))
        .order_by(LedgerEntry.id)
    ).all()
    taken = 0
    for entry in entries:
        kind = payment_kind if entry.kind == LedgerKind.PAYMENT else LedgerKind.REVERSAL
        # Each negation goes on the entry's own account (a network payout also credits the network back).
        target = account if entry.account_id == account.id else session.get(Account, entry.account_id)
        assert target is not None
        add_entry(
            session,
            target,
            kind,
            -entry.amount,
            on,
            allocation=allocation,
            funder=entry.funder,
            period_id=entry.period_id,
            payment_id=entry.payment_id,
            reverses=entry,
            note=reason[:500],
        )
        if entry.kind == LedgerKind.PAYMENT and entry.account_id == account.id:
            taken += entry.amount
    now = utcnow()
    for period in periods:
        period.reversed_at = now
    allocation.reversed_at = now
    allocation.reversal_reason = reason[:500]
    session.flush()
    return ReversalResult(
        allocation_id=allocation.id,
        source_ref=source_ref,
        account_id=account.id,
        amount=taken,
        entries=len(entries),
        periods=tuple(_funded(p) for p in periods),
        balance=account_state(session, account_id=account.id).balance,
        created=True,
    )


def reverse(session: Session, source_ref: str, reason: str, on: date) -> ReversalResult:
    """Undo exactly what the allocation of `source_ref` wrote (the operator took the money back)."""
    return _undo(session, source_ref, reason, on, LedgerKind.REVERSAL)


def refund(session: Session, source_ref: str, reason: str, on: date) -> ReversalResult:
    """Undo what the allocation of `source_ref` funded and record its money as refunded to the payer."""
    return _undo(session, source_ref, reason, on, LedgerKind.REFUND)


def network_payout_ref(run_ref: str, household_id: int) -> str:
    """Return the idempotency key of one household's share of a network payout run."""
    return f"{run_ref}:household:{household_id}"


def pay_network_households(
    session: Session, network_account: Account, on: date, run_ref: str
) -> list[AllocationResult]:
    """Pay the network's households' amounts due from its balance, soonest expiry first; return the payouts.

    Households never covered come first, then by the end of their last live period. Only whole amounts
    due are paid: a household the balance cannot pay in full is skipped, and what is left stays on the
    network account. Idempotent per `run_ref` and household.
    """
    if network_account.network_id is None:
        raise ValueError("not a network account")
    start_write(session)
    network_locked = lock_account(session, network_account.id)
    network = session.get(Network, network_locked.network_id)
    assert network is not None
    balance = account_state(session, account_id=network_locked.id).balance
    households = session.scalars(
        select(Household).where(Household.network_id == network.id).order_by(Household.id)
    ).all()

    ends = dict(
        session.execute(
            select(CoveragePeriod.household_id, func.max(CoveragePeriod.end_on))
            .join(Household, Household.id == CoveragePeriod.household_id)
            .where(Household.network_id == network.id, CoveragePeriod.reversed_at.is_(None))
            .group_by(CoveragePeriod.household_id)
        )
        .tuples()
        .all()
    )

    def expiry(household: Household) -> tuple[date, int]:
        return (ends.get(household.id) or date.min, household.id)

    ids = [household.id for household in households]
    accounts = {
        account.household_id: account
        for account in session.scalars(select(Account).where(Account.household_id.in_(ids)))
    }
    states = account_states(session, [account.id for account in accounts.values()])
    members = active_member_counts(session, ids, on)
    refs = {network_payout_ref(run_ref, household_id) for household_id in ids}
    done = set(session.scalars(select(Allocation.source_ref).where(Allocation.source_ref.in_(refs))))

    paid: list[AllocationResult] = []
    for household in sorted(households, key=expiry):
        if balance <= 0:
            break  # every amount due is positive: nothing more can be paid
        ref = network_payout_ref(run_ref, household.id)
        if ref in done:
            continue
        known = accounts.get(household.id)
        state = states.get(known.id) if known is not None else AccountState(balance=0, fee_paid=False)
        due = amount_due(session, household, on, state=state, members=members[household.id]).total
        if due <= 0 or due > balance:
            continue
        # Lock order network → household everywhere, so two payout runs never deadlock.
        account = lock_account(session, get_or_create_account(session, household=household).id)
        allocation, _ = _allocate_locked(session, account, due, ref, on, None)
        add_entry(
            session,
            network_locked,
            LedgerKind.CHARGE,
            -due,
            on,
            allocation=allocation,
            note=f"paid household {household.household_no}",
        )
        balance -= due
        paid.append(_result(session, allocation, account, True))
    return paid
