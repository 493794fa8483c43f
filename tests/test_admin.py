"""The admin web through its HTTP contract: sign-in, roles, CSRF, rate limit, every read page on demo data."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import models
from handlers.admin.auth import role_required
from models.access.staff import authenticate_staff, create_staff_user
from models.access.tokens import issue_token
from models.base import (
    EvidenceSource,
    MessageDirection,
    MessageStatus,
    PaymentStatus,
    StaffRole,
    utcnow,
)
from models.db import get_engine
from models.members.household import Household, Member
from models.messaging.message import DeliveryReport, Message, UssdSessionRecord
from models.payments.intake import Report, record_report
from models.payments.payment import Payment, ReconciliationEvent
from models.reconciliation.batch import reconcile_payment
from models.views.listings import RECONCILIATION_CSV_HEADER, PaymentFilters, reconciliation_rows
from redis_keys import clock_heartbeat_key
from tests.admin_helpers import (
    MAX_QUERIES_PER_PAGE,
    PASSWORDS,
    QueryCounter,
    admin_app,
    csrf_token,
    db_session,
    login,
    seeded_url,
    signed_in,
    text_of,
)
from tests.backends import KEY_PREFIX, RQ_QUEUE
from tests.conftest import make_test_app

__all__ = ["admin_app", "db_session", "seeded_url"]  # the shared seeded database fixtures

SHARED_PHONE = "+221779999999"  # commands.demo_data.SHARED_PHONE: the head of two demo households
READ_PAGES = [
    "/admin/",
    "/admin/reconciliation",
    "/admin/reconciliation.csv",
    "/admin/payments",
    "/admin/payments/1",
    "/admin/payments/to-refund-or-keep",
    "/admin/households",
    "/admin/households/1",
    "/admin/networks",
    "/admin/networks/1",
    "/admin/reports",
    "/admin/sms",
    "/admin/ussd",
    "/admin/checks",
    "/admin/queues",
]
LIST_PAGES = [
    "/admin/reconciliation",
    "/admin/payments",
    "/admin/payments?status=ALLOCATED",
    "/admin/payments/to-refund-or-keep",
    "/admin/networks/1",
    "/admin/sms",
    "/admin/sms?direction=out",
    "/admin/ussd",
    "/admin/checks",
    "/admin/networks",
    "/admin/households",
    "/admin/households?status=GRACE,LAPSED&commune=Pekesse",
]


# ---------------------------------------------------------------- sign-in, roles, CSRF, rate limit


@pytest.mark.parametrize("path", READ_PAGES)
def test_anonymous_is_sent_to_sign_in(admin_app: Flask, path: str) -> None:
    response = admin_app.test_client().get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login?next=")


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_every_role_reads_every_page(admin_app: Flask, role: str) -> None:
    client = signed_in(admin_app, role)
    for path in READ_PAGES:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        if path != "/admin/reconciliation.csv":
            assert f"{role} ({role})" in text_of(response), path


def test_role_required_refuses_a_lower_role(admin_app: Flask) -> None:
    admin_app.add_url_rule(
        "/admin/probe-admin-only", "probe", role_required(StaffRole.OPERATOR)(lambda: "operator or admin")
    )
    assert signed_in(admin_app, "viewer").get("/admin/probe-admin-only").status_code == 403
    assert signed_in(admin_app, "operator").get("/admin/probe-admin-only").status_code == 200
    assert signed_in(admin_app, "admin").get("/admin/probe-admin-only").status_code == 200
    assert admin_app.test_client().get("/admin/probe-admin-only").status_code == 302


def test_sign_in_goes_back_to_the_page_asked_for_and_never_off_site(admin_app: Flask) -> None:
    client = admin_app.test_client()
    assert login(client, "viewer", next="/admin/sms?status=Failed").headers["Location"] == "/admin/sms?status=Failed"
    client = admin_app.test_client()
    assert login(client, "viewer", next="https://evil.example/admin").headers["Location"] == "/admin/"
    client = admin_app.test_client()
    assert login(client, "viewer", next="//evil.example/admin").headers["Location"] == "/admin/"


def test_sign_in_form_needs_its_csrf_token(admin_app: Flask) -> None:
    client = admin_app.test_client()
    response = client.post("/admin/login", data={"username": "viewer", "password": PASSWORDS["viewer"]})
    assert response.status_code == 400
    assert "a expiré ou a été falsifié" in text_of(response)  # French: no Accept-Language, no user yet
    assert client.get("/admin/").status_code == 302  # still signed out


def test_callbacks_are_not_behind_csrf(admin_app: Flask) -> None:
    response = admin_app.test_client().post("/sms/delivery?token=wrong", data={"id": "x", "status": "Success"})
    assert response.status_code == 403  # the callback's own token check answered, not CSRF's 400


@pytest.mark.parametrize("username", ["viewer", "nobody"])
def test_wrong_password_or_unknown_user_is_refused_alike(admin_app: Flask, username: str) -> None:
    client = admin_app.test_client()
    response = login(client, username, "not-the-password")
    assert response.status_code == 401
    assert "Identifiant ou mot de passe incorrect." in text_of(response)
    assert client.get("/admin/").status_code == 302


def test_sign_in_is_rate_limited_per_address_and_username(admin_app: Flask) -> None:
    client = admin_app.test_client()
    for _ in range(10):
        assert login(client, "viewer", "wrong-password-x").status_code == 401
    response = login(client, "viewer")  # even the right password, once the limit is reached
    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.get_data(as_text=True)
    # Another username from the same address is counted apart.
    assert login(admin_app.test_client(), "operator").status_code == 302
    # Another address for the same username too.
    other = admin_app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.9.8.7"
    assert login(other, "viewer").status_code == 302


def test_sign_out_needs_a_post_with_csrf_and_ends_the_session(admin_app: Flask) -> None:
    client = signed_in(admin_app)
    assert client.get("/admin/logout").status_code == 405
    assert client.post("/admin/logout").status_code == 400
    assert client.get("/admin/").status_code == 200
    token = csrf_token(client, "/admin/")
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302


def test_a_password_change_ends_open_sessions(admin_app: Flask, db_session: Session) -> None:
    create_staff_user(db_session, "changer", "first-password-1", StaffRole.VIEWER)
    db_session.commit()
    client = admin_app.test_client()
    assert login(client, "changer", "first-password-1").status_code == 302
    assert client.get("/admin/").status_code == 200
    result = admin_app.test_cli_runner().invoke(
        args=["admin", "set-password", "changer", "--password", "second-password-2"]
    )
    assert result.exit_code == 0, result.output
    assert client.get("/admin/").status_code == 302
    assert login(admin_app.test_client(), "changer", "second-password-2").status_code == 302


def test_create_user_command(admin_app: Flask, db_session: Session) -> None:
    runner = admin_app.test_cli_runner()
    result = runner.invoke(
        args=["admin", "create-user", "Awa.Diop", "--role", "operator", "--password", "long-pass-42"]
    )
    assert result.exit_code == 0 and "user awa.diop created with role operator" in result.output
    again = runner.invoke(args=["admin", "create-user", "awa.diop", "--password", "long-pass-42"])
    assert again.exit_code != 0 and "already exists" in again.output
    kept = runner.invoke(args=["admin", "create-user", "awa.diop", "--password", "other-pass-42", "--if-missing"])
    assert kept.exit_code == 0 and "left unchanged" in kept.output
    weak = runner.invoke(args=["admin", "create-user", "shorty", "--password", "short"])
    assert weak.exit_code != 0 and "at least 10 characters" in weak.output
    prompted = runner.invoke(args=["admin", "create-user", "prompted"], input="prompted-pass-1\nprompted-pass-1\n")
    assert prompted.exit_code == 0, prompted.output
    user = authenticate_staff(db_session, "AWA.DIOP", "long-pass-42")
    assert user is not None and user.role is StaffRole.OPERATOR and user.password_hash.startswith("$argon2")
    assert authenticate_staff(db_session, "awa.diop", "other-pass-42") is None
    db_session.commit()
    assert login(admin_app.test_client(), "awa.diop", "long-pass-42").status_code == 302


# ---------------------------------------------------------------- the money trail


def test_staff_find_a_households_money_from_sms_receipt_to_ledger(admin_app: Flask, db_session: Session) -> None:
    client = signed_in(admin_app)
    # The phone as people say it (national form with spaces) finds both households it heads.
    search = client.get("/admin/households", query_string={"q": "77 999 99 99"})
    links = re.findall(r'href="/admin/households/(\d+)">([A-Z]{2}-[A-Z]{2}-\d{6})<', search.get_data(as_text=True))
    assert len({number for _, number in links}) == 2
    household_id, household_no = links[0]

    page = client.get(f"/admin/households/{household_id}")
    body = text_of(page)
    assert f"Household {household_no}" in body and "ACTIVE" in body
    # Cover and payments in the words members read, amounts in the one format (F CFA, ASCII spaces).
    assert re.search(r"Cover (Covered until|Waiting until) \d\d/\d\d/\d{4}", body), body
    assert re.search(r"Next payment [\d ]+ F CFA before \d\d/\d\d/\d{4}", body), body
    assert "Coverage periods" in body and re.search(r"\d+ \d{4}-\d\d-\d\d payment ", body)
    linked = re.search(r'href="/admin/payments/(\d+)"', page.get_data(as_text=True))
    assert linked is not None
    payment_id = linked.group(1)
    receipt = db_session.scalar(select(Message).where(Message.dedupe_key == f"receipt:{payment_id}:allocated"))
    assert receipt is not None and receipt.body in body.replace("&#39;", "'")

    detail = text_of(client.get(f"/admin/payments/{payment_id}"))
    payment = db_session.get(Payment, int(payment_id))
    assert payment is not None and payment.status is PaymentStatus.ALLOCATED
    assert f"Payment #{payment_id} ALLOCATED" in detail
    assert payment.provider_txn_id in detail and "webhook via demo-seed" in detail  # evidence
    assert '"txn_id": "' + payment.provider_txn_id + '"' in detail.replace("&#34;", '"')  # raw payload
    assert "RECEIVED → MATCHED" in detail and "MATCHED → ALLOCATED" in detail  # timeline
    assert f"payment:{payment_id}" in detail  # the allocation
    assert f"household {household_no} payment" in detail  # a ledger entry on the household's account
    assert receipt.body in detail.replace("&#39;", "'")


def test_search_by_member_number_household_number_and_name(admin_app: Flask, db_session: Session) -> None:
    client = signed_in(admin_app)
    member = db_session.scalars(select(Member).order_by(Member.member_no).offset(7)).first()
    assert member is not None
    for query in (member.member_no.lower(), f"{member.first_name} {member.last_name}".upper()):
        body = client.get("/admin/households", query_string={"q": query}).get_data(as_text=True)
        assert member.member_no in body, query
    household = db_session.get(Household, member.household_id)
    assert household is not None and household.head_member_no is not None
    body = text_of(client.get("/admin/households", query_string={"q": household.household_no}))
    assert household.household_no in body and household.head_member_no in body
    assert "Nothing found" in text_of(client.get("/admin/households", query_string={"q": "%_nobody"}))
    assert client.get("/admin/households/999999").status_code == 404
    assert client.get("/admin/payments/999999").status_code == 404


def test_reconciliation_log_filters_and_csv_export(admin_app: Flask, db_session: Session) -> None:
    client = signed_in(admin_app)
    cmu = db_session.scalar(select(models.Scheme).where(models.Scheme.code == "cmu-thies"))
    assert cmu is not None
    query = {"provider": "sandbox", "status": "ALLOCATED", "scheme": str(cmu.id), "commune": "Pekesse"}
    expected = list(
        reconciliation_rows(
            db_session,
            PaymentFilters(provider="sandbox", status=PaymentStatus.ALLOCATED, scheme_id=cmu.id, commune="Pekesse"),
        )
    )
    assert expected
    exported = client.get("/admin/reconciliation.csv", query_string=query)
    assert exported.mimetype == "text/csv" and "attachment" in exported.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(exported.get_data(as_text=True))))
    assert rows[0][:3] == ["event_id", "event_at", "actor"] and len(rows) - 1 == len(expected)
    households = {row[RECONCILIATION_CSV_HEADER.index("household_no")] for row in rows[1:]}
    communes = set(db_session.scalars(select(Household.commune).where(Household.household_no.in_(households))).all())
    assert communes == {"Pekesse"}
    assert {row[13] for row in rows[1:]} == {"ALLOCATED"}

    page = client.get("/admin/reconciliation", query_string={**query, "per": "10"}).get_data(as_text=True)
    assert page.count("<tr>") - 1 == min(10, len(expected))
    assert ('rel="next"' in page) == (len(expected) > 10)
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    empty = client.get("/admin/reconciliation", query_string={"from": tomorrow}).get_data(as_text=True)
    assert "No event matches these filters." in empty
    all_rows = client.get("/admin/reconciliation.csv").get_data(as_text=True).strip().splitlines()
    assert len(all_rows) - 1 == db_session.scalar(select(func.count()).select_from(ReconciliationEvent))


def test_suspense_and_conflicts_show_on_the_overview_and_payments_list(admin_app: Flask, db_session: Session) -> None:
    report = Report(
        provider="sandbox",
        provider_txn_id="ADMIN-SUSPENSE-1",
        amount=4321,
        currency="XOF",
        payer_phone=None,
        reference="nobody knows",
        paid_at=utcnow() - timedelta(hours=2),
        source=EvidenceSource.WEBHOOK,
        route="test",
        raw=json.dumps({"txn": "ADMIN-SUSPENSE-1"}),
    )
    result = record_report(db_session, report)
    db_session.commit()
    reconcile_payment(db_session, result.payment_id)
    db_session.commit()
    suspense = db_session.scalar(
        select(func.count()).select_from(Payment).where(Payment.status == PaymentStatus.UNMATCHED)
    )
    assert suspense

    client = signed_in(admin_app)
    overview = text_of(client.get("/admin/"))
    assert f"{suspense} in suspense" in overview and "oldest" in overview
    assert "0 in conflict" in overview
    assert "matched automatically" in overview and "jobs waiting" in overview
    listing = client.get("/admin/payments", query_string={"status": "UNMATCHED"}).get_data(as_text=True)
    assert "ADMIN-SUSPENSE-1" in listing and "ALLOCATED</span>" not in listing


# ---------------------------------------------------------------- SMS, USSD, checks, queues


def test_sms_log_filters_and_shows_delivery_reports(admin_app: Flask, db_session: Session) -> None:
    failed = Message(
        direction=MessageDirection.OUTBOUND,
        phone="+221770001234",
        body="Rappel: votre cotisation",
        template="reminder",
        status=MessageStatus.FAILED,
        provider_message_id="ATXid_admin_test",
        failure_reason="DeliveryFailure",
    )
    db_session.add(failed)
    db_session.flush()
    db_session.add(
        DeliveryReport(
            provider_message_id="ATXid_admin_test",
            message_id=failed.id,
            status="Failed",
            failure_reason="AbsentSubscriber",
        )
    )
    db_session.commit()
    client = signed_in(admin_app)
    body = text_of(client.get("/admin/sms", query_string={"direction": "out", "status": "Failed"}))
    assert "Rappel: votre cotisation" in body and "AbsentSubscriber" in body
    assert "receipt_covered" not in body  # the queued receipts are filtered out
    assert "1 SMS failed" in text_of(client.get("/admin/"))
    inbound = text_of(client.get("/admin/sms", query_string={"direction": "in"}))
    assert "Rappel: votre cotisation" not in inbound


def test_ussd_page_shows_completion_rate_and_drop_off(admin_app: Flask, db_session: Session) -> None:
    now = utcnow()
    outcomes = [("Success", "covered")] * 3 + [("Incomplete", "pay_amount")] * 2 + [("Failed", None)]
    for index, (status, screen) in enumerate(outcomes):
        db_session.add(
            UssdSessionRecord(
                session_id=f"ATUid_admin_{index}",
                phone="+221770000001",
                status=status,
                last_screen=screen,
                created_at=now,
            )
        )
    db_session.commit()
    body = text_of(signed_in(admin_app).get("/admin/ussd"))
    assert "6 sessions" in body and "50 % completed" in body
    assert re.search(r"pay_amount 2 ", body) and re.search(r"\(unknown\) 1 ", body)


def test_checks_log_lists_facility_checks(admin_app: Flask, db_session: Session) -> None:
    _, token = issue_token(db_session, name="admin-test-facility", facility="Poste Test", now=utcnow())
    db_session.commit()
    member_no = db_session.scalars(select(Member.member_no).order_by(Member.id)).first()
    client = admin_app.test_client()
    answer = client.get(f"/api/eligibility/{member_no}", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    body = text_of(signed_in(admin_app).get("/admin/checks", query_string={"member": member_no}))
    assert "Poste Test" in body and "token admin-test-facility" in body and str(member_no) in body
    assert token not in body


def test_queue_health_shows_failed_jobs_and_the_clock_heartbeat(admin_app: Flask, redis_client: Redis) -> None:
    client = signed_in(admin_app)
    assert "never" in text_of(client.get("/admin/queues"))
    queue = Queue(RQ_QUEUE, connection=redis_client)
    queue.enqueue("workers.no_such_module.no_such_function", job_id=f"{KEY_PREFIX}-admin-test-failing")
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    redis_client.set(clock_heartbeat_key(), (datetime.now() - timedelta(seconds=30)).timestamp())
    body = text_of(client.get("/admin/queues"))
    assert "admin-test-failing" in body and "no_such_module" in body
    assert re.search(rf"{RQ_QUEUE} 0 0 1 0 0", body)
    assert "0 min ago clock heartbeat" in body and "is the clock running" not in body


# ---------------------------------------------------------------- queries per page


@pytest.mark.parametrize("path", [*LIST_PAGES, "/admin/", "/admin/households?q=diop"])
def test_list_pages_run_a_small_constant_number_of_queries(admin_app: Flask, seeded_url: str, path: str) -> None:
    client = signed_in(admin_app)
    engine = get_engine(seeded_url)
    counts = []
    for per in (5, 100):
        separator = "&" if "?" in path else "?"
        with QueryCounter(engine) as counter:
            response = client.get(f"{path}{separator}per={per}")
        assert response.status_code == 200
        counts.append(counter.count)
    small, large = counts
    assert small == large, f"{path}: {small} queries for 5 rows, {large} for 100 (a query per row?)"
    assert large <= MAX_QUERIES_PER_PAGE, f"{path}: {large} queries"


# ---------------------------------------------------------------- make run's demo admin


def test_make_run_creates_a_demo_admin_whose_printed_password_signs_in(
    sqlite_url: str, redis_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scripts import run_dev

    monkeypatch.setattr(run_dev, "DEMO_ADMIN_PASSWORD_FILE", tmp_path / "admin-password.txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({"DATABASE_URL": sqlite_url, "REDIS_URL": redis_url, "PYTHONPATH": str(run_dev.ROOT)})
    username, password = run_dev.demo_admin(env)
    assert (username, password) == run_dev.demo_admin(env)  # a second run prints the same credentials
    app = make_test_app(sqlite_url, redis_url)
    client = app.test_client()
    assert login(client, username, password).status_code == 302
    assert "admin (admin)" in text_of(client.get("/admin/"))


def test_money_from_a_fully_subsidised_household_is_listed_to_refund_or_keep(
    admin_app: Flask, db_session: Session
) -> None:
    bsf = db_session.scalars(select(Household).where(Household.subsidy_category == "bsf").limit(1)).one()
    standard = db_session.scalars(select(Household).where(Household.subsidy_category == "standard").limit(1)).one()
    added = [
        Payment(
            provider="wave",
            provider_txn_id=f"T_GIFT_{household.household_no}",
            amount=7_000,
            currency="XOF",
            paid_at=datetime(2026, 11, 30, 9, 0),
            fields_hash="g" * 64,
            status=PaymentStatus.ALLOCATED,
            household_id=household.id,
        )
        for household in (bsf, standard)
    ]
    db_session.add_all(added)
    db_session.commit()
    try:
        page = signed_in(admin_app).get("/admin/payments/to-refund-or-keep")
        body = text_of(page)
        assert page.status_code == 200 and "To refund or keep" in body
        assert f"T_GIFT_{bsf.household_no}" in body and "7 000 F CFA" in body
        assert f"T_GIFT_{standard.household_no}" not in body  # a standard household's money pays its own cover
    finally:
        for payment in added:
            db_session.delete(payment)
        db_session.commit()
