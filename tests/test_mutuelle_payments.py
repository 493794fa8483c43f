"""Payments attributed to the mutuelle whose account received them; matching never crosses mutuelles (issue 24).

Each route reports the account paid (Wave's `?account=` or business name, Daraja's shortcode, the sandbox's
`account`, a collection device's mutuelle, a statement's account); the reconciler matches only within the
mutuelles that account serves, across those a shared account serves, and across all when none is named.
"""

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

from models.base import EvidenceSource, PaymentStatus, utcnow
from models.imports.statements import import_statement
from models.members.household import Household
from models.messaging.outbox import attach_dispatch
from models.payments.intake import IntakeOutcome, Report, record_report
from models.payments.payment import Payment
from models.payments.references import create_payment_request
from models.reconciliation.batch import reconcile_payments
from models.reconciliation.staff_actions import manual_match, unmatch_payment
from models.schemes.mutuelle import MutuelleAccount, account_key, find_mutuelle
from tests import factories
from tests.conftest import FIXTURES, make_test_app
from tests.factories import make_household
from tests.payment_helpers import (
    PAID_AT,
    WAVE_SECRET,
    add_device,
    fixture_payload,
    forward,
    post_json,
    wave_signature,
)

FULL_YEAR = 15_000  # CMU standard, 4 members
PHONE_TN = "+221771234567"  # head of SN-TN-000123 (Thiès Nord)
PHONE_PK = "+221781112233"  # head of SN-PK-000045 (Pékesse)
TN_NO, PK_NO = "SN-TN-000123", "SN-PK-000045"
UNION = "UNION-SBX"  # a sandbox account Thiès Nord and Pékesse share (a union's)


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
    """Two mutuelles' households, and the mutuelles by code."""

    households: dict[str, Household]
    mutuelles: dict[str, int]


def build_world(session: Session) -> World:
    """Create a Thiès Nord and a Pékesse household; a shared sandbox account and a Daraja shortcode."""
    cmu = factories.scheme(session, "cmu-thies")
    mutuelles = {}
    for code in ("SN-TN", "SN-PK", "SN-MR"):
        found = find_mutuelle(session, code)
        assert found is not None
        mutuelles[code] = found.id
    households = {
        TN_NO: make_household(session, cmu, phone=PHONE_TN, household_no=TN_NO),
        PK_NO: make_household(session, cmu, phone=PHONE_PK, household_no=PK_NO),
    }
    households[PK_NO].mutuelle_id = mutuelles["SN-PK"]
    for code in ("SN-TN", "SN-PK"):
        session.add(_account(mutuelles[code], "sandbox", UNION))
    session.add(_account(mutuelles["SN-TN"], "mpesa", "600638"))
    session.commit()
    return World(households, mutuelles)


def _account(mutuelle_id: int, provider: str, account: str) -> MutuelleAccount:
    return MutuelleAccount(
        mutuelle_id=mutuelle_id, provider=provider, account=account, account_key=account_key(account)
    )


def _wave(client: FlaskClient, txn: str, reference: str, payer: str, account: str | None, merchant: str | None) -> Any:
    event = fixture_payload("wave_merchant_payment_received.json")
    data = event["data"]
    data.update(id=txn, amount=str(FULL_YEAR), sender_mobile=payer, custom_fields={"reference": reference})
    if merchant is None:
        data.pop("merchant_name")
    else:
        data["merchant_name"] = merchant
    body = json.dumps(event).encode()
    url = "/payments/wave" + (f"?account={account}" if account else "")
    headers = {"Content-Type": "application/json", "Wave-Signature": wave_signature(body)}
    return client.post(url, data=body, headers=headers)


def _sandbox(client: FlaskClient, txn: str, reference: str, payer: str, account: str | None) -> Any:
    payload = {"txn_id": txn, "amount": str(FULL_YEAR), "currency": "XOF", "phone": payer, "reference": reference}
    if account:
        payload["account"] = account
    return post_json(client, "/payments/sandbox", {k: v for k, v in payload.items() if v})


# (name, route, account (Wave: ?account=; "merchant:…": the business name), reference, payer,
#  expected status, expected household, expected mutuelle, a note expected in the reason)
TABLE: list[tuple[str, str, str | None, str, str, PaymentStatus, str | None, str | None, str | None]] = [
    (
        "wave ?account= names Thiès Nord: its household",
        "wave",
        "M-221-THIES-NORD",
        TN_NO,
        PHONE_TN,
        PaymentStatus.ALLOCATED,
        TN_NO,
        "SN-TN",
        None,
    ),
    (
        "wave business name of Pékesse: its household",
        "wave",
        "merchant:Mutuelle de Pekesse",
        PK_NO,
        PHONE_PK,
        PaymentStatus.ALLOCATED,
        PK_NO,
        "SN-PK",
        None,
    ),
    (
        "wave to Thiès Nord naming a Pékesse household: suspense",
        "wave",
        "M-221-THIES-NORD",
        PK_NO,
        PHONE_PK,
        PaymentStatus.UNMATCHED,
        None,
        "SN-TN",
        f"reference names household {PK_NO} of another mutuelle (SN-PK) than the account paid (SN-TN)",
    ),
    (
        "wave to Thiès Nord from a Pékesse member's phone, no reference: suspense",
        "wave",
        "M-221-THIES-NORD",
        "",
        PHONE_PK,
        PaymentStatus.UNMATCHED,
        None,
        "SN-TN",
        "payer phone belongs to no household",
    ),
    (
        "wave to Mont Rolland naming a Thiès Nord household: suspense",
        "wave",
        "merchant:Mutuelle de Mont Rolland",
        TN_NO,
        PHONE_TN,
        PaymentStatus.UNMATCHED,
        None,
        "SN-MR",
        "of another mutuelle (SN-TN) than the account paid (SN-MR)",
    ),
    (
        "sandbox to the shared account naming Pékesse: attributed to Pékesse",
        "sandbox",
        UNION,
        PK_NO,
        PHONE_PK,
        PaymentStatus.ALLOCATED,
        PK_NO,
        "SN-PK",
        None,
    ),
    (
        "sandbox to the shared account by phone only: Thiès Nord's household",
        "sandbox",
        UNION,
        "",
        PHONE_TN,
        PaymentStatus.ALLOCATED,
        TN_NO,
        "SN-TN",
        None,
    ),
    (
        "sandbox, no account: across all mutuelles",
        "sandbox",
        None,
        PK_NO,
        PHONE_PK,
        PaymentStatus.ALLOCATED,
        PK_NO,
        "SN-PK",
        None,
    ),
    (
        "sandbox, an account no mutuelle knows: across all mutuelles",
        "sandbox",
        "NOBODY-42",
        TN_NO,
        PHONE_TN,
        PaymentStatus.ALLOCATED,
        TN_NO,
        "SN-TN",
        None,
    ),
    (
        "sandbox to the shared account, a shared-account payment in suspense is the union's",
        "sandbox",
        UNION,
        "",
        "+221709998877",
        PaymentStatus.UNMATCHED,
        None,
        None,
        "payer phone belongs to no household",
    ),
]


def _post(client: FlaskClient, route: str, txn: str, account: str | None, reference: str, payer: str) -> None:
    if route == "wave":
        merchant = account.removeprefix("merchant:") if account and account.startswith("merchant:") else None
        response = _wave(client, txn, reference, payer, None if merchant else account, merchant)
    else:
        response = _sandbox(client, txn, reference, payer, account)
    assert response.status_code == 200, response.get_data(as_text=True)


def _payment(session: Session, txn: str) -> Payment:
    session.commit()
    query = select(Payment).where(Payment.provider_txn_id == txn).execution_options(populate_existing=True)
    return session.scalars(query).one()


def _reconcile(session: Session, ids: list[int]) -> None:
    session.commit()
    reconcile_payments(session, ids)
    session.commit()


def _check(world: World, payment: Payment, row: tuple[Any, ...]) -> None:
    name, _route, _account, _ref, _payer, status, household_no, mutuelle, note = row
    assert payment.status == status, (name, payment.status_reason)
    expected_household = world.households[household_no].id if household_no else None
    assert payment.household_id == expected_household, name
    assert payment.mutuelle_id == (world.mutuelles[mutuelle] if mutuelle else None), name
    if note:
        assert note in (payment.status_reason or ""), (name, payment.status_reason)


@pytest.mark.parametrize("row", TABLE, ids=[row[0] for row in TABLE])
def test_route_and_account_decide_the_mutuelle(client: FlaskClient, session: Session, row: tuple[Any, ...]) -> None:
    world = build_world(session)
    _name, route, account, reference, payer, *_ = row
    _post(client, route, "T_ROW", account, reference, payer)
    payment = _payment(session, "T_ROW")
    _reconcile(session, [payment.id])
    _check(world, _payment(session, "T_ROW"), row)


def test_the_table_through_a_real_worker_in_one_batch(
    client: FlaskClient, session: Session, run_worker: Callable[..., Any]
) -> None:
    world = build_world(session)
    for index, (_name, route, account, reference, payer, *_) in enumerate(TABLE):
        _post(client, route, f"T_{index}", account, reference, payer)

    done = run_worker()

    assert done.returncode == 0, done.stderr
    for index, row in enumerate(TABLE):
        _check(world, _payment(session, f"T_{index}"), row)


def test_a_request_reference_of_another_mutuelle_goes_to_suspense(client: FlaskClient, session: Session) -> None:
    world = build_world(session)
    household = world.households[PK_NO]
    request = create_payment_request(
        session, scheme=household.scheme, household=household, amount=FULL_YEAR, channel="sms", now=utcnow()
    )
    session.commit()
    _post(client, "wave", "T_REQ", "M-221-THIES-NORD", request.reference, PHONE_PK)
    payment = _payment(session, "T_REQ")
    _reconcile(session, [payment.id])
    payment = _payment(session, "T_REQ")
    assert payment.status == PaymentStatus.UNMATCHED
    assert f"payment request of household {PK_NO} of another mutuelle (SN-PK)" in (payment.status_reason or "")


@pytest.mark.parametrize(
    ("device_mutuelle", "status", "household_no"),
    [("SN-TN", PaymentStatus.ALLOCATED, TN_NO), ("SN-PK", PaymentStatus.UNMATCHED, None)],
)
def test_a_forwarded_text_is_paid_to_its_device_mutuelle(
    client: FlaskClient, session: Session, device_mutuelle: str, status: PaymentStatus, household_no: str | None
) -> None:
    world = build_world(session)
    device = add_device(session, trusted=True)
    device.mutuelle_id = world.mutuelles[device_mutuelle]
    session.commit()
    text = f"Vous avez recu un transfert de {FULL_YEAR} FCFA du 771234567. ID: PP261120.1041.A12345. Solde 1 FCFA."
    response = forward(client, "OrangeMoney", text)
    assert response.status_code == 200, response.get_data(as_text=True)
    payment = _payment(session, "PP261120.1041.A12345")
    assert payment.mutuelle_id == world.mutuelles[device_mutuelle]
    _reconcile(session, [payment.id])
    payment = _payment(session, "PP261120.1041.A12345")
    assert payment.status == status, payment.status_reason
    assert payment.household_id == (world.households[household_no].id if household_no else None)
    assert payment.mutuelle_id == world.mutuelles[device_mutuelle]


@pytest.mark.parametrize(("shortcode", "mutuelle"), [("600638", "SN-TN"), ("174379", None)])
def test_daraja_shortcode_names_the_mutuelle(
    client: FlaskClient, session: Session, shortcode: str, mutuelle: str | None
) -> None:
    world = build_world(session)
    payload = json.loads((FIXTURES / "mpesa_c2b_confirmation.json").read_text(encoding="utf-8"))
    payload["BusinessShortCode"] = shortcode
    response = post_json(client, "/payments/daraja/confirm", payload)
    assert response.status_code == 200, response.get_data(as_text=True)
    payment = _payment(session, payload["TransID"])
    assert payment.account == shortcode
    assert payment.mutuelle_id == (world.mutuelles[mutuelle] if mutuelle else None)


@pytest.mark.parametrize(
    ("shortcode", "bill_ref", "accepted"),
    [
        ("600638", TN_NO, True),  # Thiès Nord's paybill, a Thiès Nord household
        ("600638", PK_NO, False),  # Thiès Nord's paybill, a Pékesse household: refused before the payer pays
        ("600638", f"{PK_NO}-01", False),  # ... or one of its members
        ("174379", PK_NO, True),  # a paybill no mutuelle lists: any mutuelle's household
    ],
)
def test_daraja_validation_accepts_only_the_paybill_s_mutuelle(
    client: FlaskClient, session: Session, shortcode: str, bill_ref: str, accepted: bool
) -> None:
    build_world(session)
    payload = json.loads((FIXTURES / "mpesa_c2b_validation.json").read_text(encoding="utf-8"))
    payload.pop("_note", None)
    payload.update(BusinessShortCode=shortcode, BillRefNumber=bill_ref, TransAmount="350.00")
    response = post_json(client, "/payments/daraja/validate", payload)
    assert response.status_code == 200
    assert response.json is not None
    assert (response.json["ResultCode"] == "0") is accepted, response.json


def _report(txn: str, account: str | None, route: str = "webhook") -> Report:
    return Report(
        provider="wave",
        provider_txn_id=txn,
        amount=FULL_YEAR,
        currency="XOF",
        payer_phone=PHONE_TN,
        reference=TN_NO,
        paid_at=PAID_AT,
        source=EvidenceSource.WEBHOOK,
        route=route,
        raw=json.dumps([txn, route, account]),
        account=account,
    )


def test_a_repeat_with_or_without_account_is_no_conflict_but_another_mutuelle_is(session: Session) -> None:
    world = build_world(session)
    first = record_report(session, _report("T_REP", None))
    again = record_report(session, _report("T_REP", "M-221-THIES-NORD", "statement"))
    payment = session.get(Payment, first.payment_id)
    assert payment is not None
    assert (again.outcome, payment.account, payment.mutuelle_id) == (
        IntakeOutcome.EVIDENCE,
        "M-221-THIES-NORD",
        world.mutuelles["SN-TN"],
    )
    same_mutuelle = record_report(session, _report("T_REP", "Mutuelle de Thies Nord", "other"))
    assert same_mutuelle.outcome == IntakeOutcome.EVIDENCE
    elsewhere = record_report(session, _report("T_REP", "M-221-PEKESSE", "third"))
    assert elsewhere.outcome == IntakeOutcome.CONFLICT
    assert "account" in (payment.status_reason or "")


def test_staff_cannot_match_a_payment_to_another_mutuelle(session: Session) -> None:
    world = build_world(session)
    result = record_report(session, _report("T_STAFF", "M-221-THIES-NORD"))
    session.commit()
    with pytest.raises(ValueError, match=f"household {PK_NO} belongs to mutuelle SN-PK"):
        manual_match(session, result.payment_id, "staff", "phoned in", household_no=PK_NO)
    session.rollback()
    manual_match(session, result.payment_id, "staff", "phoned in", household_no=TN_NO)
    session.commit()
    payment = session.get(Payment, result.payment_id)
    assert payment is not None
    assert (payment.status, payment.household_id) == (PaymentStatus.ALLOCATED, world.households[TN_NO].id)


def test_unmatch_resets_the_mutuelle_to_the_account_one(session: Session) -> None:
    world = build_world(session)
    report = Report(**{**_report("T_UN", UNION).__dict__, "provider": "sandbox", "confirms": False})
    result = record_report(session, report)
    session.commit()
    manual_match(session, result.payment_id, "staff", "phoned in", household_no=PK_NO)
    session.commit()
    payment = session.get(Payment, result.payment_id)
    assert payment is not None and payment.mutuelle_id == world.mutuelles["SN-PK"]
    unmatch_payment(session, result.payment_id, "staff", "wrong one")
    session.commit()
    assert payment.mutuelle_id is None  # a shared account: the union's until matched again


def test_a_statement_of_one_mutuelle_account(session: Session) -> None:
    world = build_world(session)
    data = (FIXTURES / "statement_sample.csv").read_bytes()
    result = import_statement(session, "wave", "statement_sample.csv", data, account="M-221-PEKESSE")
    session.commit()
    rows = list(session.scalars(select(Payment).order_by(Payment.id)))
    assert rows and all(p.mutuelle_id == world.mutuelles["SN-PK"] for p in rows)
    assert all(p.account == "M-221-PEKESSE" for p in rows)
    _reconcile(session, list(result.needs_reconcile))
    for payment in session.scalars(select(Payment).execution_options(populate_existing=True)):
        assert payment.household_id in (None, world.households[PK_NO].id)  # never Thiès Nord's
