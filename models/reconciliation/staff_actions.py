"""Staff actions on a payment: match by hand, send back to suspense, reverse or refund — each audited.

The statuses that allow each action are defined here once; the admin and the CLI offer an action only for them.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import PaymentStatus, utcnow
from models.coverage.allocation import refund, reverse
from models.coverage.allocator import find_allocation
from models.members.household import Household, Network
from models.payments.intake import paid_to_mutuelles, single_mutuelle
from models.payments.payment import Payment
from models.reconciliation.batch import Outcome, allocate_payment, apply_match, lock_payment, record_event
from models.reconciliation.matching import Match
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme

# What each staff action accepts.
MATCHABLE = frozenset(
    {PaymentStatus.UNMATCHED, PaymentStatus.RECEIVED, PaymentStatus.CONFLICT, PaymentStatus.PROVISIONAL}
)
UNMATCHABLE = frozenset({PaymentStatus.MATCHED, PaymentStatus.PROVISIONAL, PaymentStatus.CONFLICT})
# Undone without touching a ledger (nothing was funded), or by reversing what the allocation funded.
UNDOABLE = MATCHABLE | {PaymentStatus.MATCHED, PaymentStatus.ALLOCATED}


def manual_match(
    session: Session,
    payment_id: int,
    actor: str,
    reason: str,
    household_no: str | None = None,
    network_code: str | None = None,
) -> Outcome:
    """Match a payment by hand (staff) to a household or network, then allocate it when confirmed."""
    if not reason.strip():
        raise ValueError("a reason is required")
    payment = lock_payment(session, payment_id)
    if payment.status not in MATCHABLE:
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
    _check_mutuelle(session, payment, match)
    before = payment.status
    apply_match(payment, match)
    payment.status = PaymentStatus.MATCHED if payment.confirmed else PaymentStatus.PROVISIONAL
    record_event(session, payment, before, reason, "manual", actor=actor)
    session.flush()
    if not payment.confirmed:
        return Outcome.PROVISIONAL
    return allocate_payment(session, payment, actor=actor)


def _check_mutuelle(session: Session, payment: Payment, match: Match) -> None:
    """Refuse a match outside the mutuelles the payment was paid to (its account's, or its device's)."""
    allowed = paid_to_mutuelles(session, payment)
    if allowed is None or match.mutuelle_id in allowed:
        return
    label = f"network {match.network.code}" if match.network is not None else ""
    if match.household is not None:
        label = f"household {match.household.household_no}"
    codes = dict(session.execute(select(Mutuelle.id, Mutuelle.code)).tuples().all())
    paid = ", ".join(sorted(codes.get(i, str(i)) for i in allowed))
    raise ValueError(
        f"{label} belongs to mutuelle {codes.get(match.mutuelle_id, match.mutuelle_id)}; "
        f"payment {payment.id} was paid to {payment.account or 'a device'} of {paid}"
    )


def _funded(session: Session, payment: Payment) -> bool:
    """Return whether the payment's allocation exists and is not undone."""
    allocation = find_allocation(session, f"payment:{payment.id}")
    return allocation is not None and allocation.reversed_at is None


def unmatch_payment(session: Session, payment_id: int, actor: str, reason: str) -> Outcome:
    """Send a matched but not yet allocated payment back to suspense (staff), clearing its match."""
    if not reason.strip():
        raise ValueError("a reason is required")
    payment = lock_payment(session, payment_id)
    before = payment.status
    if before == PaymentStatus.ALLOCATED or _funded(session, payment):
        raise ValueError(f"payment {payment_id} has funded an account: reverse or refund it instead")
    if before not in UNMATCHABLE:
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
    payment.mutuelle_id = single_mutuelle(paid_to_mutuelles(session, payment))  # no longer the household's
    payment.status = PaymentStatus.UNMATCHED
    payment.status_reason = reason[:500]
    record_event(session, payment, before, reason, "manual", actor=actor, details=details)
    session.flush()
    return Outcome.UNMATCHED


def undo_payment(session: Session, payment_id: int, actor: str, reason: str, refund_payer: bool = False) -> Outcome:
    """Reverse (operator took the money back) or refund an allocated payment: exactly what it funded is undone."""
    if not reason.strip():
        raise ValueError("a reason is required")
    payment = lock_payment(session, payment_id)
    final = PaymentStatus.REFUNDED if refund_payer else PaymentStatus.REVERSED
    if payment.status == final:
        return Outcome.ALREADY_DONE
    before = payment.status
    # A payment allocated, then reported differently (CONFLICT), still funds its account: undo what it funded.
    if before == PaymentStatus.ALLOCATED or (before == PaymentStatus.CONFLICT and _funded(session, payment)):
        scheme = session.get(Scheme, payment.scheme_id)
        assert scheme is not None
        undo = refund if refund_payer else reverse
        today = scheme.local_today(utcnow())
        result = undo(session, f"payment:{payment.id}", reason, today)
        details: dict[str, object] = {"amount": result.amount, "entries": result.entries}
    elif before in UNDOABLE:
        details = {"amount": 0, "entries": 0}  # nothing was funded
    else:
        raise ValueError(f"payment {payment_id} is {before.value}: cannot undo")
    payment.status = final
    payment.status_reason = reason[:500]
    record_event(
        session, payment, before, reason, "refund" if refund_payer else "reversal", actor=actor, details=details
    )
    session.flush()
    return Outcome.REFUNDED if refund_payer else Outcome.REVERSED
