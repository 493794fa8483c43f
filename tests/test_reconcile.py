"""Reconciliation: the matching chain, allocation once per payment, receipts once per outcome, undo, the worker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.access.tokens import issue_token
from models.base import EvidenceSource, LedgerKind, PaymentStatus, RequestStatus, utcnow
from models.coverage.ledger import account_state
from models.coverage.money import Allocation, LedgerEntry
from models.members.household import Household, Network
from models.messaging.message import Message
from models.messaging.outbox import attach_dispatch
from models.payments.intake import Report, record_report
from models.payments.payment import Payment, PaymentRequest, ReconciliationEvent
from models.payments.references import create_payment_request
from models.reconciliation.batch import reconcile_payment, reconcile_payments
from models.reconciliation.staff_actions import manual_match, undo_payment
from models.schemes.scheme import Scheme
from tests import factories
from tests.backends import RECONCILE_QUEUE, RQ_QUEUE
from tests.conftest import make_test_app
from tests.factories import make_household, make_network
from tests.payment_helpers import (
    PAID_AT,
    WAVE_SECRET,
    add_device,
    fixture_payload,
    forward,
    json_body,
    post_wave,
    store_report,
)

FULL_YEAR = 15_000  # CMU standard, 4 members: 1,000 fee + 4 × 7,000 × 50 %
PAYER = "+221771234567"


@pytest.fixture
def sent(session: Session) -> list[int]:
    """Collect the ids of SMS the session queues (the outbox dispatch a job session attaches)."""
    ids: list[int] = []
    attach_dispatch(session, ids.extend)
    return ids


@pytest.fixture
def cmu(session: Session) -> Scheme:
    """Return the CMU Thiès scheme."""
    return factories.scheme(session, "cmu-thies")


def stored(
    session: Session,
    amount: int = FULL_YEAR,
    reference: str | None = None,
    payer: str | None = PAYER,
    txn: str = "T_1",
    confirms: bool = True,
    currency: str = "XOF",
) -> Payment:
    """Store a payment as intake does and commit."""
    return store_report(
        session, amount=amount, txn=txn, reference=reference, payer=payer, confirms=confirms, currency=currency
    )


def reconcile(session: Session, payment: Payment, **kwargs: Any) -> str:
    """Run the reconcile logic as the job does (in a fresh transaction) and return its outcome."""
    session.commit()
    outcome = reconcile_payment(session, payment.id, **kwargs)
    session.commit()
    session.refresh(payment)
    return outcome


def request_for(session: Session, scheme: Scheme, owner: Household | Network, **kwargs: Any) -> PaymentRequest:
    """Create an open payment request and commit."""
    request = create_payment_request(
        session,
        scheme=scheme,
        household=owner if isinstance(owner, Household) else None,
        network=owner if isinstance(owner, Network) else None,
        channel="ussd",
        now=utcnow(),
        **{"amount": FULL_YEAR, **kwargs},
    )
    session.commit()
    return request


def allocations(session: Session) -> list[Allocation]:
    """Return every allocation."""
    session.commit()
    return list(session.scalars(select(Allocation).order_by(Allocation.id)))


def messages(session: Session) -> list[Message]:
    """Return every outbound message."""
    session.commit()
    return list(session.scalars(select(Message).order_by(Message.id)))


# ---------------------------------------------------------------- the matching chain


def test_request_reference_matches_and_pays_the_request(session: Session, cmu: Scheme, sent: list[int]) -> None:
    household = make_household(session, cmu)
    request = request_for(session, cmu, household)
    payment = stored(session, reference=request.reference, payer=None)

    assert reconcile(session, payment) == "allocated"

    assert (payment.status, payment.match_rule, payment.match_confidence) == (
        PaymentStatus.ALLOCATED,
        "request_reference",
        100,
    )
    assert payment.household_id == household.id and payment.payment_request_id == request.id
    session.refresh(request)
    assert request.status == RequestStatus.PAID
    [allocation] = allocations(session)
    assert (allocation.source_ref, allocation.amount, allocation.payment_id) == (
        f"payment:{payment.id}",
        FULL_YEAR,
        payment.id,
    )
    events = [(e.before_status, e.after_status, e.rule) for e in payment.events]
    assert events == [
        (None, "RECEIVED", "webhook:test"),
        ("RECEIVED", "MATCHED", "request_reference"),
        ("MATCHED", "ALLOCATED", "request_reference"),
    ]


@pytest.mark.parametrize(
    ("reference", "rule"),
    [
        ("{household}", "account_number_amount"),
        ("{household_lower}", "account_number_amount"),
        ("{member}", "account_number_amount"),
        ("Cotisation {household} merci", "account_number_amount"),
    ],
)
def test_account_number_in_the_reference(
    session: Session, cmu: Scheme, sent: list[int], reference: str, rule: str
) -> None:
    household = make_household(session, cmu)
    text = reference.format(
        household=household.household_no,
        household_lower=household.household_no.lower(),
        member=household.members[1].member_no,
    )
    payment = stored(session, reference=text, payer=None)
    assert reconcile(session, payment) == "allocated"
    assert (payment.household_id, payment.match_rule, payment.match_confidence) == (household.id, rule, 80)


def test_open_request_with_the_payer_phone_and_amount(session: Session, cmu: Scheme, sent: list[int]) -> None:
    household = make_household(session, cmu)
    request = request_for(session, cmu, household, payer_phone=PAYER, amount=7_000)
    make_household(session, cmu, phone=PAYER)  # the phone rule would pick another household: the request wins
    payment = stored(session, amount=7_000, payer="771234567")

    reconcile(session, payment)

    assert (payment.household_id, payment.match_rule, payment.payment_request_id) == (
        household.id,
        "request_phone_amount",
        request.id,
    )


def test_in_a_batch_a_request_paid_by_an_earlier_payment_matches_no_later_one(
    session: Session, cmu: Scheme, sent: list[int]
) -> None:
    household = make_household(session, cmu)
    by_reference = request_for(session, cmu, household)
    by_phone = request_for(session, cmu, make_household(session, cmu), payer_phone=PAYER, amount=7_000)
    first = stored(session, reference=by_reference.reference, payer=None, txn="T_1")
    again = stored(session, reference=by_reference.reference, payer=None, txn="T_2")
    phone_first = stored(session, amount=7_000, payer="771234567", txn="T_3")
    phone_again = stored(session, amount=7_000, payer="771234567", txn="T_4")
    untouched = stored(session, amount=7_000, payer=None, txn="T_5")  # names nothing: matched as before
    session.commit()

    outcomes = reconcile_payments(session, [first.id, again.id, phone_first.id, phone_again.id, untouched.id])
    session.commit()

    assert [outcomes[p.id] for p in (first, again, phone_first, phone_again, untouched)] == [
        "allocated",
        "unmatched",
        "allocated",
        "unmatched",
        "unmatched",
    ]
    assert (first.payment_request_id, phone_first.payment_request_id) == (by_reference.id, by_phone.id)
    assert (
        again.status_reason
        == f"reference {by_reference.reference} is not an open payment request; payer phone unknown or masked"
    )
    assert again.payment_request_id is None and phone_again.payment_request_id is None
    assert untouched.status_reason == "no account reference; payer phone unknown or masked"


def test_payer_phone_of_exactly_one_household(session: Session, cmu: Scheme, sent: list[int]) -> None:
    household = make_household(session, cmu, phone=PAYER)
    payment = stored(session, payer="77 123 45 67")
    reconcile(session, payment)
    assert (payment.household_id, payment.match_rule, payment.match_confidence) == (household.id, "payer_phone", 50)


@pytest.mark.parametrize(
    ("setup", "reference", "payer", "reason"),
    [
        ("none", None, PAYER, "no account reference; payer phone belongs to no household"),
        ("shared", None, PAYER, "payer phone shared by several households"),
        ("none", None, "25470****149", "payer phone unknown or masked"),
        ("none", "1234567", None, "not an open payment request"),
        ("none", "SN-XX-999", None, "no household, member or network 'SN-XX-999'"),
    ],
)
def test_suspense_with_the_reason(
    session: Session,
    cmu: Scheme,
    sent: list[int],
    setup: str,
    reference: str | None,
    payer: str | None,
    reason: str,
) -> None:
    if setup == "shared":
        make_household(session, cmu, phone=PAYER)
        make_household(session, cmu, phone=PAYER)
    if reference == "1234567":
        from models.payments.references import damm_check_digit

        reference = "123456" + damm_check_digit("123456")
    payment = stored(session, reference=reference, payer=payer)

    assert reconcile(session, payment) == "unmatched"

    assert payment.status == PaymentStatus.UNMATCHED
    assert reason in (payment.status_reason or "")
    assert payment.events[-1].after_status == "UNMATCHED"
    assert allocations(session) == []


def test_currency_of_another_scheme_is_suspense(session: Session, cmu: Scheme, sent: list[int]) -> None:
    household = make_household(session, cmu)
    payment = stored(session, reference=household.household_no, currency="KES", amount=35_000)
    assert reconcile(session, payment) == "unmatched"
    assert "paid in KES" in (payment.status_reason or "")


# ---------------------------------------------------------------- allocation and receipts


def test_reconcile_twice_allocates_once_and_sends_one_receipt(session: Session, cmu: Scheme, sent: list[int]) -> None:
    household = make_household(session, cmu, phone="+221781112233")
    payment = stored(session, reference=household.household_no)
    assert reconcile(session, payment) == "allocated"
    assert reconcile(session, payment) == "skipped"
    payment.status = PaymentStatus.RECEIVED  # even a stray re-run of the allocation writes nothing more
    session.commit()
    reconcile(session, payment)

    assert len(allocations(session)) == 1
    state = account_state(session, household_id=household.id)
    assert state.balance >= 0
    received = messages(session)
    assert sorted(m.dedupe_key or "" for m in received) == [
        f"receipt:{payment.id}:allocated",
        f"receipt:{payment.id}:allocated:1",
    ]
    assert {m.phone for m in received} == {PAYER, "+221781112233"}
    # Just paid, in the month of waiting: the receipt says so, in the words USSD and SMS use.
    assert all(m.template == "receipt_waiting" for m in received)
    assert "En attente jusqu'au " in received[0].body and ", couvert ensuite jusqu'au " in received[0].body
    assert "2027" in received[0].body
    assert sorted(sent) == sorted(m.id for m in received)


def test_partial_payment_receipt_says_what_is_still_due(session: Session, cmu: Scheme, sent: list[int]) -> None:
    make_household(session, cmu, phone=PAYER)
    payment = stored(session, amount=5_000)
    reconcile(session, payment)
    [receipt] = messages(session)
    assert receipt.template == "receipt_due"
    assert "10 000 F CFA" in receipt.body  # 15,000 due, 5,000 paid


def test_suspense_sends_one_under_review_receipt(session: Session, cmu: Scheme, sent: list[int]) -> None:
    payment = stored(session, reference=None)
    reconcile(session, payment)
    reconcile(session, payment, retry_unmatched=True)
    [receipt] = messages(session)
    assert (receipt.template, receipt.phone, receipt.dedupe_key) == (
        "receipt_review",
        PAYER,
        f"receipt:{payment.id}:review",
    )


def test_network_payment_pays_its_households_soonest_expiry_first(
    session: Session, cmu: Scheme, sent: list[int]
) -> None:
    network = make_network(session, cmu, code="RES-TN")
    first, second, third = (make_household(session, cmu, network=network) for _ in range(3))
    payment = stored(session, amount=2 * FULL_YEAR + 500, reference="res-tn", payer=None)

    assert reconcile(session, payment) == "allocated"

    assert (payment.network_id, payment.household_id, payment.match_rule) == (network.id, None, "account_number")
    paid = {a.account.household_id for a in allocations(session) if a.account.household_id}
    assert paid == {first.id, second.id}  # third waits: 500 stays on the network account
    network_account = next(a.account for a in allocations(session) if a.account.network_id)
    assert account_state(session, account_id=network_account.id).balance == 500
    assert third.id not in paid


def test_network_payment_sends_one_summary_to_the_contact(session: Session, cmu: Scheme, sent: list[int]) -> None:
    network = make_network(session, cmu, code="RES-PK")
    network.contact_phone = "+221705550000"
    session.commit()
    for _ in range(3):
        make_household(session, cmu, network=network, phone="+221781110000")
    payment = stored(session, amount=2 * FULL_YEAR + 500, reference="RES-PK")

    assert reconcile(session, payment) == "allocated"
    payment.status = PaymentStatus.RECEIVED  # a stray re-run sends nothing more
    session.commit()
    reconcile(session, payment)

    received = messages(session)
    assert [(m.template, m.phone, m.dedupe_key) for m in received] == [
        ("receipt_network", "+221705550000", f"receipt:{payment.id}:allocated"),
        ("receipt_network", PAYER, f"receipt:{payment.id}:allocated:1"),
    ]
    assert received[0].body == (
        "Réseau RES-PK : paiement de 30 500 F CFA enregistré, 2 ménage(s) payé(s). Reste sur le compte : 500 F CFA."
    )
    assert received[0].segments == 1


# ---------------------------------------------------------------- provisional payments


def test_provisional_payment_is_matched_but_funds_nothing_until_confirmed(
    session: Session, cmu: Scheme, sent: list[int]
) -> None:
    household = make_household(session, cmu, phone=PAYER)
    payment = stored(session, payer="771234567", confirms=False, txn="PP1")

    assert reconcile(session, payment) == "provisional"
    assert (payment.status, payment.household_id, payment.match_rule) == (
        PaymentStatus.PROVISIONAL,
        household.id,
        "payer_phone",
    )
    assert allocations(session) == [] and messages(session) == []  # no receipt for a forwarded text alone

    confirmation = Report(
        provider="orange_money",
        provider_txn_id="PP1",
        amount=FULL_YEAR,
        currency="XOF",
        payer_phone=PAYER,
        reference=None,
        paid_at=PAID_AT,
        source=EvidenceSource.STATEMENT,
        route="statement",
        raw="PP1,15000",
    )
    result = record_report(session, confirmation)
    session.commit()
    assert result.needs_reconcile
    assert reconcile(session, payment) == "allocated"
    assert len(allocations(session)) == 1 and payment.confirmed


def test_unconfirmed_suspense_sends_no_receipt(session: Session, cmu: Scheme, sent: list[int]) -> None:
    payment = stored(session, confirms=False, txn="PP2")
    assert reconcile(session, payment) == "unmatched"
    assert messages(session) == []


# ---------------------------------------------------------------- staff actions


def test_manual_match_from_suspense(session: Session, cmu: Scheme, sent: list[int]) -> None:
    household = make_household(session, cmu)
    payment = stored(session, reference="wrong ref", payer=None)
    reconcile(session, payment)
    session.commit()
    with pytest.raises(ValueError, match="reason"):
        manual_match(session, payment.id, "awa", " ", household_no=household.household_no)
    session.rollback()

    outcome = manual_match(session, payment.id, "awa", "payer called", household_no=household.household_no)
    session.commit()

    session.refresh(payment)
    assert (outcome, payment.status, payment.match_rule) == ("allocated", PaymentStatus.ALLOCATED, "manual")
    manual = [e for e in payment.events if e.actor == "awa"]
    assert [(e.before_status, e.after_status) for e in manual] == [("UNMATCHED", "MATCHED"), ("MATCHED", "ALLOCATED")]


@pytest.mark.parametrize(
    ("refund_payer", "final", "kind"), [(False, "REVERSED", LedgerKind.REVERSAL), (True, "REFUNDED", LedgerKind.REFUND)]
)
def test_undo_removes_exactly_what_the_payment_funded(
    session: Session, cmu: Scheme, sent: list[int], refund_payer: bool, final: str, kind: LedgerKind
) -> None:
    household = make_household(session, cmu)
    payment = stored(session, reference=household.household_no)
    reconcile(session, payment)

    session.commit()
    assert undo_payment(session, payment.id, "awa", "operator reversal", refund_payer=refund_payer) == final.lower()
    session.commit()
    assert undo_payment(session, payment.id, "awa", "again", refund_payer=refund_payer) == "already done"
    session.commit()

    session.refresh(payment)
    assert payment.status.value == final
    assert account_state(session, household_id=household.id).balance == 0
    kinds = set(session.scalars(select(LedgerEntry.kind).where(LedgerEntry.payment_id == payment.id)))
    assert kind in kinds
    assert payment.events[-1].after_status == final


# ---------------------------------------------------------------- through the HTTP contract and a real worker


@pytest.fixture
def app(db_url: str, redis_url: str) -> Flask:
    """Return the app with the test Wave signing secret."""
    return make_test_app(db_url, redis_url, WAVE_WEBHOOK_SECRET=WAVE_SECRET)


def test_webhook_to_allocation_through_a_real_worker(
    client: FlaskClient, session: Session, cmu: Scheme, run_worker: Callable[..., Any], redis_url: str
) -> None:
    household = make_household(session, cmu, phone=PAYER)
    request = request_for(session, cmu, household, amount=3_500)
    event = fixture_payload("wave_merchant_payment_received.json")
    event["data"]["custom_fields"]["reference"] = request.reference
    assert post_wave(client, event).status_code == 200

    done = run_worker()

    assert done.returncode == 0, done.stderr
    [payment] = session.scalars(select(Payment).execution_options(populate_existing=True))
    assert (payment.status, payment.household_id, payment.match_rule) == (
        PaymentStatus.ALLOCATED,
        household.id,
        "request_reference",
    )
    [receipt] = messages(session)
    assert receipt.dedupe_key == f"receipt:{payment.id}:allocated" and receipt.template == "receipt_due"
    assert PAYER not in done.stderr + done.stdout  # phone numbers are masked in worker logs


def test_forwarded_text_then_webhook_through_the_worker_and_the_api(
    client: FlaskClient, session: Session, cmu: Scheme, run_worker: Callable[..., Any]
) -> None:
    household = make_household(session, cmu, phone=PAYER)
    add_device(session)
    _token, secret = issue_token(session, name="auditor", facility="Thies audit", now=utcnow())
    session.commit()
    auth = {"Authorization": f"Bearer {secret}"}
    text = "Vous avez reçu 3.500F de Moussa Diop (77 123 45 67). Réf. T_4ZQ7WX2KX. Solde: 48.250F"

    forward(client, "Wave", text)
    assert run_worker().returncode == 0
    provisional = client.get("/api/payments/wave/T_4ZQ7WX2KX", headers=auth).json
    assert provisional == {
        "status": "PROVISIONAL",
        "household_no": household.household_no,
        "network_code": None,
        "amount": 3500,
        "currency": "XOF",
        "rule": "payer_phone",
        "reason": "waiting for the operator's confirmation",
    }

    post_wave(client, fixture_payload("wave_merchant_payment_received.json"))
    assert run_worker().returncode == 0

    final = json_body(client.get("/api/payments/wave/T_4ZQ7WX2KX", headers=auth))
    assert (final["status"], final["household_no"], final["amount"]) == ("ALLOCATED", household.household_no, 3500)
    [payment] = session.scalars(select(Payment).execution_options(populate_existing=True))
    assert len(payment.evidence) == 2
    assert len(allocations(session)) == 1


def test_payment_api_refuses_bad_tokens_and_unknown_payments(client: FlaskClient, session: Session) -> None:
    token, secret = issue_token(session, name="clinic", facility="Poste de sante", now=utcnow())
    session.commit()
    post_wave(client, fixture_payload("wave_merchant_payment_received.json"))

    assert client.get("/api/payments/wave/T_4ZQ7WX2KX").status_code == 401
    assert client.get("/api/payments/wave/T_4ZQ7WX2KX", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = client.get("/api/payments/wave/T_4ZQ7WX2KX", headers={"Authorization": f"Bearer {secret}"})
    assert ok.status_code == 200 and json_body(ok)["status"] == "RECEIVED" and json_body(ok)["household_no"] is None
    missing = client.get("/api/payments/wave/T_NOPE", headers={"Authorization": f"Bearer {secret}"})
    assert missing.status_code == 404
    token.revoked_at = utcnow()
    session.commit()
    assert (
        client.get("/api/payments/wave/T_4ZQ7WX2KX", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    )


def test_sweeper_requeues_payments_stuck_in_received(
    session: Session, cmu: Scheme, run_worker: Callable[..., Any], redis_url: str
) -> None:
    household = make_household(session, cmu)
    payment = stored(session, reference=household.household_no)  # stored, but its job was lost
    payment.updated_at = utcnow() - timedelta(minutes=10)
    session.commit()
    Queue(RQ_QUEUE, connection=Redis.from_url(redis_url)).enqueue("workers.reconcile.sweep_stuck_payments")

    assert run_worker().returncode == 0

    session.refresh(payment)
    assert payment.status == PaymentStatus.ALLOCATED


def test_cli_list_show_match_reconcile(app: Flask, session: Session, cmu: Scheme) -> None:
    household = make_household(session, cmu)
    matched = stored(session, reference=household.household_no, txn="T_A")
    orphan = stored(session, reference=None, payer=None, txn="T_B")
    runner = app.test_cli_runner()

    run = runner.invoke(args=["reconcile", "run"])
    assert run.exit_code == 0, run.output
    assert "reconciled 2 payment(s): 1 allocated, 1 unmatched" in run.output

    listing = runner.invoke(args=["payments", "list", "--status", "unmatched"])
    assert "wave/T_B" in listing.output and "wave/T_A" not in listing.output

    match = runner.invoke(
        args=["payments", "match", "wave/T_B", "--household", household.household_no, "--reason", "called"]
    )
    assert match.exit_code == 0, match.output
    shown = runner.invoke(args=["payments", "show", str(orphan.id)])
    assert "UNMATCHED → MATCHED manual called" in shown.output and "ALLOCATED" in shown.output
    assert "+221771234567" not in shown.output

    reverse = runner.invoke(args=["payments", "reverse", "wave/T_A", "--reason", "chargeback"])
    assert reverse.exit_code == 0 and "reversed" in reverse.output
    session.commit()
    session.refresh(matched)
    assert matched.status == PaymentStatus.REVERSED
    assert session.execute(select(func.count(ReconciliationEvent.id))).scalar_one() >= 8


def test_reconcile_requests_coalesce_into_one_drain_per_generation(redis_url: str) -> None:
    from rq.job import Job, JobStatus

    from redis_keys import drain_job_id, reconcile_generation_key, reconcile_waiting_key
    from workers.reconcile import request_reconcile

    connection = Redis.from_url(redis_url)
    queue = Queue(RECONCILE_QUEUE, connection=connection)
    assert request_reconcile(connection, [7], RECONCILE_QUEUE) is True
    assert request_reconcile(connection, [8, 7], RECONCILE_QUEUE) is False  # a drain is waiting: it takes both
    assert queue.job_ids == [drain_job_id(0)]
    assert sorted(int(i) for i in connection.smembers(reconcile_waiting_key())) == [7, 8]

    job = Job.fetch(drain_job_id(0), connection=connection)
    queue.remove(job)
    job.set_status(JobStatus.FAILED)  # an earlier drain failed for good
    assert request_reconcile(connection, [9], RECONCILE_QUEUE) is True
    assert queue.job_ids == [drain_job_id(0)]
    assert Job.fetch(drain_job_id(0), connection=connection).retries_left == 3

    connection.incr(reconcile_generation_key())  # a drain started: the next request is for the next drain
    assert request_reconcile(connection, [10], RECONCILE_QUEUE) is True
    assert queue.job_ids == [drain_job_id(0), drain_job_id(1)]


def test_a_request_racing_a_drain_that_ends_enqueues_the_next_one(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rq.exceptions import InvalidJobOperation
    from rq.job import Job, JobStatus

    from redis_keys import drain_job_id, reconcile_waiting_key
    from workers.reconcile import request_reconcile

    connection = Redis.from_url(redis_url)
    queue = Queue(RECONCILE_QUEUE, connection=connection)
    assert request_reconcile(connection, [7], RECONCILE_QUEUE) is True
    job = Job.fetch(drain_job_id(0), connection=connection)
    queue.remove(job)
    job.set_status(JobStatus.FINISHED)  # the drain is ending: its worker deletes it at once (result_ttl=0)
    read_status = Job.get_status
    reads = []

    def ended_meanwhile(self: Job, refresh: bool = True) -> JobStatus:
        reads.extend([self.id] if refresh else [])  # the reads from Redis, not the enqueue's look at its own copy
        if refresh and len(reads) == 2:  # the worker's deletion lands between our reads, as on a loaded machine
            connection.delete(self.key)
            raise InvalidJobOperation(f"Failed to retrieve status for job: {self.id}")
        return read_status(self, refresh)

    monkeypatch.setattr(Job, "get_status", ended_meanwhile)

    # Before, the deletion of the vanished job raised InvalidJobOperation: a 500 to Wave after the commit.
    assert request_reconcile(connection, [8], RECONCILE_QUEUE) is True
    assert queue.job_ids == [drain_job_id(0)]
    assert sorted(int(i) for i in connection.smembers(reconcile_waiting_key())) == [7, 8]


def test_concurrent_runs_for_one_payment_allocate_once(pg_url: str) -> None:
    import threading

    from models.db import get_engine

    engine = get_engine(pg_url)
    with Session(engine, expire_on_commit=False) as setup:
        attach_dispatch(setup, lambda ids: None)
        cmu = factories.scheme(setup, "cmu-thies")
        household = make_household(setup, cmu, phone=PAYER)
        payment = stored(setup, reference=household.household_no)
    outcomes: list[str] = []

    def run() -> None:
        with Session(engine, expire_on_commit=False) as own:
            attach_dispatch(own, lambda ids: None)
            outcomes.append(reconcile_payment(own, payment.id))
            own.commit()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(outcomes) == ["allocated"] + ["skipped"] * 7
    with Session(engine) as check:
        assert check.scalar(select(func.count(Allocation.id))) == 1
        assert check.scalar(select(func.count(Message.id))) == 1
