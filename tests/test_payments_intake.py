"""Payment intake through the HTTP contract: one Payment per operator transaction, whatever route reports it."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from models.base import EvidenceSource, PaymentStatus
from models.members.household import Household
from models.payments.payment import PaymentEvidence, ReconciliationEvent
from models.schemes.mutuelle import home_mutuelle
from models.schemes.scheme_file import load_scheme, parse_scheme_file
from tests import backends
from tests.backends import RQ_QUEUE
from tests.conftest import CALLBACK_TOKEN, ROOT, make_test_app
from tests.payment_helpers import (
    WAVE_SECRET,
    add_device,
    evidence_count,
    fixture_payload,
    forward,
    json_body,
    operator_lines,
    payments,
    post_json,
    post_wave,
    rejected,
    unparsed,
    waiting_for_reconcile,
    wave_signature,
)

WAVE_SMS = "Vous avez reçu 3.500F de Moussa Diop (77 123 45 67). Réf. T_4ZQ7WX2KX. Solde: 48.250F"


@pytest.fixture
def app(db_url: str, redis_url: str) -> Flask:
    """Return the app with the test Wave signing secret."""
    return make_test_app(db_url, redis_url, WAVE_WEBHOOK_SECRET=WAVE_SECRET)


# ---------------------------------------------------------------- Wave


def test_wave_merchant_payment_is_stored_and_queued(client: FlaskClient, session: Session, redis_url: str) -> None:
    response = post_wave(client, fixture_payload("wave_merchant_payment_received.json"))

    assert response.status_code == 200
    assert json_body(response)["outcome"] == "created"
    [payment] = payments(session)
    assert (payment.provider, payment.provider_txn_id, payment.amount, payment.currency) == (
        "wave",
        "T_4ZQ7WX2KX",
        3500,
        "XOF",
    )
    assert (payment.payer_phone, payment.account_reference) == ("+221771234567", "4827315")
    assert payment.paid_at == datetime(2026, 11, 20, 11, 2, 44)
    assert (payment.status, payment.confirmed) == (PaymentStatus.RECEIVED, True)
    [evidence] = payment.evidence
    assert (evidence.source, evidence.route) == (EvidenceSource.WEBHOOK, "wave:merchant.payment_received")
    assert json.loads(evidence.raw)["id"] == "AE_ijzo7oGgrlM9"
    assert evidence.fields_hash == payment.fields_hash
    assert waiting_for_reconcile(redis_url) == [payment.id]


def test_wave_checkout_completed_uses_the_transaction_id(client: FlaskClient, session: Session) -> None:
    response = post_wave(client, fixture_payload("wave_checkout_completed.json"))

    assert response.status_code == 200
    [payment] = payments(session)
    assert (payment.provider_txn_id, payment.amount, payment.account_reference) == ("TCN4Y4ZC3FM", 7000, "4827315")
    assert payment.paid_at == datetime(2026, 11, 20, 10, 41, 7)


def test_wave_retry_of_the_same_event_stores_nothing_more(client: FlaskClient, session: Session) -> None:
    event_ = fixture_payload("wave_merchant_payment_received.json")
    first = post_wave(client, event_)
    second = post_wave(client, event_)

    assert (first.status_code, second.status_code) == (200, 200)
    assert json_body(second)["outcome"] == "repeat"
    [payment] = payments(session)
    assert evidence_count(session) == 1
    assert payment.status == PaymentStatus.RECEIVED


def test_wave_accepts_any_of_several_signatures(client: FlaskClient, session: Session) -> None:
    body = json.dumps(fixture_payload("wave_merchant_payment_received.json")).encode()
    header = wave_signature(body, extra_v1=("00" * 32,))
    response = client.post("/payments/wave", data=body, headers={"Wave-Signature": header})

    assert response.status_code == 200
    assert len(payments(session)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-signature"),
        pytest.param({"Wave-Signature": "t=1,v1=abc"}, id="garbage"),
        pytest.param({"Wave-Signature": "SIGNED-WITH-OTHER-SECRET"}, id="other-secret"),
        pytest.param({"Wave-Signature": "STALE"}, id="stale-timestamp"),
        pytest.param({"Wave-Signature": "FUTURE"}, id="future-timestamp"),
        pytest.param({"Authorization": f"Bearer {WAVE_SECRET}"}, id="bearer-not-configured"),
    ],
)
def test_wave_bad_signature_is_refused_and_nothing_stored(
    client: FlaskClient, session: Session, redis_url: str, headers: dict[str, str]
) -> None:
    event_ = fixture_payload("wave_merchant_payment_received.json")
    body = json.dumps(event_).encode()
    if headers.get("Wave-Signature") == "SIGNED-WITH-OTHER-SECRET":
        headers = {"Wave-Signature": wave_signature(body, secret="another-secret")}
    elif headers.get("Wave-Signature") == "STALE":
        headers = {"Wave-Signature": wave_signature(body, at=int(time.time()) - 301)}
    elif headers.get("Wave-Signature") == "FUTURE":
        headers = {"Wave-Signature": wave_signature(body, at=int(time.time()) + 3600)}
    response = client.post("/payments/wave", data=body, headers=headers)

    assert response.status_code == 401
    assert payments(session) == []
    assert evidence_count(session) == 0
    assert waiting_for_reconcile(redis_url) == []


def test_wave_signature_of_another_body_is_refused(client: FlaskClient, session: Session) -> None:
    event_ = fixture_payload("wave_merchant_payment_received.json")
    signed_body = json.dumps(event_).encode()
    event_["data"]["amount"] = "350000"
    response = client.post(
        "/payments/wave", data=json.dumps(event_).encode(), headers={"Wave-Signature": wave_signature(signed_body)}
    )

    assert response.status_code == 401
    assert payments(session) == []


def test_wave_bearer_shared_secret_when_configured(db_url: str, redis_url: str, session: Session) -> None:
    app = make_test_app(db_url, redis_url, WAVE_WEBHOOK_SECRET=WAVE_SECRET, WAVE_SHARED_SECRET="shared-s3cret")
    client = app.test_client()
    event_ = fixture_payload("wave_checkout_completed.json")

    wrong = post_wave(client, event_, headers={"Authorization": "Bearer nope"}, sign=False)
    right = post_wave(client, event_, headers={"Authorization": "Bearer shared-s3cret"}, sign=False)

    assert (wrong.status_code, right.status_code) == (401, 200)
    assert len(payments(session)) == 1


def test_wave_is_authorised_by_its_signature_alone_a_token_is_ignored(client: FlaskClient, session: Session) -> None:
    body = json.dumps(fixture_payload("wave_merchant_payment_received.json")).encode()
    headers = {"Wave-Signature": wave_signature(body)}

    wrong = client.post("/payments/wave?token=wrong", data=body, headers=headers)
    at_token_unsigned = client.post(f"/payments/wave?token={CALLBACK_TOKEN}", data=body)

    assert (wrong.status_code, at_token_unsigned.status_code) == (200, 401)
    assert len(payments(session)) == 1


@pytest.mark.parametrize(
    ("kind", "status"),
    [("test.test_event", None), ("b2b.payment_received", None), ("checkout.session.payment_failed", None)],
)
def test_wave_other_events_are_acknowledged_and_ignored(
    client: FlaskClient, session: Session, kind: str, status: str | None
) -> None:
    event_ = fixture_payload("wave_checkout_completed.json")
    event_["type"] = kind
    response = post_wave(client, event_)

    assert response.status_code == 200
    assert json_body(response)["status"] == "ignored"
    assert payments(session) == []


def test_wave_checkout_not_succeeded_is_ignored(client: FlaskClient, session: Session) -> None:
    event_ = fixture_payload("wave_checkout_completed.json")
    event_["data"]["payment_status"] = "processing"
    assert json_body(post_wave(client, event_))["status"] == "ignored"
    assert payments(session) == []


def test_wave_signed_but_unreadable_event_is_kept_for_review(client: FlaskClient, session: Session) -> None:
    event_ = fixture_payload("wave_merchant_payment_received.json")
    event_["data"]["amount"] = "35.5"  # XOF has no decimals

    response = post_wave(client, event_)

    assert response.status_code == 400 and "amount" in json_body(response)["error"]
    assert payments(session) == []
    [kept] = rejected(session)
    assert (kept.source, kept.status_code) == ("wave", 400)
    assert "amount" in kept.reason
    assert "T_4ZQ7WX2KX" in kept.raw


def test_callback_body_over_the_limit_is_refused(client: FlaskClient, session: Session) -> None:
    event_ = fixture_payload("wave_merchant_payment_received.json")
    event_["padding"] = "x" * 70_000
    assert post_wave(client, event_).status_code == 413
    assert payments(session) == []


# ---------------------------------------------------------------- Daraja


def _household(session: Session, number: str) -> Household:
    scheme = load_scheme(session, parse_scheme_file(ROOT / "schemes" / "cmu-thies.toml"))
    session.flush()
    household = Household(
        household_no=number,
        scheme_id=scheme.id,
        mutuelle_id=home_mutuelle(session, scheme.id, None).id,
        subsidy_category="standard",
        plan="yearly",
        language="fr",
        enrolled_on=datetime(2026, 1, 1).date(),
    )
    session.add(household)
    session.commit()
    return household


def test_daraja_validation_rejects_an_unknown_account(client: FlaskClient, session: Session) -> None:
    payload = fixture_payload("mpesa_c2b_validation.json")
    response = post_json(client, "/payments/daraja/validate", payload)

    assert response.status_code == 200
    assert response.json == {"ResultCode": "C2B00012", "ResultDesc": "Rejected"}
    assert payments(session) == []


def test_daraja_validation_accepts_a_household_number(client: FlaskClient, session: Session) -> None:
    _household(session, "KE-NB-004512")
    payload = fixture_payload("mpesa_c2b_validation.json")
    payload["BillRefNumber"] = "ke-nb-004512 "

    response = post_json(client, "/payments/daraja/validate", payload)

    assert response.json == {"ResultCode": "0", "ResultDesc": "Accepted"}
    assert payments(session) == []  # validation stores nothing: the confirmation does


@pytest.mark.parametrize(("state", "answer"), [("open", "0"), ("expired", "C2B00012"), ("typo", "C2B00012")])
def test_daraja_validation_of_a_payment_request_reference(
    client: FlaskClient, session: Session, state: str, answer: str
) -> None:
    from models.base import RequestStatus, utcnow
    from models.payments.references import create_payment_request
    from tests import factories

    scheme = factories.scheme(session, "cmu-thies")
    household = factories.make_household(session, scheme)
    request = create_payment_request(
        session, scheme=scheme, household=household, amount=3500, channel="ussd", now=utcnow()
    )
    session.commit()
    reference = request.reference
    if state == "expired":
        request.status = RequestStatus.EXPIRED
        session.commit()
    if state == "typo":  # adjacent digits swapped: the check digit catches it
        reference = (
            reference[1] + reference[0] + reference[2:]
            if reference[0] != reference[1]
            else reference[:6] + str((int(reference[6]) + 1) % 10)
        )
    payload = fixture_payload("mpesa_c2b_validation.json")
    payload["BillRefNumber"] = reference
    assert json_body(post_json(client, "/payments/daraja/validate", payload))["ResultCode"] == answer


def test_daraja_validation_rejects_a_bad_amount(client: FlaskClient, session: Session) -> None:
    _household(session, "KE-NB-004512")
    payload = fixture_payload("mpesa_c2b_validation.json")
    payload["TransAmount"] = "-5.00"
    assert json_body(post_json(client, "/payments/daraja/validate", payload))["ResultCode"] == "C2B00013"


@pytest.mark.parametrize("path", ["/payments/daraja/validate", "/payments/daraja/confirm", "/payments/sandbox"])
@pytest.mark.parametrize("token", [None, "wrong"])
def test_token_routes_refuse_a_missing_or_wrong_token(
    client: FlaskClient, session: Session, path: str, token: str | None
) -> None:
    payload = fixture_payload("mpesa_c2b_confirmation.json")
    assert post_json(client, path, payload, token=token).status_code == 403
    assert payments(session) == []


def test_daraja_confirmation_is_stored_in_minor_units(client: FlaskClient, session: Session, redis_url: str) -> None:
    response = post_json(client, "/payments/daraja/confirm", fixture_payload("mpesa_c2b_confirmation.json"))

    assert response.status_code == 200
    assert response.json == {"ResultCode": "0", "ResultDesc": "Accepted"}
    [payment] = payments(session)
    assert (payment.provider, payment.provider_txn_id, payment.amount, payment.currency) == (
        "mpesa",
        "RKTQDM7W6S",
        35000,
        "KES",
    )
    assert (payment.payer_phone, payment.account_reference) == ("254708374149", "KE-NB-004512")
    assert payment.paid_at == datetime(2026, 11, 20, 7, 41, 7)  # 10:41:07 in Nairobi
    assert waiting_for_reconcile(redis_url) == [payment.id]


def test_daraja_masked_msisdn_is_stored_as_is(client: FlaskClient, session: Session) -> None:
    payload = fixture_payload("mpesa_c2b_validation.json")  # same shape, masked MSISDN
    post_json(client, "/payments/daraja/confirm", payload)
    [payment] = payments(session)
    assert payment.payer_phone == "25470****149"


def test_daraja_unreadable_confirmation_is_kept_for_review(client: FlaskClient, session: Session) -> None:
    payload = fixture_payload("mpesa_c2b_confirmation.json")
    payload["TransAmount"] = "three hundred"
    response = post_json(client, "/payments/daraja/confirm", payload)

    # Safaricom does not retry: the 400 names the problem and the body is kept for review.
    assert response.status_code == 400 and "TransAmount" in json_body(response)["error"]
    assert payments(session) == []
    [kept] = rejected(session)
    assert kept.source == "daraja_confirm" and "RKTQDM7W6S" in kept.raw


# ---------------------------------------------------------------- sandbox


def test_sandbox_payment(client: FlaskClient, session: Session, redis_url: str) -> None:
    payload = {"txn_id": "SBX-1", "amount": "350.00", "currency": "KES", "phone": "+254708374149", "reference": "x1"}
    response = post_json(client, "/payments/sandbox", payload)

    assert response.status_code == 200
    [payment] = payments(session)
    assert (payment.provider, payment.provider_txn_id, payment.amount, payment.account_reference) == (
        "sandbox",
        "SBX-1",
        35000,
        "X1",
    )
    assert waiting_for_reconcile(redis_url) == [payment.id]


@pytest.mark.parametrize("amount", ["12.5", "0", "abc", 12.5])
def test_sandbox_refuses_an_inexact_amount(client: FlaskClient, session: Session, amount: Any) -> None:
    payload = {"txn_id": "SBX-2", "amount": amount, "currency": "XOF", "phone": "", "reference": ""}
    assert post_json(client, "/payments/sandbox", payload).status_code == 400
    assert payments(session) == []


def test_sandbox_is_off_in_production(db_url: str, redis_url: str, session: Session) -> None:
    app = make_test_app(db_url, redis_url)
    app.extensions["settings"] = app.extensions["settings"].__class__(
        **{**app.extensions["settings"].__dict__, "APP_ENV": "production"}
    )
    payload = {"txn_id": "SBX-3", "amount": "100", "currency": "XOF", "phone": "", "reference": ""}
    assert post_json(app.test_client(), "/payments/sandbox", payload).status_code == 404
    assert payments(session) == []


def test_cli_simulate(app: Flask, session: Session, redis_url: str) -> None:
    result = app.test_cli_runner().invoke(
        args=["payments", "simulate", "--amount", "3500", "--reference", "4827315", "--phone", "+221771234567"]
    )

    assert result.exit_code == 0, result.output
    assert "created (RECEIVED)" in result.output
    assert "+221771234567" not in result.output
    [payment] = payments(session)
    assert (payment.provider, payment.amount, payment.currency, payment.account_reference) == (
        "sandbox",
        3500,
        "XOF",
        "4827315",
    )
    assert waiting_for_reconcile(redis_url) == [payment.id]


# ---------------------------------------------------------------- forwarded operator texts

EXPECTED_TEXTS = {
    "PP261120.1041.A12345": ("orange_money", 7000, "XOF", "771234567"),
    "PP261120.1102.B67890": ("orange_money", 3500, "XOF", "781112233"),
    "T_4ZQ7WX2KX": ("wave", 3500, "XOF", "771234567"),
    "FM2611201045AB": ("free_money", 10500, "XOF", "766543210"),
    "3F9A22K1": ("wing", 8000, "KHR", "012345678"),
    "RKTQDM7W6S": ("mpesa", 35000, "KES", "0708374149"),
    "RKTQDM7W7T": ("mpesa", 350000, "KES", "0701234567"),
}


def _expected_txn(text: str) -> str | None:
    return next((txn for txn in EXPECTED_TEXTS if txn in text), None)


@pytest.mark.parametrize(("sender", "text"), operator_lines(), ids=lambda v: v[:24])
def test_every_operator_text(client: FlaskClient, session: Session, redis_url: str, sender: str, text: str) -> None:
    add_device(session)
    response = forward(client, sender, text)

    assert response.status_code == 200
    txn = _expected_txn(text)
    if txn is None:  # the balance notice
        assert json_body(response)["status"] == "ignored"
        assert payments(session) == []
        [kept] = unparsed(session)
        assert kept.reviewed_at is not None and kept.text == text
        return
    [payment] = payments(session)
    provider, amount, currency, payer = EXPECTED_TEXTS[txn]
    assert (payment.provider, payment.provider_txn_id, payment.amount, payment.currency, payment.payer_phone) == (
        provider,
        txn,
        amount,
        currency,
        payer,
    )
    assert (payment.status, payment.confirmed) == (PaymentStatus.PROVISIONAL, False)
    [evidence] = payment.evidence
    assert evidence.source == EvidenceSource.SMS_FORWARD and evidence.device_id is not None
    assert waiting_for_reconcile(redis_url) == [payment.id]  # matched and shown while provisional


def test_every_payment_line_of_the_fixture_is_expected() -> None:
    txns = [_expected_txn(text) for _sender, text in operator_lines()]
    assert sorted(t for t in txns if t) == sorted(EXPECTED_TEXTS)
    assert txns.count(None) == 1


def test_unknown_device_is_refused_and_nothing_stored(client: FlaskClient, session: Session) -> None:
    add_device(session, key="collector-1")
    response = forward(client, "Wave", WAVE_SMS, device="someone-else")
    assert response.status_code == 403
    assert payments(session) == [] and unparsed(session) == []


def test_inactive_device_is_refused(client: FlaskClient, session: Session) -> None:
    device = add_device(session)
    device.active = False
    session.commit()
    assert forward(client, "Wave", WAVE_SMS).status_code == 403


@pytest.mark.parametrize("sender", ["+221770000000", "Wave Promo", "OrangeMoney"])
def test_payment_text_from_a_sender_not_allowed_is_kept_for_review(
    client: FlaskClient, session: Session, sender: str
) -> None:
    add_device(session)
    response = forward(client, sender, WAVE_SMS)

    assert response.status_code == 200 and json_body(response)["status"] == "review"
    assert payments(session) == []
    [kept] = unparsed(session)
    assert "not one of its senders" in kept.reason and kept.reviewed_at is None


def test_sender_not_registered_on_the_device_is_kept_for_review(client: FlaskClient, session: Session) -> None:
    add_device(session, senders=["OrangeMoney"])
    forward(client, "Wave", WAVE_SMS)
    assert payments(session) == []
    assert "not registered on this device" in unparsed(session)[0].reason


def test_unparseable_text_is_kept_once(client: FlaskClient, session: Session) -> None:
    add_device(session)
    text = "Bonjour, votre colis est arrive."
    first, second = forward(client, "Wave", text), forward(client, "Wave", text)

    assert json_body(first)["status"] == json_body(second)["status"] == "review"
    assert payments(session) == []
    [kept] = unparsed(session)
    assert kept.reason == "no operator pattern matched"


def test_forwarding_retry_adds_no_evidence(client: FlaskClient, session: Session) -> None:
    add_device(session)
    forward(client, "Wave", WAVE_SMS)
    again = forward(client, "Wave", WAVE_SMS, received_at="2026-11-20T11:09:00Z")

    assert json_body(again)["outcome"] == "repeat"
    assert evidence_count(session) == 1


def test_trusted_device_payment_is_confirmed(client: FlaskClient, session: Session) -> None:
    add_device(session, trusted=True)
    forward(client, "Wave", WAVE_SMS)
    [payment] = payments(session)
    assert (payment.status, payment.confirmed) == (PaymentStatus.RECEIVED, True)


def test_custom_patterns_file_is_used(db_url: str, redis_url: str, session: Session, tmp_path: Path) -> None:
    patterns = tmp_path / "sms.toml"
    patterns.write_text(
        """
[currency_words]
CFA = "XOF"
[operators.wave]
senders = ["Wave"]
currency = "XOF"
patterns = ['''Paiement de (?P<amount>\\d+) (?P<currency>CFA) recu, ref (?P<txn_id>T_\\w+)''']
""",
        encoding="utf-8",
    )
    app = make_test_app(db_url, redis_url, OPERATOR_SMS_FILE=str(patterns))
    add_device(session)
    response = forward(app.test_client(), "Wave", "Paiement de 2500 CFA recu, ref T_NEWSHAPE1")
    assert response.status_code == 200
    [payment] = payments(session)
    assert (payment.provider_txn_id, payment.amount) == ("T_NEWSHAPE1", 2500)


# ---------------------------------------------------------------- one payment, many routes


def test_forwarded_text_then_webhook_is_one_confirmed_payment(
    client: FlaskClient, session: Session, redis_url: str
) -> None:
    add_device(session)
    forward(client, "Wave", WAVE_SMS)
    [provisional] = payments(session)
    assert provisional.status == PaymentStatus.PROVISIONAL and provisional.account_reference is None
    from redis import Redis
    from rq import Queue

    Queue(RQ_QUEUE, connection=Redis.from_url(redis_url)).empty()

    response = post_wave(client, fixture_payload("wave_merchant_payment_received.json"))

    assert json_body(response)["outcome"] == "confirmed"
    [payment] = payments(session)
    assert (payment.status, payment.confirmed) == (PaymentStatus.RECEIVED, True)
    assert (payment.account_reference, payment.payer_phone) == ("4827315", "+221771234567")  # filled in
    assert evidence_count(session, payment.id) == 2
    assert {e.source for e in payment.evidence} == {EvidenceSource.SMS_FORWARD, EvidenceSource.WEBHOOK}
    events = [(e.before_status, e.after_status) for e in payment.events]
    assert events == [(None, "PROVISIONAL"), ("PROVISIONAL", "RECEIVED")]
    assert waiting_for_reconcile(redis_url) == [payment.id]  # re-enqueued on confirmation


def test_webhook_then_forwarded_text_only_adds_evidence(client: FlaskClient, session: Session, redis_url: str) -> None:
    add_device(session)
    post_wave(client, fixture_payload("wave_merchant_payment_received.json"))
    response = forward(client, "Wave", WAVE_SMS)

    assert json_body(response)["outcome"] == "evidence"
    [payment] = payments(session)
    assert (payment.status, payment.confirmed) == (PaymentStatus.RECEIVED, True)
    assert evidence_count(session, payment.id) == 2
    assert len(payment.events) == 1
    assert waiting_for_reconcile(redis_url) == [payment.id]


def test_daraja_and_forwarded_mpesa_text_are_one_payment(client: FlaskClient, session: Session) -> None:
    add_device(session)
    post_json(client, "/payments/daraja/confirm", fixture_payload("mpesa_c2b_confirmation.json"))
    sender, text = next(line for line in operator_lines() if "RKTQDM7W6S" in line[1])
    assert json_body(forward(client, sender, text))["outcome"] == "evidence"  # 0708374149 is 254708374149
    [payment] = payments(session)
    assert payment.status == PaymentStatus.RECEIVED and evidence_count(session) == 2


@pytest.mark.parametrize(
    ("field", "value", "differs"),
    [
        ("amount", "4000", "amount"),
        ("currency", "KES", "currency"),
        ("reference", "9999999", "reference"),
        ("sender_mobile", "+221760000000", "payer"),
    ],
)
def test_modified_replay_is_a_conflict(
    client: FlaskClient, session: Session, redis_url: str, field: str, value: str, differs: str
) -> None:
    original = fixture_payload("wave_merchant_payment_received.json")
    post_wave(client, original)
    modified = fixture_payload("wave_merchant_payment_received.json")
    modified["id"] = "AE_replayed"
    if field == "reference":
        modified["data"]["custom_fields"]["reference"] = value
    else:
        modified["data"][field] = value
    if field == "currency":
        modified["data"]["amount"] = "3500"

    response = post_wave(client, modified)

    assert response.status_code == 200 and json_body(response)["outcome"] == "conflict"
    [payment] = payments(session)
    assert payment.status == PaymentStatus.CONFLICT
    assert payment.amount == 3500  # the first report's fields stay: nothing applied twice
    assert evidence_count(session, payment.id) == 2
    conflict = session.scalar(select(ReconciliationEvent).where(ReconciliationEvent.rule == "conflict"))
    assert conflict is not None and conflict.before_status == "RECEIVED"
    assert conflict.details is not None and differs in conflict.details["differences"]
    assert waiting_for_reconcile(redis_url) == [payment.id]  # only the first report's run


def test_forwarded_text_with_another_amount_is_a_conflict(client: FlaskClient, session: Session) -> None:
    add_device(session)
    post_wave(client, fixture_payload("wave_merchant_payment_received.json"))
    forward(client, "Wave", WAVE_SMS.replace("3.500F", "35.000F"))
    [payment] = payments(session)
    assert payment.status == PaymentStatus.CONFLICT


# ---------------------------------------------------------------- failures


def test_database_down_answers_503_and_enqueues_nothing(redis_url: str) -> None:
    app = make_test_app(
        f"postgresql://postgres@127.0.0.1:{backends.free_port()}/nowhere", redis_url, WAVE_WEBHOOK_SECRET=WAVE_SECRET
    )
    response = post_wave(app.test_client(), fixture_payload("wave_merchant_payment_received.json"))

    assert response.status_code == 503
    assert waiting_for_reconcile(redis_url) == []


def test_database_failure_mid_transaction_leaves_no_row(client: FlaskClient, session: Session, redis_url: str) -> None:
    def fail(*_args: Any) -> None:
        raise OperationalError("INSERT payment_evidence", {}, Exception("server closed the connection"))

    event.listen(PaymentEvidence, "before_insert", fail)
    try:
        response = post_wave(client, fixture_payload("wave_merchant_payment_received.json"))
    finally:
        event.remove(PaymentEvidence, "before_insert", fail)

    assert response.status_code == 503
    assert payments(session) == []
    assert session.scalar(select(ReconciliationEvent.id)) is None
    assert waiting_for_reconcile(redis_url) == []
    # Wave retries: the retry is stored normally.
    assert post_wave(client, fixture_payload("wave_merchant_payment_received.json")).status_code == 200
    assert len(payments(session)) == 1


def test_redis_down_after_commit_still_acknowledges(db_url: str, session: Session) -> None:
    app = make_test_app(db_url, f"redis://127.0.0.1:{backends.free_port()}/0", WAVE_WEBHOOK_SECRET=WAVE_SECRET)
    response = post_wave(app.test_client(), fixture_payload("wave_merchant_payment_received.json"))
    assert response.status_code == 200
    [payment] = payments(session)
    assert payment.status == PaymentStatus.RECEIVED  # left for the sweeper


def test_no_full_phone_number_in_intake_logs(
    client: FlaskClient, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    add_device(session)
    with caplog.at_level("INFO"):
        forward(client, "+221770000000", WAVE_SMS)  # a forged text from a personal number
        forward(client, "Wave", WAVE_SMS)
        post_wave(client, fixture_payload("wave_merchant_payment_received.json"))
    text = caplog.text
    assert "kept for review" in text and "confirmed" in text
    for phone in ("+221770000000", "221770000000", "+221771234567", "771234567"):
        assert phone not in text
