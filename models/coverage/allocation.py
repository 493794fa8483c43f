"""Applying money to an account, and taking it back: allocation, reversal, refund, network payouts.

Transactions: every function here starts the session's write transaction itself
(`models.db.begin_write`: BEGIN IMMEDIATE on SQLite) and locks the account row (`SELECT … FOR UPDATE`
on PostgreSQL) before reading anything it decides on. Call them on a session with no transaction in
progress (or one started with `begin_write`); on SQLite a transaction that already began as a reader is
refused with RuntimeError (`models.coverage.ledger.start_write`). They flush but never commit: the caller (the
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

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import LedgerKind, utcnow
from models.coverage.allocator import (
    AllocationResult,
    Allocator,
    FundedPeriod,
    find_allocation,
    funded_period,
    network_payout_ref,
    periods_of,
)
from models.coverage.ledger import account_state, add_entry, lock_account, start_write
from models.coverage.money import LedgerEntry
from models.coverage.periods import store_cover_ends
from models.members.household import Account

__all__ = [
    "AllocationResult",
    "FundedPeriod",
    "ReversalResult",
    "UnknownAllocation",
    "allocate",
    "network_payout_ref",
    "pay_network_households",
    "refund",
    "reverse",
]


class UnknownAllocation(LookupError):
    """No allocation has this source reference."""


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


def allocate(
    session: Session, account: Account, amount: int, source_ref: str, on: date, payment_id: int | None = None
) -> AllocationResult:
    """Apply money received on `on` to an account once per `source_ref`: fee, whole periods, then credit."""
    allocator = Allocator(session)
    planned = allocator.allocate(account, amount, source_ref, on, payment_id)
    allocator.write()
    return planned.result()


def pay_network_households(
    session: Session, network_account: Account, on: date, run_ref: str
) -> list[AllocationResult]:
    """Pay the network's households' amounts due from its balance, soonest expiry first; return the payouts.

    See `Allocator.pay_network`. Idempotent per `run_ref` and household.
    """
    allocator = Allocator(session)
    paid = allocator.pay_network(network_account, on, run_ref)
    allocator.write()
    return [planned.result() for planned in paid]


def _undo(session: Session, source_ref: str, reason: str, on: date, payment_kind: LedgerKind) -> ReversalResult:
    start_write(session)
    allocation = find_allocation(session, source_ref)
    if allocation is None:
        raise UnknownAllocation(source_ref)
    account = lock_account(session, allocation.account_id)
    # Read again under the lock: another worker may have reversed it while we waited.
    allocation = find_allocation(session, source_ref)
    assert allocation is not None
    periods = periods_of(session, allocation.id)
    if allocation.reversed_at is not None:
        return ReversalResult(
            allocation_id=allocation.id,
            source_ref=source_ref,
            account_id=account.id,
            amount=0,
            entries=0,
            periods=tuple(funded_period(p) for p in periods),
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
    store_cover_ends(session, [period.household_id for period in periods])
    return ReversalResult(
        allocation_id=allocation.id,
        source_ref=source_ref,
        account_id=account.id,
        amount=taken,
        entries=len(entries),
        periods=tuple(funded_period(p) for p in periods),
        balance=account_state(session, account_id=account.id).balance,
        created=True,
    )


def reverse(session: Session, source_ref: str, reason: str, on: date) -> ReversalResult:
    """Undo exactly what the allocation of `source_ref` wrote (the operator took the money back)."""
    return _undo(session, source_ref, reason, on, LedgerKind.REVERSAL)


def refund(session: Session, source_ref: str, reason: str, on: date) -> ReversalResult:
    """Undo what the allocation of `source_ref` funded and record its money as refunded to the payer."""
    return _undo(session, source_ref, reason, on, LedgerKind.REFUND)
