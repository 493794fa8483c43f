"""Issue 20's probes, replayed through the HTTP contract: each callback accepts only its own sender, bad input gets a
4xx and is kept for review, and no request gets a 5xx while the database and Redis are up."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from config import ConfigError, Settings
from models.access.devices import issue_device_key
from models.access.staff import create_staff_user
from models.access.tables import ApiToken, CollectionDevice, StaffSession
from models.access.tokens import issue_token
from models.base import PaymentStatus, StaffRole, utcnow
from models.messaging.message import DeliveryReport, Message
from models.payments.payment import Payment
from redis_keys import reconcile_waiting_key, ussd_session_key
from tests.admin_helpers import csrf_token
from tests.backends import RECONCILE_QUEUE
from tests.conftest import CALLBACK_TOKEN, DARAJA_TOKEN, make_test_app
from tests.payment_helpers import (
    DEVICE_KEYS,
    WAVE_SECRET,
    add_device,
    fixture_payload,
    forward,
    json_body,
    payments,
    post_json,
    post_wave,
    rejected,
    wave_signature,
)

WAVE_SMS = "Vous avez reçu 3.500F de Moussa Diop (77 123 45 67). Réf. T_4ZQ7WX2KX. Solde: 48.250F"
PASSWORD = "a-long-staff-password"
HASHED_MSISDN = hashlib.sha256(b"254708374149").hexdigest()
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def app(db_url: str, redis_url: str) -> Flask:
    """Return the app with the test Wave secret and a small API limit."""
    return make_test_app(db_url, redis_url, WAVE_WEBHOOK_SECRET=WAVE_SECRET, API_RATE_LIMIT="5/minute")


def at(path: str) -> str:
    """Return an Africa's Talking callback URL with its token."""
    return f"{path}?token={CALLBACK_TOKEN}"


def confirmation(**changes: Any) -> dict[str, Any]:
    payload = fixture_payload("mpesa_c2b_confirmation.json")
    payload.update(changes)
    return payload


def chunked(client: FlaskClient, url: str, body: bytes, content_type: str) -> Any:
    """Post a body without Content-Length, as a chunked request arrives from a WSGI server."""
    return client.post(
        url,
        input_stream=io.BytesIO(body),
        content_type=content_type,
        environ_overrides={"wsgi.input_terminated": True},
        headers={"Transfer-Encoding": "chunked"},
    )


# ---------------------------------------------------------------- credentials per source


def test_forged_daraja_confirmation_with_the_shared_token_is_refused_and_stores_nothing(
    client: FlaskClient, session: Session
) -> None:
    forged = post_json(client, "/payments/daraja/confirm", confirmation(), token=CALLBACK_TOKEN)
    unsigned = post_json(client, "/payments/daraja/confirm", confirmation(), token=None)
    validate = post_json(client, "/payments/daraja/validate", confirmation(), token=CALLBACK_TOKEN)

    assert (forged.status_code, unsigned.status_code, validate.status_code) == (403, 403, 403)
    assert payments(session) == [] and rejected(session) == []
    assert post_json(client, "/payments/daraja/confirm", confirmation()).status_code == 200
    assert [p.provider_txn_id for p in payments(session)] == ["RKTQDM7W6S"]


def test_daraja_allowed_networks_are_honoured_behind_a_configured_proxy(db_url: str, redis_url: str) -> None:
    app = make_test_app(db_url, redis_url, DARAJA_ALLOWED_IPS="196.201.214.0/24", TRUSTED_PROXIES=1)
    client = app.test_client()
    url = f"/payments/daraja/confirm?token={DARAJA_TOKEN}"
    body = json.dumps(confirmation())
    headers = {"Content-Type": "application/json"}

    outside = client.post(url, data=body, headers={**headers, "X-Forwarded-For": "203.0.113.9"})
    direct = client.post(url, data=body, headers=headers)  # the proxy itself (127.0.0.1): not Safaricom
    inside = client.post(url, data=body, headers={**headers, "X-Forwarded-For": "196.201.214.200"})

    assert (outside.status_code, direct.status_code, inside.status_code) == (403, 403, 200)


def test_without_trusted_proxies_a_forwarded_address_is_not_believed(db_url: str, redis_url: str) -> None:
    app = make_test_app(db_url, redis_url, DARAJA_ALLOWED_IPS="196.201.214.0/24")
    response = app.test_client().post(
        f"/payments/daraja/confirm?token={DARAJA_TOKEN}",
        data=json.dumps(confirmation()),
        headers={"Content-Type": "application/json", "X-Forwarded-For": "196.201.214.200"},
    )
    assert response.status_code == 403


def test_the_previous_at_token_works_during_a_rotation_and_each_use_is_logged(
    db_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_test_app(
        db_url, redis_url, CALLBACK_TOKEN="new-" + CALLBACK_TOKEN, CALLBACK_TOKEN_PREVIOUS=CALLBACK_TOKEN
    )
    client = app.test_client()
    form = {"id": "ATXid_rotation", "status": "Success"}
    with caplog.at_level(logging.WARNING):
        old = client.post(f"/sms/delivery?token={CALLBACK_TOKEN}", data=form)
    new = client.post(f"/sms/delivery?token=new-{CALLBACK_TOKEN}", data=form)
    wrong = client.post("/sms/delivery?token=other", data=form)

    assert (old.status_code, new.status_code, wrong.status_code) == (200, 200, 403)
    assert "CALLBACK_TOKEN_PREVIOUS" in caplog.text and CALLBACK_TOKEN not in caplog.text


def test_wave_ignores_a_token_and_needs_its_signature(client: FlaskClient, session: Session) -> None:
    event = fixture_payload("wave_merchant_payment_received.json")
    body = json.dumps(event).encode()
    assert client.post(at("/payments/wave"), data=body).status_code == 401
    assert (
        client.post("/payments/wave?token=x", data=body, headers={"Wave-Signature": wave_signature(body)}).status_code
        == 200
    )
    assert len(payments(session)) == 1


def test_a_device_forward_needs_its_own_key(client: FlaskClient, session: Session) -> None:
    add_device(session, "collector-1", senders=["Wave"])
    add_device(session, "collector-2", senders=["Wave"])

    no_key = forward(client, "Wave", WAVE_SMS, key=None)
    shared_token = client.post(
        at("/payments/sms-forward"),
        data=json.dumps({"sender": "Wave", "text": WAVE_SMS, "device": "collector-1"}),
        headers={"Content-Type": "application/json"},
    )
    other_device_key = forward(client, "Wave", WAVE_SMS, key=DEVICE_KEYS["collector-2"])
    unknown = forward(client, "Wave", WAVE_SMS, device="nobody", key="dk_not-a-key")

    assert [r.status_code for r in (no_key, shared_token, other_device_key, unknown)] == [403, 403, 403, 403]
    assert payments(session) == []
    # A registered device refused is kept for review (the unknown device is not: nothing proves it is ours).
    assert {r.device_id for r in rejected(session)} == {
        session.scalar(select(CollectionDevice.id).where(CollectionDevice.device_key == "collector-1"))
    }
    assert forward(client, "Wave", WAVE_SMS).status_code == 200
    [payment] = payments(session)
    assert payment.status == PaymentStatus.PROVISIONAL


def test_a_rotated_key_is_refused_kept_and_the_admin_shows_the_device_on_an_old_key(
    app: Flask, session: Session
) -> None:
    client = app.test_client()
    device = add_device(session, "collector-1", senders=["Wave"])
    old_key = DEVICE_KEYS["collector-1"]
    new_key = issue_device_key(session, device)
    session.commit()

    refused = forward(client, "Wave", WAVE_SMS, key=old_key)
    assert refused.status_code == 403 and json_body(refused)["error"] == "device on an old key"
    [kept] = rejected(session)
    assert (kept.source, kept.device_id, kept.reason) == ("sms_forward", device.id, "device on an old key")
    assert "T_4ZQ7WX2KX" in kept.raw and old_key not in kept.raw

    admin = signed_in_admin(app, session)
    page = admin.get("/admin/devices").get_data(as_text=True)
    assert "device on an old key: 1 forward(s) refused" in page
    assert forward(client, "Wave", WAVE_SMS, key=new_key).status_code == 200


def test_the_first_release_plaintext_device_key_is_refused_and_kept(client: FlaskClient, session: Session) -> None:
    session.add(CollectionDevice(device_key="+221700000001", label="old phone", operator_senders=["Wave"]))
    session.commit()
    response = forward(client, "Wave", WAVE_SMS, device="+221700000001", key=None)
    as_bearer = forward(client, "Wave", WAVE_SMS + " ", device="+221700000001", key="+221700000001")
    assert (response.status_code, as_bearer.status_code) == (403, 403)
    assert [r.reason for r in rejected(session)] == ["device on an old key", "device on an old key"]
    assert payments(session) == []


def test_device_keys_are_created_rotated_and_revoked_from_the_cli(app: Flask, session: Session) -> None:
    runner = app.test_cli_runner()
    created = runner.invoke(args=["devices", "create", "phone-9", "--label", "Collector 9", "--senders", "Wave"])
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    client = app.test_client()
    assert forward(client, "Wave", WAVE_SMS, device="phone-9", key=key).status_code == 200
    rotated = runner.invoke(args=["devices", "rotate", "phone-9"]).output.strip().splitlines()[-1]
    assert rotated != key
    assert forward(client, "Wave", WAVE_SMS + ".", device="phone-9", key=key).status_code == 403
    assert runner.invoke(args=["devices", "revoke", "phone-9"]).exit_code == 0
    assert forward(client, "Wave", WAVE_SMS + "..", device="phone-9", key=rotated).status_code == 403
    listed = runner.invoke(args=["devices", "list"]).output
    assert "phone-9" in listed and "revoked" in listed and key not in listed


# ---------------------------------------------------------------- bad input: 4xx, kept, never 5xx


def test_a_hashed_msisdn_is_stored_in_full(client: FlaskClient, session: Session) -> None:
    response = post_json(client, "/payments/daraja/confirm", confirmation(MSISDN=HASHED_MSISDN))
    assert response.status_code == 200
    [payment] = payments(session)
    assert payment.payer_phone == HASHED_MSISDN


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"TransID": "RKT\x00QDM7W6S"}, "NUL"),
        ({"BillRefNumber": "KE-NB\x00-004512"}, "NUL"),
        ({"TransID": "   "}, "TransID is required"),
        ({"TransID": "R" * 300}, "TransID is longer"),
        ({"TransAmount": 10**30}, "TransAmount"),
        ({"TransAmount": "9" * 5000}, "TransAmount"),
        ({"TransTime": "99999999999999"}, "TransTime"),
        ({"MSISDN": {"nested": 1}}, "MSISDN"),
    ],
)
def test_bad_daraja_confirmations_get_a_400_naming_the_field_and_are_kept(
    client: FlaskClient, session: Session, changes: dict[str, Any], named: str
) -> None:
    response = post_json(client, "/payments/daraja/confirm", confirmation(**changes))
    assert response.status_code == 400 and named in json_body(response)["error"]
    assert payments(session) == []
    [kept] = rejected(session)
    assert kept.source == "daraja_confirm" and named in kept.reason


def test_a_huge_exponent_is_refused_at_once(client: FlaskClient, session: Session) -> None:
    event = fixture_payload("wave_merchant_payment_received.json")
    body = json.dumps(event).replace('"3500"', "1e999999").encode()
    started = time.monotonic()
    response = client.post("/payments/wave", data=body, headers={"Wave-Signature": wave_signature(body)})
    assert response.status_code == 400 and time.monotonic() - started < 2
    assert payments(session) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["data"].update(id="T_" + "X" * 300),
        lambda e: e["data"].update(id="T_4ZQ\x00"),
        lambda e: e["data"].update(amount="9" * 5000),
        lambda e: e["data"].update(amount=2**70),
        lambda e: e["data"].update(currency="X\x00F"),
        lambda e: e.update(data=[1, 2]),
        lambda e: e["data"].update(when_created="9" * 5000),
    ],
)
def test_bad_signed_wave_events_get_a_400_and_are_kept(client: FlaskClient, session: Session, mutate: Any) -> None:
    event = fixture_payload("wave_merchant_payment_received.json")
    mutate(event)
    response = post_wave(client, event)
    assert response.status_code == 400
    assert payments(session) == []
    assert [r.source for r in rejected(session)] == ["wave"]


def test_a_5000_digit_wave_timestamp_is_unauthorised_not_a_crash(client: FlaskClient) -> None:
    body = json.dumps(fixture_payload("wave_merchant_payment_received.json")).encode()
    header = f"t={'9' * 5000},v1={'0' * 64}"
    assert client.post("/payments/wave", data=body, headers={"Wave-Signature": header}).status_code == 401


@pytest.mark.parametrize(
    ("form", "named"),
    [
        ({"id": "AT\x00-1", "from": "+221771234567", "text": "STATUT"}, "id"),
        ({"id": "AT-1", "from": "+221771234567", "text": "STA\x00TUT"}, "text"),
        ({"id": "AT-1", "from": "+2217712345670000000000", "text": "STATUT"}, "from"),
        ({"id": "", "from": "+221771234567", "text": "STATUT"}, "id is required"),
    ],
)
def test_bad_inbound_sms_get_a_400_and_are_kept_once(
    client: FlaskClient, session: Session, form: dict[str, str], named: str
) -> None:
    first = client.post(at("/sms/inbound"), data=form)
    again = client.post(at("/sms/inbound"), data=form)  # AT retries a non-200 for hours
    assert (first.status_code, again.status_code) == (400, 400)
    assert named in first.get_data(as_text=True)
    [kept] = rejected(session)
    assert (kept.source, kept.attempts) == ("sms_inbound", 2)
    assert session.scalars(select(Message)).all() == []


def test_unknown_delivery_statuses_are_stored_and_answered_200(client: FlaskClient, session: Session) -> None:
    response = client.post(at("/sms/delivery"), data={"id": "ATXid_1", "status": "DeliveredToNetwork"})
    assert response.status_code == 200
    session.commit()
    [report] = session.scalars(select(DeliveryReport)).all()
    assert report.status == "DeliveredToNetwork"


@pytest.mark.parametrize(
    "form",
    [
        {"id": "ATXid_1\x00", "status": "Success"},
        {"id": "ATXid_1", "status": "Success", "retryCount": "99999999999999999999"},
        {"id": "ATXid_1", "status": "S" * 300},
    ],
)
def test_bad_delivery_reports_get_a_400_and_are_kept(
    client: FlaskClient, session: Session, form: dict[str, str]
) -> None:
    assert client.post(at("/sms/delivery"), data=form).status_code == 400
    assert [r.source for r in rejected(session)] == ["sms_delivery"]


def test_a_ussd_event_with_a_nul_byte_gets_a_400_and_is_kept(client: FlaskClient, session: Session) -> None:
    form = {"sessionId": "ATUid_1", "phoneNumber": "+221771234567", "status": "Success", "input": "1*\x00"}
    assert client.post(at("/ussd/events"), data=form).status_code == 400
    assert [r.source for r in rejected(session)] == ["ussd_events"]


def test_a_ussd_hop_with_a_nul_byte_is_answered_never_a_5xx(client: FlaskClient) -> None:
    response = client.post(at("/ussd"), data={"sessionId": "s\x00", "phoneNumber": "+22177\x00", "text": "1*\x00"})
    assert response.status_code == 200 and response.get_data(as_text=True)[:4] in ("CON ", "END ")


def test_a_whitespace_only_sandbox_txn_id_is_refused(client: FlaskClient, session: Session) -> None:
    payload = {"txn_id": "  ", "amount": "3500", "currency": "XOF", "reference": "x"}
    response = post_json(client, "/payments/sandbox", payload)
    assert response.status_code == 400 and "txn_id" in json_body(response)["error"]
    assert payments(session) == []


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        (at("/sms/inbound"), "application/x-www-form-urlencoded"),
        (at("/sms/delivery"), "application/x-www-form-urlencoded"),
        (at("/ussd/events"), "application/x-www-form-urlencoded"),
        (f"/payments/daraja/confirm?token={DARAJA_TOKEN}", "application/json"),
        ("/payments/wave", "application/json"),
        ("/payments/sms-forward", "application/json"),
    ],
)
def test_chunked_bodies_over_the_limit_are_refused(
    client: FlaskClient, session: Session, path: str, content_type: str
) -> None:
    body = b"id=ATXid_1&status=Success&phoneNumber=%2B221771234567&text=" + b"x" * 70_000
    response = chunked(client, path, body, content_type)
    assert response.status_code == 413
    session.commit()
    assert session.scalars(select(DeliveryReport)).all() == [] and payments(session) == []
    assert session.scalars(select(Message)).all() == []


def test_a_chunked_body_within_the_limit_is_read_whole(client: FlaskClient, session: Session) -> None:
    body = json.dumps(confirmation(BillRefNumber="KE-NB-004512", FirstName="W" * 30_000)).encode()
    response = chunked(client, f"/payments/daraja/confirm?token={DARAJA_TOKEN}", body, "application/json")
    assert response.status_code == 200
    assert [p.provider_txn_id for p in payments(session)] == ["RKTQDM7W6S"]


def test_a_pin_typed_with_spaces_is_masked_before_it_is_stored(client: FlaskClient, session: Session) -> None:
    form = {"id": "AT-pin", "from": "+221761230000", "text": "VERIF SN-TN-000123-01 4 8 2 1", "to": "21555"}
    assert client.post(at("/sms/inbound"), data=form).status_code == 200
    session.commit()
    [message] = session.scalars(select(Message)).all()
    assert message.body == "VERIF SN-TN-000123-01 xxxx"


def test_no_typed_date_of_birth_reaches_redis(client: FlaskClient, redis_client: Redis) -> None:
    phone, session_id = "+221779990001", "ATUid_dob"
    for text in ("", "SN-TN-000001-01", "SN-TN-000001-01*05031990"):
        reply = client.post(at("/ussd"), data={"sessionId": session_id, "phoneNumber": phone, "text": text})
        assert reply.status_code == 200
    values = [redis_client.get(key) for key in redis_client.keys(ussd_session_key("*"))]
    stored = b"".join(value for value in values if isinstance(value, bytes))
    assert stored and b"05031990" not in stored
    # The next hop still continues the session (the digest recognises the text typed).
    again = client.post(
        at("/ussd"), data={"sessionId": session_id, "phoneNumber": phone, "text": "SN-TN-000001-01*05031990"}
    )
    assert again.get_data(as_text=True).startswith("END ")


# ---------------------------------------------------------------- read APIs


def test_read_apis_validate_parameters_and_are_limited_per_token(app: Flask, session: Session) -> None:
    _, plain = issue_token(session, name="clinic", facility="Clinic", now=utcnow())
    session.commit()
    client = app.test_client()
    auth = {"Authorization": f"Bearer {plain}"}
    assert client.get("/api/eligibility/%00", headers=auth).status_code == 400
    assert client.get("/api/eligibility/SN-1?date=0001-01-01", headers=auth).status_code == 400
    assert client.get("/api/payments/wave/%00", headers=auth).status_code == 400
    codes = [client.get(f"/api/eligibility/SN-{i}", headers=auth).status_code for i in range(4)]
    assert codes == [404, 404, 429, 429]  # 5 per minute, three used above
    assert client.get("/api/eligibility/SN-1", headers={"Authorization": "Bearer other"}).status_code == 401
    session.expire_all()
    token = session.scalars(select(ApiToken)).one()
    assert (token.request_count, token.limited_count) == (5, 2)
    page = signed_in_admin(app, session).get("/admin/tokens").get_data(as_text=True)
    assert re.search(r'data-label="Requests">5</td><td class="num" data-label="Refused \(429\)">2</td>', page)


def test_the_eligibility_api_answers_503_when_the_database_is_down(redis_url: str) -> None:
    app = make_test_app("postgresql://nobody@127.0.0.1:1/none", redis_url)
    response = app.test_client().get("/api/eligibility/SN-1", headers={"Authorization": "Bearer x"})
    assert response.status_code == 503


# ---------------------------------------------------------------- admin


def signed_in_admin(app: Flask, session: Session, username: str = "boss") -> FlaskClient:
    """Return a client signed in as a fresh admin."""
    if session.scalar(select(StaffSession.id).limit(1)) is None:
        create_staff_user(session, username, PASSWORD, StaffRole.ADMIN, if_missing=True, language="en")
        session.commit()
    client = app.test_client()
    response = sign_in(client, username)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD, **environ: Any) -> TestResponse:
    data = {"username": username, "password": password, "csrf_token": csrf_token(client)}
    return client.post("/admin/login", data=data, environ_overrides=environ or None)


def test_sign_out_ends_the_session_server_side(app: Flask, session: Session) -> None:
    client = signed_in_admin(app, session)
    cookie = client.get_cookie("session")
    assert cookie is not None
    copy = app.test_client()
    copy.set_cookie("session", cookie.value)
    assert copy.get("/admin/").status_code == 200
    token = csrf_token(client, "/admin/")
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert copy.get("/admin/").status_code == 302  # the copied cookie no longer signs anyone in


def test_staff_sign_in_works_with_redis_down(db_url: str, session: Session) -> None:
    app = make_test_app(db_url, "redis://127.0.0.1:1/0")
    create_staff_user(session, "boss", PASSWORD, StaffRole.ADMIN)
    session.commit()
    client = app.test_client()
    assert sign_in(client, "boss").status_code == 302
    assert client.get("/admin/").status_code == 200


def test_sign_in_is_limited_per_username_across_addresses_and_per_address_across_usernames(
    db_url: str, redis_url: str, session: Session
) -> None:
    app = make_test_app(
        db_url, redis_url, ADMIN_LOGIN_USER_RATE_LIMIT="3/hour", ADMIN_LOGIN_ADDRESS_RATE_LIMIT="4/hour"
    )
    create_staff_user(session, "boss", PASSWORD, StaffRole.ADMIN)
    session.commit()
    client = app.test_client()
    from_many = [sign_in(client, "boss", "wrong", REMOTE_ADDR=f"10.0.0.{i}").status_code for i in range(4)]
    assert from_many == [401, 401, 401, 429]
    spray = [sign_in(client, f"user{i}", "wrong", REMOTE_ADDR="10.9.9.9").status_code for i in range(5)]
    assert spray == [401, 401, 401, 401, 429]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/payments?page=²",
        "/admin/payments?page=99999999999999999999",
        "/admin/households?q=%00",
        "/admin/reconciliation?to=9999-12-31",
        "/admin/reconciliation.csv?scheme=99999999999999999999",
        "/admin/reconciliation.csv?status=NOPE",
        "/admin/ussd?from=0001-01-01",
        "/admin/sms?per=%C2%B2",
        "/admin/simulator/outbox?phone=1&after=%C2%B2",
        "/admin/payments/99999999999999999999",
    ],
)
def test_bad_admin_parameters_are_a_4xx_never_a_500(app: Flask, session: Session, path: str) -> None:
    response = signed_in_admin(app, session).get(path)
    assert 400 <= response.status_code < 500


def test_admin_pages_carry_security_headers(app: Flask, session: Session) -> None:
    response = signed_in_admin(app, session).get("/admin/")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in response.headers  # development: HSTS only in production


def test_hsts_in_production(pg_url: str, redis_url: str) -> None:
    secret = "p" * 40
    app = make_test_app(
        pg_url,
        redis_url,
        APP_ENV="production",
        SECRET_KEY=secret + "s",
        CALLBACK_TOKEN=secret + "c",
        DARAJA_CALLBACK_TOKEN=secret + "d",
        WAVE_WEBHOOK_SECRET=secret + "w",
        AT_USERNAME="scheme",
        AT_API_KEY=secret + "k",
    )
    response = app.test_client().get("/admin/login")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("value", ["Production", "prod", "PRODUCTION", "staging", " production"])
def test_an_unknown_app_env_refuses_to_start_naming_it(value: str) -> None:
    with pytest.raises(ConfigError, match="APP_ENV"):
        Settings.from_env({"APP_ENV": value})


def test_an_unset_or_empty_app_env_is_development() -> None:
    assert Settings.from_env({}).APP_ENV == "development"
    assert Settings.from_env({"APP_ENV": ""}).APP_ENV == "development"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", "a" * 16),
        ("WAVE_WEBHOOK_SECRET", "x"),
        ("DARAJA_CALLBACK_TOKEN", "dev-daraja-callback-token"),
        ("CALLBACK_TOKEN_PREVIOUS", "dev-callback-token"),
        ("CALLBACK_TOKEN", "dev-wave-webhook-secret"),
    ],
)
def test_production_refuses_short_or_development_secrets(name: str, value: str) -> None:
    env = {
        "APP_ENV": "production",
        "DATABASE_URL": "postgresql://db/x",
        "SECRET_KEY": "s" * 32,
        "CALLBACK_TOKEN": "c" * 32,
        "DARAJA_CALLBACK_TOKEN": "d" * 32,
        "WAVE_WEBHOOK_SECRET": "w" * 32,
        "AT_USERNAME": "scheme",
        "AT_API_KEY": "k" * 32,
    }
    Settings.from_env(env)  # starts as given
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**env, name: value})


# ---------------------------------------------------------------- a worker killed mid-job


def test_the_sweeper_asks_again_for_a_payment_whose_drain_lost_its_worker(
    client: FlaskClient, session: Session, redis_url: str, worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import reconcile as jobs

    payload = {"txn_id": "SBX-dead", "amount": "3500", "currency": "XOF", "reference": "nobody"}
    assert post_json(client, "/payments/sandbox", payload).status_code == 200
    [payment] = payments(session)
    redis = Redis.from_url(redis_url)
    queue = Queue(RECONCILE_QUEUE, connection=redis)
    [job_id] = queue.job_ids
    job = Job.fetch(job_id, connection=redis)
    # What a SIGKILLed worker leaves: the drain still reads "started", its worker is gone, and the payment it
    # had taken from the waiting set is nowhere but in the database, RECEIVED.
    job.set_status(JobStatus.STARTED)
    job.worker_name = f"dead-{uuid.uuid4().hex[:6]}"
    job.save()
    queue.remove(job.id)
    redis.delete(reconcile_waiting_key())
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", worker_env["DATABASE_URL"])
    session.execute(Payment.__table__.update().values(updated_at=utcnow().replace(year=2000)))
    session.commit()
    from workers import runtime

    runtime.settings.cache_clear()  # the job process's settings, read from the environment set above
    try:
        assert jobs.sweep_stuck_payments() == 1
    finally:
        runtime.settings.cache_clear()
    assert [int(i) for i in redis.smembers(reconcile_waiting_key())] == [payment.id]
    assert queue.job_ids == [job_id]  # the dead drain's job is replaced by a live one of the same generation


# ---------------------------------------------------------------- fuzz: any body, no 5xx

FUZZ_FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "id",
            "from",
            "text",
            "to",
            "date",
            "linkId",
            "status",
            "phoneNumber",
            "retryCount",
            "sessionId",
            "input",
            "hopsCount",
            "durationInMillis",
            "networkCode",
            "failureReason",
        ]
    ),
    st.text(max_size=60),
    max_size=8,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40) | st.decimals(allow_nan=False).map(str),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
JSON_BODIES = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"TransID": JSON_VALUES, "TransAmount": JSON_VALUES, "BillRefNumber": JSON_VALUES, "MSISDN": JSON_VALUES}
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["merchant.payment_received", "checkout.session.completed"]), "data": JSON_VALUES}
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"sender": JSON_VALUES, "text": JSON_VALUES, "device": st.just("collector-1"), "received_at": JSON_VALUES}
    ).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


@pytest.fixture
def fuzz_client(sqlite_url: str, redis_url: str) -> tuple[FlaskClient, str]:
    app = make_test_app(sqlite_url, redis_url, WAVE_WEBHOOK_SECRET=WAVE_SECRET)
    with app.app_context():
        from extensions import db

        add_device(db(), "collector-1", senders=["Wave", "OrangeMoney"])
    return app.test_client(), DEVICE_KEYS["collector-1"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=FUZZ_FIELDS, path=st.sampled_from(["/ussd", "/ussd/events", "/sms/inbound", "/sms/delivery"]))
def test_fuzzed_at_forms_never_get_a_5xx(fuzz_client: tuple[FlaskClient, str], form: dict[str, str], path: str) -> None:
    client, _ = fuzz_client
    response = client.post(at(path), data=form)
    assert response.status_code < 500, (path, form, response.get_data(as_text=True)[:200])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=JSON_BODIES,
    path=st.sampled_from(
        [
            "/payments/wave",
            "/payments/daraja/confirm",
            "/payments/daraja/validate",
            "/payments/sandbox",
            "/payments/sms-forward",
        ]
    ),
)
def test_fuzzed_payment_bodies_never_get_a_5xx(fuzz_client: tuple[FlaskClient, str], body: bytes, path: str) -> None:
    client, device_key = fuzz_client
    headers = {"Content-Type": "application/json", "Wave-Signature": wave_signature(body)}
    url = path
    if path.startswith("/payments/daraja"):
        url = f"{path}?token={DARAJA_TOKEN}"
    elif path == "/payments/sandbox":
        url = at(path)
    elif path == "/payments/sms-forward":
        headers["Authorization"] = f"Bearer {device_key}"
    response = client.post(url, data=body, headers=headers)
    assert response.status_code < 500, (path, body[:200], response.get_data(as_text=True)[:200])
