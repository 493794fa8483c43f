"""Reconciliation of one payment: match it to a household or network, then allocate it and send the receipt.

Matching (SPEC "Matching" as changed after the first release; docs/matching.md has the table): signals must
agree, and when they do not the payment waits in suspense naming the candidates — never on a wrong account.
- `request_reference` (100): a payment-request reference with a valid check digit of an open request decides alone;
- a household or member number in the account reference is corroborated by the other signals:
  `account_number` (90) when the payer's phone is registered to that household, `account_number_amount` (80) when
  the phone says nothing (absent, masked, hashed or registered to no household), the amount fits the household and
  no household one keying slip away (a digit changed, two adjacent swapped, one dropped or added) fits it too;
  `account_number_history` (85) when the phone is registered nowhere but this payer paid this household, and only
  it, before by a vouching rule (a relative who pays every month);
  a payer phone registered to another household, several households named, or a slip-neighbour that fits → suspense;
- `account_number` / `network_name` (90): a network's code, or its name as enrolled or an alias (case-, accent-,
  spacing-insensitive);
- `request_phone_amount` (70): exactly one open request has the payer's phone and the payment's amount;
- `network_phone` (60): the payer is the contact of exactly one network (and no member, or pays more than a
  household could);
- `payer_phone` (50): the payer's phone belongs to active members of exactly one household and the amount is at
  most what the household may pay (fee, arrears and whole periods up to the advance cap, less its credit);
otherwise UNMATCHED (suspense) with the reason and the ranked candidates. The evidence used goes into the
ReconciliationEvent's details. A payment matched before (a provisional one now confirmed) keeps its account: a
later report naming another one makes it CONFLICT for review, and changes no ledger.

A PROVISIONAL payment (known only from a forwarded text) is matched and shown but never allocated: it stays
PROVISIONAL until a webhook or statement confirms it (intake then sends it back to RECEIVED and re-enqueues it).
Allocation goes through `models.allocation.allocate` once per payment (source_ref `payment:<id>`); a network
payment then pays the network's households' dues, soonest expiry first. Receipts go through `send_sms`, once per
payment outcome (dedupe key `receipt:<payment id>:<outcome>`), only for confirmed payments; a network payment's
summary (`receipt_network`: households paid, what is left) goes to the network's contact phone and the payer.

Batches (`reconcile_payments`): one transaction locks its payments in id order and loads what the matching chain
reads for all of them in a few queries (`MatchLookup`). A `models.allocator.Allocator` then locks the matched
accounts (networks, then households, each in id order, so two workers' batches never deadlock) and reads their
ledger state at once; each payment is settled in id order exactly as a single run would — its own allocation
`payment:<id>`, its own receipt keys — but planned in memory, and the batch's allocations, periods, entries,
events and receipts are written together at the end. If that write fails, the whole batch is rolled back and
each of its payments is returned as "retry" for a run on its own.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from logs import mask_phone
from models.allocation import refund, reverse
from models.allocator import Allocator, PlannedAllocation, find_allocation
from models.amounts import Amount, currency_exponent
from models.base import MemberStatus, PaymentStatus, RequestStatus, utcnow
from models.bulk import among, preassign_ids, table_of
from models.db import begin_write
from models.household import Account, Household, Member, Network, squash
from models.ledger import AccountState, account_states
from models.messaging import Message
from models.outbox import send_sms
from models.payment import Payment, PaymentRequest, ReconciliationEvent
from models.phones import normalise_phone
from models.premiums import active_member_counts, amount_due, is_fully_subsidised, max_advance_periods
from models.references import is_valid_reference
from models.scheme import Scheme

log = logging.getLogger(__name__)

WORKER_ACTOR = "worker"
RULE_CONFIDENCE = {
    "request_reference": 100,
    "account_number": 90,
    "network_name": 90,
    "account_number_history": 85,
    "account_number_amount": 80,
    "request_phone_amount": 70,
    "network_phone": 60,
    "payer_phone": 50,
}
# Payments the reconcile job acts on; anything else is final or waits for staff.
_WORKABLE = frozenset({PaymentStatus.RECEIVED, PaymentStatus.PROVISIONAL})
# What settling a payment may change: a batch writes them all for each payment, so its rows share one UPDATE.
_SETTLED_COLUMNS = (
    "status",
    "status_reason",
    "household_id",
    "network_id",
    "payment_request_id",
    "scheme_id",
    "match_rule",
    "match_confidence",
)
_TOKEN_RE = re.compile(r"[A-Z0-9][A-Z0-9\-_/.]*[A-Z0-9]|[A-Z0-9]")
# Rules that vouch for who a payer pays for: a later number from the same payer phone is corroborated by them.
VOUCHING_RULES = ("request_reference", "account_number", "manual")
# A word that looks like a household or member number: letters and at least three digits ("SN-TN-000123").
_ACCOUNT_LIKE_RE = re.compile(r"^(?=.*[A-Z])(?=(?:.*\d){3})[A-Z0-9\-_/.]+$")
_DIGITS = "0123456789"


@dataclass(frozen=True)
class Match:
    """Who a payment is for, by which rule."""

    rule: str
    household: Household | None = None
    network: Network | None = None
    request: PaymentRequest | None = None

    @property
    def confidence(self) -> int:
        """Return the rule's confidence, 0-100."""
        return RULE_CONFIDENCE.get(self.rule, 100)

    @property
    def scheme_id(self) -> int:
        """Return the scheme of the matched owner."""
        owner = self.household if self.household is not None else self.network
        assert owner is not None
        return owner.scheme_id

    @property
    def owner(self) -> tuple[int | None, int | None]:
        """Return (household id, network id) of the matched account."""
        return (self.household.id if self.household else None, self.network.id if self.network else None)


@dataclass(frozen=True)
class Candidate:
    """An account a payment in suspense may be for, and why (ranked: the likeliest first)."""

    kind: str  # "household" or "network"
    number: str  # household number or network code
    why: str
    rank: int = 0  # lower is likelier


@dataclass
class MatchAttempt:
    """The outcome of the matching chain: a match, or why there is none, with the evidence read."""

    match: Match | None
    notes: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    conflict: str | None = None  # a payment matched before that the signals now put on another account

    @property
    def reason(self) -> str:
        """Return why nothing matched."""
        return "; ".join(self.notes) or "nothing to match on"

    def suggest(self, kind: str, number: str, why: str, rank: int) -> None:
        """Add a candidate account (once per account, the best reason kept)."""
        for index, known in enumerate(self.candidates):
            if (known.kind, known.number) == (kind, number):
                if rank < known.rank:
                    self.candidates[index] = Candidate(kind, number, why, rank)
                return
        self.candidates.append(Candidate(kind, number, why, rank))

    def ranked(self) -> list[Candidate]:
        """Return the candidates, likeliest first."""
        return sorted(self.candidates, key=lambda c: (c.rank, c.kind, c.number))


@dataclass(frozen=True)
class Fit:
    """The amounts a household may pay now: exactly (due, whole periods up to the cap) or a part of them."""

    exact: frozenset[int]
    cap: int
    currency: str

    def of(self, amount: int, currency: str) -> str | None:
        """Return "exact", "part" or None (the amount fits nothing this household may pay)."""
        if currency != self.currency or amount <= 0:
            return None
        if amount in self.exact:
            return "exact"
        return "part" if amount <= self.cap else None


def household_fit(
    session: Session, household: Household, on: date, state: AccountState | None = None, members: int | None = None
) -> Fit:
    """Return what the household may pay on a date: its amount due, whole periods up to the advance cap, or less.

    `state` and `members`: the household's account state and active member count when the caller read them.
    """
    scheme = household.scheme
    if is_fully_subsidised(household):
        return Fit(frozenset(), 0, scheme.currency)
    due = amount_due(session, household, on, state=state, members=members)
    periods = max_advance_periods(scheme.plan(household.plan).months, scheme.max_advance_months)
    base = due.fee + due.arrears - due.credit
    exact = {due.total} | {base + n * due.period for n in range(1, periods + 1)}
    exact = {amount for amount in exact if amount > 0}
    return Fit(frozenset(exact), max(exact, default=0), scheme.currency)


def keying_slips(token: str) -> set[str]:
    """Return what a payer may have meant by a typed number: one digit changed, dropped or added, two swapped."""
    found: set[str] = set()
    for i, char in enumerate(token):
        if char.isdigit():
            found.update(token[:i] + d + token[i + 1 :] for d in _DIGITS if d != char)
            found.add(token[:i] + token[i + 1 :])  # the payer typed one digit too many
            following = token[i + 1] if i + 1 < len(token) else ""
            if following.isdigit() and following != char:
                found.add(token[:i] + following + char + token[i + 2 :])
    for i in range(len(token) + 1):  # the payer dropped a digit
        if (i > 0 and token[i - 1].isdigit()) or (i < len(token) and token[i].isdigit()):
            found.update(token[:i] + d + token[i:] for d in _DIGITS)
    found.discard(token)
    return found


def _owner_of_request(request: PaymentRequest) -> Match:
    return Match("request_reference", household=request.household, network=request.network, request=request)


def _countries(session: Session) -> list[str]:
    return sorted(set(session.scalars(select(Scheme.country).distinct())))


def _numbers_of(raw: str | None, countries: list[str]) -> set[str]:
    if not raw or "*" in raw or re.fullmatch(r"[0-9a-fA-F]{32,}", raw):  # masked, or a hashed MSISDN
        return set()
    digits = re.sub(r"\D", "", raw)
    if len(digits) < 7 or len(digits) > 15:
        return set()
    candidates = [raw] if raw.strip().startswith("+") else [raw, "+" + digits]
    numbers = set()
    for candidate in candidates:
        for country in [*countries, None]:
            try:
                numbers.add(normalise_phone(candidate, country, allow_foreign=True))
            except ValueError:
                continue
    return numbers


def payer_numbers(session: Session, raw: str | None) -> set[str]:
    """Return the E.164 numbers a payer phone may be (national forms read in each scheme's country)."""
    if not raw or "*" in raw:
        return set()
    return _numbers_of(raw, _countries(session))


def _reference_of(payment: Payment) -> str:
    return (payment.account_reference or "").strip().upper()


def _tokens(reference: str) -> list[str]:
    return list(dict.fromkeys([reference, *_TOKEN_RE.findall(reference)]))


def _spans(reference: str) -> set[str]:
    """Return the squashed runs of consecutive words of a reference (a network name is typed inside other words)."""
    words = reference.split()[:20]
    return {squash(" ".join(words[i:j])) for i in range(len(words)) for j in range(i + 1, len(words) + 1)}


class MatchLookup:
    """What the matching chain reads for a set of payments, loaded in a handful of queries.

    Rows are the session's ORM objects, so a request one payment of the batch pays is seen PAID by the next.
    """

    def __init__(self, session: Session, payments: list[Payment]) -> None:
        self.now = utcnow()
        # Every scheme (a handful), held so `session.get(Scheme, …)` never queries again in this batch.
        self.schemes = list(session.scalars(select(Scheme)))
        self.countries = sorted({scheme.country for scheme in self.schemes})
        self.numbers: dict[int, set[str]] = {}
        references: set[str] = set()
        tokens: set[str] = set()
        phones: set[str] = set()
        for payment in payments:
            reference = _reference_of(payment)
            if reference:
                if is_valid_reference(reference):
                    references.add(reference)
                tokens.update(_tokens(reference))
            self.numbers[payment.id] = _numbers_of(payment.payer_phone, self.countries)
            phones |= self.numbers[payment.id]
        open_now = (PaymentRequest.status == RequestStatus.OPEN, PaymentRequest.expires_at > self.now)
        self.requests_by_reference: dict[str, list[PaymentRequest]] = {}
        self.requests_by_phone: list[PaymentRequest] = []
        self.households: dict[str, Household] = {}
        self.member_households: dict[str, int] = {}
        self.phone_households: dict[str, set[int]] = {}
        self.paid_before: dict[str, set[int]] = {}
        self.fits: dict[tuple[int, date], Fit] = {}
        # Networks are few (a handful per commune): all of them, with their names, aliases and contact phones.
        self.networks = list(session.scalars(select(Network).order_by(Network.id)))
        self.network_keys = {network.id: network.match_keys for network in self.networks}
        if references:
            query = select(PaymentRequest).where(among(session, PaymentRequest.reference, references), *open_now)
            for request in session.scalars(query.order_by(PaymentRequest.id)):
                self.requests_by_reference.setdefault(request.reference, []).append(request)
        if tokens:
            upper = sorted(tokens)
            for household in session.scalars(
                select(Household).where(among(session, func.upper(Household.household_no), upper))
            ):
                self.households[household.household_no.upper()] = household
            rows = session.execute(
                select(Member.member_no, Member.household_id).where(among(session, func.upper(Member.member_no), upper))
            )
            self.member_households = {member_no.upper(): household_id for member_no, household_id in rows}
        if phones:
            query = select(PaymentRequest).where(among(session, PaymentRequest.payer_phone, phones), *open_now)
            self.requests_by_phone = list(session.scalars(query.order_by(PaymentRequest.id)))
            rows = session.execute(
                select(Member.phone, Member.household_id).where(
                    among(session, Member.phone, phones), Member.status == MemberStatus.ACTIVE
                )
            )
            for phone, household_id in rows:
                self.phone_households.setdefault(str(phone), set()).add(household_id)
        # Who each payer (phone, or hashed MSISDN, as reported) paid for before, by a rule that vouches for it.
        payers = {p.payer_phone for p in payments if p.payer_phone and "*" not in p.payer_phone}
        if payers:
            rows = session.execute(
                select(Payment.payer_phone, Payment.household_id)
                .where(
                    among(session, Payment.payer_phone, payers),
                    Payment.status == PaymentStatus.ALLOCATED,
                    Payment.household_id.is_not(None),
                    Payment.match_rule.in_(VOUCHING_RULES),
                )
                .distinct()
            )
            for payer, household_id in rows:
                self.paid_before.setdefault(str(payer), set()).add(household_id)
        # Warm the identity map with every household a rule may pick, and read their heads (receipts go to them).
        wanted = {r.household_id for r in self.requests_by_phone if r.household_id is not None}
        wanted |= {r.household_id for rs in self.requests_by_reference.values() for r in rs if r.household_id}
        wanted |= set(self.member_households.values()) | {i for ids in self.phone_households.values() for i in ids}
        wanted |= {h.id for h in self.households.values()}
        # Held here: the session's identity map keeps only objects something else refers to.
        self.owners: list[Household] = []
        self.heads: dict[int, Member] = {}
        if wanted:
            self.owners = list(session.scalars(select(Household).where(among(session, Household.id, wanted))))
            heads = (
                select(Member)
                .join(Household, Member.household_id == Household.id)
                .where(among(session, Household.id, wanted), Member.member_no == Household.head_member_no)
            )
            self.heads = {member.household_id: member for member in session.scalars(heads)}
        self._prefetch_fits(session, payments)

    def _prefetch_fits(self, session: Session, payments: list[Payment]) -> None:
        """Read what the amount rules need for every household a payment's phone or numbers name, in a few queries."""
        by_id = {household.id: household for household in self.owners}
        wanted: dict[date, set[int]] = {}
        for payment in payments:
            ids = self.households_of(self.numbers.get(payment.id, set()))
            reference = _reference_of(payment)
            if reference:
                ids |= {h.id for token in _tokens(reference) if (h := self.households.get(token)) is not None}
                ids |= {self.member_households[t] for t in _tokens(reference) if t in self.member_households}
            if ids:
                wanted.setdefault(_paid_on(payment), set()).update(i for i in ids if i in by_id)
        self.load_fits(session, {on: [by_id[i] for i in ids] for on, ids in wanted.items()})

    def load_fits(self, session: Session, wanted: dict[date, list[Household]]) -> None:
        """Read what the amount rules need for these households on these dates, in three queries or so."""
        wanted = {on: [h for h in households if (h.id, on) not in self.fits] for on, households in wanted.items()}
        by_id = {h.id: h for households in wanted.values() for h in households}
        every = sorted(by_id)
        if not every:
            return
        accounts = dict(
            session.execute(select(Account.household_id, Account.id).where(among(session, Account.household_id, every)))
            .tuples()
            .all()
        )
        states = account_states(session, list(accounts.values())) if accounts else {}
        none = AccountState(balance=0, fee_paid=False)
        for on, households in wanted.items():
            ids = sorted({h.id for h in households})
            counts = active_member_counts(session, ids, on) if ids else {}
            for household_id in ids:
                state = states.get(accounts[household_id], none) if household_id in accounts else none
                fit = household_fit(session, by_id[household_id], on, state=state, members=counts[household_id])
                self.fits[(household_id, on)] = fit

    def head_of(self, household: Household) -> Member | None:
        """Return the head of a household this batch may pick (read with the households, not their members)."""
        return self.heads.get(household.id) if household.id in self.heads else household.head

    def suspense_language(self, currency: str) -> str | None:
        """Return the language of a payment no household claims: that of the one scheme collecting its currency."""
        defaults = {scheme.default_language for scheme in self.schemes if scheme.currency == currency}
        return str(defaults.pop()) if len(defaults) == 1 else None

    def _open(self, request: PaymentRequest) -> bool:
        return request.status == RequestStatus.OPEN and request.expires_at > self.now

    def open_requests(self, reference: str) -> list[PaymentRequest]:
        """Return the open requests with this reference."""
        return [r for r in self.requests_by_reference.get(reference, []) if self._open(r)]

    def requests_from(self, numbers: set[str], amount: int, currency: str) -> list[PaymentRequest]:
        """Return the open requests of these payer numbers for exactly this amount."""
        return [
            r
            for r in self.requests_by_phone
            if r.payer_phone in numbers and r.amount == amount and r.currency == currency and self._open(r)
        ]

    def households_of(self, numbers: set[str]) -> set[int]:
        """Return the households whose active members have one of these numbers."""
        found: set[int] = set()
        for number in numbers:
            found |= self.phone_households.get(number, set())
        return found

    def contact_networks(self, numbers: set[str]) -> list[Network]:
        """Return the networks whose contact phone is one of these numbers."""
        return [n for n in self.networks if n.contact_phone and n.contact_phone in numbers]

    def named_networks(self, reference: str) -> list[tuple[Network, str]]:
        """Return the networks a reference names by code, name or alias, with how ("code" or "name")."""
        if not reference:
            return []
        spans = _spans(reference)
        named = []
        for network in self.networks:
            if network.code.upper() in _tokens(reference):
                named.append((network, "code"))
            elif self.network_keys[network.id] & spans:
                named.append((network, "name"))
        return named

    def named_households(self, session: Session, reference: str) -> dict[int, tuple[Household, str]]:
        """Return the households a reference names by household or member number, with the token that named each."""
        named: dict[int, tuple[Household, str]] = {}
        for token in _tokens(reference):
            household = self.households.get(token)
            if household is None and token in self.member_households:
                household = session.get(Household, self.member_households[token])
            if household is not None and household.id not in named:
                named[household.id] = (household, token)
        return named

    def fit(self, session: Session, household: Household, on: date) -> Fit:
        """Return (once per batch) what the household may pay on a date."""
        key = (household.id, on)
        if key not in self.fits:
            self.fits[key] = household_fit(session, household, on)
        return self.fits[key]


def slip_neighbours(session: Session, token: str) -> list[Household]:
    """Return the households one keying slip away from a typed household or member number, by number."""
    variants = keying_slips(token)
    if not variants:
        return []
    upper = sorted(variants)
    ids = set(session.scalars(select(Household.id).where(among(session, func.upper(Household.household_no), upper))))
    ids |= set(session.scalars(select(Member.household_id).where(among(session, func.upper(Member.member_no), upper))))
    if not ids:
        return []
    query = select(Household).where(among(session, Household.id, ids)).order_by(Household.household_no)
    return list(session.scalars(query))


def _paid_on(payment: Payment) -> date:
    return payment.paid_at.date()


def _numbers_of_payment(payment: Payment, lookup: MatchLookup) -> set[str]:
    numbers = lookup.numbers.get(payment.id)
    return numbers if numbers is not None else _numbers_of(payment.payer_phone, lookup.countries)


def find_match(session: Session, payment: Payment, lookup: MatchLookup | None = None) -> MatchAttempt:
    """Read every signal of a payment and return its account when they agree, else why not and the candidates."""
    if lookup is None:
        lookup = MatchLookup(session, [payment])
    attempt = MatchAttempt(None)
    reference = _reference_of(payment)
    evidence = attempt.evidence
    evidence.update(reference=reference or None, amount=payment.amount, currency=payment.currency)
    numbers = _numbers_of_payment(payment, lookup)
    on = _paid_on(payment)
    phone_households = sorted(
        (h for h in (session.get(Household, i) for i in lookup.households_of(numbers)) if h is not None),
        key=lambda h: h.household_no,
    )
    evidence["payer"] = "unknown or masked" if not numbers else "registered" if phone_households else "unregistered"
    evidence["payer_households"] = [h.household_no for h in phone_households]
    if reference and is_valid_reference(reference):
        requests = lookup.open_requests(reference)
        if requests:
            attempt.match = _owner_of_request(requests[0])
            evidence["request"] = reference
            return attempt
        attempt.notes.append(f"reference {reference} is not an open payment request")
    named = lookup.named_households(session, reference) if reference else {}
    networks = lookup.named_networks(reference)
    evidence["named"] = [h.household_no for h, _ in named.values()] + [n.code for n, _ in networks]
    if named or networks:
        _by_named_account(session, payment, lookup, attempt, named, networks, phone_households, on)
        return attempt
    if reference:
        typed = [t for t in _tokens(reference) if _ACCOUNT_LIKE_RE.match(t)]
        if typed:
            _number_names_nothing(session, payment, lookup, attempt, typed[0], phone_households, on)
            return attempt
        if not attempt.notes:
            attempt.notes.append(f"no household, member or network {reference!r}")
    else:
        attempt.notes.append("no account reference")
    if not numbers:
        attempt.notes.append("payer phone unknown or masked")
        return attempt
    requests = lookup.requests_from(numbers, payment.amount, payment.currency)
    if len(requests) == 1:
        attempt.match = Match(
            "request_phone_amount", household=requests[0].household, network=requests[0].network, request=requests[0]
        )
        evidence["request"] = requests[0].reference
        return attempt
    if len(requests) > 1:
        attempt.notes.append(f"{len(requests)} open requests from the payer for this amount")
    _by_payer_phone(session, payment, lookup, attempt, numbers, phone_households, on)
    return attempt


def _fits(session: Session, payment: Payment, lookup: MatchLookup, household: Household, on: date) -> str | None:
    return lookup.fit(session, household, on).of(payment.amount, payment.currency)


def _by_named_account(
    session: Session,
    payment: Payment,
    lookup: MatchLookup,
    attempt: MatchAttempt,
    named: dict[int, tuple[Household, str]],
    networks: list[tuple[Network, str]],
    phone_households: list[Household],
    on: date,
) -> None:
    """Match on the household, member or network number the reference names, when the other signals agree."""
    evidence = attempt.evidence
    for network, how in networks:
        attempt.suggest("network", network.code, f"reference names network {network.code} by its {how}", 1)
    for household, token in named.values():
        attempt.suggest("household", household.household_no, f"reference names it ({token})", 1)
    if len(named) + len(networks) > 1:
        attempt.notes.append("reference names several accounts: " + ", ".join(evidence["named"]))
        return
    if networks:
        network, how = networks[0]
        attempt.match = Match("account_number" if how == "code" else "network_name", network=network)
        return
    [(household, token)] = named.values()
    if household.scheme.currency != payment.currency:
        attempt.match = Match("account_number", household=household)  # settling says which currency it is in
        return
    fit = _fits(session, payment, lookup, household, on)
    evidence["amount_fit"] = fit
    if phone_households and household not in phone_households:
        others = ", ".join(h.household_no for h in phone_households)
        for other in phone_households:
            attempt.suggest("household", other.household_no, "the payer's phone is registered to it", 2)
        attempt.notes.append(
            f"reference names household {household.household_no} but the payer's phone is registered to {others}"
        )
        return
    if household in phone_households:  # two signals agree: the amount need not (the rest goes to credit)
        attempt.match = Match("account_number", household=household)
        return
    # A payer registered nowhere who paid this household, and only this one, before (by reference or number
    # from a registered phone, or staff's match): the typed number is theirs — a relative who pays every month.
    paid_before = lookup.paid_before.get(payment.payer_phone or "", set()) if not phone_households else set()
    evidence["paid_before"] = sorted(paid_before)
    if paid_before == {household.id} and fit is not None:
        attempt.match = Match("account_number_history", household=household)
        return
    if fit is None:
        attempt.notes.append(f"amount fits nothing household {household.household_no} may pay")
        return
    # Only the typed number speaks: it must not be one keying slip from another household the amount fits.
    neighbours = [other for other in slip_neighbours(session, token) if other.id != household.id]
    lookup.load_fits(session, {on: neighbours})
    near = [other for other in neighbours if _fits(session, payment, lookup, other, on) is not None]
    evidence["slip_neighbours"] = [other.household_no for other in near]
    if near:
        for other in near:
            attempt.suggest("household", other.household_no, f"one keying slip from {token}; the amount fits", 3)
        attempt.notes.append(
            f"{token} is one keying slip from {', '.join(h.household_no for h in near)}, which the amount fits too, "
            "and the payer's phone is not registered"
        )
        return
    attempt.match = Match("account_number_amount", household=household)


def _number_names_nothing(
    session: Session,
    payment: Payment,
    lookup: MatchLookup,
    attempt: MatchAttempt,
    token: str,
    phone_households: list[Household],
    on: date,
) -> None:
    """Put a payment whose typed number names nothing in suspense, with the households the payer may have meant."""
    attempt.notes.append(f"no household, member or network {token!r}")
    for household in phone_households:
        attempt.suggest("household", household.household_no, "the payer's phone is registered to it", 2)
    neighbours = slip_neighbours(session, token)
    lookup.load_fits(session, {on: neighbours})
    for other in neighbours:
        if _fits(session, payment, lookup, other, on) is not None:
            attempt.suggest("household", other.household_no, f"one keying slip from {token}; the amount fits", 3)
    attempt.evidence["slip_neighbours"] = [c.number for c in attempt.candidates if c.rank == 3]


def _by_payer_phone(
    session: Session,
    payment: Payment,
    lookup: MatchLookup,
    attempt: MatchAttempt,
    numbers: set[str],
    phone_households: list[Household],
    on: date,
) -> None:
    """Match on the payer's phone: one household (the amount within what it may pay), or a network's contact."""
    contacts = lookup.contact_networks(numbers)
    fitting = [h for h in phone_households if _fits(session, payment, lookup, h, on) is not None]
    attempt.evidence["network_contact"] = [n.code for n in contacts]
    for network in contacts:
        attempt.suggest("network", network.code, "the payer is the network's contact", 1)
    for household in phone_households:
        fit = _fits(session, payment, lookup, household, on)
        why = "the payer's phone is registered to it" + ("" if fit else "; the amount does not fit")
        attempt.suggest("household", household.household_no, why, 2 if fit else 4)
    if len(contacts) == 1 and not fitting:
        attempt.match = Match("network_phone", network=contacts[0])
        return
    if len(contacts) > 1:
        attempt.notes.append("payer is the contact of several networks")
        return
    if contacts:
        attempt.notes.append(
            f"payer is the contact of network {contacts[0].code} and registered to "
            + ", ".join(h.household_no for h in fitting)
        )
        return
    if not phone_households:
        attempt.notes.append("payer phone belongs to no household")
        return
    if len(phone_households) > 1:
        attempt.notes.append(
            "payer phone shared by several households: " + ", ".join(h.household_no for h in phone_households)
        )
        return
    [household] = phone_households
    if not fitting:
        attempt.notes.append(f"amount fits nothing household {household.household_no} may pay")
        return
    attempt.evidence["amount_fit"] = _fits(session, payment, lookup, household, on)
    attempt.match = Match("payer_phone", household=household)


def _event(
    session: Session,
    payment: Payment,
    before: PaymentStatus | None,
    note: str,
    rule: str | None = None,
    actor: str = WORKER_ACTOR,
    details: dict[str, object] | None = None,
    batch: _Batch | None = None,
) -> None:
    """Record a status change of the payment (in a batch, written with the batch's other rows)."""
    row = {
        "payment_id": payment.id,
        "actor": actor,
        "rule": rule,
        "before_status": before.value if before is not None else None,
        "after_status": payment.status.value,
        "note": note[:1000],
        "details": details,
    }
    if batch is not None:
        batch.events.append(row)
    else:
        session.add(ReconciliationEvent(**row))


def _lock(session: Session, payment_id: int) -> Payment:
    begin_write(session)
    payment = session.scalar(
        select(Payment).where(Payment.id == payment_id).with_for_update().execution_options(populate_existing=True)
    )
    if payment is None:
        raise LookupError(f"no payment {payment_id}")
    return payment


@dataclass
class _Batch:
    """What the payments of one reconcile transaction share: lookups, receipts already stored, the allocator."""

    lookup: MatchLookup
    receipts: set[str]
    allocator: Allocator
    events: list[dict[str, Any]] = field(default_factory=list)


_RECEIPT_KEYS = ("receipt:{}:allocated", "receipt:{}:allocated:1", "receipt:{}:review", "receipt:{}:review:1")


def _stored_receipts(session: Session, payment_ids: list[int]) -> set[str]:
    keys = [key.format(payment_id) for payment_id in payment_ids for key in _RECEIPT_KEYS]
    return set(session.scalars(select(Message.dedupe_key).where(among(session, Message.dedupe_key, keys))))


def reconcile_payments(
    session: Session, payment_ids: list[int], retry_unmatched: bool = False, wait_for_locks: bool = False
) -> dict[int, str]:
    """Reconcile a batch of payments in one transaction; return each one's outcome.

    The caller commits. Outcomes are those of `reconcile_payment`, plus "missing" (no such payment), "retry"
    (a database error rolled the whole batch back: run each of its payments again on its own) and, in a batch of
    more than one, "deferred" (another transaction holds its household's or network's account: run it later).
    `wait_for_locks`: wait for busy accounts instead (a run of payments deferred once), so none is deferred twice.
    """
    wanted = sorted(set(payment_ids))
    outcomes = dict.fromkeys(wanted, "missing")
    if not wanted:
        return outcomes
    begin_write(session)
    locked = session.scalars(
        select(Payment)
        .where(among(session, Payment.id, wanted))
        .order_by(Payment.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    workable = _WORKABLE | ({PaymentStatus.UNMATCHED} if retry_unmatched else set())
    todo: list[Payment] = []
    for payment in locked:
        if payment.status not in workable:
            outcomes[payment.id] = f"skipped ({payment.status.value})"
        elif payment.status == PaymentStatus.PROVISIONAL and payment.match_rule is not None:
            outcomes[payment.id] = "provisional (already matched, waiting for confirmation)"
        else:
            todo.append(payment)
    if not todo:
        return outcomes
    lookup = MatchLookup(session, todo)
    batch = _Batch(lookup, _stored_receipts(session, [p.id for p in todo]), Allocator(session))
    # Lock order: payments by id, then the matched accounts (networks, then households, by id), before any
    # payment is settled; the allocator plans each payment in id order and writes them all at the end. A batch
    # does not wait for accounts another worker's batch holds: those payments are left for a later run.
    first = {p.id: decide(session, p, lookup).match for p in todo}
    matches = [m for m in first.values() if m is not None]
    busy = batch.allocator.load(
        households=[m.household for m in matches if m.household is not None],
        networks=[m.network for m in matches if m.network is not None],
        refs=[f"payment:{p.id}" for p in todo],
        skip_locked=len(todo) > 1 and not wait_for_locks,
    )
    for payment in todo:
        match = first[payment.id]
        if match is not None and busy.holds(match.household, match.network):
            outcomes[payment.id] = "deferred"
            continue
        outcomes[payment.id] = _settle(session, payment, batch)
        for column in _SETTLED_COLUMNS:  # the same columns for every payment: one UPDATE for the whole batch
            flag_modified(payment, column)
    try:
        preassign_ids(session)  # receipts: inserted with executemany, no RETURNING
        batch.allocator.write()
        if batch.events:
            session.execute(insert(table_of(ReconciliationEvent)), batch.events)
        session.flush()
    except DBAPIError as exc:
        if len(todo) == 1:
            raise
        # Nothing of the batch is kept: each of its payments is run again on its own.
        log.warning("reconcile batch of %s rolled back: %s", len(todo), type(exc.orig).__name__)
        session.rollback()
        outcomes.update(dict.fromkeys((p.id for p in todo), "retry"))
    return outcomes


def reconcile_payment(session: Session, payment_id: int, retry_unmatched: bool = False) -> str:
    """Match a payment and, when it is confirmed, allocate it and queue its receipt; return what happened."""
    outcome = reconcile_payments(session, [payment_id], retry_unmatched)[payment_id]
    if outcome == "missing":
        raise LookupError(f"no payment {payment_id}")
    return outcome


def suspense_candidates(session: Session, payment: Payment) -> list[Candidate]:
    """Return the accounts a payment in suspense may be for, likeliest first, each with why (reads only)."""
    attempt = find_match(session, payment)
    if attempt.match is not None:  # the signals agree now (say, a household enrolled since): that account first
        match = attempt.match
        kind, number = _account_label(match).split(" ", 1)
        attempt.suggest(kind, number, f"the matching rules now give it ({match.rule})", 0)
    return attempt.ranked()


def decide(session: Session, payment: Payment, lookup: MatchLookup | None = None) -> MatchAttempt:
    """Return the payment's match; one matched before keeps its account, and signals naming another are a conflict."""
    attempt = find_match(session, payment, lookup)
    if payment.match_rule is None or (payment.household_id is None and payment.network_id is None):
        return attempt
    kept = Match(
        payment.match_rule, household=payment.household, network=payment.network, request=payment.payment_request
    )
    attempt.evidence["matched_before"] = _account_label(kept)
    kept_number = _account_label(kept).split(" ", 1)[1]
    named = attempt.evidence.get("named") or []
    if attempt.match is not None and attempt.match.owner != kept.owner:
        elsewhere = _account_label(attempt.match)
    elif named and kept_number not in named:
        elsewhere = "the reference " + ", ".join(named)
    else:
        attempt.match = kept
        return attempt
    attempt.conflict = f"matched to {_account_label(kept)} by {kept.rule}; a later report points to {elsewhere}"
    attempt.match = None
    return attempt


def _account_label(match: Match) -> str:
    if match.network is not None:
        return f"network {match.network.code}"
    assert match.household is not None
    return f"household {match.household.household_no}"


def _candidates_detail(attempt: MatchAttempt) -> list[dict[str, str]]:
    return [{"kind": c.kind, "number": c.number, "why": c.why} for c in attempt.ranked()]


def _settle(session: Session, payment: Payment, batch: _Batch) -> str:
    """Match one locked, workable payment and allocate it when confirmed."""
    # Matched again here: an earlier payment of the batch may have paid the request this one names.
    attempt = decide(session, payment, batch.lookup)
    before = payment.status
    if attempt.conflict is not None:
        # Nothing moves a matched payment by itself: staff decide, and no ledger changes meanwhile.
        payment.status = PaymentStatus.CONFLICT
        payment.status_reason = attempt.conflict[:500]
        _event(session, payment, before, attempt.conflict, rule="conflict", details=attempt.evidence, batch=batch)
        return "conflict"
    if attempt.match is None:
        payment.status = PaymentStatus.UNMATCHED
        payment.status_reason = attempt.reason[:500]
        details = {**attempt.evidence, "candidates": _candidates_detail(attempt)}
        _event(session, payment, before, attempt.reason, details=details, batch=batch)
        if payment.confirmed:
            _receipt(session, payment, "review", batch=batch)
        return "unmatched"
    match = attempt.match
    scheme = session.get(Scheme, match.scheme_id)
    assert scheme is not None
    if scheme.currency != payment.currency:
        payment.status = PaymentStatus.UNMATCHED
        payment.status_reason = f"paid in {payment.currency}, {scheme.code} is in {scheme.currency}"
        _event(session, payment, before, payment.status_reason, rule=match.rule, batch=batch)
        if payment.confirmed:
            _receipt(session, payment, "review", batch=batch)
        return "unmatched"
    _apply_match(payment, match)
    if not payment.confirmed:
        payment.status = PaymentStatus.PROVISIONAL
        note = "matched; provisional until a webhook or statement confirms it"
        _event(session, payment, before, note, match.rule, details=attempt.evidence, batch=batch)
        return "provisional"
    payment.status = PaymentStatus.MATCHED
    _event(session, payment, before, f"matched by {match.rule}", match.rule, details=attempt.evidence, batch=batch)
    return allocate_payment(session, payment, batch=batch)


def _apply_match(payment: Payment, match: Match) -> None:
    payment.household = match.household
    payment.network = match.network
    payment.payment_request = match.request
    payment.scheme_id = match.scheme_id
    payment.match_rule = match.rule
    payment.match_confidence = match.confidence
    payment.status_reason = None


def _local_date(payment: Payment, scheme: Scheme) -> date:
    return payment.paid_at.replace(tzinfo=UTC).astimezone(ZoneInfo(scheme.timezone)).date()


@dataclass(frozen=True)
class NetworkPayout:
    """What a network payment did: how many households it paid and what stays on the network account."""

    households: int
    remaining: int


def allocate_payment(session: Session, payment: Payment, actor: str = WORKER_ACTOR, batch: _Batch | None = None) -> str:
    """Allocate a MATCHED, confirmed payment to its household or network (once) and queue the receipt.

    In a batch the allocation is planned and written with the batch's; on its own it is written here.
    """
    if payment.status != PaymentStatus.MATCHED or not payment.confirmed:
        raise ValueError(f"payment {payment.id} is {payment.status.value}, not a confirmed MATCHED payment")
    scheme = session.get(Scheme, payment.scheme_id)
    assert scheme is not None
    allocator = batch.allocator if batch is not None else Allocator(session)
    on = _local_date(payment, scheme)
    ref = f"payment:{payment.id}"
    details: dict[str, object] = {}
    payout: NetworkPayout | None = None
    if payment.network is not None:
        account = allocator.account(network=payment.network)
        result = allocator.allocate(account, payment.amount, ref, on, payment_id=payment.id)
        payouts = allocator.pay_network(account, on, run_ref=ref)
        payout = NetworkPayout(len(payouts), allocator.balance(account))
        details = {"network": payment.network.code, "households_paid": payout.households, "balance": payout.remaining}
    else:
        assert payment.household is not None
        account = allocator.account(household=payment.household)
        result = allocator.allocate(account, payment.amount, ref, on, payment_id=payment.id)
        details = _allocation_details(result)
    if payment.payment_request is not None and payment.payment_request.status == RequestStatus.OPEN:
        payment.payment_request.status = RequestStatus.PAID
        payment.payment_request.paid_at = utcnow()
    before = payment.status
    payment.status = PaymentStatus.ALLOCATED
    _event(
        session, payment, before, f"allocated ({ref})", payment.match_rule, actor=actor, details=details, batch=batch
    )
    _receipt(session, payment, "allocated", batch=batch, allocator=allocator, payout=payout)
    if batch is None:
        allocator.write()
    return "allocated"


def _allocation_details(result: PlannedAllocation) -> dict[str, object]:
    until = result.covered_until
    return {
        "fee": result.fee,
        "periods": result.period_count,
        "covered_until": until.isoformat() if until else None,
        "credit": result.credit,
    }


def _receipt(
    session: Session,
    payment: Payment,
    outcome: str,
    batch: _Batch | None = None,
    allocator: Allocator | None = None,
    payout: NetworkPayout | None = None,
) -> None:
    """Queue the payer's (and the head's, or the network contact's) receipt for this outcome, once."""
    scheme = session.get(Scheme, payment.scheme_id) if payment.scheme_id else None
    collecting = [scheme] if scheme is not None else batch.lookup.schemes if batch is not None else []
    exponents = [s.currency_exponent for s in collecting if s.currency == payment.currency]
    exponent = exponents[0] if exponents else currency_exponent(session, payment.currency)
    amount = Amount(payment.amount, payment.currency, exponent)
    household = payment.household
    values: dict[str, Any]
    recipients: list[str] = []
    language = None
    if outcome == "allocated" and payment.network is not None and scheme is not None:
        remaining = payout.remaining if payout is not None else 0
        template = "receipt_network"
        values = {
            "network": payment.network.code,
            "households": payout.households if payout is not None else 0,
            "remaining": Amount(remaining, payment.currency, exponent),
        }
        language = str(scheme.default_language)
        if payment.network.contact_phone:
            recipients.append(payment.network.contact_phone)
    elif outcome == "allocated" and household is not None and scheme is not None and allocator is not None:
        on = _local_date(payment, scheme)
        # What the allocator planned is the household's latest state (written or not yet).
        until = allocator.covered_until(household)
        due = allocator.amount_due(household, on)  # the pieces of the next payment
        next_amount = Amount(due.total, due.currency, exponent)
        if until is not None and until >= on:
            waiting = allocator.waiting_until(household)
            values = {"household_no": household.household_no, "until": until, "next": next_amount, "next_due": until}
            template = "receipt_covered"
            if waiting is not None and waiting >= on:
                template, values["waiting"] = "receipt_waiting", waiting
        else:
            template, values = "receipt_due", {"household_no": household.household_no, "due": next_amount}
    else:
        template, values = "receipt_review", {}
    payer = _payer_sms_number(session, payment, scheme, batch.lookup.countries if batch is not None else None)
    if payer and payer not in recipients:
        recipients.append(payer)
    head = None if household is None else batch.lookup.head_of(household) if batch is not None else household.head
    if head is not None and head.phone and head.phone not in recipients:
        recipients.append(head.phone)
    if household is None and language is None:  # suspense: the language of the scheme that collects this currency
        language = (batch.lookup if batch is not None else MatchLookup(session, [])).suspense_language(payment.currency)
    for index, phone in enumerate(recipients):
        key = f"receipt:{payment.id}:{outcome}" + ("" if index == 0 else f":{index}")
        if batch is not None and key in batch.receipts:
            continue
        send_sms(
            session,
            phone,
            template,
            language=language,
            household=household,
            dedupe_key=key,
            # Under the payment's row lock the batch has already looked for this key: no second look needed.
            dedupe_checked=batch is not None,
            amount=amount,
            **values,
        )
        if batch is not None:
            batch.receipts.add(key)
        log.info("receipt %s for payment %s queued to %s", template, payment.id, mask_phone(phone))


def _payer_sms_number(
    session: Session, payment: Payment, scheme: Scheme | None, countries: list[str] | None = None
) -> str | None:
    """Return the payer's E.164 number, read in the scheme's country first; None when masked or unreadable."""
    if scheme is not None and payment.payer_phone and "*" not in payment.payer_phone:
        try:
            return normalise_phone(payment.payer_phone, scheme.country, allow_foreign=True)
        except ValueError:
            pass
    if countries is None:
        numbers = sorted(payer_numbers(session, payment.payer_phone))
    else:
        numbers = sorted(_numbers_of(payment.payer_phone, countries))
    return numbers[0] if len(numbers) == 1 else None


def manual_match(
    session: Session,
    payment_id: int,
    actor: str,
    reason: str,
    household_no: str | None = None,
    network_code: str | None = None,
) -> str:
    """Match a payment by hand (staff) to a household or network, then allocate it when confirmed."""
    if not reason.strip():
        raise ValueError("a reason is required")
    payment = _lock(session, payment_id)
    if payment.status not in {
        PaymentStatus.UNMATCHED,
        PaymentStatus.RECEIVED,
        PaymentStatus.CONFLICT,
        PaymentStatus.PROVISIONAL,
    }:
        raise ValueError(f"payment {payment_id} is {payment.status.value}: nothing to match")
    if _funded(session, payment):  # a CONFLICT reported after allocation: its money sits on an account
        raise ValueError(f"payment {payment_id} has funded an account: reverse it first, then match it")
    if household_no:
        household = session.scalar(select(Household).where(func.upper(Household.household_no) == household_no.upper()))
        if household is None:
            raise LookupError(f"no household {household_no}")
        match = Match("manual", household=household)
    elif network_code:
        networks = list(session.scalars(select(Network).where(func.upper(Network.code) == network_code.upper())))
        if len(networks) != 1:
            raise LookupError(f"no single network {network_code}")
        match = Match("manual", network=networks[0])
    else:
        raise ValueError("name a household or a network")
    before = payment.status
    _apply_match(payment, match)
    payment.status = PaymentStatus.MATCHED if payment.confirmed else PaymentStatus.PROVISIONAL
    _event(session, payment, before, reason, "manual", actor=actor)
    session.flush()
    if not payment.confirmed:
        return "provisional"
    return allocate_payment(session, payment, actor=actor)


def _funded(session: Session, payment: Payment) -> bool:
    """Return whether the payment's allocation exists and is not undone."""
    allocation = find_allocation(session, f"payment:{payment.id}")
    return allocation is not None and allocation.reversed_at is None


def unmatch_payment(session: Session, payment_id: int, actor: str, reason: str) -> str:
    """Send a matched but not yet allocated payment back to suspense (staff), clearing its match."""
    if not reason.strip():
        raise ValueError("a reason is required")
    payment = _lock(session, payment_id)
    before = payment.status
    if before == PaymentStatus.ALLOCATED or _funded(session, payment):
        raise ValueError(f"payment {payment_id} has funded an account: reverse or refund it instead")
    if before not in {PaymentStatus.MATCHED, PaymentStatus.PROVISIONAL, PaymentStatus.CONFLICT}:
        raise ValueError(f"payment {payment_id} is {before.value}: nothing to unmatch")
    details: dict[str, object] = {
        "household_id": payment.household_id,
        "network_id": payment.network_id,
        "match_rule": payment.match_rule,
    }
    payment.household = None
    payment.network = None
    payment.payment_request = None
    payment.match_rule = None
    payment.match_confidence = None
    payment.status = PaymentStatus.UNMATCHED
    payment.status_reason = reason[:500]
    _event(session, payment, before, reason, "manual", actor=actor, details=details)
    session.flush()
    return "unmatched"


def undo_payment(session: Session, payment_id: int, actor: str, reason: str, refund_payer: bool = False) -> str:
    """Reverse (operator took the money back) or refund an allocated payment: exactly what it funded is undone."""
    if not reason.strip():
        raise ValueError("a reason is required")
    payment = _lock(session, payment_id)
    final = PaymentStatus.REFUNDED if refund_payer else PaymentStatus.REVERSED
    if payment.status == final:
        return "already done"
    before = payment.status
    # A payment allocated, then reported differently (CONFLICT), still funds its account: undo what it funded.
    if before == PaymentStatus.ALLOCATED or (before == PaymentStatus.CONFLICT and _funded(session, payment)):
        scheme = session.get(Scheme, payment.scheme_id)
        assert scheme is not None
        undo = refund if refund_payer else reverse
        today = utcnow().replace(tzinfo=UTC).astimezone(ZoneInfo(scheme.timezone)).date()
        result = undo(session, f"payment:{payment.id}", reason, today)
        details: dict[str, object] = {"amount": result.amount, "entries": result.entries}
    elif before in {
        PaymentStatus.UNMATCHED,
        PaymentStatus.CONFLICT,
        PaymentStatus.MATCHED,
        PaymentStatus.PROVISIONAL,
        PaymentStatus.RECEIVED,
    }:
        details = {"amount": 0, "entries": 0}  # nothing was funded
    else:
        raise ValueError(f"payment {payment_id} is {before.value}: cannot undo")
    payment.status = final
    payment.status_reason = reason[:500]
    _event(session, payment, before, reason, "refund" if refund_payer else "reversal", actor=actor, details=details)
    session.flush()
    return final.value.lower()
