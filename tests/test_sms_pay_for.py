"""SMS `PAYER` for a named household or network (issue 18), through `POST /sms/inbound` and RQ jobs: a shared phone
gets a choice, `PAYER SN-… [amount]` works from any phone (rate-limited), a treasurer pays for the network."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from rq import Queue
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.members.household import Household, Network
from models.messaging.outbox import attach_dispatch
from models.payments.payment import PaymentRequest
from models.reconciliation.batch import reconcile_payment
from models.schemes.mutuelle import home_mutuelle
from models.schemes.scheme import Scheme
from tests import factories
from tests.payment_helpers import store_report
from tests.sms_helpers import cmu, job_env, queue, replies, run_jobs, sms

__all__ = ["cmu", "job_env", "queue"]  # the fixtures
SHARED = "+221765554433"
STRANGER = "+221709998877"
TREASURER = "+221775550000"


@pytest.fixture
def shared(session: Session, cmu: Scheme) -> list[Household]:
    """Return two households (heads Awa) whose heads have one phone."""
    return [
        factories.make_household(session, cmu, size=2, phone=SHARED, household_no=number)
        for number in ("SN-PK-000045", "SN-PK-000901")
    ]


def requests(session: Session) -> list[PaymentRequest]:
    """Return every payment request, oldest first."""
    session.commit()
    return list(session.scalars(select(PaymentRequest).order_by(PaymentRequest.id)))


@pytest.mark.parametrize(
    ("text", "template", "keyword"),
    [
        ("PAYER", "choose_household_pay", "PAYER"),
        ("solde", "choose_household_balance", "SOLDE"),
        ("Statut", "choose_household_status", "STATUT"),
    ],
)
def test_a_shared_phone_is_asked_which_household(
    client: FlaskClient,
    session: Session,
    shared: list[Household],
    queue: Queue,
    job_env: None,
    text: str,
    template: str,
    keyword: str,
) -> None:
    assert sms(client, SHARED, text).status_code == 200
    run_jobs(queue)

    [reply] = replies(session, SHARED)
    assert reply.template == template
    assert "SN-PK-000045 (Awa), SN-PK-000901 (Awa)" in reply.body and f"{keyword} + " in reply.body
    assert reply.segments == 1
    assert requests(session) == []  # nothing done for the first household


def test_a_shared_phone_answers_with_the_household_number(
    client: FlaskClient,
    session: Session,
    shared: list[Household],
    queue: Queue,
    job_env: None,
) -> None:
    for text in ("PAYER SN-PK-000901 3500", "solde sn-pk-000901", "STATUT SN-PK-000901"):
        assert sms(client, SHARED, text).status_code == 200
    run_jobs(queue)

    pay, balance, status = replies(session, SHARED)
    [request] = requests(session)
    assert (request.household_id, request.amount, request.payer_phone) == (shared[1].id, 3500, SHARED)
    assert pay.template == "payment_reference_for"
    assert pay.body.startswith(f"Ménage SN-PK-000901 (Awa) : référence {request.reference}, payez 3 500 F CFA.")
    assert balance.template == "balance" and "SN-PK-000901" in balance.body
    assert status.template == "status_pending" and "SN-PK-000901" in status.body


def test_payer_with_a_household_number_from_any_phone_is_rate_limited(
    client: FlaskClient,
    session: Session,
    shared: list[Household],
    queue: Queue,
    job_env: None,
) -> None:
    for _ in range(6):
        assert sms(client, STRANGER, "pay sn-pk-000045").status_code == 200
    assert sms(client, STRANGER, "PAY SN-XX-999999 2000").status_code == 200
    run_jobs(queue)

    out = replies(session, STRANGER)
    assert [m.template for m in out] == ["payment_reference_for"] * 5 + ["rate_limited"] * 2
    # The amount due of a household of two (7,000 F) and the 1,000 F fee, for the household named.
    assert {(r.household_id, r.amount, r.payer_phone) for r in requests(session)} == {(shared[0].id, 8000, STRANGER)}
    assert "SN-PK-000045 (Awa)" in out[0].body


def test_an_unknown_household_number_is_said(
    client: FlaskClient,
    session: Session,
    shared: list[Household],
    queue: Queue,
    job_env: None,
) -> None:
    assert sms(client, STRANGER, "PAYER SN-XX-999999").status_code == 200
    run_jobs(queue)
    [reply] = replies(session, STRANGER)
    assert reply.template == "household_not_found" and "SN-XX-999999" in reply.body


def test_a_treasurer_is_offered_the_network_and_its_payment_pays_the_network(
    client: FlaskClient,
    session: Session,
    cmu: Scheme,
    queue: Queue,
    job_env: None,
    run_worker: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    network = Network(
        scheme_id=cmu.id,
        mutuelle_id=home_mutuelle(session, cmu.id, None).id,
        code="reseau-keur-moussa",
        name="Réseau Keur Moussa",
        contact_phone=TREASURER,
    )
    session.add(network)
    session.commit()
    members = [factories.make_household(session, cmu, size=2, network=network) for _ in range(2)]
    for text in ("PAYER", "PAYER reseau-keur-moussa 20000"):
        assert sms(client, TREASURER, text).status_code == 200
    run_jobs(queue)

    offer, reference = replies(session, TREASURER)
    assert offer.template == "network_offer" and "PAYER RESEAU-KEUR-MOUSSA + montant" in offer.body
    [request] = requests(session)
    assert (request.network_id, request.household_id, request.amount) == (network.id, None, 20_000)
    assert reference.template == "network_reference" and request.reference in reference.body

    payment = store_report(session, amount=20_000, txn="T_NET", reference=request.reference, payer=TREASURER)
    attach_dispatch(session, lambda ids: None)
    session.commit()
    assert reconcile_payment(session, payment.id) == "allocated"
    session.commit()
    session.refresh(payment)
    assert (payment.network_id, payment.household_id) == (network.id, None)
    summary = [m for m in replies(session, TREASURER) if m.template == "receipt_network"]
    assert len(summary) == 1 and "2 ménage(s) payé(s)" in summary[0].body  # both households, told to the contact
    assert len(members) == 2


def test_a_real_worker_asks_a_shared_phone_which_household(
    client: FlaskClient,
    session: Session,
    shared: list[Household],
    run_worker: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    assert sms(client, SHARED, "payer").status_code == 200
    result = run_worker()
    assert result.returncode == 0, result.stderr
    [reply] = replies(session, SHARED)
    assert reply.template == "choose_household_pay" and "SN-PK-000901 (Awa)" in reply.body
