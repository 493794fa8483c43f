"""Staff actions through the admin's HTTP contract: operator payment and household actions, statement upload,
admin pages for staff, agents, tokens and devices, and the phone simulator's JSON endpoints."""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from models.access.staff import authenticate_staff
from models.access.tables import ApiToken, CollectionDevice
from models.base import EvidenceSource, HouseholdStatus, PaymentStatus, utcnow
from models.members.household import Household, HouseholdEvent
from models.payments.intake import Report, record_report
from models.payments.payment import Payment, ReconciliationEvent
from models.reconciliation.batch import reconcile_payment
from tests.admin_helpers import admin_app, csrf_token, db_session, seeded_url, signed_in, text_of
from tests.conftest import FIXTURES

__all__ = ["admin_app", "db_session", "seeded_url"]  # the shared seeded database fixtures


def suspense_payment(session: Session, amount: int = 3500) -> int:
    """Store a sandbox payment nobody's reference matches and reconcile it into suspense; return its id."""
    txn = f"ACT-{uuid.uuid4().hex[:10]}"
    report = Report(
        provider="sandbox",
        provider_txn_id=txn,
        amount=amount,
        currency="XOF",
        payer_phone=None,
        reference="no such reference",
        paid_at=utcnow() - timedelta(hours=1),
        source=EvidenceSource.WEBHOOK,
        route="test",
        raw=json.dumps({"txn": txn}),
    )
    payment_id = record_report(session, report).payment_id
    session.commit()
    reconcile_payment(session, payment_id)
    session.commit()
    return payment_id


def post_form(client: FlaskClient, page: str, action: str, **data: str) -> TestResponse:
    """Post a form found on a page with that page's CSRF token."""
    return client.post(action, data={"csrf_token": csrf_token(client, page), **data})


def household_no(session: Session, status: HouseholdStatus = HouseholdStatus.ACTIVE) -> tuple[int, str]:
    """Return the id and number of a demo household in a status."""
    household = session.scalars(select(Household).where(Household.status == status).order_by(Household.id)).first()
    assert household is not None
    return household.id, household.household_no


def test_operator_matches_a_suspense_payment_by_hand_with_an_audited_reason(
    admin_app: Flask, db_session: Session
) -> None:
    payment_id = suspense_payment(db_session)
    _, number = household_no(db_session)
    page = f"/admin/payments/{payment_id}"
    client = signed_in(admin_app, "operator")
    assert "Match by hand" in text_of(client.get(page))
    refused = post_form(client, page, f"{page}/match", target="household", number=number, reason="  ")
    assert refused.status_code == 400
    assert "Give a reason" in text_of(refused)
    assert f'value="{number}"' in refused.get_data(as_text=True)
    unknown = post_form(client, page, f"{page}/match", target="household", number="XX-NONE", reason="payer called")
    assert unknown.status_code == 400 and "no household XX-NONE" in text_of(unknown)
    done = post_form(client, page, f"{page}/match", target="household", number=number, reason="payer called us")
    assert done.status_code == 302
    shown = text_of(client.get(page))
    assert "ALLOCATED" in shown and "by operator (rule manual): payer called us" in shown
    db_session.rollback()
    payment = db_session.get(Payment, payment_id)
    assert payment is not None and payment.status == PaymentStatus.ALLOCATED and payment.match_rule == "manual"
    event = db_session.scalars(
        select(ReconciliationEvent).where(
            ReconciliationEvent.payment_id == payment_id, ReconciliationEvent.before_status == "UNMATCHED"
        )
    ).one()
    assert (event.actor, event.before_status, event.after_status, event.note) == (
        "operator",
        "UNMATCHED",
        "MATCHED",
        "payer called us",
    )
    # Allocated: a refund undoes it, audited with the reason.
    refunded = post_form(client, page, f"{page}/refund", reason="paid twice, money sent back")
    assert refunded.status_code == 302
    db_session.rollback()
    assert db_session.get_one(Payment, payment_id).status == PaymentStatus.REFUNDED
    assert "rule refund" in text_of(client.get(page))


def test_operator_unmatches_a_provisional_payment_back_to_suspense(admin_app: Flask, db_session: Session) -> None:
    payment_id = suspense_payment(db_session)
    db_session.get_one(Payment, payment_id).confirmed = False
    db_session.commit()
    _, number = household_no(db_session)
    page = f"/admin/payments/{payment_id}"
    client = signed_in(admin_app, "operator")
    assert post_form(client, page, f"{page}/match", number=number, reason="ref typo").status_code == 302
    db_session.rollback()
    assert db_session.get_one(Payment, payment_id).status == PaymentStatus.PROVISIONAL
    assert post_form(client, page, f"{page}/unmatch", reason="wrong household").status_code == 302
    db_session.rollback()
    payment = db_session.get(Payment, payment_id)
    assert payment is not None and payment.status == PaymentStatus.UNMATCHED and payment.household_id is None
    assert "PROVISIONAL → UNMATCHED by operator (rule manual): wrong household" in text_of(client.get(page))


def test_viewers_see_no_action_and_are_refused(admin_app: Flask, db_session: Session) -> None:
    payment_id = suspense_payment(db_session)
    household_id, _ = household_no(db_session)
    client = signed_in(admin_app, "viewer")
    assert "Match by hand" not in text_of(client.get(f"/admin/payments/{payment_id}"))
    assert "Suspend the household" not in text_of(client.get(f"/admin/households/{household_id}"))
    token = csrf_token(client, "/admin/")
    for action in (
        f"/admin/payments/{payment_id}/match",
        f"/admin/payments/{payment_id}/unmatch",
        f"/admin/payments/{payment_id}/refund",
        f"/admin/households/{household_id}/suspend",
        "/admin/statements",
    ):
        assert client.post(action, data={"csrf_token": token, "reason": "x"}).status_code == 403, action
    operator = signed_in(admin_app, "operator")
    token = csrf_token(operator, "/admin/")
    for page in ("/admin/staff", "/admin/agents", "/admin/tokens", "/admin/devices"):
        assert operator.get(page).status_code == 403
        assert operator.post(page, data={"csrf_token": token}).status_code == 403
    # Without the CSRF token, even an operator's action is refused.
    assert operator.post(f"/admin/payments/{payment_id}/refund", data={"reason": "x"}).status_code == 400


def test_operator_suspends_and_reinstates_a_household_with_its_history(admin_app: Flask, db_session: Session) -> None:
    household_id = db_session.scalars(
        select(Household.id).where(Household.status == HouseholdStatus.ACTIVE).order_by(Household.id.desc())
    ).first()
    page = f"/admin/households/{household_id}"
    client = signed_in(admin_app, "operator")
    refused = post_form(client, page, f"{page}/suspend", reason="")
    assert refused.status_code == 400 and "Give a reason" in text_of(refused)
    assert post_form(client, page, f"{page}/suspend", reason="fraud inquiry").status_code == 302
    shown = text_of(client.get(page))
    assert "SUSPENDED: fraud inquiry" in shown and "ACTIVE → SUSPENDED by operator (suspend): fraud inquiry" in shown
    assert post_form(client, page, f"{page}/unsuspend", reason="cleared").status_code == 302
    db_session.rollback()
    household = db_session.get(Household, household_id)
    assert household is not None and household.status == HouseholdStatus.ACTIVE and household.status_reason is None
    events = db_session.scalars(select(HouseholdEvent).where(HouseholdEvent.household_id == household_id)).all()
    assert [(e.action, e.actor, e.note) for e in events] == [
        ("suspend", "operator", "fraud inquiry"),
        ("unsuspend", "operator", "cleared"),
    ]


def test_operator_uploads_a_statement_and_sees_its_break_report(admin_app: Flask, db_session: Session) -> None:
    client = signed_in(admin_app, "operator")
    data = (FIXTURES / "statement_sample.csv").read_bytes()
    token = csrf_token(client, "/admin/statements")
    missing = client.post("/admin/statements", data={"csrf_token": token, "provider": "sandbox"})
    assert missing.status_code == 400 and "Choose a statement file." in text_of(missing)
    response = client.post(
        "/admin/statements",
        data={"csrf_token": token, "provider": "sandbox", "file": (io.BytesIO(data), "stmt.csv")},
        content_type="multipart/form-data",
    )
    if response.status_code == 400:
        pytest.fail(text_of(response))
    assert response.status_code == 302
    report = text_of(client.get(response.headers["Location"]))
    assert "Breaks by kind" in report and "duplicate line" in report.lower()
    assert "Credits per day" in report
    assert "stmt.csv" in text_of(client.get("/admin/statements"))


def test_admin_manages_staff_agents_tokens_and_devices(admin_app: Flask, db_session: Session) -> None:
    client = signed_in(admin_app, "admin")
    name = f"u{uuid.uuid4().hex[:8]}"
    created = post_form(client, "/admin/staff", "/admin/staff", username=name, role="operator", password="long-pass-42")
    assert created.status_code == 302
    weak = post_form(client, "/admin/staff", "/admin/staff", username=name + "x", role="viewer", password="short")
    assert weak.status_code == 400
    assert post_form(client, "/admin/staff", f"/admin/staff/{name}/deactivate").status_code == 302
    assert authenticate_staff(db_session, name, "long-pass-42") is None
    db_session.rollback()

    phone = f"+22176{uuid.uuid4().int % 10**7:07d}"
    agent = post_form(client, "/admin/agents", "/admin/agents", facility="Poste X", phone=phone, pin="4829")
    assert agent.status_code == 302 and phone in text_of(client.get("/admin/agents"))
    bad_pin = post_form(
        client, "/admin/agents", "/admin/agents", facility="Poste X", phone=phone[:-1] + "0", pin="1234"
    )
    assert bad_pin.status_code == 400

    token_name = f"t{uuid.uuid4().hex[:8]}"
    shown = post_form(client, "/admin/tokens", "/admin/tokens", name=token_name, facility="Hopital")
    body = shown.get_data(as_text=True)
    plain = re.search(r'class="secret"><code>([^<]+)</code>', body)
    assert plain and shown.headers["Cache-Control"] == "no-store"
    assert plain.group(1) not in client.get("/admin/tokens").get_data(as_text=True)  # never shown again
    db_session.rollback()
    token = db_session.scalars(select(ApiToken).where(ApiToken.name == token_name)).one()
    assert post_form(client, "/admin/tokens", f"/admin/tokens/{token.id}/revoke").status_code == 302
    db_session.rollback()
    assert db_session.get_one(ApiToken, token.id).revoked_at is not None

    key = f"dev-{uuid.uuid4().hex[:8]}"
    device = post_form(
        client, "/admin/devices", "/admin/devices", device_key=key, label="Phone", senders="Wave, OrangeMoney"
    )
    shown_key = re.search(r'class="secret"><code>([^<]+)</code>', device.get_data(as_text=True))
    assert device.status_code == 200 and shown_key and device.headers["Cache-Control"] == "no-store"
    assert shown_key.group(1) not in client.get("/admin/devices").get_data(as_text=True)  # shown once
    db_session.rollback()
    row = db_session.scalars(select(CollectionDevice).where(CollectionDevice.device_key == key)).one()
    assert row.key_hash and row.key_hash != shown_key.group(1)  # only its hash is kept
    assert row.operator_senders == ["Wave", "OrangeMoney"] and not row.trusted
    assert post_form(client, "/admin/devices", f"/admin/devices/{row.id}/trust", trusted="1").status_code == 302
    db_session.rollback()
    assert db_session.get_one(CollectionDevice, row.id).trusted


def test_phone_simulator_drives_ussd_and_sandbox_without_exposing_the_callback_token(
    admin_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = signed_in(admin_app, "viewer")
    page = client.get("/admin/simulator").get_data(as_text=True)
    assert admin_app.config["CALLBACK_TOKEN"] not in page
    meta = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert meta is not None
    token = meta.group(1)
    headers = {"X-CSRFToken": token}
    first = client.post(
        "/admin/simulator/ussd", json={"session_id": "t1", "phone": "+221770000041", "text": ""}, headers=headers
    )
    assert first.status_code == 200 and first.get_json()["ends"] is False
    assert client.post("/admin/simulator/ussd", json={"session_id": "t1", "text": ""}).status_code == 400  # no CSRF
    paid = client.post("/admin/simulator/pay", json={"amount": "1000", "reference": "nobody"}, headers=headers)
    assert paid.get_json()["reply"]["status"] == "stored"
    assert admin_app.config["CALLBACK_TOKEN"] not in paid.get_data(as_text=True)
    monkeypatch.setattr(type(admin_app.extensions["settings"]), "is_production", property(lambda _self: True))
    assert client.get("/admin/simulator").status_code == 404


def test_suspense_shows_ranked_candidates_and_matches_one_in_one_click(admin_app: Flask, db_session: Session) -> None:
    from models.members.household import Member
    from models.messaging.outbox import attach_dispatch

    attach_dispatch(db_session, lambda ids: None)  # the payer's "under review" receipt is queued, not sent
    phones = db_session.execute(
        select(Member.phone, Member.household_id).where(Member.phone.is_not(None)).order_by(Member.id)
    ).all()
    payer, payer_household = phones[0]
    named = db_session.scalars(select(Household).where(Household.id != payer_household).order_by(Household.id)).first()
    assert named is not None
    txn = f"ACT-{uuid.uuid4().hex[:10]}"
    report = Report(
        provider="sandbox",
        provider_txn_id=txn,
        amount=3500,
        currency="XOF",
        payer_phone=payer,
        reference=named.household_no,
        paid_at=utcnow() - timedelta(hours=1),
        source=EvidenceSource.WEBHOOK,
        route="test",
        raw=json.dumps({"txn": txn}),
    )
    payment_id = record_report(db_session, report).payment_id
    db_session.commit()
    reconcile_payment(db_session, payment_id)
    db_session.commit()
    page = f"/admin/payments/{payment_id}"
    client = signed_in(admin_app, "operator")

    html = client.get(page).get_data(as_text=True)
    shown = text_of(client.get(page))
    assert "UNMATCHED" in shown and "Candidates" in shown
    assert shown.index(f"household {named.household_no}") < shown.index("the payer's phone is registered to it")
    # The first candidate's one-click form: its hidden fields, posted as the button does.
    first = re.search(r'id="candidates".*?<form[^>]*>(.*?)</form>', html, re.S)
    assert first is not None
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', first.group(1)))
    assert fields["number"] == named.household_no and fields["reason"].startswith("suspense candidate: reference")
    done = post_form(client, page, f"{page}/match", **{k: v for k, v in fields.items() if k != "csrf_token"})
    assert done.status_code == 302
    db_session.rollback()
    payment = db_session.get(Payment, payment_id)
    assert payment is not None and (payment.status, payment.household_id, payment.match_rule) == (
        PaymentStatus.ALLOCATED,
        named.id,
        "manual",
    )
    assert "suspense candidate" in (payment.events[-2].note or "")
