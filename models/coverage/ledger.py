"""The append-only ledger: accounts, entries and the balances derived from them.

Sign convention: a positive amount is in the account's favour (a payment, a subsidy), a negative
amount is owed or consumed (a period's charge, the membership fee, a refund paid out). The balance
is the SUM of the entries; the credit is the balance when positive. Entries are never updated or
deleted: a mistake is undone by a REVERSAL entry that points at the entry it negates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from models.base import LedgerKind
from models.bulk import among
from models.coverage.money import Allocation, CoveragePeriod, LedgerEntry
from models.db import begin_write, is_sqlite
from models.members.household import Account, Household, Network


@dataclass(frozen=True)
class AccountState:
    """An account's derived balance and whether its membership fee stands paid."""

    balance: int
    fee_paid: bool

    @property
    def credit(self) -> int:
        """Return the money available to fund periods (never negative)."""
        return max(0, self.balance)


def get_or_create_account(
    session: Session, *, household: Household | None = None, network: Network | None = None
) -> Account:
    """Return the account of a household or a network, creating it on first use."""
    if (household is None) == (network is None):
        raise ValueError("give exactly one of household or network")
    owner = household if household is not None else network
    assert owner is not None
    column = Account.household_id if household is not None else Account.network_id
    account = session.scalar(select(Account).where(column == owner.id))
    if account is not None:
        return account
    account = Account(
        scheme_id=owner.scheme_id,
        household_id=household.id if household is not None else None,
        network_id=network.id if network is not None else None,
        currency=owner.scheme.currency,
    )
    try:
        # A savepoint, so losing the race to another worker leaves the caller's transaction usable.
        with session.begin_nested():
            session.add(account)
    except IntegrityError:
        found = session.scalar(select(Account).where(column == owner.id))
        if found is None:
            raise
        return found
    return account


def start_write(session: Session) -> None:
    """Start the session's write transaction, refusing on SQLite one already begun as a reader.

    A deferred SQLite transaction that has read and then writes fails under concurrent writers
    (SQLITE_BUSY_SNAPSHOT), and it would not have held the write lock while deciding: the money
    functions must run in a transaction started by `models.db.begin_write`.
    """
    begin_write(session)
    bind = session.get_bind()
    if is_sqlite(bind.engine) and session.connection().get_execution_options().get("sqlite_begin") != "IMMEDIATE":
        raise RuntimeError("start this in a fresh transaction (models.db.begin_write), not one already reading")


def lock_account(session: Session, account_id: int) -> Account:
    """Lock the account row until the transaction ends (FOR UPDATE on PostgreSQL) and return it.

    SQLite has no row locks; there the caller's transaction must have been started with
    `models.db.begin_write` (BEGIN IMMEDIATE), which holds the database write lock instead.
    """
    account = session.scalar(
        select(Account).where(Account.id == account_id).with_for_update().execution_options(populate_existing=True)
    )
    if account is None:
        raise LookupError(f"no account {account_id}")
    return account


def add_entry(
    session: Session,
    account: Account,
    kind: LedgerKind,
    amount: int,
    on: date,
    *,
    allocation: Allocation | None = None,
    funder: str | None = None,
    period: CoveragePeriod | None = None,
    period_id: int | None = None,
    payment_id: int | None = None,
    reverses: LedgerEntry | None = None,
    note: str | None = None,
) -> LedgerEntry:
    """Append one entry to the account's ledger."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError("ledger amounts are integers of the currency's minor unit")
    entry = LedgerEntry(
        account_id=account.id,
        allocation_id=allocation.id if allocation is not None else None,
        kind=kind,
        amount=amount,
        currency=account.currency,
        funder=funder,
        period_id=period.id if period is not None else period_id,
        payment_id=payment_id,
        reverses_entry_id=reverses.id if reverses is not None else None,
        effective_on=on,
        note=note,
    )
    session.add(entry)
    session.flush()
    return entry


@functools.cache
def _fee_count() -> tuple[Any, Any]:
    """Return the alias of a reversed entry and the net fee count over entries joined to it.

    +1 per FEE entry, -1 per reversal of one: the fee stands paid while the net count is positive.
    Built once, so every balance query uses the same alias (and SQLAlchemy's statement cache).
    """
    reversed_entry = aliased(LedgerEntry)
    fee_count = case(
        (LedgerEntry.kind == LedgerKind.FEE, 1),
        ((LedgerEntry.kind == LedgerKind.REVERSAL) & (reversed_entry.kind == LedgerKind.FEE), -1),
        else_=0,
    )
    return reversed_entry, fee_count


def net_fee_count() -> tuple[Any, Any]:
    """Return the alias of the entry a reversal reverses and an entry's part of the net fee count, joined to it.

    +1 for a FEE entry, -1 for the reversal of one: the fee stands paid while their sum is positive (`account_state`).
    """
    return _fee_count()


def household_account_columns(household_id: Any) -> tuple[Any, Any]:
    """Return correlated scalar subqueries (balance, net fee count) of a household's account, for a larger select.

    The same sums as `account_state`, so a caller can read them in the statement that loads the household.
    """
    reversed_entry, fee_count = _fee_count()
    entries = (
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .join(Account, Account.id == LedgerEntry.account_id)
        .where(Account.household_id == household_id)
    )
    fees = (
        select(func.coalesce(func.sum(fee_count), 0))
        .select_from(LedgerEntry)
        .outerjoin(reversed_entry, LedgerEntry.reverses_entry_id == reversed_entry.id)
        .join(Account, Account.id == LedgerEntry.account_id)
        .where(Account.household_id == household_id)
    )
    return entries.scalar_subquery(), fees.scalar_subquery()


def account_state(session: Session, *, account_id: int | None = None, household_id: int | None = None) -> AccountState:
    """Return the balance and fee state of an account (by id, or by its household) in one query."""
    reversed_entry, fee_count = _fee_count()
    query = select(func.coalesce(func.sum(LedgerEntry.amount), 0), func.coalesce(func.sum(fee_count), 0)).outerjoin(
        reversed_entry, LedgerEntry.reverses_entry_id == reversed_entry.id
    )
    if account_id is not None:
        query = query.where(LedgerEntry.account_id == account_id)
    elif household_id is not None:
        query = query.join(Account, Account.id == LedgerEntry.account_id).where(Account.household_id == household_id)
    else:
        raise ValueError("give account_id or household_id")
    row = session.execute(query).one()
    return AccountState(balance=int(row[0]), fee_paid=int(row[1]) > 0)


@functools.cache
def _entry_fee_count() -> Any:
    """Return `_fee_count` as one expression over an entry: a reversal looks up the entry it reverses by itself.

    For many accounts at once: no join to every entry of the ledger (PostgreSQL hashes the whole table for it),
    one primary-key lookup per reversal instead.
    """
    reversed_entry = aliased(LedgerEntry)
    reversed_kind = select(reversed_entry.kind).where(reversed_entry.id == LedgerEntry.reverses_entry_id)
    return case(
        (LedgerEntry.kind == LedgerKind.FEE, 1),
        (
            LedgerEntry.kind == LedgerKind.REVERSAL,
            case((reversed_kind.scalar_subquery() == LedgerKind.FEE, -1), else_=0),
        ),
        else_=0,
    )


def account_states(session: Session, account_ids: list[int]) -> dict[int, AccountState]:
    """Return the balance and fee state of each of these accounts (one query)."""
    rows = session.execute(
        select(LedgerEntry.account_id, func.sum(LedgerEntry.amount), func.sum(_entry_fee_count()))
        .where(among(session, LedgerEntry.account_id, account_ids))
        .group_by(LedgerEntry.account_id)
    )
    states = dict.fromkeys(account_ids, AccountState(balance=0, fee_paid=False))
    states.update({account_id: AccountState(int(total), int(fees) > 0) for account_id, total, fees in rows})
    return states


def account_balance(session: Session, account_id: int) -> int:
    """Return the account's balance: the sum of its entries."""
    return account_state(session, account_id=account_id).balance


def account_credit(session: Session, account_id: int) -> int:
    """Return the account's credit: its balance when positive, else 0."""
    return account_state(session, account_id=account_id).credit


def account_entries(session: Session, account_id: int) -> list[LedgerEntry]:
    """Return the account's entries in the order they were written."""
    query = select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id)
    return list(session.scalars(query))
