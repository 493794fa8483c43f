"""A network's own money: what it collected on its account, what it paid for its members, its balance and savings.

A network account (`models.coverage.ledger`) holds four kinds of entries, and nothing else writes to it:

- a network payment: a PAYMENT entry (+), taken back by a REVERSAL or REFUND of it (−);
- a payout to a member household (`Allocator.pay_network`): a CHARGE entry (−) whose allocation is the household's,
  undone by a REVERSAL of it (+) when that payout is reversed.

Over a window of days (a campaign's, or all time) up to a day `until`, by the entries' effective day:

- **collected**: the network payments received in the window (count, amount), and those taken back in the window
  (reversed or refunded, count, amount); collected = received − taken back;
- **paid for members**: the payouts made in the window and not reversed by `until`: how many households, how many
  coverage periods they funded, the amount;
- **balance**: the sum of the account's entries effective by `until` (today: the balance now);
- **saved**: what the network has put on its account and kept for itself or its members, from its first entry to
  `until` whatever the window: the balance plus everything it paid for its members and did not take back (= every
  network payment not taken back). A savings target counts the stock, not a window's flow;
- **savings target**: where the scheme sets a share of the grant (`[networks] savings_share_of_grant`,
  `Scheme.network_savings_bp`) and the network's grant is recorded: grant × share, rounded to the unit.

The figures are one grouped ORM statement over the networks' accounts, so a reader kept to some mutuelles sees
only their networks'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import ColumnElement, and_, case, exists, func, select
from sqlalchemy.orm import Session, aliased

from models.base import LedgerKind
from models.bulk import among
from models.coverage.money import Allocation, CoveragePeriod, LedgerEntry
from models.members.household import Account, Network

BASIS_POINTS = 10_000
TAKEN_BACK = (LedgerKind.REVERSAL, LedgerKind.REFUND)


@dataclass(frozen=True)
class Flow:
    """How many movements and their total (a positive amount of the scheme's currency)."""

    count: int = 0
    amount: int = 0


@dataclass(frozen=True)
class NetworkMoney:
    """A network's money over a window up to a day: collected, paid for members, balance, savings vs target."""

    network_id: int
    code: str
    name: str
    commune: str | None
    currency: str
    since: date | None  # None: from the first entry
    until: date
    received: Flow
    taken_back: Flow
    paid_households: int
    paid_periods: int
    paid_amount: int
    balance: int
    saved: int
    grant_amount: int | None
    grant_on: date | None
    savings_bp: int | None  # the scheme's share of the grant to save; None: no savings target
    balance_now: int = 0  # every entry of the account, whatever its day (the dossier's running balance starts there)

    @property
    def collected(self) -> int:
        """Return the network payments received in the window less those taken back."""
        return self.received.amount - self.taken_back.amount

    @property
    def target(self) -> int | None:
        """Return the savings target (grant × the scheme's share), or None without a grant or a share."""
        return savings_target(self.grant_amount, self.savings_bp)

    def saved_percent(self) -> float | None:
        """Return what is saved as a percentage of the target (None without one)."""
        target = self.target
        return None if not target else 100.0 * self.saved / target


def savings_target(grant: int | None, share_bp: int | None) -> int | None:
    """Return grant × share (basis points), rounded half up to the unit; None when either is missing."""
    if not grant or not share_bp:
        return None
    return (grant * share_bp + BASIS_POINTS // 2) // BASIS_POINTS


def network_money(session: Session, network: Network, until: date, since: date | None = None) -> NetworkMoney:
    """Return one network's money from `since` (None: all time) to `until`."""
    return networks_money(session, [network], until, since)[network.id]


def networks_money(
    session: Session, networks: Iterable[Network], until: date, since: date | None = None
) -> dict[int, NetworkMoney]:
    """Return each network's money from `since` (None: all time) to `until`, by network id (one grouped statement)."""
    wanted = {n.id: n for n in networks}
    if not wanted:
        return {}
    reversed_entry, reversal, household_account = aliased(LedgerEntry), aliased(LedgerEntry), aliased(Account)
    in_window: ColumnElement[bool] = LedgerEntry.effective_on <= until
    if since is not None:
        in_window = and_(LedgerEntry.effective_on >= since, in_window)
    by_until = LedgerEntry.effective_on <= until
    received = and_(in_window, LedgerEntry.kind == LedgerKind.PAYMENT)
    taken_back = and_(in_window, LedgerEntry.kind.in_(TAKEN_BACK), reversed_entry.kind == LedgerKind.PAYMENT)
    payouts_net = and_(
        by_until,
        (LedgerEntry.kind == LedgerKind.CHARGE)
        | (LedgerEntry.kind.in_(TAKEN_BACK) & (reversed_entry.kind == LedgerKind.CHARGE)),
    )
    # A payout to a household in the window that no reversal effective by `until` undid.
    paid = and_(
        in_window,
        LedgerEntry.kind == LedgerKind.CHARGE,
        ~exists().where(reversal.reverses_entry_id == LedgerEntry.id, reversal.effective_on <= until),
    )
    periods = (
        select(func.count())
        .select_from(CoveragePeriod)
        .where(CoveragePeriod.allocation_id == LedgerEntry.allocation_id)
        .scalar_subquery()
    )

    def total(condition: ColumnElement[bool], value: object) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, value), else_=0)), 0)

    rows = session.execute(
        select(
            Account.network_id,
            total(received, 1),
            total(received, LedgerEntry.amount),
            total(taken_back, 1),
            total(taken_back, -LedgerEntry.amount),
            func.count(func.distinct(case((paid, household_account.household_id)))),
            total(paid, periods),
            total(paid, -LedgerEntry.amount),
            total(by_until, LedgerEntry.amount),
            total(payouts_net, LedgerEntry.amount),
            func.coalesce(func.sum(LedgerEntry.amount), 0),
        )
        .select_from(LedgerEntry)
        .join(Account, Account.id == LedgerEntry.account_id)
        .outerjoin(reversed_entry, reversed_entry.id == LedgerEntry.reverses_entry_id)
        .outerjoin(Allocation, Allocation.id == LedgerEntry.allocation_id)
        .outerjoin(household_account, household_account.id == Allocation.account_id)
        .where(among(session, Account.network_id, list(wanted)))
        .group_by(Account.network_id)
    )
    sums = {network_id: [int(v) for v in values] for network_id, *values in rows}
    result: dict[int, NetworkMoney] = {}
    for network_id, network in wanted.items():
        figures = sums.get(network_id, [0] * 10)
        n_in, a_in, n_back, a_back, households, n_periods, a_paid, balance, payouts, now = figures
        result[network_id] = NetworkMoney(
            network_id=network_id,
            code=network.code,
            name=network.name,
            commune=network.commune,
            currency=network.scheme.currency,
            since=since,
            until=until,
            received=Flow(n_in, a_in),
            taken_back=Flow(n_back, a_back),
            paid_households=households,
            paid_periods=n_periods,
            paid_amount=a_paid,
            balance=balance,
            saved=balance - payouts,
            grant_amount=network.grant_amount,
            grant_on=network.grant_on,
            savings_bp=network.scheme.network_savings_bp,
            balance_now=now,
        )
    return result


@dataclass(frozen=True)
class MoneyTotal:
    """Several networks' money added up (a commune's, a campaign's): targets only of the networks that have one."""

    received: Flow
    taken_back: Flow
    paid_households: int
    paid_periods: int
    paid_amount: int
    balance: int
    saved: int
    grant_amount: int
    target: int | None  # None: none of them has a savings target
    saved_toward_target: int  # what the networks with a target saved

    @property
    def collected(self) -> int:
        """Return the network payments received less those taken back."""
        return self.received.amount - self.taken_back.amount

    def saved_percent(self) -> float | None:
        """Return what the networks with a target saved as a percentage of their targets (None without any)."""
        return None if not self.target else 100.0 * self.saved_toward_target / self.target


def add_up(items: Iterable[NetworkMoney]) -> MoneyTotal:
    """Return the sum of several networks' money."""
    items = list(items)
    targeted = [m for m in items if m.target]
    return MoneyTotal(
        received=Flow(sum(m.received.count for m in items), sum(m.received.amount for m in items)),
        taken_back=Flow(sum(m.taken_back.count for m in items), sum(m.taken_back.amount for m in items)),
        paid_households=sum(m.paid_households for m in items),
        paid_periods=sum(m.paid_periods for m in items),
        paid_amount=sum(m.paid_amount for m in items),
        balance=sum(m.balance for m in items),
        saved=sum(m.saved for m in items),
        grant_amount=sum(m.grant_amount or 0 for m in items),
        target=sum(m.target or 0 for m in targeted) if targeted else None,
        saved_toward_target=sum(m.saved for m in targeted),
    )
