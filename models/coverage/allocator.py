"""The set-based allocator: plan many allocations from state loaded once, then write them in a few inserts.

An `Allocator` belongs to one write transaction. `load` locks the accounts it will touch — network accounts
first, then household accounts, each in id order, in two statements, so two allocators (or a network payout
run and a household payment) never deadlock — and reads what the rules decide on for all of them in a few
queries: balances and fee state, the last live period of each household, its active members, and which
source references are already allocated. `allocate` and `pay_network` then plan in memory, in call order,
each one seeing what the earlier ones planned (the account books are updated as they go), exactly as if
each had been written before the next was decided. `write` inserts the planned allocations, periods and
ledger entries: one `COPY` per table, whatever the number of payments.

The same code serves a single allocation (`models.coverage.allocation.allocate` is an allocator of one) and the
reconcile worker's batches, so there is one implementation of the rules that turn money into cover.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from dateutil.relativedelta import relativedelta
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from models.base import HouseholdStatus, LedgerKind, MemberStatus
from models.bulk import among, insert_many, insert_rows, table_of
from models.coverage.ledger import (
    AccountState,
    account_state,
    account_states,
    get_or_create_account,
    lock_account,
    start_write,
)
from models.coverage.money import Allocation, CoveragePeriod, LedgerEntry
from models.coverage.periods import PeriodDates, PeriodEnd, plan_funding, store_cover_ends
from models.coverage.premiums import AmountDue, PeriodPrice, amount_due
from models.members.household import Account, Household, Member, Network, is_active_member
from models.schemes.scheme import Scheme


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


def funded_period(period: CoveragePeriod) -> FundedPeriod:
    """Return a stored coverage period as a result."""
    return FundedPeriod(
        period_id=period.id,
        start_on=period.start_on,
        end_on=period.end_on,
        waiting_until=period.waiting_until,
        price=period.price,
        household_share=period.household_share,
        subsidy=period.subsidy_amount,
    )


def periods_of(session: Session, allocation_id: int) -> list[CoveragePeriod]:
    """Return the coverage periods an allocation funded, in date order."""
    query = select(CoveragePeriod).where(CoveragePeriod.allocation_id == allocation_id)
    return list(session.scalars(query.order_by(CoveragePeriod.start_on)))


def find_allocation(session: Session, source_ref: str) -> Allocation | None:
    """Return the allocation of a source reference as stored now (not a stale copy), if any."""
    query = select(Allocation).where(Allocation.source_ref == source_ref)
    return session.scalar(query.execution_options(populate_existing=True))


def falls_due(scheme: Scheme, last: PeriodEnd | None, on: date) -> bool:
    """Return whether a network pays a household's next period on `on`: nothing covers it beyond the reminder
    window (its cover is missing, or ends within the scheme's longest reminder), and that period would start
    within the advance cap."""
    if last is None or last.end_on < on:
        return True
    window = max(scheme.reminder_day_list() or [0])
    cap = on + relativedelta(months=scheme.max_advance_months)
    return last.end_on <= on + timedelta(days=window) and last.end_on + timedelta(days=1) <= cap


def network_payout_ref(run_ref: str, household_id: int) -> str:
    """Return the idempotency key of one household's share of a network payout run."""
    return f"{run_ref}:household:{household_id}"


@dataclass(frozen=True)
class AccountRef:
    """What the allocator needs of a locked account row (read as a plain row: a batch locks thousands)."""

    id: int
    currency: str
    household_id: int | None
    network_id: int | None

    @classmethod
    def of(cls, account: Account | AccountRef) -> AccountRef:
        """Return the reference of an account (ORM object or reference)."""
        if isinstance(account, AccountRef):
            return account
        return cls(account.id, account.currency, account.household_id, account.network_id)


AnyAccount = Account | AccountRef


@dataclass
class Book:
    """One owner's account as the batch sees it: the ledger's state plus what the batch has planned on it."""

    household: Household | None
    network: Network | None
    account: AccountRef | None  # locked; None until money first reaches an owner without an account
    balance: int = 0
    fee_paid: bool = False
    last: PeriodEnd | None = None  # the live period that ends last (households)
    members: list[tuple[MemberStatus, date | None]] = field(default_factory=list)  # (status, left_on) per member

    @property
    def state(self) -> AccountState:
        """Return the account state with the batch's plans applied."""
        return AccountState(balance=self.balance, fee_paid=self.fee_paid)

    def members_on(self, on: date) -> int:
        """Return how many members count for the premium on `on` (`is_active_member`)."""
        return sum(1 for status, left_on in self.members if is_active_member(status, left_on, on))


@dataclass
class PlannedPeriod:
    """A coverage period waiting to be written."""

    household_id: int
    dates: PeriodDates
    price: PeriodPrice
    id: int | None = None

    def funded(self) -> FundedPeriod:
        """Return the written period as a result."""
        assert self.id is not None, "write() first"
        return FundedPeriod(
            period_id=self.id,
            start_on=self.dates.start_on,
            end_on=self.dates.end_on,
            waiting_until=self.dates.waiting_until,
            price=self.price.price,
            household_share=self.price.household_share,
            subsidy=self.price.subsidy,
        )


@dataclass
class PlannedEntry:
    """A ledger entry waiting to be written (its allocation's and period's ids come at write time)."""

    account: AccountRef
    kind: LedgerKind
    amount: int
    period: PlannedPeriod | None = None
    funder: str | None = None
    payment_id: int | None = None
    note: str | None = None


@dataclass
class PlannedAllocation:
    """An allocation as planned (or found already written): what it funds and the balance it leaves."""

    source_ref: str
    account: AccountRef
    amount: int
    on: date
    payment_id: int | None
    fee: int = 0
    balance: int = 0
    planned_periods: list[PlannedPeriod] = field(default_factory=list)
    entries: list[PlannedEntry] = field(default_factory=list)
    created: bool = True
    reversed: bool = False
    id: int | None = None
    written_periods: tuple[FundedPeriod, ...] = ()  # an allocation found already written

    @property
    def credit(self) -> int:
        """Return the account's credit after this allocation."""
        return max(0, self.balance)

    @property
    def covered_until(self) -> date | None:
        """Return the end of the last period this allocation funded (known before it is written)."""
        if self.planned_periods:
            return self.planned_periods[-1].dates.end_on
        return self.written_periods[-1].end_on if self.written_periods else None

    @property
    def period_count(self) -> int:
        """Return how many periods this allocation funded."""
        return len(self.planned_periods) or len(self.written_periods)

    def result(self) -> AllocationResult:
        """Return the written allocation as a result."""
        assert self.id is not None, "write() first"
        periods = tuple(p.funded() for p in self.planned_periods) if self.created else self.written_periods
        return AllocationResult(
            allocation_id=self.id,
            source_ref=self.source_ref,
            account_id=self.account.id,
            household_id=self.account.household_id,
            network_id=self.account.network_id,
            amount=self.amount,
            currency=self.account.currency,
            fee=self.fee,
            periods=periods,
            balance=self.balance,
            credit=self.credit,
            created=self.created,
            reversed=self.reversed,
        )


@dataclass(frozen=True)
class Busy:
    """Owners whose accounts another transaction holds (see `Allocator.load(skip_locked=True)`)."""

    households: set[int] = field(default_factory=set)
    networks: set[int] = field(default_factory=set)

    def holds(self, household: Household | None, network: Network | None) -> bool:
        """Return whether this owner is busy."""
        if network is not None:
            return network.id in self.networks
        return household is not None and household.id in self.households


class Allocator:
    """Plan allocations and network payouts on locked accounts in memory; write them all at once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.households: dict[int, Book] = {}
        self.networks: dict[int, Book] = {}
        self.network_members: dict[int, list[Household]] = {}
        self.written_refs: set[str] = set()  # allocated before this batch
        self.checked_refs: set[str] = set()  # looked up already (written or not)
        self.pending: list[PlannedAllocation] = []
        self.pending_refs: dict[str, PlannedAllocation] = {}

    # Loading -----------------------------------------------------------------------------------------------

    def load(
        self,
        households: Iterable[Household] = (),
        networks: Iterable[Network] = (),
        refs: Iterable[str] = (),
        skip_locked: bool = False,
    ) -> Busy:
        """Lock and read the accounts of these owners (and of every household of these networks) in a few queries.

        `refs`: source references the batch will allocate, looked up at once for idempotency.
        `skip_locked`: do not wait for accounts another transaction holds (`FOR UPDATE SKIP LOCKED`); their owners
        are returned as busy and get no book — a network is busy when its account or one of its households' is —
        so the caller can leave their payments for a later run instead of waiting with locks held.
        """
        start_write(self.session)
        new_networks = {n.id: n for n in networks if n.id not in self.networks}
        wanted = {h.id: h for h in households if h.id not in self.households}
        if new_networks:
            members = self.session.scalars(
                select(Household).where(among(self.session, Household.network_id, new_networks)).order_by(Household.id)
            ).all()
            for network_id in new_networks:
                self.network_members[network_id] = []
            for household in members:
                assert household.network_id is not None
                self.network_members[household.network_id].append(household)
                if household.id not in self.households:
                    wanted[household.id] = household
        accounts: list[AccountRef] = []
        if new_networks:  # networks before households, each in id order: the lock order everywhere
            accounts += self._lock(among(self.session, Account.network_id, new_networks), skip_locked)
        if wanted:
            accounts += self._lock(among(self.session, Account.household_id, wanted), skip_locked)
        busy = self._busy(accounts, new_networks, wanted) if skip_locked else Busy()
        by_owner = {(a.household_id, a.network_id): a for a in accounts}
        states = account_states(self.session, [a.id for a in accounts]) if accounts else {}

        def book(household: Household | None, network: Network | None) -> Book:
            key = (household.id if household else None, network.id if network else None)
            account = by_owner.get(key)
            state = states.get(account.id) if account is not None else None
            if state is None:
                return Book(household, network, account)
            return Book(household, network, account, balance=state.balance, fee_paid=state.fee_paid)

        for network in new_networks.values():
            if network.id not in busy.networks:
                self.networks[network.id] = book(None, network)
        free = [household for household in wanted.values() if household.id not in busy.households]
        for household in free:
            self.households[household.id] = book(household, None)
        if free:
            self._load_periods_and_members([household.id for household in free])
        self._check_refs(refs)
        return busy

    def _lock(self, owner_clause: ColumnElement[bool], skip_locked: bool = False) -> list[AccountRef]:
        columns = select(Account.id, Account.currency, Account.household_id, Account.network_id)
        query = columns.where(owner_clause).order_by(Account.id).with_for_update(of=Account, skip_locked=skip_locked)
        return [AccountRef(*row) for row in self.session.execute(query)]

    def _busy(self, locked: list[AccountRef], networks: dict[int, Network], households: dict[int, Household]) -> Busy:
        """Return the owners whose account exists but was not locked (another transaction holds it)."""
        got = {(a.household_id, a.network_id) for a in locked}
        missing_networks = [n for n in networks if (None, n) not in got]
        missing_households = [h for h in households if (h, None) not in got]
        owners = among(self.session, Account.network_id, missing_networks) if missing_networks else None
        if missing_households:
            held = among(self.session, Account.household_id, missing_households)
            owners = held if owners is None else owners | held
        if owners is None:
            return Busy()
        # Among the owners with no locked account, those that have one: another transaction holds it.
        taken = set(self.session.execute(select(Account.household_id, Account.network_id).where(owners)).tuples())
        busy_households = {household_id for household_id, _ in taken if household_id is not None}
        busy_networks = {network_id for _, network_id in taken if network_id is not None}
        for network_id in networks:
            if any(h.id in busy_households for h in self.network_members[network_id]):
                busy_networks.add(network_id)
        return Busy(households=busy_households, networks=busy_networks)

    def _load_periods_and_members(self, household_ids: list[int]) -> None:
        rows = self.session.execute(
            select(CoveragePeriod.household_id, CoveragePeriod.end_on, CoveragePeriod.waiting_until).where(
                among(self.session, CoveragePeriod.household_id, household_ids), CoveragePeriod.reversed_at.is_(None)
            )
        )
        for household_id, end_on, waiting_until in rows:
            book = self.households[household_id]
            if book.last is None or end_on > book.last.end_on:
                book.last = _Last(end_on, waiting_until)
        members = self.session.execute(
            select(Member.household_id, Member.status, Member.left_on, func.count())
            .where(among(self.session, Member.household_id, household_ids))
            .group_by(Member.household_id, Member.status, Member.left_on)
        )
        for household_id, status, left_on, count in members:
            self.households[household_id].members.extend([(status, left_on)] * count)

    def _check_refs(self, refs: Iterable[str]) -> None:
        todo = set(refs) - self.checked_refs
        if todo:
            found = self.session.scalars(
                select(Allocation.source_ref).where(among(self.session, Allocation.source_ref, todo))
            )
            self.written_refs.update(found)
            self.checked_refs |= todo

    def _book(self, account: AnyAccount) -> Book:
        """Return the book of a (locked) account, loading it on first use."""
        if account.household_id is not None:
            household = self.session.get(Household, account.household_id)
            assert household is not None
            book = self._owner_book(household=household)
        else:
            network = self.session.get(Network, account.network_id)
            assert network is not None
            book = self._owner_book(network=network)
        if book.account is None:  # created since `load` (by `get_or_create_account`): lock and read it
            self._open_account(book, account)
        return book

    def _open_account(self, book: Book, account: AnyAccount | None = None) -> AccountRef:
        """Give an owner loaded without an account its (locked) account, reading the state of one found."""
        if account is None:
            account = get_or_create_account(self.session, household=book.household, network=book.network)
        locked = AccountRef.of(lock_account(self.session, account.id))
        state = account_state(self.session, account_id=locked.id)
        book.account, book.balance, book.fee_paid = locked, state.balance, state.fee_paid
        return locked

    # Planning ----------------------------------------------------------------------------------------------

    def allocate(
        self, account: AnyAccount, amount: int, source_ref: str, on: date, payment_id: int | None = None
    ) -> PlannedAllocation:
        """Plan money received on `on` onto an account once per `source_ref`: fee, whole periods, then credit.

        A household's credit funds its fee and periods at once; a network's money stays on its account until
        `pay_network` pays its households.
        """
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise ValueError("an allocation is a positive integer amount")
        start_write(self.session)
        book = self._book(account)
        assert book.account is not None
        existing = self._existing(source_ref, book)
        if existing is not None:
            return existing
        return self._plan(book, amount, source_ref, on, payment_id)

    def _existing(self, source_ref: str, book: Book) -> PlannedAllocation | None:
        assert book.account is not None
        planned = self.pending_refs.get(source_ref)
        if planned is None:
            self._check_refs([source_ref])
            if source_ref not in self.written_refs:
                return None
            written = find_allocation(self.session, source_ref)
            assert written is not None
            planned = _from_written(self.session, written, book)
        if planned.account.id != book.account.id:
            raise ValueError(f"{source_ref} was already allocated to another account")
        return planned

    def _plan(self, book: Book, amount: int, source_ref: str, on: date, payment_id: int | None) -> PlannedAllocation:
        assert book.account is not None
        planned = PlannedAllocation(source_ref, book.account, amount, on, payment_id)
        planned.entries.append(PlannedEntry(book.account, LedgerKind.PAYMENT, amount, payment_id=payment_id))
        book.balance += amount
        if book.household is not None:
            self._fund(book, planned, on)
        planned.balance = book.balance
        self.pending.append(planned)
        self.pending_refs[source_ref] = planned
        return planned

    def _fund(self, book: Book, planned: PlannedAllocation, on: date) -> None:
        """Spend the household's credit (the rules of `plan_funding`) and record it on the book."""
        assert book.household is not None and book.account is not None
        funding = plan_funding(
            self.session, book.household, book.balance, book.fee_paid, book.last, book.members_on(on), on
        )
        if funding.fee:
            planned.fee = funding.fee
            planned.entries.append(PlannedEntry(book.account, LedgerKind.FEE, -funding.fee))
            book.balance -= funding.fee
            book.fee_paid = True
        price = funding.price
        for dates in funding.periods:
            assert price is not None
            period = PlannedPeriod(book.household.id, dates, price)
            planned.planned_periods.append(period)
            planned.entries.append(PlannedEntry(book.account, LedgerKind.CHARGE, -price.price, period=period))
            if price.subsidy:
                # The funder's share becomes a receivable at the moment the household's share is paid.
                planned.entries.append(
                    PlannedEntry(book.account, LedgerKind.SUBSIDY, price.subsidy, period=period, funder=price.funder)
                )
            book.balance -= price.household_share
            book.last = dates

    def pay_network(self, network_account: AnyAccount, on: date, run_ref: str) -> list[PlannedAllocation]:
        """Plan paying the network's households from its balance, soonest expiry first.

        What each is paid follows its amount due: a household not covered (never paid, in grace, lapsed) gets
        what it must pay now; a covered one gets its next period only once its cover ends within the reminder
        window (the scheme's longest reminder, 14 days by default), never beyond the advance cap; a suspended
        or closed household, or a fully subsidised one, gets nothing. Households never covered come first,
        then by the end of their last live period. Only whole amounts are paid: a household the balance cannot
        pay in full is skipped, and what is left stays on the network account (the clock pays households
        from it as they fall due). Idempotent per `run_ref` and household.
        """
        if network_account.network_id is None:
            raise ValueError("not a network account")
        start_write(self.session)
        network_book = self._book(network_account)
        assert network_book.account is not None
        households = self.network_members[network_account.network_id]
        if run_ref not in self.pending_refs:  # a run planned here is new: its payouts cannot exist yet
            self._check_refs(network_payout_ref(run_ref, h.id) for h in households)

        def expiry(household: Household) -> tuple[date, int]:
            last = self.households[household.id].last
            return (last.end_on if last is not None else date.min, household.id)

        paid: list[PlannedAllocation] = []
        for household in sorted(households, key=expiry):
            if network_book.balance <= 0:
                break  # every amount due is positive: nothing more can be paid
            ref = network_payout_ref(run_ref, household.id)
            if ref in self.written_refs or ref in self.pending_refs:
                continue
            book = self.households[household.id]
            if household.status != HouseholdStatus.ACTIVE or not falls_due(household.scheme, book.last, on):
                continue
            due = self.amount_due(household, on).total
            if due <= 0 or due > network_book.balance:
                continue
            if book.account is None:
                self._open_account(book)
            planned = self._plan(book, due, ref, on, None)
            note = f"paid household {household.household_no}"
            planned.entries.append(PlannedEntry(network_book.account, LedgerKind.CHARGE, -due, note=note))
            network_book.balance -= due
            paid.append(planned)
        return paid

    def account(self, *, household: Household | None = None, network: Network | None = None) -> AccountRef:
        """Return the locked account of a household or network, loading it (or creating it) on first use."""
        book = self._owner_book(household=household, network=network)
        return book.account if book.account is not None else self._open_account(book)

    def _owner_book(self, *, household: Household | None = None, network: Network | None = None) -> Book:
        """Return the book of a household or network, locking and reading it on first use."""
        if household is not None:
            if household.id not in self.households:
                self.load(households=[household])
            return self.households[household.id]
        assert network is not None
        if network.id not in self.networks:
            self.load(networks=[network])
        return self.networks[network.id]

    # Reading the plan --------------------------------------------------------------------------------------

    def balance(self, account: AnyAccount) -> int:
        """Return the account's balance with everything planned so far."""
        return self._book(account).balance

    def amount_due(self, household: Household, on: date) -> AmountDue:
        """Return the household's amount due on `on` with everything planned so far."""
        book = self._owner_book(household=household)
        return amount_due(self.session, household, on, state=book.state, members=book.members_on(on))

    def covered_until(self, household: Household) -> date | None:
        """Return the end of the household's last live period, planned ones included."""
        last = self._owner_book(household=household).last
        return last.end_on if last is not None else None

    def waiting_until(self, household: Household) -> date | None:
        """Return the last day of waiting of the household's last live period (planned ones included), if any."""
        last = self._owner_book(household=household).last
        return last.waiting_until if last is not None else None

    # Writing -----------------------------------------------------------------------------------------------

    def write(self) -> None:
        """Insert everything planned: allocations, then periods, then entries (one `COPY` each, `models.bulk`)."""
        planned = [p for p in self.pending if p.id is None]
        if not planned:
            return
        allocations = insert_rows(
            self.session,
            table_of(Allocation),
            [
                {
                    "source_ref": p.source_ref,
                    "account_id": p.account.id,
                    "amount": p.amount,
                    "currency": p.account.currency,
                    "effective_on": p.on,
                    "payment_id": p.payment_id,
                }
                for p in planned
            ],
        )
        for p, allocation_id in zip(planned, allocations, strict=True):
            p.id = allocation_id
        periods = [(p, period) for p in planned for period in p.planned_periods]
        if periods:
            ids = insert_rows(
                self.session,
                table_of(CoveragePeriod),
                [
                    {
                        "household_id": period.household_id,
                        "allocation_id": p.id,
                        "plan": period.price.plan,
                        "months": period.price.months,
                        "start_on": period.dates.start_on,
                        "end_on": period.dates.end_on,
                        "waiting_until": period.dates.waiting_until,
                        "price": period.price.price,
                        "household_share": period.price.household_share,
                        "subsidy_amount": period.price.subsidy,
                        "funder": period.price.funder,
                    }
                    for p, period in periods
                ],
            )
            for (_, period), period_id in zip(periods, ids, strict=True):
                period.id = period_id
            store_cover_ends(self.session, [period.household_id for _, period in periods])
        entries = [
            {
                "account_id": e.account.id,
                "allocation_id": p.id,
                "kind": e.kind,
                "amount": e.amount,
                "currency": e.account.currency,
                "funder": e.funder,
                "period_id": e.period.id if e.period is not None else None,
                "payment_id": e.payment_id,
                "reverses_entry_id": None,
                "effective_on": p.on,
                "note": e.note,
            }
            for p in planned
            for e in p.entries
        ]
        insert_many(self.session, table_of(LedgerEntry), entries)


@dataclass(frozen=True)
class _Last:
    """The end of a stored live period (all the next period's dates depend on)."""

    end_on: date
    waiting_until: date | None


def _from_written(session: Session, allocation: Allocation, book: Book) -> PlannedAllocation:
    """Return an allocation written before this batch as a result (nothing is planned for it)."""
    periods = periods_of(session, allocation.id)
    fee = -sum(
        entry.amount
        for entry in session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.allocation_id == allocation.id,
                LedgerEntry.kind == LedgerKind.FEE,
                LedgerEntry.account_id == allocation.account_id,
            )
        )
    )
    account = session.get(Account, allocation.account_id)
    assert account is not None
    return PlannedAllocation(
        source_ref=allocation.source_ref,
        account=AccountRef.of(account),
        amount=allocation.amount,
        on=allocation.effective_on,
        payment_id=allocation.payment_id,
        fee=fee,
        balance=book.balance,
        created=False,
        reversed=allocation.reversed_at is not None,
        id=allocation.id,
        written_periods=tuple(funded_period(p) for p in periods),
    )
