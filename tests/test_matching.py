"""Matching where signals must agree (issue 18): the table of docs/matching.md, row by row, then the same rows
through the sandbox HTTP route and a real worker, keying slips, and a matched payment that a later report
contradicts."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.access.tokens import issue_token
from models.base import PaymentStatus, utcnow
from models.coverage.money import Allocation
from models.members.household import Household, Network
from models.messaging.outbox import attach_dispatch
from models.payments.payment import Payment, ReconciliationEvent
from models.payments.references import create_payment_request
from models.reconciliation.batch import reconcile_payment
from models.reconciliation.matching import find_match, keying_slips
from models.schemes.mutuelle import home_mutuelle
from tests import factories
from tests.conftest import make_test_app
from tests.factories import make_household
from tests.payment_helpers import (
    WAVE_SECRET,
    add_device,
    fixture_payload,
    forward,
    json_body,
    post_json,
    post_wave,
    store_report,
)

FULL_YEAR = 15_000  # CMU standard, 4 members: 1,000 fee + 4 × 7,000 × 50 %
PHONE_A = "+221771234567"  # Aminata's, head of SN-TN-000123
PHONE_B = "+221781112233"  # head of SN-TN-000777
PHONE_SHARED = "+221765554433"  # one phone, two households
PHONE_TREASURER = "+221775550000"  # the contact of Réseau Keur Moussa, a member of no household
PHONE_STRANGER = "+221709998877"  # registered nowhere


@pytest.fixture(autouse=True)
def sent(session: Session) -> list[int]:
    """Collect the ids of SMS the session queues (receipts)."""
    ids: list[int] = []
    attach_dispatch(session, ids.extend)
    return ids


@pytest.fixture
def app(db_url: str, redis_url: str) -> Flask:
    """Return the app with the test Wave signing secret."""
    return make_test_app(db_url, redis_url, WAVE_WEBHOOK_SECRET=WAVE_SECRET)


@dataclass
class World:
    """Households, a network and a payment request that the table's rows refer to."""

    households: dict[str, Household]
    network: Network
    request: str


def build_world(session: Session) -> World:
    """Create the households and network of the table (numbers chosen so that none is one slip from another)."""
    cmu = factories.scheme(session, "cmu-thies")
    households = {
        "SN-TN-000123": make_household(session, cmu, phone=PHONE_A, household_no="SN-TN-000123"),
        "SN-TN-000777": make_household(session, cmu, phone=PHONE_B, household_no="SN-TN-000777"),
        "SN-PK-000045": make_household(session, cmu, phone=PHONE_SHARED, household_no="SN-PK-000045"),
        "SN-PK-000901": make_household(session, cmu, phone=PHONE_SHARED, household_no="SN-PK-000901"),
        # Two households one adjacent swap apart, no registered phone.
        "SN-MR-000310": make_household(session, cmu, household_no="SN-MR-000310"),
        "SN-MR-000301": make_household(session, cmu, household_no="SN-MR-000301"),
    }
    network = Network(
        scheme_id=cmu.id,
        mutuelle_id=home_mutuelle(session, cmu.id, "Thiès Nord").id,
        code="reseau-keur-moussa",
        name="Réseau Keur Moussa",
        commune="Thiès Nord",
        contact_phone=PHONE_TREASURER,
        aliases=["GIE Keur Moussa"],
    )
    session.add(network)
    session.commit()
    make_household(session, cmu, network=network, household_no="SN-KM-000500")
    request = create_payment_request(
        session, scheme=cmu, household=households["SN-TN-000777"], amount=FULL_YEAR, channel="sms", now=utcnow()
    )
    session.commit()
    return World(households, network, request.reference)


# reference ({request} is the open request's), payer, amount → account ("SN-…" household, "net" the network,
# None suspense), rule or the reason's words, the candidates suspense names.
TABLE: list[tuple[str, str | None, str | None, int, str | None, str, list[str]]] = [
    # a payment-request reference with a valid check digit decides alone, even from another household's phone
    ("request reference", "{request}", PHONE_A, FULL_YEAR, "SN-TN-000777", "request_reference", []),
    # a household/member number; payer phone absent, masked, hashed or unregistered; an amount that fits
    ("number, no phone", "SN-TN-000123", None, FULL_YEAR, "SN-TN-000123", "account_number_amount", []),
    ("number, masked phone", "sn-tn-000123", "77****567", 3_500, "SN-TN-000123", "account_number_amount", []),
    ("number, hashed MSISDN", "SN-TN-000123", "ab" * 32, 7_000, "SN-TN-000123", "account_number_amount", []),
    ("member no, stranger", "SN-TN-000123-02", PHONE_STRANGER, FULL_YEAR, "SN-TN-000123", "account_number_amount", []),
    # the number and the payer's own registered phone agree
    ("number + its phone", "Cotisation SN-TN-000123", "77 123 45 67", FULL_YEAR, "SN-TN-000123", "account_number", []),
    # a number; the payer phone registered to ANOTHER household → suspense naming both
    (
        "number, other's phone",
        "SN-TN-000123",
        PHONE_B,
        FULL_YEAR,
        None,
        "registered to SN-TN-000777",
        ["SN-TN-000123", "SN-TN-000777"],
    ),
    # no number; the phone of exactly one household; any amount up to the cap
    ("phone only", None, PHONE_A, FULL_YEAR, "SN-TN-000123", "payer_phone", []),
    ("phone only, instalment", None, "771234567", 2_000, "SN-TN-000123", "payer_phone", []),
    ("phone only, over the cap", None, PHONE_A, 900_000, None, "amount fits nothing", ["SN-TN-000123"]),
    # no number; a shared phone → suspense naming them
    ("shared phone", None, PHONE_SHARED, FULL_YEAR, None, "shared", ["SN-PK-000045", "SN-PK-000901"]),
    # a network code, name as enrolled, alias, or the contact's phone → that network
    ("network code", "RESEAU-KEUR-MOUSSA", PHONE_A, 60_000, "net", "account_number", []),
    ("network name", "Reseau Keur Moussa", PHONE_A, 60_000, "net", "network_name", []),
    ("network name, spacing", "réseau  keurmoussa nov", PHONE_A, 60_000, "net", "network_name", []),
    ("network alias", "gie keur moussa", None, 60_000, "net", "network_name", []),
    ("network contact phone", None, PHONE_TREASURER, 60_000, "net", "network_phone", []),
    # a number that names nothing, or an amount that fits nothing → suspense with the reason
    ("number names nothing", "SN-TN-999999", PHONE_A, FULL_YEAR, None, "no household, member or network", []),
    ("amount fits nothing", "SN-TN-000123", None, 900_000, None, "amount fits nothing", ["SN-TN-000123"]),
    # a typed number one keying slip from another household the amount fits, no phone to tell → suspense
    (
        "slip neighbour fits",
        "SN-MR-000310",
        None,
        FULL_YEAR,
        None,
        "one keying slip",
        ["SN-MR-000310", "SN-MR-000301"],
    ),
]


# One row per line of the table (one world: the household they pay stays under its advance cap).
HTTP_ROWS = {
    "request reference",
    "number, no phone",
    "number, other's phone",
    "phone only",
    "shared phone",
    "network name",
    "network contact phone",
    "number names nothing",
    "amount fits nothing",
    "slip neighbour fits",
}


def _store(session: Session, world: World, row: tuple[Any, ...], txn: str) -> Payment:
    _name, reference, payer, amount, *_ = row
    if reference is not None:
        reference = reference.format(request=world.request)
    return store_report(session, amount=amount, txn=txn, reference=reference, payer=payer)


def _check(session: Session, world: World, payment: Payment, row: tuple[Any, ...]) -> None:
    name, _reference, _payer, _amount, account, rule_or_reason, candidates = row
    session.refresh(payment)
    if account is None:
        assert payment.status == PaymentStatus.UNMATCHED, name
        assert payment.household_id is None and payment.network_id is None, name
        assert rule_or_reason in (payment.status_reason or ""), (name, payment.status_reason)
        event = session.scalars(
            select(ReconciliationEvent)
            .where(ReconciliationEvent.payment_id == payment.id)
            .order_by(ReconciliationEvent.id.desc())
        ).first()
        assert event is not None and event.details is not None, name
        named = [c["number"] for c in event.details["candidates"]]
        assert set(candidates) <= set(named), (name, named)
        return
    assert payment.status == PaymentStatus.ALLOCATED, (name, payment.status, payment.status_reason)
    assert payment.match_rule == rule_or_reason, name
    if account == "net":
        assert payment.network_id == world.network.id, name
    else:
        assert payment.household_id == world.households[account].id, name
    matched = session.scalars(
        select(ReconciliationEvent).where(
            ReconciliationEvent.payment_id == payment.id, ReconciliationEvent.after_status == "MATCHED"
        )
    ).one()
    assert matched.details is not None and "payer" in matched.details, name  # the evidence used is recorded


@pytest.mark.parametrize("row", TABLE, ids=[row[0] for row in TABLE])
def test_matching_table(session: Session, row: tuple[Any, ...]) -> None:
    world = build_world(session)
    payment = _store(session, world, row, "T_ROW")
    session.commit()
    reconcile_payment(session, payment.id)
    session.commit()
    _check(session, world, payment, row)


def test_matching_table_through_the_sandbox_route_and_a_real_worker(
    client: FlaskClient, session: Session, run_worker: Callable[..., Any]
) -> None:
    world = build_world(session)
    rows = [row for row in TABLE if row[0] in HTTP_ROWS]
    for index, row in enumerate(rows):
        _name, reference, payer, amount, *_ = row
        payload = {
            "txn_id": f"SBX-{index}",
            "amount": str(amount),
            "currency": "XOF",
            "phone": payer,
            "reference": reference.format(request=world.request) if reference else None,
        }
        response = post_json(client, "/payments/sandbox", {k: v for k, v in payload.items() if v is not None})
        assert response.status_code == 200, response.get_data(as_text=True)

    done = run_worker()

    assert done.returncode == 0, done.stderr
    _token, secret = issue_token(session, name="auditor", facility="Thies audit", now=utcnow())
    session.commit()
    for index, row in enumerate(rows):
        payment = session.scalars(
            select(Payment).where(Payment.provider_txn_id == f"SBX-{index}").execution_options(populate_existing=True)
        ).one()
        _check(session, world, payment, row)
        seen = json_body(
            client.get(f"/api/payments/sandbox/SBX-{index}", headers={"Authorization": f"Bearer {secret}"})
        )
        network_code = world.network.code if row[4] == "net" else None
        assert (seen["status"], seen["network_code"]) == (payment.status.value, network_code)


@pytest.mark.parametrize("slip", ["one digit changed", "two adjacent swapped", "one digit dropped"])
@pytest.mark.parametrize("payer", [None, "payer's own phone"])
def test_a_keying_slip_never_pays_another_household(session: Session, slip: str, payer: str | None) -> None:
    cmu = factories.scheme(session, "cmu-thies")
    own = make_household(session, cmu, phone=PHONE_A, household_no="SN-TN-000123")
    others = [make_household(session, cmu, household_no=no) for no in ("SN-TN-000124", "SN-TN-000213")]
    typed = {"one digit changed": "SN-TN-000124", "two adjacent swapped": "SN-TN-000213"}.get(slip, "SN-TN-00123")
    payment = store_report(
        session, amount=FULL_YEAR, txn="T_SLIP", reference=typed, payer=PHONE_A if payer else PHONE_STRANGER
    )
    session.commit()
    reconcile_payment(session, payment.id)
    session.commit()
    session.refresh(payment)
    assert payment.household_id not in {other.id for other in others}
    assert payment.status == PaymentStatus.UNMATCHED
    attempt = find_match(session, payment)
    numbers = [c.number for c in attempt.ranked()]
    if payer or slip == "one digit dropped":
        assert own.household_no in numbers  # the household meant is among the candidates


def test_keying_slips_cover_change_swap_drop_and_add() -> None:
    slips = keying_slips("SN-12")
    assert {"SN-13", "SN-21", "SN-1", "SN-123", "SN-312"} <= slips
    assert "SN-12" not in slips


def test_a_later_report_never_moves_a_matched_payment(
    client: FlaskClient, session: Session, run_worker: Callable[..., Any]
) -> None:
    world = build_world(session)
    add_device(session)
    # A forwarded text without reference: matched by the payer's phone, provisional.
    text = "Vous avez reçu 15.000F de Aminata Ndiaye (77 123 45 67). Réf. T_4ZQ7WX2KX. Solde: 48.250F"
    assert forward(client, "Wave", text).status_code == 200
    assert run_worker().returncode == 0
    payment = session.scalars(select(Payment).execution_options(populate_existing=True)).one()
    assert (payment.status, payment.household_id) == (PaymentStatus.PROVISIONAL, world.households["SN-TN-000123"].id)
    # The webhook confirms it but gives another household's number as reference.
    event = fixture_payload("wave_merchant_payment_received.json")
    event["data"]["amount"] = "15000"
    event["data"]["custom_fields"]["reference"] = "SN-TN-000777"
    session.commit()
    assert post_wave(client, event).status_code == 200
    assert run_worker().returncode == 0

    session.commit()
    payment = session.scalars(select(Payment).execution_options(populate_existing=True)).one()
    assert payment.status == PaymentStatus.CONFLICT
    assert payment.household_id == world.households["SN-TN-000123"].id
    assert "SN-TN-000777" in (payment.status_reason or "")
    assert session.scalars(select(Allocation)).all() == []  # no ledger moved
    assert json.dumps(payment.events[-1].details)  # the evidence is kept


def test_a_statement_line_naming_another_household_marks_an_allocated_payment_for_review(session: Session) -> None:
    from models.coverage.allocator import find_allocation
    from models.imports.statements import import_statement
    from models.payments.statement import BreakKind
    from models.reconciliation.staff_actions import manual_match, undo_payment

    world = build_world(session)
    own, other = world.households["SN-TN-000123"], world.households["SN-TN-000777"]
    payment = store_report(session, amount=FULL_YEAR, txn="TCN_PHONE", reference=None, payer=PHONE_A)
    session.commit()
    assert reconcile_payment(session, payment.id) == "allocated"
    session.commit()
    same = "transaction_id,date,amount,currency,payer_phone,reference,type\n"
    line = "TCN_PHONE,2026-11-20T11:02:44Z,15000,XOF,+221771234567,{},credit\n"

    # A line naming the payment's own household agrees: evidence only.
    result = import_statement(session, "wave", "a.csv", (same + line.format("SN-TN-000123")).encode())
    session.commit()
    session.refresh(payment)
    assert payment.status == PaymentStatus.ALLOCATED and not result.report.breaks

    # A line naming another household: CONFLICT and a break; the money stays where it is.
    result = import_statement(session, "wave", "b.csv", (same + line.format("SN-TN-000777")).encode())
    session.commit()
    session.refresh(payment)
    assert (payment.status, payment.household_id) == (PaymentStatus.CONFLICT, own.id)
    assert "names household SN-TN-000777" in (payment.status_reason or "")
    [mismatch] = result.report.of_kind(BreakKind.FIELD_MISMATCH)
    assert mismatch.payment_id == payment.id
    allocation = find_allocation(session, f"payment:{payment.id}")
    assert allocation is not None and allocation.reversed_at is None and allocation.account_id is not None

    # Staff cannot move it by a match while it funds an account; a refund undoes exactly what it funded.
    payment_id, other_no = payment.id, other.household_no
    session.commit()
    with pytest.raises(ValueError, match="reverse it first"):
        manual_match(session, payment_id, "operator", "statement says so", household_no=other_no)
    session.rollback()
    assert undo_payment(session, payment_id, "operator", "wrong household", refund_payer=True) == "refunded"
    session.commit()
    allocation = find_allocation(session, f"payment:{payment_id}")
    assert allocation is not None and allocation.reversed_at is not None


def test_a_relative_who_paid_a_household_before_types_its_number(session: Session) -> None:
    world = build_world(session)
    meant, neighbour = world.households["SN-MR-000310"], world.households["SN-MR-000301"]
    cmu = meant.scheme
    request = create_payment_request(
        session, scheme=cmu, household=meant, amount=7_000, payer_phone=PHONE_STRANGER, channel="sms", now=utcnow()
    )
    session.commit()
    last_month = store_report(session, amount=7_000, txn="T_LAST", reference=request.reference, payer=PHONE_STRANGER)
    session.commit()
    assert reconcile_payment(session, last_month.id) == "allocated"
    session.commit()

    # The number they paid before, from the same phone: theirs, though a household one slip away fits too.
    again = store_report(session, amount=7_000, txn="T_AGAIN", reference="SN-MR-000310", payer=PHONE_STRANGER)
    # A slip of it: never the neighbour, and not the household they paid either (the number names another).
    slipped = store_report(session, amount=7_000, txn="T_SLIPPED", reference="SN-MR-000301", payer=PHONE_STRANGER)
    session.commit()
    assert reconcile_payment(session, again.id) == "allocated"
    session.commit()
    assert reconcile_payment(session, slipped.id) == "unmatched"
    session.commit()
    session.refresh(again)
    session.refresh(slipped)
    assert (again.household_id, again.match_rule) == (meant.id, "account_number_history")
    assert slipped.household_id is None and neighbour.id != meant.id
    assert "one keying slip" in (slipped.status_reason or "")
