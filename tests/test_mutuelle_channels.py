"""Members hear their own mutuelle (its accounts in how-to-pay texts, its SMS sender id); tokens, agents and devices
kept to a mutuelle read only its members (issue 24), over the real HTTP contract, RQ jobs and CLI."""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import responses
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from sqlalchemy import select
from sqlalchemy.orm import Session

from commands.demo import print_mutuelles
from extensions import db
from menus.data import scheme_today
from models.access.staff import find_staff_user
from models.access.tables import EligibilityCheck
from models.base import PaymentStatus
from models.db import make_engine
from models.members.household import Household
from models.messaging.message import Message
from models.messaging.outbox import attach_dispatch, send_sms
from models.payments.payment import Payment, PaymentRequest
from models.schemes.amounts import Amount
from models.schemes.mutuelle import find_mutuelle
from models.schemes.scheme import Scheme
from tests import factories
from tests.backends import RQ_QUEUE
from tests.conftest import FIXTURES
from tests.members_helpers import cli
from tests.sms_helpers import cmu, job_env, queue, replies, run_jobs, sms
from tests.ussd_helpers import PHONE, cmu_household, hops
from workers.sms import deliver
from workers.sms_queue import rq_dispatch
from workers.sms_transport import AfricasTalkingTransport

__all__ = ["cli", "cmu", "job_env", "queue"]  # the fixtures
PEKESSE_PHONE = "+221775550101"
AGENT_PHONE = "+221760000009"
AGENT_PIN = "4821"
AT_SMS_URL = "https://api.sandbox.africastalking.com/version1/messaging"
AT_SUCCESS = json.loads((FIXTURES / "at_sms_send_response.json").read_text())["SMSMessageData"]["Recipients"][0]


def move_to(session: Session, household: Household, code: str) -> Household:
    """Put a household in another mutuelle of its scheme and commit."""
    mutuelle = find_mutuelle(session, code)
    assert mutuelle is not None
    household.mutuelle_id = mutuelle.id
    session.commit()
    return household


def pekesse_household(session: Session, phone: str = PEKESSE_PHONE, size: int = 2) -> Household:
    """Return a CMU household of the Pékesse mutuelle whose head's phone is `phone`."""
    return move_to(session, cmu_household(session, phone=phone, size=size), "SN-PK")


def covered(session: Session, household: Household) -> Household:
    """Pay a household's first year (it is covered today)."""
    today = scheme_today("Africa/Dakar")
    household.enrolled_on = today - timedelta(days=70)
    for member in household.members:
        member.joined_on = household.enrolled_on
    session.commit()
    factories.pay(session, household, 1_000 + 3_500 * len(household.members), today - timedelta(days=60))
    return household


# ---------------------------------------------------------------- how to pay: the household's mutuelle's accounts


def test_dial_6_for_a_pekesse_household_hears_the_pekesse_accounts(session: Session, client: FlaskClient) -> None:
    cmu_household(session)  # the caller: Thiès Nord
    other = pekesse_household(session)
    reply = hops(client, PHONE, "6", other.household_no)[-1]

    request = session.scalars(select(PaymentRequest)).one()
    assert request.household_id == other.id
    assert "Wave: M-221-PEKESSE\n" in reply and "Orange Money: #144*4*6*203041#" in reply
    assert "THIES" not in reply
    text = session.scalars(select(Message)).one()
    assert f"au marchand M-221-PEKESSE, ref {request.reference}" in text.body


def test_pay_on_its_own_phone_shows_the_households_mutuelle_and_thies_nord_its_own(
    session: Session, client: FlaskClient
) -> None:
    pekesse_household(session)
    assert "Wave: M-221-PEKESSE\n" in hops(client, PEKESSE_PHONE, "2", "1")[-1]
    cmu_household(session)
    assert "Wave: M-221-THIES-NORD\n" in hops(client, PHONE, "2", "1")[-1]


def test_a_mutuelle_without_an_account_with_a_provider_falls_back_to_the_schemes(
    session: Session, client: FlaskClient
) -> None:
    household = pekesse_household(session)
    household.mutuelle.accounts = [a for a in household.mutuelle.accounts if a.provider != "wave"]
    session.commit()
    reply = hops(client, PEKESSE_PHONE, "2", "1")[-1]
    assert "Wave: M-221-THIES\n" in reply and "Orange Money: #144*4*6*203041#" in reply


def test_sms_payer_replies_with_the_households_mutuelle_account(
    client: FlaskClient, session: Session, cmu: Scheme, queue: Queue, job_env: None
) -> None:
    household = pekesse_household(session)
    assert sms(client, PEKESSE_PHONE, "PAYER").status_code == 200
    run_jobs(queue)

    [reply] = replies(session, PEKESSE_PHONE)
    request = session.scalars(select(PaymentRequest)).one()
    assert (reply.template, request.household_id) == ("payment_reference_for", household.id)
    assert f"marchand M-221-PEKESSE, ref {request.reference}" in reply.body


# ---------------------------------------------------------------- outbound texts: the mutuelle's sender id


@pytest.fixture
def at_posts() -> Iterator[responses.RequestsMock]:
    """Intercept HTTP to Africa's Talking (and only it) for the real SDK."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.post(AT_SMS_URL, json={"SMSMessageData": {"Message": "Sent to 1/1", "Recipients": [AT_SUCCESS]}})
        yield mocked


def sent_from(session: Session, redis_url: str, household: Household | None, to: str) -> str:
    """Queue a receipt-like text (to a household, or none), deliver it with the real AT transport; return its sender."""
    attach_dispatch(session, rq_dispatch(redis_url, RQ_QUEUE))
    money = Amount(3_500, "XOF", 0)
    number = household.household_no if household is not None else "-"
    message = send_sms(session, to, "receipt_due", household=household, amount=money, due=money, household_no=number)
    session.commit()
    deliver(session, message.id, AfricasTalkingTransport("sandbox", "at-key", timeout_seconds=10), "DEFAULT")
    session.commit()
    return to


@pytest.mark.parametrize(("code", "sender"), [("SN-TN", "MUT-TN"), ("SN-PK", "MUT-PK"), ("SN-MR", "MUT-MR")])
def test_texts_to_a_household_come_from_its_mutuelles_sender_id(
    session: Session, redis_url: str, at_posts: responses.RequestsMock, code: str, sender: str
) -> None:
    household = move_to(session, cmu_household(session), code)
    sent_from(session, redis_url, household, PHONE)
    (call,) = at_posts.calls
    assert isinstance(call.request.body, str)
    assert urllib.parse.parse_qs(call.request.body)["from"] == [sender]


def test_a_mutuelle_without_a_sender_id_uses_the_schemes_and_no_household_the_default(
    session: Session, redis_url: str, at_posts: responses.RequestsMock
) -> None:
    household = pekesse_household(session)
    household.mutuelle.sms_sender_id = None
    session.commit()
    sent_from(session, redis_url, household, PEKESSE_PHONE)
    sent_from(session, redis_url, None, "+221770009999")
    senders = [urllib.parse.parse_qs(str(call.request.body))["from"] for call in at_posts.calls]
    assert senders == [["MUTUELLE"], ["DEFAULT"]]


# ---------------------------------------------------------------- tokens and agents kept to a mutuelle


def token_of(result: Result) -> str:
    """Return the plain token `api-token create` printed (its last line)."""
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_kept_to_a_mutuelle_reads_only_its_members(
    session: Session, client: FlaskClient, cli: Callable[..., Result]
) -> None:
    own = pekesse_household(session).members[0].member_no
    other = cmu_household(session).members[0].member_no
    kept = token_of(
        cli("api-token", "create", "poste-pk", "--facility", "Poste de sante Pekesse", "--mutuelle", "sn-pk")
    )
    union = token_of(cli("api-token", "create", "union", "--facility", "Union de Thies"))

    assert client.get(f"/api/eligibility/{own}", headers=bearer(kept)).status_code == 200
    refused = client.get(f"/api/eligibility/{other}", headers=bearer(kept))
    assert refused.status_code == 404 and refused.get_json()["detail"] == f"no member {other}"
    for member_no in (own, other):
        assert client.get(f"/api/eligibility/{member_no}", headers=bearer(union)).status_code == 200
    # Every check is logged, the refused one as an unknown member's.
    session.commit()
    logged = [(c.member_no, c.status) for c in session.scalars(select(EligibilityCheck).order_by(EligibilityCheck.id))]
    assert logged[1] == (other, "UNKNOWN") and logged[0][1] != "UNKNOWN"


def test_a_token_kept_to_a_mutuelle_reads_only_its_members_by_fhir(
    session: Session, client: FlaskClient, cli: Callable[..., Result]
) -> None:
    own = pekesse_household(session).members[0].member_no
    other = cmu_household(session).members[0].member_no
    kept = token_of(
        cli("api-token", "create", "fhir-pk", "--facility", "Poste de sante Pekesse", "--mutuelle", "SN-PK")
    )

    assert client.get(f"/fhir/Patient/{own}", headers=bearer(kept)).status_code == 200
    assert client.get(f"/fhir/Patient/{other}", headers=bearer(kept)).status_code == 404
    found = client.get(f"/fhir/Coverage?beneficiary={own}", headers=bearer(kept)).get_json()
    hidden = client.get(f"/fhir/Coverage?beneficiary={other}", headers=bearer(kept)).get_json()
    assert (found["total"], hidden["total"]) == (1, 0)


def test_an_agent_kept_to_a_mutuelle_checks_only_its_members_by_ussd(
    session: Session, client: FlaskClient, cli: Callable[..., Result]
) -> None:
    own = covered(session, pekesse_household(session))
    other = covered(session, cmu_household(session))
    created = cli(
        "agents", "create", "--facility", "Poste PK", "--phone", AGENT_PHONE, "--pin", AGENT_PIN, "--mutuelle", "SN-PK"
    )
    assert created.exit_code == 0, created.output

    assert hops(client, AGENT_PHONE, "1", f"{own.household_no}-01", AGENT_PIN)[-1].startswith("END Awa, né(e) en 1980")
    assert hops(client, AGENT_PHONE, "1", f"{other.household_no}-01", AGENT_PIN)[-1] == (
        f"END Aucun membre {other.household_no}-01."
    )


# ---------------------------------------------------------------- the CLI


def test_cli_creates_and_lists_per_mutuelle(session: Session, cli: Callable[..., Result]) -> None:
    assert cli("api-token", "create", "pk", "--facility", "Poste PK", "--mutuelle", "SN-PK").exit_code == 0
    assert cli("api-token", "create", "all", "--facility", "Union").exit_code == 0
    args = ("--phone", AGENT_PHONE, "--pin", AGENT_PIN, "--mutuelle", "SN-MR")
    assert cli("agents", "create", "--facility", "Poste MR", *args).exit_code == 0
    device = cli(
        "devices", "create", "+221700000077", "--label", "Collecteur PK", "--senders", "Wave", "--mutuelle", "SN-PK"
    )
    assert device.exit_code == 0, device.output

    tokens = cli("api-token", "list").output.splitlines()
    assert [line.split("\t")[0] for line in tokens] == ["all", "pk"]
    assert tokens[0].endswith("\tmutuelle all") and tokens[1].endswith("\tmutuelle SN-PK")
    assert [line.split("\t")[0] for line in cli("api-token", "list", "--mutuelle", "sn-pk").output.splitlines()] == [
        "pk"
    ]
    assert cli("agents", "list", "--mutuelle", "SN-MR").output.strip().endswith("\tmutuelle SN-MR")
    assert cli("agents", "list", "--mutuelle", "SN-PK").output == ""
    assert cli("devices", "list", "--mutuelle", "SN-PK").output.startswith("+221700000077\tCollecteur PK\t")
    assert cli("devices", "list", "--mutuelle", "SN-TN").output == ""

    unknown = cli("api-token", "list", "--mutuelle", "SN-XX")
    assert unknown.exit_code != 0 and "no mutuelle SN-XX (known: KH-PP, SN-MR, SN-PK, SN-TN)" in unknown.output
    assert cli("api-token", "create", "x", "--facility", "X", "--mutuelle", "SN-XX").exit_code != 0


def test_cli_payments_and_members_kept_to_a_mutuelle(session: Session, cli: Callable[..., Result]) -> None:
    pk, tn = pekesse_household(session), cmu_household(session)
    for household in (pk, tn):
        session.add(
            Payment(
                provider="sandbox",
                provider_txn_id=f"T_{household.household_no}",
                amount=3_500,
                currency="XOF",
                paid_at=datetime(2026, 11, 30, 9, 0),
                fields_hash=household.household_no.ljust(64, "h"),
                status=PaymentStatus.MATCHED,
                household_id=household.id,
                mutuelle_id=household.mutuelle_id,
            )
        )
    session.commit()
    listed = cli("payments", "list", "--mutuelle", "SN-PK").output
    assert pk.household_no in listed and tn.household_no not in listed
    assert tn.household_no in cli("payments", "list").output
    assert cli("payments", "show", f"sandbox/T_{pk.household_no}", "--mutuelle", "SN-PK").exit_code == 0
    assert cli("payments", "show", f"sandbox/T_{tn.household_no}", "--mutuelle", "SN-PK").exit_code != 0
    assert cli("members", "show", f"{pk.household_no}-01", "--mutuelle", "SN-PK").exit_code == 0
    hidden = cli("members", "show", f"{tn.household_no}-01", "--mutuelle", "SN-PK")
    assert hidden.exit_code != 0 and f"no member {tn.household_no}-01" in hidden.output


# ---------------------------------------------------------------- make run's demo managers


def test_make_run_creates_a_manager_per_cmu_mutuelle_beside_the_union_admin(
    sqlite_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scripts import run_dev

    engine = make_engine(sqlite_url)
    with Session(engine) as loading:
        factories.scheme(loading, "cmu-thies")
    monkeypatch.setattr(run_dev, "INSTANCE", tmp_path)
    monkeypatch.setattr(run_dev, "DEMO_ADMIN_PASSWORD_FILE", tmp_path / "admin-password.txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({"DATABASE_URL": sqlite_url, "REDIS_URL": redis_url, "PYTHONPATH": str(run_dev.ROOT)})

    staff = run_dev.demo_staff(env)
    assert [(name, role, mutuelle) for name, role, mutuelle, _ in staff] == [
        ("admin", "admin", None),
        ("gestionnaire-tn", "operator", "SN-TN"),
        ("gestionnaire-pk", "operator", "SN-PK"),
        ("gestionnaire-mr", "operator", "SN-MR"),
    ]
    assert (tmp_path / "gestionnaire-pk-password.txt").read_text().strip() == staff[2][3]
    with Session(engine) as reading:
        users = {name: find_staff_user(reading, name) for name, *_ in staff}
        assert {name: [m.code for m in u.mutuelles] for name, u in users.items() if u is not None} == {
            "admin": [],
            "gestionnaire-tn": ["SN-TN"],
            "gestionnaire-pk": ["SN-PK"],
            "gestionnaire-mr": ["SN-MR"],
        }
    engine.dispose()


def test_demo_show_lists_the_mutuelles_and_their_managers(
    app: Flask, session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    factories.scheme(session, "cmu-thies")
    with app.app_context():
        print_mutuelles(db())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Mutuelles")
    assert lines[2].startswith("  SN-PK  Mutuelle de santé de Pékesse") and lines[2].endswith("Wave M-221-PEKESSE")
    assert any(line.startswith("  gestionnaire-pk  operator  SN-PK ") for line in lines)
    assert any(line.startswith("  admin            admin     every mutuelle ") for line in lines)
