"""Store each operator transaction once, whatever route reports it, with one evidence row per report.

Rules (docs/http-contract.md, "Payments"):
- identity is (provider, provider_txn_id); the first report creates the Payment, later ones add evidence only;
- a report repeated verbatim by the same source and route (a webhook retry, a re-forwarded text) is stored once;
- a later report is compared with the payment on the fields both carry: amount and currency always, the reference
  when both have one, the payer phone when both have a readable one (right-aligned digits, trunk zeros and country
  codes ignored, `*` masks match anything); any difference → CONFLICT with a ReconciliationEvent, nothing applied;
- a payment known only from a forwarded text is PROVISIONAL (confirmed=False) unless its device is trusted; the first
  consistent webhook or statement report confirms it, fills the reference it lacked, takes that report's payer phone
  (the same number, often in a fuller form) and sends it back to RECEIVED for the reconcile job;
- the account paid (a Wave merchant, a Daraja shortcode, a statement's account; a device's mutuelle) attributes the
  payment to the mutuelle it serves when it serves one (`mutuelle_id`); a later report fills an account the payment
  lacked, and one whose account serves none of the payment's mutuelles → CONFLICT (field `account`).
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.access.tables import CollectionDevice
from models.base import EvidenceSource, PaymentStatus
from models.db import begin_write
from models.inputs import squash
from models.members.household import Household, Member, Network
from models.payments.payment import Payment, PaymentEvidence, PaymentRequest, ReconciliationEvent, UnparsedForward
from models.payments.references import is_valid_reference
from models.schemes.mutuelle import ACCOUNT_MAX, ReportedAccount, mutuelles_of_account

INTAKE_ACTOR = "intake"
CONFIRMING_SOURCES = frozenset({EvidenceSource.WEBHOOK, EvidenceSource.STATEMENT, EvidenceSource.MANUAL})
# Statuses a confirmation sends back to RECEIVED so the reconcile job matches (and now funds) the payment.
_RECONSIDERED_ON_CONFIRMATION = frozenset({PaymentStatus.PROVISIONAL, PaymentStatus.UNMATCHED, PaymentStatus.RECEIVED})
_PHONE_LIKE = re.compile(r"^\+?[\d*][\d* \-]{5,}$")


class IntakeOutcome(enum.StrEnum):
    CREATED = "created"
    EVIDENCE = "evidence"
    REPEAT = "repeat"
    CONFIRMED = "confirmed"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class Report:
    """One source's report of an operator transaction, normalised (amount in minor units)."""

    provider: str
    provider_txn_id: str
    amount: int
    currency: str
    payer_phone: str | None
    reference: str | None
    paid_at: datetime
    source: EvidenceSource
    route: str
    raw: str
    device_id: int | None = None
    scheme_id: int | None = None
    confirms: bool = True
    repeat_key: str | None = None  # what makes two reports "the same report"; defaults to the raw payload
    statement_line_id: int | None = None  # the statement line a STATEMENT report comes from
    account: str | None = None  # the account paid, as reported (merchant, shortcode, statement's account)
    mutuelle_id: int | None = None  # the mutuelle paid when the route knows it directly (a device's)


@dataclass(frozen=True)
class IntakeResult:
    """What storing a report did, and whether the reconcile job must (re)consider the payment."""

    payment_id: int
    outcome: IntakeOutcome
    status: PaymentStatus
    needs_reconcile: bool


def clean_reference(reference: str | None) -> str | None:
    """Return the account reference trimmed and upper-cased, or None when empty."""
    if reference is None:
        return None
    cleaned = re.sub(r"\s+", " ", str(reference)).strip().upper()
    return cleaned or None


def clean_phone(phone: str | None) -> str | None:
    """Return the payer phone without spaces or dashes (masks and hashes kept as reported), or None."""
    if phone is None:
        return None
    cleaned = re.sub(r"[\s\-().]", "", str(phone))
    return cleaned or None


def fields_hash(amount: int, currency: str, reference: str | None, payer: str | None) -> str:
    """Return the sha256 of the normalised fields (amount, currency, reference, payer)."""
    material = json.dumps([amount, currency.upper(), clean_reference(reference) or "", clean_phone(payer) or ""])
    return hashlib.sha256(material.encode()).hexdigest()


def sha256_text(text: str) -> str:
    """Return the hex sha256 of a text."""
    return hashlib.sha256(text.encode()).hexdigest()


def _phone_digits(phone: str) -> str:
    digits = re.sub(r"[^\d*]", "", phone)
    return digits.lstrip("0")  # trunk prefix "0…" and international "00…"


def phones_agree(a: str | None, b: str | None) -> bool:
    """Return whether two payer phones may be the same number (unreadable or masked parts never disagree)."""
    if not a or not b or not _PHONE_LIKE.match(a) or not _PHONE_LIKE.match(b):
        return True
    x, y = _phone_digits(a), _phone_digits(b)
    n = min(len(x), len(y))
    if n < 6:
        return True
    return all(p == q or "*" in (p, q) for p, q in zip(x[-n:], y[-n:], strict=True))


def differences(payment: Payment, report: Report) -> dict[str, list[str | int | None]]:
    """Return the normalised fields both carry that differ between the payment and a report."""
    found: dict[str, list[str | int | None]] = {}
    if payment.amount != report.amount:
        found["amount"] = [payment.amount, report.amount]
    if payment.currency != report.currency:
        found["currency"] = [payment.currency, report.currency]
    stored_ref, reported_ref = clean_reference(payment.account_reference), clean_reference(report.reference)
    if stored_ref and reported_ref and stored_ref != reported_ref:
        found["reference"] = [stored_ref, reported_ref]
    if not phones_agree(payment.payer_phone, report.payer_phone):
        found["payer"] = [payment.payer_phone, report.payer_phone]
    return found


def clean_account(account: str | None) -> str | None:
    """Return a reported account trimmed and bounded, or None when empty."""
    cleaned = re.sub(r"\s+", " ", account or "").strip()
    return cleaned[:ACCOUNT_MAX] or None


def report_mutuelles(session: Session, report: Report) -> frozenset[int] | None:
    """Return the mutuelles a report says the payment was made to (its account's, or its device's), or None."""
    found = mutuelles_of_account(session, _reported(report.provider, report.account))
    if found is None and report.mutuelle_id is not None:
        return frozenset({report.mutuelle_id})
    return found


def payment_mutuelles(session: Session, payment: Payment) -> frozenset[int] | None:
    """Return the mutuelles a payment may belong to: its account's, else the one it is attributed to, else None."""
    found = mutuelles_of_account(session, _reported(payment.provider, payment.account))
    if found is None and payment.mutuelle_id is not None:
        return frozenset({payment.mutuelle_id})
    return found


def paid_to_mutuelles(session: Session, payment: Payment) -> frozenset[int] | None:
    """Return the mutuelles a payment was paid to, from what reported it: its account's, else its devices'; or None.

    Unlike `payment_mutuelles`, a match does not count: staff may match and unmatch only within these.
    """
    found = mutuelles_of_account(session, _reported(payment.provider, payment.account))
    if found is not None:
        return found
    devices = select(PaymentEvidence.device_id).where(PaymentEvidence.payment_id == payment.id)
    rows = session.scalars(
        select(CollectionDevice.mutuelle_id).where(
            CollectionDevice.id.in_(devices), CollectionDevice.mutuelle_id.is_not(None)
        )
    )
    return frozenset(i for i in rows if i is not None) or None


def single_mutuelle(mutuelles: frozenset[int] | None) -> int | None:
    """Return the one mutuelle of a set of one, else None."""
    return next(iter(mutuelles)) if mutuelles is not None and len(mutuelles) == 1 else None


def _reported(provider: str, account: str | None) -> ReportedAccount | None:
    return ReportedAccount(provider, account) if account else None


def account_difference(session: Session, payment: Payment, report: Report) -> list[str | int | None] | None:
    """Return [stored, reported] accounts when the report's serves none of the payment's mutuelles, else None."""
    reported = report_mutuelles(session, report)
    stored = payment_mutuelles(session, payment)
    if reported is None or stored is None or reported & stored:
        return None
    return [payment.account or f"mutuelle {payment.mutuelle_id}", report.account or f"mutuelle {report.mutuelle_id}"]


def _fill_account(session: Session, payment: Payment, report: Report) -> None:
    """Take the report's account when the payment had none, and its mutuelle when not attributed yet."""
    account = clean_account(report.account)
    if payment.account is None and account is not None:
        payment.account = account
    if payment.mutuelle_id is None:
        payment.mutuelle_id = single_mutuelle(report_mutuelles(session, report))


def _is_full_phone(phone: str | None) -> bool:
    return bool(phone) and "*" not in (phone or "") and bool(_PHONE_LIKE.match(phone or ""))


def _locked_payment(session: Session, provider: str, txn_id: str) -> Payment | None:
    return session.scalar(
        select(Payment)
        .where(Payment.provider == provider, Payment.provider_txn_id == txn_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def record_report(session: Session, report: Report) -> IntakeResult:
    """Store a report: create its Payment or add evidence to the existing one; the caller commits."""
    begin_write(session)
    reference, payer = clean_reference(report.reference), clean_phone(report.payer_phone)
    txn_id = report.provider_txn_id.strip()
    payment = _locked_payment(session, report.provider, txn_id)
    if payment is None:
        status = PaymentStatus.RECEIVED if report.confirms else PaymentStatus.PROVISIONAL
        candidate = Payment(
            provider=report.provider,
            provider_txn_id=txn_id,
            amount=report.amount,
            currency=report.currency,
            payer_phone=payer,
            account_reference=reference,
            paid_at=report.paid_at,
            fields_hash=fields_hash(report.amount, report.currency, reference, payer),
            status=status,
            confirmed=report.confirms,
            scheme_id=report.scheme_id,
            account=clean_account(report.account),
            mutuelle_id=single_mutuelle(report_mutuelles(session, report)),
        )
        try:
            # A concurrent request may insert the same transaction first: the savepoint keeps our transaction alive.
            with session.begin_nested():
                session.add(candidate)
        except IntegrityError:
            payment = _locked_payment(session, report.provider, txn_id)
            if payment is None:
                raise
        else:
            _add_evidence(session, candidate, report)
            session.add(
                ReconciliationEvent(
                    payment_id=candidate.id,
                    actor=INTAKE_ACTOR,
                    rule=f"{report.source.value}:{report.route}",
                    before_status=None,
                    after_status=status.value,
                    note="provisional: known only from a forwarded text" if not report.confirms else "received",
                )
            )
            session.flush()
            return IntakeResult(candidate.id, IntakeOutcome.CREATED, status, needs_reconcile=True)
    return _add_report(session, payment, report)


def _add_evidence(session: Session, payment: Payment, report: Report) -> bool:
    """Add the report's evidence row; return False when this very report is already stored."""
    raw_hash = sha256_text(report.repeat_key if report.repeat_key is not None else report.raw)
    existing = session.scalar(
        select(PaymentEvidence.id).where(
            PaymentEvidence.payment_id == payment.id,
            PaymentEvidence.source == report.source,
            PaymentEvidence.route == report.route,
            PaymentEvidence.raw_hash == raw_hash,
        )
    )
    if existing is not None:
        return False
    evidence = PaymentEvidence(
        payment_id=payment.id,
        source=report.source,
        route=report.route,
        fields_hash=fields_hash(report.amount, report.currency, report.reference, report.payer_phone),
        raw=report.raw,
        raw_hash=raw_hash,
        device_id=report.device_id,
        statement_line_id=report.statement_line_id,
    )
    try:
        with session.begin_nested():
            session.add(evidence)
    except IntegrityError:
        return False
    return True


def names_another_account(session: Session, payment: Payment, reference: str | None) -> str | None:
    """Return the account a reference names when the payment is matched to another one ("household SN-…"), else None.

    What a reference names: a payment request (any status) by its reference, a household or member number, a
    network's code, name or alias. A reference that names nothing, or the payment's own account, is no disagreement.
    """
    ref = clean_reference(reference)
    if not ref or (payment.household_id is None and payment.network_id is None):
        return None
    named: list[tuple[str, int | None, int | None]] = []
    if is_valid_reference(ref):
        request = session.scalar(
            select(PaymentRequest).where(PaymentRequest.reference == ref).order_by(PaymentRequest.id.desc()).limit(1)
        )
        if request is not None:
            owner = request.network.code if request.network is not None else None
            if owner is None and request.household is not None:
                owner = request.household.household_no
            named.append((owner or request.reference, request.household_id, request.network_id))
    words = set(re.findall(r"[A-Z0-9][A-Z0-9\-_/.]*[A-Z0-9]", ref))
    if words:
        for household in session.scalars(select(Household).where(func.upper(Household.household_no).in_(words))):
            named.append((household.household_no, household.id, None))
        for member in session.scalars(select(Member).where(func.upper(Member.member_no).in_(words))):
            named.append((member.household.household_no, member.household_id, None))
    words_in_order = ref.split()[:20]
    spans = {
        squash(" ".join(words_in_order[i:j]))
        for i in range(len(words_in_order))
        for j in range(i + 1, len(words_in_order) + 1)
    }
    for network in session.scalars(select(Network)):
        if network.match_keys & spans:
            named.append((network.code, None, network.id))
    for label, household_id, network_id in named:
        if (household_id, network_id) != (payment.household_id, payment.network_id):
            return f"{'network' if network_id else 'household'} {label}"
    return None


def _add_report(session: Session, payment: Payment, report: Report) -> IntakeResult:
    if not _add_evidence(session, payment, report):
        return IntakeResult(payment.id, IntakeOutcome.REPEAT, payment.status, needs_reconcile=False)
    diffs = differences(payment, report)
    other_account = account_difference(session, payment, report)
    if other_account is not None:
        diffs["account"] = other_account
    elsewhere = None
    if not diffs and not clean_reference(payment.account_reference):
        # A matched payment without reference: a later report's reference must not name another account.
        elsewhere = names_another_account(session, payment, report.reference)
        if elsewhere is not None:
            diffs["reference"] = [None, clean_reference(report.reference)]
    if diffs:
        before = payment.status
        payment.status = PaymentStatus.CONFLICT
        payment.status_reason = f"{report.source.value}:{report.route} reports different {', '.join(sorted(diffs))}"
        if elsewhere is not None:
            payment.status_reason += f": it names {elsewhere}, the payment is on another account"
        session.add(
            ReconciliationEvent(
                payment_id=payment.id,
                actor=INTAKE_ACTOR,
                rule="conflict",
                before_status=before.value,
                after_status=PaymentStatus.CONFLICT.value,
                note=payment.status_reason,
                details={"differences": diffs, "source": report.source.value, "route": report.route},
            )
        )
        session.flush()
        return IntakeResult(payment.id, IntakeOutcome.CONFLICT, payment.status, needs_reconcile=False)
    _fill_account(session, payment, report)
    if report.confirms and not payment.confirmed:
        before = payment.status
        payment.confirmed = True
        if not payment.account_reference and report.reference:
            payment.account_reference = clean_reference(report.reference)
        if _is_full_phone(report.payer_phone):  # the confirming source's number (same number, fuller form)
            payment.payer_phone = clean_phone(report.payer_phone)
        payment.fields_hash = fields_hash(
            payment.amount, payment.currency, payment.account_reference, payment.payer_phone
        )
        if before in _RECONSIDERED_ON_CONFIRMATION:
            payment.status = PaymentStatus.RECEIVED
            payment.status_reason = None
        session.add(
            ReconciliationEvent(
                payment_id=payment.id,
                actor=INTAKE_ACTOR,
                rule=f"{report.source.value}:{report.route}",
                before_status=before.value,
                after_status=payment.status.value,
                note=f"confirmed by {report.source.value} ({report.route})",
            )
        )
        session.flush()
        return IntakeResult(
            payment.id,
            IntakeOutcome.CONFIRMED,
            payment.status,
            needs_reconcile=payment.status == PaymentStatus.RECEIVED,
        )
    session.flush()
    return IntakeResult(payment.id, IntakeOutcome.EVIDENCE, payment.status, needs_reconcile=False)


def store_unparsed(
    session: Session, device_id: int | None, sender: str, text: str, reason: str, reviewed_at: datetime | None = None
) -> int | None:
    """Keep a forwarded text that is not a payment for review; return its id, or None when already stored."""
    begin_write(session)
    key = sha256_text(json.dumps([device_id, sender, text]))
    existing = session.scalar(select(UnparsedForward.id).where(UnparsedForward.dedupe_key == key))
    if existing is not None:
        return None
    row = UnparsedForward(
        device_id=device_id, sender=sender[:40], text=text, reason=reason[:200], dedupe_key=key, reviewed_at=reviewed_at
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None
    return row.id


@dataclass(frozen=True)
class PaymentView:
    """What the read API says about a payment."""

    status: str
    household_no: str | None
    network_code: str | None
    amount: int
    currency: str
    rule: str | None
    reason: str | None


def payment_view(session: Session, provider: str, provider_txn_id: str) -> PaymentView | None:
    """Return the read-API view of an operator transaction, or None when unknown."""
    payment = session.scalar(
        select(Payment).where(Payment.provider == provider, Payment.provider_txn_id == provider_txn_id)
    )
    if payment is None:
        return None
    reason = payment.status_reason
    if reason is None and payment.status == PaymentStatus.PROVISIONAL:
        reason = "waiting for the operator's confirmation"
    return PaymentView(
        status=payment.status.value,
        household_no=payment.household.household_no if payment.household is not None else None,
        network_code=payment.network.code if payment.network is not None else None,
        amount=payment.amount,
        currency=payment.currency,
        rule=payment.match_rule,
        reason=reason,
    )
