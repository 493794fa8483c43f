"""Reconciliation through real `rq worker` processes on PostgreSQL and Redis: rules, splits, crashes, concurrency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from rq import Queue
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from models.base import EvidenceSource, PaymentStatus, utcnow
from models.coverage.ledger import account_state, get_or_create_account
from models.coverage.money import Allocation
from models.db import get_engine
from models.messaging.message import Message
from models.messaging.outbox import attach_dispatch
from models.payments.intake import Report, record_report
from models.payments.payment import Payment
from models.payments.references import create_payment_request, damm_check_digit
from models.reconciliation.batch import reconcile_payment
from models.reconciliation.staff_actions import undo_payment
from models.schemes.scheme import Scheme
from redis_keys import drain_job_id, reconcile_generation_key, reconcile_waiting_key
from tests import factories
from tests.backends import RECONCILE_QUEUE, RQ_QUEUE
from tests.conftest import ROOT
from tests.factories import make_household, make_network
from tests.ledger_invariants import check_invariants
from tests.payment_helpers import PAID_AT, store_report
from workers.reconcile import request_reconcile

FULL_YEAR = 15_000
PAYER = "+221771234567"
_txn = iter(range(1, 10**9))

PRODUCTION_WORKER = ["--worker-class", "workers.worker.PreloadedWorker"]


@pytest.fixture
def db_url(pg_url: str) -> str:
    """Run every test here on the real PostgreSQL."""
    return pg_url


@pytest.fixture
def session(pg_url: str) -> Iterator[Session]:
    """Yield a session on PostgreSQL whose queued SMS go nowhere (the worker's own session dispatches)."""
    with Session(get_engine(pg_url), expire_on_commit=False) as s:
        attach_dispatch(s, lambda ids: None)
        yield s


@pytest.fixture
def queue(redis_url: str) -> Queue:
    """Return the reconciliation queue on the test's Redis."""
    return Queue(RECONCILE_QUEUE, connection=Redis.from_url(redis_url))


def ask(queue: Queue, *payment_ids: int) -> bool:
    """Ask for the reconciliation of payments, as every route does; return whether a drain job was added."""
    return request_reconcile(queue.connection, payment_ids, queue.name)


def store(
    session: Session,
    amount: int = FULL_YEAR,
    reference: str | None = None,
    payer: str | None = None,
    confirms: bool = True,
    txn: str | None = None,
) -> Payment:
    """Store a payment as intake does and commit."""
    txn = txn or f"T_W{next(_txn)}"
    return store_report(session, amount=amount, txn=txn, reference=reference, payer=payer, confirms=confirms)


def fresh(session: Session, payment: Payment) -> Payment:
    """Return the payment as stored now."""
    session.commit()
    found = session.scalar(select(Payment).where(Payment.id == payment.id).execution_options(populate_existing=True))
    assert found is not None
    return found


def count(session: Session, model: Any, *where: Any) -> int:
    """Return how many rows of the model match."""
    session.commit()
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_every_rule_suspense_reason_and_network_split_through_a_worker(
    session: Session, queue: Queue, run_worker: Callable[..., Any]
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    by_request, by_number, by_phone_amount, by_phone = (make_household(session, cmu) for _ in range(4))
    by_phone_amount_payer, by_phone_payer = "+221770000001", "+221770000002"
    by_phone.members[0].phone = by_phone_payer
    by_number.members[0].phone = "+221770000003"  # the typed number is corroborated by the payer's phone
    session.commit()
    for shared in range(2):
        make_household(session, cmu, phone="+221770000009", household_no=f"SHARED{shared}")
    network = make_network(session, cmu, code="RES-W")
    network.contact_phone = "+221705550001"
    session.commit()
    in_network = [make_household(session, cmu, network=network) for _ in range(3)]
    request = create_payment_request(
        session, scheme=cmu, household=by_request, amount=FULL_YEAR, channel="ussd", now=utcnow()
    )
    create_payment_request(
        session,
        scheme=cmu,
        household=by_phone_amount,
        amount=7_000,
        payer_phone=by_phone_amount_payer,
        channel="ussd",
        now=utcnow(),
    )
    session.commit()
    stale = "123456" + damm_check_digit("123456")
    cases = {
        "request": (store(session, reference=request.reference), "request_reference", by_request.id),
        "number": (
            store(session, reference=f"cotisation {by_number.household_no}", payer="770000003"),
            "account_number",
            by_number.id,
        ),
        "phone_amount": (
            store(session, amount=7_000, payer="770000001"),
            "request_phone_amount",
            by_phone_amount.id,
        ),
        "phone": (store(session, payer="77 000 00 02"), "payer_phone", by_phone.id),
    }
    suspense = {
        "no account reference; payer phone belongs to no household": store(session, payer="+221779999999"),
        "payer phone shared by several households": store(session, payer="+221770000009"),
        "payer phone unknown or masked": store(session, payer="77****567"),
        f"reference {stale} is not an open payment request": store(session, reference=stale),
        "no household, member or network 'SN-NOPE'": store(session, reference="SN-NOPE"),
    }
    network_payment = store(session, amount=2 * FULL_YEAR + 500, reference="res-w", payer=PAYER)
    everything = [p for p, _rule, _owner in cases.values()] + [*suspense.values(), network_payment]
    assert ask(queue, *[p.id for p in everything])  # one drain job takes them all
    assert queue.job_ids == [drain_job_id(0)]

    done = run_worker()

    assert done.returncode == 0, done.stderr
    for name, (payment, rule, household_id) in cases.items():
        payment = fresh(session, payment)
        assert (payment.status, payment.match_rule, payment.household_id) == (
            PaymentStatus.ALLOCATED,
            rule,
            household_id,
        ), name
    for reason, payment in suspense.items():
        payment = fresh(session, payment)
        assert payment.status == PaymentStatus.UNMATCHED and reason in (payment.status_reason or ""), reason
    payment = fresh(session, network_payment)
    assert (payment.status, payment.network_id) == (PaymentStatus.ALLOCATED, network.id)
    paid = [h.id for h in in_network if account_state(session, household_id=h.id).fee_paid]
    assert len(paid) == 2
    network_account = get_or_create_account(session, network=network)
    assert account_state(session, account_id=network_account.id).balance == 500
    [summary] = session.scalars(select(Message).where(Message.dedupe_key == f"receipt:{payment.id}:allocated"))
    assert (summary.template, summary.phone) == ("receipt_network", "+221705550001")
    assert count(session, Allocation, Allocation.source_ref.like("payment:%")) == 5 + 2  # five payments, two payouts


def test_provisional_then_confirmed_then_reversed_through_a_worker(
    session: Session, queue: Queue, run_worker: Callable[..., Any]
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    household = make_household(session, cmu, phone=PAYER)
    payment = store(session, payer="771234567", confirms=False, txn="PP_W1")
    ask(queue, payment.id)
    assert run_worker().returncode == 0
    payment = fresh(session, payment)
    assert (payment.status, payment.household_id) == (PaymentStatus.PROVISIONAL, household.id)
    assert count(session, Allocation) == 0 and count(session, Message) == 0

    confirmation = Report(
        provider="orange_money",
        provider_txn_id="PP_W1",
        amount=FULL_YEAR,
        currency="XOF",
        payer_phone=PAYER,
        reference=None,
        paid_at=PAID_AT,
        source=EvidenceSource.STATEMENT,
        route="statement",
        raw="PP_W1,15000",
    )
    assert record_report(session, confirmation).needs_reconcile
    session.commit()
    ask(queue, payment.id)
    assert run_worker().returncode == 0
    payment = fresh(session, payment)
    assert payment.status == PaymentStatus.ALLOCATED
    assert count(session, Allocation) == 1 and count(session, Message) == 1

    assert undo_payment(session, payment.id, "awa", "chargeback") == "reversed"
    session.commit()
    ask(queue, payment.id)  # a stray run after the reversal changes nothing
    assert run_worker().returncode == 0
    assert fresh(session, payment).status == PaymentStatus.REVERSED
    assert account_state(session, household_id=household.id).balance == 0
    check_invariants(session, household.id, reversed_any=True)


def test_two_workers_on_one_household_keep_exact_balances(
    session: Session, queue: Queue, run_worker: Callable[..., Any]
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    household = make_household(session, cmu, phone=PAYER)
    amounts = [3_500, 7_000, 1_000, 15_000, 2_500, 700] * 4
    payments = [store(session, amount=a, reference=household.household_no, payer=PAYER) for a in amounts]
    assert ask(queue, *[p.id for p in payments])
    queue.connection.incr(
        reconcile_generation_key()
    )  # as if the first drain had started: a second drain job, side by side
    assert ask(queue)
    assert len(queue.job_ids) == 2
    results: list[subprocess.CompletedProcess[str]] = []
    small_batches = {"RECONCILE_BATCH_SIZE": "3"}  # each drain takes three payments at a time, in turn
    threads = [threading.Thread(target=lambda: results.append(run_worker(extra_env=small_batches))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    assert all("reconcile batch of 3" in r.stderr for r in results)  # both drains took batches
    assert {fresh(session, p).status for p in payments} == {PaymentStatus.ALLOCATED}
    assert count(session, Allocation) == len(amounts)
    check_invariants(session, household.id, reversed_any=False)
    receipts = session.scalars(select(Message.dedupe_key).where(Message.dedupe_key.like("receipt:%"))).all()
    assert len(receipts) == len(set(receipts)) == len(amounts)  # payer is the head: one receipt each


def test_a_drain_that_takes_a_full_batch_asks_for_the_next_drain(
    session: Session, queue: Queue, run_worker: Callable[..., Any]
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    phones = [f"+22177000{n:04d}" for n in range(5)]
    households = [make_household(session, cmu, phone=phone) for phone in phones]
    # Each typed number is corroborated by the payer's registered phone (issue 18: signals must agree).
    payments = [
        store(session, reference=h.household_no, payer=phone) for h, phone in zip(households, phones, strict=True)
    ]
    assert ask(queue, *[p.id for p in payments])  # a backlog, all at once: one drain job
    assert queue.job_ids == [drain_job_id(0)]

    done = run_worker(RECONCILE_QUEUE, extra_env={"RECONCILE_BATCH_SIZE": "2"})

    assert done.returncode == 0, done.stderr
    # Its first batch was full, so drain-0 asked for drain-1, which a second worker would have taken alongside.
    assert drain_job_id(1) in done.stdout + done.stderr
    assert {fresh(session, p).status for p in payments} == {PaymentStatus.ALLOCATED}
    assert queue.connection.scard(reconcile_waiting_key()) == 0


def test_a_batch_defers_payments_whose_accounts_another_worker_holds_then_waits_for_them(
    session: Session, queue: Queue, worker_env: dict[str, str], redis_url: str, pg_url: str
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    held, free = (
        make_household(session, cmu, phone="+221770000011"),
        make_household(session, cmu, phone="+221770000012"),
    )
    network = make_network(session, cmu, code="RES-HELD")
    member = make_household(session, cmu, network=network)  # its account is held: the whole network is busy
    accounts = [get_or_create_account(session, household=h).id for h in (held, member)]
    get_or_create_account(session, network=network)
    session.commit()
    payments = [
        store(session, reference=held.household_no, payer="+221770000011"),
        store(session, reference=free.household_no, payer="+221770000012"),
        store(session, amount=FULL_YEAR, reference="RES-HELD"),
    ]
    ask(queue, *[p.id for p in payments])

    with Session(get_engine(pg_url)) as holder:  # another worker's batch, mid-transaction
        holder.execute(text("SELECT id FROM accounts WHERE id = ANY(:ids) FOR UPDATE"), {"ids": accounts})
        command = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", redis_url, *PRODUCTION_WORKER]
        worker = subprocess.Popen(
            [*command, RECONCILE_QUEUE, RQ_QUEUE], cwd=ROOT, env=worker_env, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while not _waiting_on_a_lock(session):  # the job's second pass, over the two deferred payments, waits
            assert worker.poll() is None, worker.communicate()[1]
            assert time.monotonic() < deadline, "the deferred payments never waited for the accounts"
            time.sleep(0.1)
        # The first batch did not wait: it settled the free household's payment and left the other two.
        assert [fresh(session, p).status for p in payments] == [
            PaymentStatus.RECEIVED,
            PaymentStatus.ALLOCATED,
            PaymentStatus.RECEIVED,
        ]
        holder.rollback()
    _, errors = worker.communicate(timeout=60)

    assert worker.returncode == 0, errors[-2000:]
    assert {fresh(session, p).status for p in payments} == {PaymentStatus.ALLOCATED}
    assert count(session, Allocation) == 4  # three payments and the network's payout to its household
    for household in (held, free, member):
        check_invariants(session, household.id, reversed_any=False)


def _children(pid: int) -> list[int]:
    """Return the ids of the direct children of a process (RQ's work horse runs in its own session)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _waiting_on_a_lock(session: Session) -> bool:
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    waiting = bool(session.scalar(query))
    session.rollback()  # pg_stat_activity is read once per transaction: look again in a new one
    return waiting


def test_worker_killed_mid_allocation_then_retried_allocates_once(
    session: Session, queue: Queue, worker_env: dict[str, str], redis_url: str, pg_url: str
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    household = make_household(session, cmu, phone=PAYER)
    account_id = get_or_create_account(session, household=household).id
    session.commit()
    payment = store(session, reference=household.household_no)
    ask(queue, payment.id)

    # Hold the account row, so the job stops deterministically inside the allocation, after matching.
    with Session(get_engine(pg_url)) as holder:
        holder.execute(text("SELECT id FROM accounts WHERE id = :id FOR UPDATE"), {"id": account_id})
        # The Procfile's worker class: a forked work horse per job, job modules loaded before the fork.
        command = [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "--url",
            redis_url,
            *PRODUCTION_WORKER,
            RECONCILE_QUEUE,
            RQ_QUEUE,
        ]
        worker = subprocess.Popen(
            command, cwd=ROOT, env=worker_env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60
            while not _waiting_on_a_lock(session):
                assert time.monotonic() < deadline, "the job never reached the allocation"
                time.sleep(0.1)
        finally:
            for pid in [*_children(worker.pid), worker.pid]:  # the work horse and its worker, mid-job
                os.kill(pid, signal.SIGKILL)
            worker.communicate(timeout=30)
        holder.rollback()

    assert fresh(session, payment).status == PaymentStatus.RECEIVED  # the killed transaction left nothing
    assert count(session, Allocation) == 0
    assert queue.connection.scard(reconcile_waiting_key()) == 0  # the dead drain had taken it
    # RQ's abandoned-job handling, as it runs once the dead worker's heartbeat (at most 90 s) has lapsed:
    # the job has retries left, so it is scheduled again (first retry interval: 10 s); its run puts back
    # what the dead run had taken.
    queue.started_job_registry.cleanup(timestamp=time.time() + 120)
    from workers.reconcile import RECONCILE_RETRY_INTERVALS

    time.sleep(RECONCILE_RETRY_INTERVALS[0] + 0.5)
    command = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--with-scheduler", "--url", redis_url]
    command += [*PRODUCTION_WORKER, RECONCILE_QUEUE, RQ_QUEUE]
    done = subprocess.run(command, cwd=ROOT, env=worker_env, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr
    assert fresh(session, payment).status == PaymentStatus.ALLOCATED
    assert count(session, Allocation) == 1
    assert count(session, Message, Message.dedupe_key.like(f"receipt:{payment.id}:%")) == 1
    check_invariants(session, household.id, reversed_any=False)


def test_a_payment_whose_request_was_lost_is_reconciled_by_the_swept_drain(
    session: Session, queue: Queue, run_worker: Callable[..., Any]
) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    household = make_household(session, cmu, phone=PAYER)
    payment = store(session, reference=household.household_no)  # stored, but Redis was down: no request
    session.execute(Payment.__table__.update().values(updated_at=utcnow().replace(year=2000)))
    session.commit()
    queue.enqueue("workers.reconcile.sweep_stuck_payments")  # what the clock enqueues every minute

    done = run_worker()

    assert done.returncode == 0, done.stderr
    assert fresh(session, payment).status == PaymentStatus.ALLOCATED
    assert count(session, Allocation) == 1


operations = st.lists(
    st.one_of(
        st.tuples(st.just("pay"), st.integers(1, 30_000)),
        st.tuples(st.just("reverse"), st.integers(0, 20)),
        st.tuples(st.just("refund"), st.integers(0, 20)),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_any_payment_and_reversal_sequence_keeps_the_ledger_invariant(
    session: Session, ops: list[tuple[str, int]]
) -> None:
    session.execute(text("TRUNCATE payments, allocations, ledger_entries, coverage_periods, messages CASCADE"))
    session.commit()
    cmu: Scheme = factories.scheme(session, "cmu-thies")
    household = make_household(session, cmu, phone=PAYER)
    done: list[Payment] = []
    reversed_any = False
    for op, value in ops:
        if op == "pay":
            payment = store(session, amount=value, reference=household.household_no, payer=PAYER)
            assert reconcile_payment(session, payment.id) == "allocated"
            session.commit()
            done.append(payment)
        elif done:
            target = fresh(session, done[value % len(done)])
            final = PaymentStatus.REFUNDED if op == "refund" else PaymentStatus.REVERSED
            if target.status not in {PaymentStatus.ALLOCATED, final}:
                with pytest.raises(ValueError, match="cannot undo"):  # reversed, then refunded: refused
                    undo_payment(session, target.id, "staff", "property test", refund_payer=op == "refund")
                session.rollback()
            else:
                undo_payment(session, target.id, "staff", "property test", refund_payer=op == "refund")
                session.commit()
                reversed_any = True
        check_invariants(session, household.id, reversed_any)
        session.commit()
    for payment in done:
        payment = fresh(session, payment)
        live = count(session, Allocation, Allocation.payment_id == payment.id, Allocation.reversed_at.is_(None))
        assert live == (1 if payment.status == PaymentStatus.ALLOCATED else 0)
