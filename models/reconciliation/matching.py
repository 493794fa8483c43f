"""Matching: which household or network a payment is for, or why it waits in suspense (the reconciler's first step).

Matching (docs/matching.md has the table, tested row by row): signals must
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
otherwise UNMATCHED (suspense) with the reason and the ranked candidates. Matching never crosses mutuelles: every
candidate (request, named account, payer's households, network contacts, slip neighbours, paid before) must belong to
a mutuelle the account paid serves (`MatchLookup.mutuelles`; any mutuelle when the account names none), and a
reference naming another mutuelle's account is suspense. The evidence used goes into the
ReconciliationEvent's details. A payment matched before (a provisional one now confirmed) keeps its account: a
later report naming another one makes it CONFLICT for review, and changes no ledger.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from models.base import MemberStatus, PaymentStatus, RequestStatus, utcnow
from models.bulk import among
from models.coverage.ledger import AccountState, account_states
from models.coverage.premiums import active_member_counts, amount_due, is_fully_subsidised, max_advance_periods
from models.inputs import squash
from models.members.household import Account, Household, Member, Network
from models.members.phones import normalise_phone
from models.payments.payment import Payment, PaymentRequest
from models.payments.references import is_valid_reference
from models.schemes.mutuelle import Mutuelle, ReportedAccount, mutuelles_of_account
from models.schemes.scheme import Scheme

log = logging.getLogger(__name__)

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
    def mutuelle_id(self) -> int:
        """Return the mutuelle of the matched owner: the payment is attributed to it."""
        owner = self.household if self.household is not None else self.network
        assert owner is not None
        return owner.mutuelle_id

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
    mutuelles: frozenset[int] | None = None  # the mutuelles the account paid serves; None: any

    def allows(self, owner: Household | Network | None) -> bool:
        """Return whether a household or network belongs to a mutuelle the payment may be matched in."""
        return owner is not None and (self.mutuelles is None or owner.mutuelle_id in self.mutuelles)

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


def numbers_of(raw: str | None, countries: list[str]) -> set[str]:
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
    return numbers_of(raw, _countries(session))


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
        # Every scheme (a handful), held so `session.get(Scheme, …)` never queries again in this batch, with what the
        # amount rules read: a lazy load while the batch settles its payments would flush them one by one.
        loaded = (selectinload(Scheme.plans), selectinload(Scheme.subsidy_categories), selectinload(Scheme.bands))
        self.schemes = list(session.scalars(select(Scheme).options(*loaded)))
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
            self.numbers[payment.id] = numbers_of(payment.payer_phone, self.countries)
            phones |= self.numbers[payment.id]
        open_now = (PaymentRequest.status == RequestStatus.OPEN, PaymentRequest.expires_at > self.now)
        self.requests_by_reference: dict[str, list[PaymentRequest]] = {}
        self.requests_by_phone: list[PaymentRequest] = []
        self.households: dict[str, Household] = {}
        self.member_households: dict[str, int] = {}
        self.phone_households: dict[str, set[int]] = {}
        self.paid_before: dict[str, set[int]] = {}
        self.paid_before_mutuelle: dict[int, int] = {}
        self.mutuelle_codes: dict[int, str] = dict(session.execute(select(Mutuelle.id, Mutuelle.code)).tuples().all())
        self.account_mutuelles: dict[tuple[str, str], frozenset[int] | None] = {}
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
                select(Payment.payer_phone, Payment.household_id, Household.mutuelle_id)
                .join(Household, Payment.household_id == Household.id)
                .where(
                    among(session, Payment.payer_phone, payers),
                    Payment.status == PaymentStatus.ALLOCATED,
                    Payment.household_id.is_not(None),
                    Payment.match_rule.in_(VOUCHING_RULES),
                )
                .distinct()
            )
            for payer, household_id, mutuelle_id in rows:
                self.paid_before.setdefault(str(payer), set()).add(household_id)
                self.paid_before_mutuelle[household_id] = mutuelle_id
        # Warm the identity map with every household a rule may pick, and read their heads' phones (for receipts).
        wanted = {r.household_id for r in self.requests_by_phone if r.household_id is not None}
        wanted |= {r.household_id for rs in self.requests_by_reference.values() for r in rs if r.household_id}
        wanted |= set(self.member_households.values()) | {i for ids in self.phone_households.values() for i in ids}
        wanted |= {h.id for h in self.households.values()}
        # Held here: the session's identity map keeps only objects something else refers to.
        self.owners: list[Household] = []
        self.head_phones: dict[int, str | None] = {}
        if wanted:
            self.owners = list(session.scalars(select(Household).where(among(session, Household.id, wanted))))
            heads = (
                select(Member.household_id, Member.phone)
                .join(Household, Member.household_id == Household.id)
                .where(among(session, Household.id, wanted), Member.member_no == Household.head_member_no)
            )
            self.head_phones = dict(session.execute(heads).tuples().all())
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

    def mutuelles(self, session: Session, payment: Payment) -> frozenset[int] | None:
        """Return the mutuelles a payment may be matched in: its account's (once per batch), else the one a device or
        statement attributed it to, else None (any mutuelle)."""
        found = None
        if payment.account:
            key = (payment.provider, payment.account)
            if key not in self.account_mutuelles:
                reported = ReportedAccount(payment.provider, payment.account)
                self.account_mutuelles[key] = mutuelles_of_account(session, reported)
            found = self.account_mutuelles[key]
        if found is None and payment.mutuelle_id is not None:
            return frozenset({payment.mutuelle_id})
        return found

    def codes(self, mutuelles: frozenset[int] | None) -> str:
        """Return mutuelles by code ("SN-TN, SN-MR")."""
        return ", ".join(sorted(self.mutuelle_codes.get(i, str(i)) for i in mutuelles or ()))

    def head_phone(self, household: Household) -> str | None:
        """Return the phone of the head of a household (of those this batch may pick: read with them, not their
        members)."""
        if household.id in self.head_phones:
            return self.head_phones[household.id]
        head = household.head
        return head.phone if head is not None else None

    def suspense_language(self, currency: str) -> str | None:
        """Return the language of a payment no household claims: that of the one scheme collecting its currency."""
        defaults = {scheme.default_language for scheme in self.schemes if scheme.currency == currency}
        return str(defaults.pop()) if len(defaults) == 1 else None

    def reads_any(self, payment: Payment, request_ids: set[int], payer_phones: set[str]) -> bool:
        """Return whether matching the payment may read one of these requests (by id, or by payer phone).

        In a batch only requests change as payments are settled (an earlier payment pays one): a payment that reads
        none of those paid since it was matched would be matched the same again.
        """
        if payer_phones and not _numbers_of_payment(payment, self).isdisjoint(payer_phones):
            return True
        return any(r.id in request_ids for r in self.requests_by_reference.get(_reference_of(payment), ()))

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
    return numbers if numbers is not None else numbers_of(payment.payer_phone, lookup.countries)


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
    attempt.mutuelles = lookup.mutuelles(session, payment)
    if attempt.mutuelles is not None:
        evidence["mutuelles"] = lookup.codes(attempt.mutuelles)
    phone_households = sorted(
        (
            h
            for h in (session.get(Household, i) for i in lookup.households_of(numbers))
            if h is not None and attempt.allows(h)
        ),
        key=lambda h: h.household_no,
    )
    evidence["payer"] = "unknown or masked" if not numbers else "registered" if phone_households else "unregistered"
    evidence["payer_households"] = [h.household_no for h in phone_households]
    if reference and is_valid_reference(reference):
        requests = lookup.open_requests(reference)
        if requests:
            request = requests[0]
            owner = request.network if request.network is not None else request.household
            if not attempt.allows(owner):
                _another_mutuelle(lookup, attempt, owner, f"reference {reference} is a payment request of")
                return attempt
            attempt.match = _owner_of_request(request)
            evidence["request"] = reference
            return attempt
        attempt.notes.append(f"reference {reference} is not an open payment request")
    named = lookup.named_households(session, reference) if reference else {}
    networks = lookup.named_networks(reference)
    evidence["named"] = [h.household_no for h, _ in named.values()] + [n.code for n, _ in networks]
    foreign: list[Household | Network] = [h for h, _ in named.values() if not attempt.allows(h)]
    foreign += [n for n, _ in networks if not attempt.allows(n)]
    if foreign:
        for owner in foreign:
            _another_mutuelle(lookup, attempt, owner, "reference names")
        return attempt
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
    requests = [
        r
        for r in lookup.requests_from(numbers, payment.amount, payment.currency)
        if attempt.allows(r.network if r.network is not None else r.household)
    ]
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


def _another_mutuelle(lookup: MatchLookup, attempt: MatchAttempt, owner: Household | Network | None, said: str) -> None:
    """Note that the payment names an account of another mutuelle than the account paid: never matched there."""
    if owner is None:
        return
    label = f"network {owner.code}" if isinstance(owner, Network) else f"household {owner.household_no}"
    theirs = lookup.mutuelle_codes.get(owner.mutuelle_id, str(owner.mutuelle_id))
    attempt.notes.append(
        f"{said} {label} of another mutuelle ({theirs}) than the account paid ({lookup.codes(attempt.mutuelles)})"
    )
    attempt.evidence.setdefault("other_mutuelle", []).append(label)


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
    paid_before = {
        i for i in paid_before if attempt.mutuelles is None or lookup.paid_before_mutuelle[i] in attempt.mutuelles
    }
    evidence["paid_before"] = sorted(paid_before)
    if paid_before == {household.id} and fit is not None:
        attempt.match = Match("account_number_history", household=household)
        return
    if fit is None:
        attempt.notes.append(f"amount fits nothing household {household.household_no} may pay")
        return
    # Only the typed number speaks: it must not be one keying slip from another household the amount fits.
    neighbours = [o for o in slip_neighbours(session, token) if o.id != household.id and attempt.allows(o)]
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
    neighbours = [other for other in slip_neighbours(session, token) if attempt.allows(other)]
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
    contacts = [network for network in lookup.contact_networks(numbers) if attempt.allows(network)]
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


def suspense_candidates(session: Session, payment: Payment) -> list[Candidate]:
    """Return the accounts a payment in suspense may be for, likeliest first, each with why (reads only)."""
    attempt = find_match(session, payment)
    if attempt.match is not None:  # the signals agree now (say, a household enrolled since): that account first
        match = attempt.match
        kind, number = account_label(match).split(" ", 1)
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
    attempt.evidence["matched_before"] = account_label(kept)
    kept_number = account_label(kept).split(" ", 1)[1]
    named = attempt.evidence.get("named") or []
    if attempt.match is not None and attempt.match.owner != kept.owner:
        elsewhere = account_label(attempt.match)
    elif named and kept_number not in named:
        elsewhere = "the reference " + ", ".join(named)
    else:
        attempt.match = kept
        return attempt
    attempt.conflict = f"matched to {account_label(kept)} by {kept.rule}; a later report points to {elsewhere}"
    attempt.match = None
    return attempt


def account_label(match: Match) -> str:
    if match.network is not None:
        return f"network {match.network.code}"
    assert match.household is not None
    return f"household {match.household.household_no}"


def candidates_detail(attempt: MatchAttempt) -> list[dict[str, str]]:
    return [{"kind": c.kind, "number": c.number, "why": c.why} for c in attempt.ranked()]
