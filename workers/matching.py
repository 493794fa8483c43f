"""Reconciliation of one payment: match it to a household or network, then allocate it and send the receipt.

Matching chain (SPEC "Matching"), first rule that finds exactly one owner wins:
1. `request_reference` (100): the account reference is a payment-request reference (7 digits, valid check digit) of
   an open request;
2. `account_number` (90): a household number, member number or network code appears in the account reference;
3. `request_phone_amount` (70): exactly one open request has the payer's phone and the payment's amount;
4. `payer_phone` (50): the payer's phone belongs to active members of exactly one household;
otherwise UNMATCHED (suspense) with the reason. Every status change writes a ReconciliationEvent.

A PROVISIONAL payment (known only from a forwarded text) is matched and shown but never allocated: it stays
PROVISIONAL until a webhook or statement confirms it (intake then sends it back to RECEIVED and re-enqueues it).
Allocation goes through `models.allocation.allocate` once per payment (source_ref `payment:<id>`); a network
payment then pays the network's households' dues, soonest expiry first. Receipts go through `send_sms`, once per
payment outcome (dedupe key `receipt:<payment id>:<outcome>`), only for confirmed payments.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from logs import mask_phone
from models.allocation import AllocationResult, allocate, pay_network_households, refund, reverse
from models.amounts import currency_exponent, format_amount
from models.base import MemberStatus, PaymentStatus, RequestStatus, utcnow
from models.coverage import last_live_period
from models.db import begin_write
from models.household import Household, Member, Network
from models.ledger import get_or_create_account
from models.outbox import send_sms
from models.payment import Payment, PaymentRequest, ReconciliationEvent
from models.phones import normalise_phone
from models.premiums import amount_due
from models.references import is_valid_reference
from models.scheme import Scheme

log = logging.getLogger(__name__)

WORKER_ACTOR = "worker"
RULE_CONFIDENCE = {"request_reference": 100, "account_number": 90, "request_phone_amount": 70, "payer_phone": 50}
# Payments the reconcile job acts on; anything else is final or waits for staff.
_WORKABLE = frozenset({PaymentStatus.RECEIVED, PaymentStatus.PROVISIONAL})
_TOKEN_RE = re.compile(r"[A-Z0-9][A-Z0-9\-_/.]*[A-Z0-9]|[A-Z0-9]")


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


@dataclass
class MatchAttempt:
    """The outcome of the matching chain: a match, or why there is none."""

    match: Match | None
    notes: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """Return why nothing matched."""
        return "; ".join(self.notes) or "nothing to match on"


def payer_numbers(session: Session, raw: str | None) -> set[str]:
    """Return the E.164 numbers a payer phone may be (national forms read in each scheme's country)."""
    if not raw or "*" in raw:
        return set()
    digits = re.sub(r"\D", "", raw)
    if len(digits) < 7 or len(digits) > 15:
        return set()
    candidates = [raw] if raw.strip().startswith("+") else [raw, "+" + digits]
    countries = set(session.scalars(select(Scheme.country).distinct()))
    numbers = set()
    for candidate in candidates:
        for country in [*sorted(countries), None]:
            try:
                numbers.add(normalise_phone(candidate, country, allow_foreign=True))
            except ValueError:
                continue
    return numbers


def _open_request(session: Session, **where: object) -> list[PaymentRequest]:
    query = select(PaymentRequest).where(
        PaymentRequest.status == RequestStatus.OPEN, PaymentRequest.expires_at > utcnow()
    )
    for name, value in where.items():
        column = getattr(PaymentRequest, name)
        query = query.where(column.in_(value) if isinstance(value, (set, list, tuple)) else column == value)
    return list(session.scalars(query.order_by(PaymentRequest.id)))


def _owner_of_request(request: PaymentRequest) -> Match:
    return Match("request_reference", household=request.household, network=request.network, request=request)


def _by_account_number(session: Session, reference: str) -> tuple[Match | None, str | None]:
    tokens = [reference, *_TOKEN_RE.findall(reference)]
    for token in dict.fromkeys(tokens):
        household = session.scalar(select(Household).where(func.upper(Household.household_no) == token))
        if household is not None:
            return Match("account_number", household=household), None
        member = session.scalar(select(Member).where(func.upper(Member.member_no) == token))
        if member is not None:
            return Match("account_number", household=member.household), None
        networks = list(session.scalars(select(Network).where(func.upper(Network.code) == token).limit(2)))
        if len(networks) == 1:
            return Match("account_number", network=networks[0]), None
        if len(networks) > 1:
            return None, f"network code {token} exists in several schemes"
    return None, None


def find_match(session: Session, payment: Payment) -> MatchAttempt:
    """Run the matching chain for a payment and return the first match, or the reasons there is none."""
    attempt = MatchAttempt(None)
    reference = (payment.account_reference or "").strip().upper()
    if reference:
        if is_valid_reference(reference):
            requests = _open_request(session, reference=reference)
            if requests:
                attempt.match = _owner_of_request(requests[0])
                return attempt
            attempt.notes.append(f"reference {reference} is not an open payment request")
        match, problem = _by_account_number(session, reference)
        if match is not None:
            attempt.match = match
            return attempt
        attempt.notes.append(problem or f"no household, member or network {reference!r}")
    else:
        attempt.notes.append("no account reference")
    numbers = payer_numbers(session, payment.payer_phone)
    if not numbers:
        attempt.notes.append("payer phone unknown or masked")
        return attempt
    requests = _open_request(session, payer_phone=numbers, amount=payment.amount, currency=payment.currency)
    if len(requests) == 1:
        attempt.match = Match(
            "request_phone_amount", household=requests[0].household, network=requests[0].network, request=requests[0]
        )
        return attempt
    if len(requests) > 1:
        attempt.notes.append(f"{len(requests)} open requests from the payer for this amount")
    household_ids = set(
        session.scalars(
            select(Member.household_id).where(Member.phone.in_(numbers), Member.status == MemberStatus.ACTIVE)
        )
    )
    if len(household_ids) == 1:
        household = session.get(Household, household_ids.pop())
        attempt.match = Match("payer_phone", household=household)
        return attempt
    attempt.notes.append(
        "payer phone belongs to no household" if not household_ids else "payer phone shared by several households"
    )
    return attempt


def _event(
    session: Session,
    payment: Payment,
    before: PaymentStatus | None,
    note: str,
    rule: str | None = None,
    actor: str = WORKER_ACTOR,
    details: dict[str, object] | None = None,
) -> None:
    session.add(
        ReconciliationEvent(
            payment_id=payment.id,
            actor=actor,
            rule=rule,
            before_status=before.value if before is not None else None,
            after_status=payment.status.value,
            note=note[:1000],
            details=details,
        )
    )


def _lock(session: Session, payment_id: int) -> Payment:
    begin_write(session)
    payment = session.scalar(
        select(Payment).where(Payment.id == payment_id).with_for_update().execution_options(populate_existing=True)
    )
    if payment is None:
        raise LookupError(f"no payment {payment_id}")
    return payment


def reconcile_payment(session: Session, payment_id: int, retry_unmatched: bool = False) -> str:
    """Match a payment and, when it is confirmed, allocate it and queue its receipt; return what happened."""
    payment = _lock(session, payment_id)
    workable = _WORKABLE | ({PaymentStatus.UNMATCHED} if retry_unmatched else set())
    if payment.status not in workable:
        return f"skipped ({payment.status.value})"
    if payment.status == PaymentStatus.PROVISIONAL and payment.match_rule is not None:
        return "provisional (already matched, waiting for confirmation)"
    attempt = find_match(session, payment)
    before = payment.status
    if attempt.match is None:
        payment.status = PaymentStatus.UNMATCHED
        payment.status_reason = attempt.reason[:500]
        _event(session, payment, before, attempt.reason)
        session.flush()
        if payment.confirmed:
            _receipt(session, payment, "review")
        return "unmatched"
    match = attempt.match
    owner = match.household if match.household is not None else match.network
    assert owner is not None
    scheme = session.get(Scheme, owner.scheme_id)
    assert scheme is not None
    if scheme.currency != payment.currency:
        payment.status = PaymentStatus.UNMATCHED
        payment.status_reason = f"paid in {payment.currency}, {scheme.code} is in {scheme.currency}"
        _event(session, payment, before, payment.status_reason, rule=match.rule)
        session.flush()
        if payment.confirmed:
            _receipt(session, payment, "review")
        return "unmatched"
    _apply_match(payment, match)
    if not payment.confirmed:
        payment.status = PaymentStatus.PROVISIONAL
        _event(session, payment, before, "matched; provisional until a webhook or statement confirms it", match.rule)
        return "provisional"
    payment.status = PaymentStatus.MATCHED
    _event(session, payment, before, f"matched by {match.rule}", match.rule)
    session.flush()
    return allocate_payment(session, payment)


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


def allocate_payment(session: Session, payment: Payment, actor: str = WORKER_ACTOR) -> str:
    """Allocate a MATCHED, confirmed payment to its household or network (once) and queue the receipt."""
    if payment.status != PaymentStatus.MATCHED or not payment.confirmed:
        raise ValueError(f"payment {payment.id} is {payment.status.value}, not a confirmed MATCHED payment")
    scheme = session.get(Scheme, payment.scheme_id)
    assert scheme is not None
    on = _local_date(payment, scheme)
    ref = f"payment:{payment.id}"
    details: dict[str, object] = {}
    if payment.network is not None:
        account = get_or_create_account(session, network=payment.network)
        result = allocate(session, account, payment.amount, ref, on, payment_id=payment.id)
        payouts = pay_network_households(session, account, on, run_ref=ref)
        details = {"network": payment.network.code, "households_paid": len(payouts), "balance": result.balance}
    else:
        assert payment.household is not None
        account = get_or_create_account(session, household=payment.household)
        result = allocate(session, account, payment.amount, ref, on, payment_id=payment.id)
        details = _allocation_details(result)
    if payment.payment_request is not None and payment.payment_request.status == RequestStatus.OPEN:
        payment.payment_request.status = RequestStatus.PAID
        payment.payment_request.paid_at = utcnow()
    before = payment.status
    payment.status = PaymentStatus.ALLOCATED
    _event(session, payment, before, f"allocated ({ref})", payment.match_rule, actor=actor, details=details)
    session.flush()
    _receipt(session, payment, "allocated")
    return "allocated"


def _allocation_details(result: AllocationResult) -> dict[str, object]:
    until = result.covered_until
    return {
        "fee": result.fee,
        "periods": len(result.periods),
        "covered_until": until.isoformat() if until else None,
        "credit": result.credit,
    }


def _receipt(session: Session, payment: Payment, outcome: str) -> None:
    """Queue the payer's (and the head's) receipt for this outcome, once."""
    scheme = session.get(Scheme, payment.scheme_id) if payment.scheme_id else None
    exponent = currency_exponent(session, payment.currency)
    amount = format_amount(payment.amount, payment.currency, exponent)
    household = payment.household
    values: dict[str, Any]
    if outcome == "allocated" and payment.network is not None:
        return  # no network receipt template yet: the network's payouts are in the reconciliation log
    if outcome == "allocated" and household is not None and scheme is not None:
        on = _local_date(payment, scheme)
        last = last_live_period(session, household.id)
        if last is not None and last.end_on >= on:
            template, values = "receipt_covered", {"household_no": household.household_no, "until": last.end_on}
        else:
            due = amount_due(session, household, on)
            due_text = format_amount(due.total, due.currency, exponent)
            template, values = "receipt_due", {"household_no": household.household_no, "due": due_text}
    else:
        template, values = "receipt_review", {}
    recipients: list[str] = []
    payer = _payer_sms_number(session, payment, scheme)
    if payer:
        recipients.append(payer)
    head = household.head if household is not None else None
    if head is not None and head.phone and head.phone not in recipients:
        recipients.append(head.phone)
    language = None
    if household is None:  # suspense: speak the language of the scheme that collects this currency
        defaults = set(session.scalars(select(Scheme.default_language).where(Scheme.currency == payment.currency)))
        language = defaults.pop().value if len(defaults) == 1 else None
    for index, phone in enumerate(recipients):
        key = f"receipt:{payment.id}:{outcome}" + ("" if index == 0 else f":{index}")
        send_sms(
            session, phone, template, language=language, household=household, dedupe_key=key, amount=amount, **values
        )
        log.info("receipt %s for payment %s queued to %s", template, payment.id, mask_phone(phone))


def _payer_sms_number(session: Session, payment: Payment, scheme: Scheme | None) -> str | None:
    """Return the payer's E.164 number, read in the scheme's country first; None when masked or unreadable."""
    if scheme is not None and payment.payer_phone and "*" not in payment.payer_phone:
        try:
            return normalise_phone(payment.payer_phone, scheme.country, allow_foreign=True)
        except ValueError:
            pass
    numbers = sorted(payer_numbers(session, payment.payer_phone))
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


def unmatch_payment(session: Session, payment_id: int, actor: str, reason: str) -> str:
    """Send a matched but not yet allocated payment back to suspense (staff), clearing its match."""
    if not reason.strip():
        raise ValueError("a reason is required")
    payment = _lock(session, payment_id)
    before = payment.status
    if before == PaymentStatus.ALLOCATED:
        raise ValueError(f"payment {payment_id} is ALLOCATED: reverse or refund it instead")
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
    if before == PaymentStatus.ALLOCATED:
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
