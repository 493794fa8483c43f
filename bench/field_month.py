"""Field simulation of matching: one month of a scheme's payments, with ground truth (issue 18).

    .venv/bin/python bench/field_month.py [--households 2000] [--payments 1000] [--seed 18] [--url sqlite:///…]

A scheme of dense, sequential household numbers (SN-TN-000001…, no check digit), 8 networks whose treasurers pay
for them, heads with phones (some shared by two households), and a month of payments as the field makes them:
references from the pay flows, typed household or member numbers (from the payer's own phone, or a relative's
unregistered one) with single-keying slips (one digit changed, two adjacent swapped, one dropped), phone-only
payers, shared phones, someone paying for another household from their own registered phone, network treasurers
typing the code, the name as enrolled (any spacing, accents, case), an alias or nothing, and junk. Each payment
goes through intake and the batch reconciler as the worker runs them. Prints matched automatically %, suspense %,
the wrong-account count (target 0), the same per kind of payment, and a stress set of typed numbers that each
carry one keying slip.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import models  # noqa: E402
from models.base import EvidenceSource, Language, MemberStatus, PaymentStatus, Sex, utcnow  # noqa: E402
from models.bulk import analyze  # noqa: E402
from models.coverage.premiums import amount_due  # noqa: E402
from models.db import make_engine  # noqa: E402
from models.members.household import Household, Member, Network  # noqa: E402
from models.messaging.outbox import attach_dispatch  # noqa: E402
from models.payments.intake import Report, record_report  # noqa: E402
from models.payments.payment import Payment  # noqa: E402
from models.payments.references import create_payment_request  # noqa: E402
from models.reconciliation.batch import reconcile_payments  # noqa: E402
from models.schemes.mutuelle import home_mutuelle  # noqa: E402
from models.schemes.scheme import Scheme  # noqa: E402
from models.schemes.scheme_file import load_scheme, parse_scheme_file  # noqa: E402

ENROLLED_ON = date(2026, 10, 1)
MONTH_START = datetime(2026, 12, 1, 8, 0)
NETWORKS = [
    ("Réseau Keur Moussa", "GIE Keur Moussa"),
    ("Réseau Thiès Nord 1", "Thies Nord Un"),
    ("Réseau Pékesse", "Mutuelle Pekesse"),
    ("Réseau Mont Rolland", "GIE Mont-Rolland"),
    ("Réseau Notto", "Notto Diobass"),
    ("Réseau Fandène", "GIE Fandene"),
    ("Réseau Tassette", "Tassette Solidarite"),
    ("Réseau Cayar", "Pecheurs de Cayar"),
]
# Kinds of payment in a month and their weights (ground truth: the account each one is for).
MIX = {
    "request reference": 40,
    "own number, own phone": 14,
    "member number, own phone": 4,
    "number, relative's phone": 6,  # 70 % of them regulars, who paid the same household the month before
    "phone only": 20,
    "shared phone only": 3,
    "other household's number, own phone": 3,
    "network treasurer": 6,
    "junk": 4,
}
SLIP_SHARE = 0.15  # of typed numbers, one keying slip
SLIPS = ("one digit changed", "two adjacent swapped", "one digit dropped")
REGULAR_SHARE = 0.7  # of relatives who type a household number: they paid it last month (by reference)


@dataclass
class Figures:
    """What the month gave: counts per outcome, overall and per kind of payment."""

    total: int = 0
    matched: int = 0
    suspense: int = 0
    wrong: int = 0
    by_kind: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    wrong_cases: list[str] = field(default_factory=list)

    @property
    def matched_pct(self) -> float:
        """Return the share matched automatically (to the right account), in %."""
        return 100 * self.matched / self.total if self.total else 0.0

    @property
    def suspense_pct(self) -> float:
        """Return the share left in suspense (or conflict) for staff, in %."""
        return 100 * self.suspense / self.total if self.total else 0.0


@dataclass(frozen=True)
class Truth:
    """A simulated payment and the account it is really for (None: junk, nobody's)."""

    kind: str
    amount: int
    payer: str | None
    reference: str | None
    household_id: int | None = None
    network_id: int | None = None
    slip: str | None = None


def slipped(number: str, slip: str, rng: random.Random) -> str:
    """Return the number with one keying slip in its digits."""
    digits = [i for i, c in enumerate(number) if c.isdigit()]
    if slip == "two adjacent swapped":
        pairs = [i for i in digits if i + 1 in digits and number[i] != number[i + 1]]
        if pairs:
            i = rng.choice(pairs)
            return number[:i] + number[i + 1] + number[i] + number[i + 2 :]
        slip = "one digit changed"
    i = rng.choice(digits[-4:])  # slips happen where the digits vary: the last ones
    if slip == "one digit dropped":
        return number[:i] + number[i + 1 :]
    other = rng.choice([d for d in "0123456789" if d != number[i]])
    return number[:i] + other + number[i + 1 :]


def spelled(name: str, rng: random.Random) -> str:
    """Return a network name as a treasurer types it: accents, case and spacing vary."""
    plain = name.replace("é", "e").replace("è", "e") if rng.random() < 0.6 else name
    plain = plain.upper() if rng.random() < 0.3 else plain.lower() if rng.random() < 0.5 else plain
    return plain.replace(" ", "  ", 1) if rng.random() < 0.2 else plain


class Month:
    """A scheme's households, networks and phones, and the payments of one month with their truth."""

    def __init__(self, session: Session, households: int, seed: int) -> None:
        self.session = session
        self.rng = random.Random(seed)
        scheme = session.scalar(select(Scheme).where(Scheme.code == "cmu-thies"))
        if scheme is None:
            scheme = load_scheme(session, parse_scheme_file(ROOT / "schemes" / "cmu-thies.toml"))
        self.scheme: Scheme = scheme
        self.networks: list[Network] = []
        self.households: list[Household] = []
        self.phones: dict[int, str] = {}  # household id → the head's phone
        self.shared: list[Household] = []  # households whose head's phone another household has too
        self.treasurers: dict[int, str] = {}
        self.txn = 0
        self._build(households)

    def _build(self, count: int) -> None:
        session, rng, scheme = self.session, self.rng, self.scheme
        for index, (name, alias) in enumerate(NETWORKS):
            code = "reseau-" + name.split(" ", 1)[1].lower().replace(" ", "-").replace("è", "e").replace("é", "e")
            created = Network(
                scheme_id=scheme.id,
                mutuelle_id=home_mutuelle(session, scheme.id, "Thiès Nord").id,
                code=code,
                name=name,
                commune="Thiès",
                aliases=[alias],
            )
            created.contact_phone = f"+22178{index:07d}"
            session.add(created)
            self.networks.append(created)
        session.flush()
        plans = [p.code for p in scheme.plans]
        for n in range(1, count + 1):
            number = f"SN-TN-{n:06d}"
            network = self.networks[n % len(self.networks)] if rng.random() < 0.4 else None
            household = Household(
                household_no=number,
                scheme_id=scheme.id,
                mutuelle_id=home_mutuelle(session, scheme.id, "Thiès Nord").id,
                network_id=network.id if network is not None else None,
                head_member_no=f"{number}-01",
                commune="Thiès",
                subsidy_category=rng.choice(["standard"] * 8 + ["bsf"]),
                plan=rng.choice(plans),
                language=Language.FR,
                enrolled_on=ENROLLED_ON,
            )
            session.add(household)
            self.households.append(household)
        session.flush()
        for n, household in enumerate(self.households, start=1):
            phone = f"+22177{n:07d}" if rng.random() < 0.92 else None
            if phone and n > 1 and rng.random() < 0.03:  # a phone two households share (neighbours, co-wives)
                previous = self.households[n - 2]
                if previous.id in self.phones:
                    phone = self.phones[previous.id]
                    self.shared += [previous, household]
            if phone:
                self.phones[household.id] = phone
            for m in range(rng.randint(1, 8)):
                session.add(
                    Member(
                        member_no=f"{household.household_no}-{m + 1:02d}",
                        household_id=household.id,
                        last_name="Ndiaye",
                        first_name=rng.choice(["Awa", "Moussa", "Fatou", "Ibrahima", "Aminata", "Cheikh"]),
                        sex=Sex.F if m % 2 == 0 else Sex.M,
                        date_of_birth=date(1950 + rng.randint(0, 60), 1 + m % 12, 1 + m),
                        relationship_to_head="head" if m == 0 else "child",
                        phone=phone if m == 0 else None,
                        status=MemberStatus.ACTIVE,
                        joined_on=ENROLLED_ON,
                    )
                )
        # Half the treasurers are members of a household of their network; the others of none.
        for index, network in enumerate(self.networks):
            members = [h for h in self.households if h.network_id == network.id and h.id in self.phones]
            if index % 2 == 0 and members:
                network.contact_phone = self.phones[members[0].id]
            assert network.contact_phone is not None
            self.treasurers[network.id] = network.contact_phone
        session.commit()
        analyze(session)

    def due(self, household: Household, on: date) -> int:
        """Return what the household owes now (at least one period's share, for households that owe nothing)."""
        return amount_due(self.session, household, on).total

    def _payable(self, with_phone: bool = False) -> Household:
        while True:
            household = self.rng.choice(self.households)
            if household.subsidy_category == "bsf" or household in self.shared:
                continue
            if not with_phone or household.id in self.phones:
                return household

    def _amount(self, household: Household, on: date) -> int:
        due = self.due(household, on) or 3_500
        return due if self.rng.random() < 0.75 else max(500, due // 2 // 500 * 500)  # or an instalment

    def _typed(self, number: str, kind: str) -> tuple[str, str | None]:
        if self.rng.random() < SLIP_SHARE:
            slip = self.rng.choice(SLIPS)
            return slipped(number, slip, self.rng), slip
        return number, None

    def truth(self, kind: str, on: date) -> Truth:
        """Return one payment of a kind, as a payer would make it, with the account it is for."""
        rng = self.rng
        if kind == "network treasurer":
            network = rng.choice(self.networks)
            amount = rng.randint(6, 20) * 10_000
            how = rng.choice(["code", "name", "name", "alias", "nothing"])
            name_alias = next(alias for name, alias in NETWORKS if name == network.name)
            reference = {
                "code": network.code.upper(),
                "name": spelled(network.name, rng),
                "alias": spelled(name_alias, rng),
                "nothing": None,
            }[how]
            return Truth(kind, amount, self.treasurers[network.id], reference, network_id=network.id)
        if kind == "junk":
            reference = rng.choice([None, "merci", "cotisation", "test", "12345"])
            return Truth(kind, rng.randint(1, 40) * 500, f"+22170{rng.randint(0, 9_999_999):07d}", reference)
        if kind == "shared phone only":
            household = rng.choice(self.shared) if self.shared else self._payable()
            return Truth(kind, self._amount(household, on), self.phones.get(household.id), None, household.id)
        # Who pays from their own phone has one registered; the others (no phone on the card) use references.
        household = self._payable(with_phone=kind != "request reference" and "relative" not in kind)
        amount = self._amount(household, on)
        own = self.phones.get(household.id)
        if kind == "request reference":
            request = create_payment_request(
                self.session,
                scheme=self.scheme,
                household=household,
                amount=amount,
                payer_phone=own,
                channel=rng.choice(["ussd", "sms"]),
                now=utcnow(),
            )
            return Truth(kind, amount, own or f"+33612{rng.randint(0, 999_999):06d}", request.reference, household.id)
        if kind == "phone only":
            return Truth(kind, amount, own, None, household.id)
        if kind == "other household's number, own phone":
            payer_household = self._payable(with_phone=True)
            typed, slip = self._typed(household.household_no, kind)
            return Truth(kind, amount, self.phones.get(payer_household.id), typed, household.id, slip=slip)
        number = household.household_no if kind != "member number, own phone" else f"{household.household_no}-01"
        typed, slip = self._typed(number, kind)
        if "own phone" in kind:
            return Truth(kind, amount, own, typed, household.id, slip=slip)
        relative = f"+33612{household.id:06d}"  # each household's relative abroad
        if rng.random() < REGULAR_SHARE:
            kind = "number, regular relative's phone"
            self.paid_last_month(household, relative, on)
            amount = self._amount(household, on)
        else:
            kind = "number, new relative's phone"
        return Truth(kind, amount, relative, typed, household.id, slip=slip)

    def paid_last_month(self, household: Household, phone: str, on: date) -> None:
        """Record and reconcile the relative's payment of last month, made with a reference (not counted)."""
        amount = self._amount(household, on)
        request = create_payment_request(
            self.session,
            scheme=self.scheme,
            household=household,
            amount=amount,
            payer_phone=phone,
            channel="sms",
            now=utcnow(),
        )
        self.session.commit()
        previous = Truth("last month", amount, phone, request.reference, household.id)
        payment_id = self.record(previous, datetime.combine(on, datetime.min.time()) - timedelta(days=30))
        self.session.commit()
        reconcile_payments(self.session, [payment_id])
        self.session.commit()

    def record(self, truth: Truth, paid_at: datetime) -> int:
        """Bring the payment through intake, as a Wave webhook, and return its id."""
        self.txn += 1
        raw = json.dumps([self.txn, truth.amount, truth.reference, truth.payer])
        report = Report(
            provider="wave",
            provider_txn_id=f"T_FIELD{self.txn:06d}",
            amount=truth.amount,
            currency="XOF",
            payer_phone=truth.payer,
            reference=truth.reference,
            paid_at=paid_at,
            source=EvidenceSource.WEBHOOK,
            route="field",
            raw=raw,
            confirms=True,
        )
        return record_report(self.session, report).payment_id


def judge(session: Session, truths: dict[int, Truth], figures: Figures) -> None:
    """Compare each payment's outcome with its truth."""
    payments = session.scalars(select(Payment).where(Payment.id.in_(list(truths)))).all()
    for payment in payments:
        truth = truths[payment.id]
        figures.total += 1
        kind = truth.kind + (f" ({truth.slip})" if truth.slip else "")
        matched = payment.household_id is not None or payment.network_id is not None
        right = (payment.household_id, payment.network_id) == (truth.household_id, truth.network_id)
        if matched and not right:
            figures.wrong += 1
            figures.by_kind[kind]["wrong"] += 1
            figures.wrong_cases.append(f"{kind}: {truth.reference!r} → {payment.status_reason or payment.match_rule}")
        elif matched:
            figures.matched += 1
            figures.by_kind[kind]["matched"] += 1
        else:
            assert payment.status in {PaymentStatus.UNMATCHED, PaymentStatus.CONFLICT}, payment.status
            figures.suspense += 1
            figures.by_kind[kind]["suspense"] += 1


def reconcile_all(session: Session, ids: list[int], batch: int = 50) -> None:
    """Reconcile payments in batches, in id order, as the worker does."""
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        outcomes = reconcile_payments(session, chunk)
        session.commit()
        again = [pid for pid, outcome in outcomes.items() if outcome in {"retry", "deferred"}]
        for pid in again:
            reconcile_payments(session, [pid])
            session.commit()


def simulate(session: Session, households: int = 2000, payments: int = 1000, seed: int = 18) -> Figures:
    """Run a month of payments against a fresh scheme and return the figures (the session's database is filled)."""
    attach_dispatch(session, lambda ids: None)  # receipts are queued, not sent
    month = Month(session, households, seed)
    rng = month.rng
    kinds = list(MIX)
    weights = [MIX[k] for k in kinds]
    truths: dict[int, Truth] = {}
    for index in range(payments):
        paid_at = MONTH_START + timedelta(minutes=index * 30 * 24 * 60 // max(1, payments))
        truth = month.truth(rng.choices(kinds, weights)[0], paid_at.date())
        session.commit()
        truths[month.record(truth, paid_at)] = truth
        session.commit()
    reconcile_all(session, sorted(truths))
    figures = Figures()
    judge(session, truths, figures)
    return figures


def slip_stress(session: Session, count: int = 100, seed: int = 19) -> Figures:
    """Return the figures of `count` typed numbers that each carry one keying slip (after `simulate`)."""
    rng = random.Random(seed)
    households = session.scalars(select(Household).order_by(Household.id)).all()
    phones = {m.household_id: m.phone for m in session.scalars(select(Member).where(Member.phone.is_not(None)))}
    truths: dict[int, Truth] = {}
    for index in range(count):
        household = rng.choice([h for h in households if h.subsidy_category != "bsf"])
        slip = SLIPS[index % len(SLIPS)]
        own = index % 2 == 0 and household.id in phones
        payer = phones[household.id] if own else f"+33612{rng.randint(0, 999_999):06d}"
        kind = "typed number, own phone" if own else "typed number, relative's phone"
        truth = Truth(kind, 3_500 * rng.randint(1, 4), payer, slipped(household.household_no, slip, rng), household.id)
        truth = Truth(truth.kind, truth.amount, truth.payer, truth.reference, truth.household_id, slip=slip)
        report = Report(
            provider="wave",
            provider_txn_id=f"T_SLIP{index:04d}",
            amount=truth.amount,
            currency="XOF",
            payer_phone=payer,
            reference=truth.reference,
            paid_at=MONTH_START + timedelta(days=29),
            source=EvidenceSource.WEBHOOK,
            route="field",
            raw=json.dumps([index, truth.reference]),
            confirms=True,
        )
        truths[record_report(session, report).payment_id] = truth
        session.commit()
    reconcile_all(session, sorted(truths))
    figures = Figures()
    judge(session, truths, figures)
    return figures


def report(title: str, figures: Figures) -> str:
    """Return the figures as printed lines."""
    lines = [
        f"{title}: {figures.total} payments — matched automatically {figures.matched_pct:.1f} %, "
        f"suspense {figures.suspense_pct:.1f} %, wrong account {figures.wrong}"
    ]
    for kind in sorted(figures.by_kind):
        c = figures.by_kind[kind]
        lines.append(f"  {kind:<48} matched {c['matched']:>4}  suspense {c['suspense']:>4}  wrong {c['wrong']:>2}")
    lines += [f"  WRONG: {case}" for case in figures.wrong_cases[:20]]
    return "\n".join(lines)


def main() -> int:
    """Run the simulation on a fresh database and print the figures; exit 1 on any wrong account."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=2000)
    parser.add_argument("--payments", type=int, default=1000)
    parser.add_argument("--slips", type=int, default=100)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument(
        "--database-url", "--url", dest="url", help="an empty database (default: a temporary SQLite file)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/field_month.db"
        engine = make_engine(url)
        models.Base.metadata.create_all(engine)
        with Session(engine, expire_on_commit=False) as session:
            month = simulate(session, args.households, args.payments, args.seed)
            stress = slip_stress(session, args.slips, args.seed + 1)
        engine.dispose()
    print(report("month", month))
    print(report("keying-slip stress", stress))
    return 1 if month.wrong or stress.wrong else 0


if __name__ == "__main__":
    sys.exit(main())
