"""Reconciliation in batches: match each payment (`matching`), allocate the confirmed ones, queue their receipts.

A PROVISIONAL payment (known only from a forwarded text) is matched and shown but never allocated: it stays
PROVISIONAL until a webhook or statement confirms it (intake then sends it back to RECEIVED and re-enqueues it).
Allocation goes through `models.coverage.allocation.allocate` once per payment (source_ref `payment:<id>`); a network
payment then pays the network's households' dues, soonest expiry first. Receipts are queued (`outbox.compose`, then
`queue_messages` with the batch) once per payment outcome (dedupe key `receipt:<payment id>:<outcome>`), only for
confirmed payments; a network payment's summary (`receipt_network`: households paid, what is left) goes to the
network's contact phone and the payer.

Batches (`reconcile_payments`): one transaction locks its payments in id order and loads what the matching chain
reads for all of them in a few queries (`MatchLookup`). A `models.coverage.allocator.Allocator` then locks the matched
accounts (networks, then households, each in id order, so two workers' batches never deadlock) and reads their
ledger state at once; each payment is settled in id order exactly as a single run would — its own allocation
`payment:<id>`, its own receipt keys — but planned in memory, and the batch's allocations, periods, entries,
events and receipts are written together at the end (one `COPY` per table, `models.bulk`), its payments and paid
requests with one UPDATE each: settling sets them on the ORM objects as committed values, so no flush compares
thousands of objects. If that write fails, the whole batch is rolled back and each of its payments is returned as
"retry" for a run on its own.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from logs import mask_phone
from models.base import PaymentStatus, RequestStatus, utcnow
from models.bulk import among, insert_many, preassign_ids, table_of, update_many
from models.coverage.allocator import Allocator, PlannedAllocation
from models.db import begin_write
from models.members.phones import normalise_phone
from models.messaging.message import Message
from models.messaging.outbox import compose, queue_messages
from models.payments.payment import Payment, PaymentRequest, ReconciliationEvent
from models.reconciliation.matching import (
    Match,
    MatchAttempt,
    MatchLookup,
    candidates_detail,
    decide,
    numbers_of,
    payer_numbers,
)
from models.schemes.amounts import Amount, currency_exponent
from models.schemes.scheme import Scheme

log = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    """What reconciling a payment, or a staff action on it, did."""

    ALLOCATED = "allocated"
    UNMATCHED = "unmatched"
    PROVISIONAL = "provisional"  # matched, waiting for a webhook or statement to confirm it
    CONFLICT = "conflict"
    SKIPPED = "skipped"  # already final, or waiting for staff: nothing to do
    WAITING = "waiting"  # provisional and matched already: waiting for confirmation
    DEFERRED = "deferred"  # another transaction holds its account: run it again after this batch
    RETRY = "retry"  # the batch was rolled back: run it again alone
    MISSING = "missing"  # no such payment
    ERROR = "error"  # its run failed (logged): left as it was for the sweeper
    REVERSED = "reversed"
    REFUNDED = "refunded"
    ALREADY_DONE = "already done"


WORKER_ACTOR = "worker"
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
    "mutuelle_id",
    "match_rule",
    "match_confidence",
)


def record_event(
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


def lock_payment(session: Session, payment_id: int) -> Payment:
    begin_write(session)
    payment = session.scalar(
        select(Payment).where(Payment.id == payment_id).with_for_update().execution_options(populate_existing=True)
    )
    if payment is None:
        raise LookupError(f"no payment {payment_id}")
    return payment


@dataclass
class _Batch:
    """What the payments of one reconcile transaction share: lookups, receipts already stored, the allocator.

    `direct` (a reconcile batch): what settling changes on its payments and requests is set on their ORM objects
    as committed values, without change tracking, and written by the batch itself, one UPDATE per table.
    Otherwise (a staff action) they are ORM changes, written by the session's flush.
    """

    lookup: MatchLookup
    receipts: set[str]
    allocator: Allocator
    direct: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # the receipts to queue
    settled: dict[int, Payment] = field(default_factory=dict)  # direct: payments to write
    paid: dict[int, PaymentRequest] = field(default_factory=dict)  # direct: requests to write
    paid_ids: set[int] = field(default_factory=set)  # the requests its payments paid, and their payers' phones
    paid_phones: set[str] = field(default_factory=set)


def _assign(batch: _Batch | None, row: Payment | PaymentRequest, **values: Any) -> None:
    """Change a payment (or a request) as settling does: in a direct batch, for the batch's UPDATE to write."""
    if batch is None or not batch.direct:
        for key, value in values.items():
            setattr(row, key, value)
        return
    for key, value in values.items():
        set_committed_value(row, key, value)
    if isinstance(row, Payment):
        batch.settled[row.id] = row
    else:
        batch.paid[row.id] = row


_RECEIPT_KEYS = ("receipt:{}:allocated", "receipt:{}:allocated:1", "receipt:{}:review", "receipt:{}:review:1")


def _stored_receipts(session: Session, payment_ids: list[int]) -> set[str]:
    keys = [key.format(payment_id) for payment_id in payment_ids for key in _RECEIPT_KEYS]
    return set(session.scalars(select(Message.dedupe_key).where(among(session, Message.dedupe_key, keys))))


def reconcile_payments(
    session: Session, payment_ids: list[int], retry_unmatched: bool = False, wait_for_locks: bool = False
) -> dict[int, Outcome]:
    """Reconcile a batch of payments in one transaction; return each one's outcome.

    The caller commits. Outcomes are those of `reconcile_payment`, plus MISSING (no such payment), RETRY (a
    database error rolled the whole batch back: run each of its payments again on its own) and, in a batch of
    more than one, DEFERRED (another transaction holds its household's or network's account: run it later).
    `wait_for_locks`: wait for busy accounts instead (a run of payments deferred once), so none is deferred twice.
    """
    wanted = sorted(set(payment_ids))
    outcomes: dict[int, Outcome] = dict.fromkeys(wanted, Outcome.MISSING)
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
            outcomes[payment.id] = Outcome.SKIPPED
        elif payment.status == PaymentStatus.PROVISIONAL and payment.match_rule is not None:
            outcomes[payment.id] = Outcome.WAITING
        else:
            todo.append(payment)
    if not todo:
        return outcomes
    batch = _batch_of(session, todo, direct=True)
    lookup = batch.lookup
    # Lock order: payments by id, then the matched accounts (networks, then households, by id), before any
    # payment is settled; the allocator plans each payment in id order and writes them all at the end. A batch
    # does not wait for accounts another worker's batch holds: those payments are left for a later run.
    first = {p.id: decide(session, p, lookup) for p in todo}
    matches = [a.match for a in first.values() if a.match is not None]
    busy = batch.allocator.load(
        households=[m.household for m in matches if m.household is not None],
        networks=[m.network for m in matches if m.network is not None],
        refs=[f"payment:{p.id}" for p in todo],
        skip_locked=len(todo) > 1 and not wait_for_locks,
    )
    for payment in todo:
        match = first[payment.id].match
        if match is not None and busy.holds(match.household, match.network):
            outcomes[payment.id] = Outcome.DEFERRED
            continue
        outcomes[payment.id] = _settle(session, payment, batch, first[payment.id])
    try:
        _write(session, batch)
    except DBAPIError as exc:
        if len(todo) == 1:
            raise
        # Nothing of the batch is kept: each of its payments is run again on its own.
        log.warning("reconcile batch of %s rolled back: %s", len(todo), type(exc.orig).__name__)
        session.rollback()
        outcomes.update(dict.fromkeys((p.id for p in todo), Outcome.RETRY))
    return outcomes


def _batch_of(session: Session, payments: list[Payment], direct: bool = False) -> _Batch:
    """Return what a batch of these (locked) payments shares: their lookups, stored receipts and an allocator."""
    receipts = _stored_receipts(session, [p.id for p in payments])
    return _Batch(MatchLookup(session, payments), receipts, Allocator(session), direct)


def _write(session: Session, batch: _Batch) -> None:
    """Write what a batch planned: allocations, periods, entries, receipts, events and (direct) the settled
    payments and paid requests, one statement per table."""
    preassign_ids(session)  # new ORM objects (events of a staff action): inserted with executemany, no RETURNING
    batch.allocator.write()
    if batch.events:
        insert_many(session, table_of(ReconciliationEvent), batch.events)
        batch.events.clear()
    if batch.messages:
        queue_messages(session, batch.messages)
        batch.messages.clear()
    if batch.settled:
        now = utcnow()
        rows = [
            {"id": p.id, **{column: getattr(p, column) for column in _SETTLED_COLUMNS}, "updated_at": now}
            for p in batch.settled.values()
        ]
        update_many(session, table_of(Payment), rows)
        for payment in batch.settled.values():
            set_committed_value(payment, "updated_at", now)
        batch.settled.clear()
    if batch.paid:
        rows = [{"id": r.id, "status": r.status, "paid_at": r.paid_at} for _, r in sorted(batch.paid.items())]
        update_many(session, table_of(PaymentRequest), rows)
        batch.paid.clear()
    session.flush()


def reconcile_payment(session: Session, payment_id: int, retry_unmatched: bool = False) -> Outcome:
    """Match a payment and, when it is confirmed, allocate it and queue its receipt; return what happened."""
    outcome = reconcile_payments(session, [payment_id], retry_unmatched)[payment_id]
    if outcome == Outcome.MISSING:
        raise LookupError(f"no payment {payment_id}")
    return outcome


def _settle(session: Session, payment: Payment, batch: _Batch, attempt: MatchAttempt) -> Outcome:
    """Match one locked, workable payment (`attempt`: its match before the batch settled any) and allocate it when
    confirmed."""
    if batch.lookup.reads_any(payment, batch.paid_ids, batch.paid_phones):
        # Matched again: an earlier payment of the batch paid a request this one may name or be paid by.
        attempt = decide(session, payment, batch.lookup)
    before = payment.status
    if attempt.conflict is not None:
        # Nothing moves a matched payment by itself: staff decide, and no ledger changes meanwhile.
        _assign(batch, payment, status=PaymentStatus.CONFLICT, status_reason=attempt.conflict[:500])
        record_event(session, payment, before, attempt.conflict, rule="conflict", details=attempt.evidence, batch=batch)
        return Outcome.CONFLICT
    if attempt.match is None:
        _assign(batch, payment, status=PaymentStatus.UNMATCHED, status_reason=attempt.reason[:500])
        details = {**attempt.evidence, "candidates": candidates_detail(attempt)}
        record_event(session, payment, before, attempt.reason, details=details, batch=batch)
        if payment.confirmed:
            _receipt(session, payment, "review", batch)
        return Outcome.UNMATCHED
    match = attempt.match
    scheme = session.get(Scheme, match.scheme_id)
    assert scheme is not None
    if scheme.currency != payment.currency:
        reason = f"paid in {payment.currency}, {scheme.code} is in {scheme.currency}"
        _assign(batch, payment, status=PaymentStatus.UNMATCHED, status_reason=reason)
        record_event(session, payment, before, reason, rule=match.rule, batch=batch)
        if payment.confirmed:
            _receipt(session, payment, "review", batch)
        return Outcome.UNMATCHED
    apply_match(payment, match, batch)
    if not payment.confirmed:
        _assign(batch, payment, status=PaymentStatus.PROVISIONAL)
        note = "matched; provisional until a webhook or statement confirms it"
        record_event(session, payment, before, note, match.rule, details=attempt.evidence, batch=batch)
        return Outcome.PROVISIONAL
    _assign(batch, payment, status=PaymentStatus.MATCHED)
    record_event(
        session, payment, before, f"matched by {match.rule}", match.rule, details=attempt.evidence, batch=batch
    )
    return allocate_payment(session, payment, batch=batch)


def apply_match(payment: Payment, match: Match, batch: _Batch | None = None) -> None:
    values: dict[str, Any] = {
        "household": match.household,
        "network": match.network,
        "payment_request": match.request,
        "scheme_id": match.scheme_id,
        "mutuelle_id": match.mutuelle_id,  # the matched household's or network's: within the account's mutuelles
        "match_rule": match.rule,
        "match_confidence": match.confidence,
        "status_reason": None,
    }
    if batch is not None and batch.direct:  # no flush copies the relationships' keys: set them too
        values["household_id"] = match.household.id if match.household is not None else None
        values["network_id"] = match.network.id if match.network is not None else None
        values["payment_request_id"] = match.request.id if match.request is not None else None
    _assign(batch, payment, **values)


def local_date(payment: Payment, scheme: Scheme) -> date:
    return scheme.local_today(payment.paid_at)


@dataclass(frozen=True)
class NetworkPayout:
    """What a network payment did: how many households it paid and what stays on the network account."""

    households: int
    remaining: int


def allocate_payment(
    session: Session, payment: Payment, actor: str = WORKER_ACTOR, batch: _Batch | None = None
) -> Outcome:
    """Allocate a MATCHED, confirmed payment to its household or network (once) and queue the receipt.

    In a batch the allocation is planned and written with the batch's; on its own (a staff action) it is a batch of
    one, written here.
    """
    if payment.status != PaymentStatus.MATCHED or not payment.confirmed:
        raise ValueError(f"payment {payment.id} is {payment.status.value}, not a confirmed MATCHED payment")
    scheme = session.get(Scheme, payment.scheme_id)
    assert scheme is not None
    own = batch is None  # a staff action: a batch of one, written here
    batch = batch if batch is not None else _batch_of(session, [payment])
    allocator = batch.allocator
    on = local_date(payment, scheme)
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
    request = payment.payment_request
    if request is not None and request.status == RequestStatus.OPEN:
        _assign(batch, request, status=RequestStatus.PAID, paid_at=utcnow())
        batch.paid_ids.add(request.id)
        if request.payer_phone:
            batch.paid_phones.add(request.payer_phone)
    before = payment.status
    _assign(batch, payment, status=PaymentStatus.ALLOCATED)
    record_event(
        session, payment, before, f"allocated ({ref})", payment.match_rule, actor=actor, details=details, batch=batch
    )
    _receipt(session, payment, "allocated", batch, payout=payout)
    if own:
        _write(session, batch)
    return Outcome.ALLOCATED


def _allocation_details(result: PlannedAllocation) -> dict[str, object]:
    until = result.covered_until
    return {
        "fee": result.fee,
        "periods": result.period_count,
        "covered_until": until.isoformat() if until else None,
        "credit": result.credit,
    }


def _receipt(
    session: Session, payment: Payment, outcome: str, batch: _Batch, payout: NetworkPayout | None = None
) -> None:
    """Queue the payer's (and the head's, or the network contact's) receipt for this outcome, once.

    Every recipient gets the same text (the household's language, or the scheme's): rendered once, queued with the
    batch's write. Under the payments' row locks the batch has already looked for their receipt keys.
    """
    scheme = session.get(Scheme, payment.scheme_id) if payment.scheme_id else None
    collecting = [scheme] if scheme is not None else batch.lookup.schemes
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
    elif outcome == "allocated" and household is not None and scheme is not None:
        allocator = batch.allocator
        on = local_date(payment, scheme)
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
    payer = _payer_sms_number(session, payment, scheme, batch.lookup.countries)
    if payer and payer not in recipients:
        recipients.append(payer)
    head = None if household is None else batch.lookup.head_phone(household)
    if head and head not in recipients:
        recipients.append(head)
    if household is None and language is None:  # suspense: the language of the scheme that collects this currency
        language = batch.lookup.suspense_language(payment.currency)
    text = None
    queued: list[str] = []
    for index, phone in enumerate(recipients):
        key = f"receipt:{payment.id}:{outcome}" + ("" if index == 0 else f":{index}")
        if key in batch.receipts:
            continue
        if text is None:
            text = compose(template, language, household, amount=amount, **values)
        batch.messages.append(text.row(phone, key))
        batch.receipts.add(key)
        queued.append(phone)
    if queued:  # one line per payment (a batch logs thousands)
        log.info("receipt %s for payment %s queued to %s", template, payment.id, ", ".join(map(mask_phone, queued)))


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
        numbers = sorted(numbers_of(payment.payer_phone, countries))
    return numbers[0] if len(numbers) == 1 else None


def reconcile_batch(
    payment_ids: list[int],
    session_scope: Callable[[], AbstractContextManager[Session]],
    retry_unmatched: bool = False,
) -> dict[str, int]:
    """Reconcile a batch of payments, each transaction in a `session_scope()` that commits; count the outcomes.

    The batch does not wait for accounts another worker's batch holds: once it has committed, the payments it
    deferred are run again in a second transaction that waits for those accounts (at most one other batch's
    length), so a busy account delays a payment once and never loops. After an error that rolled the batch back,
    each of its payments is run again alone, so one payment that fails (a bug, bad data) holds up no other: it is
    logged, counted as ERROR and left as it was for the sweeper. Only a lost database connection stops the run.
    """
    try:
        with session_scope() as session:
            outcomes = reconcile_payments(session, payment_ids, retry_unmatched)
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        if len(payment_ids) == 1:
            log.exception("reconcile payment %s failed", payment_ids[0])
            return {Outcome.ERROR: 1}
        log.exception("reconcile batch of %s failed: each payment runs again alone", len(payment_ids))
        outcomes = dict.fromkeys(payment_ids, Outcome.RETRY)
    deferred = [payment_id for payment_id, outcome in outcomes.items() if outcome == Outcome.DEFERRED]
    if deferred:
        with session_scope() as session:
            outcomes.update(reconcile_payments(session, deferred, retry_unmatched, wait_for_locks=True))
    for payment_id in [payment_id for payment_id, outcome in outcomes.items() if outcome == Outcome.RETRY]:
        try:
            with session_scope() as session:
                outcomes.update(reconcile_payments(session, [payment_id], retry_unmatched))
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            log.exception("reconcile payment %s failed", payment_id)
            outcomes[payment_id] = Outcome.ERROR
    counts = Counter(outcome.value for outcome in outcomes.values())
    log.info("reconcile batch of %s payment(s): %s (%s deferred once)", len(payment_ids), dict(counts), len(deferred))
    return dict(counts)


def waiting_payments_query(cutoff: datetime, limit: int | None = None) -> Select[tuple[int]]:
    """Return the query of payments waiting for reconciliation since before the cutoff, oldest first."""
    query = (
        select(Payment.id)
        .where(
            or_(
                Payment.status == PaymentStatus.RECEIVED,
                # Confirmed since it was matched provisionally: it waits for its allocation.
                and_(Payment.status == PaymentStatus.PROVISIONAL, Payment.confirmed.is_(True)),
            ),
            Payment.updated_at < cutoff,
        )
        .order_by(Payment.id)
    )
    return query if limit is None else query.limit(limit)
